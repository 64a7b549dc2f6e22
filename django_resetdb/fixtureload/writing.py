"""Writing rows in bulk: ``COPY`` for new rows, ``INSERT … ON CONFLICT`` for the rest.

Many-to-many rows are written as ``.set()`` leaves them.
"""

from __future__ import annotations

import datetime
import functools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import connections, models
from django.db.backends.postgresql.psycopg_any import is_psycopg3
from django.db.models.constants import OnConflict

from django_resetdb import postgres
from django_resetdb.fixtureload.rows import Entry, Row, unchanged_type

INSERT_BATCH = 1000

# The paths rows take (counted in a loader's ``paths``).
COPIED = "copied"
BULK_INSERTED = "inserted in bulk"


def _fields(model: type[models.Model]) -> list[Any]:
    meta = model._meta
    return [f for f in meta.local_concrete_fields if not getattr(f, "generated", False)]


def write_keyed(
    model: type[models.Model],
    entries: list[Entry],
    using: str,
    *,
    assume_new: bool,
    tally: Counter[str] | None = None,
) -> set[Any]:
    """What ``save_base(raw=True)`` does for the entries with a primary key, in bulk: new
    rows are copied in, existing ones go through ``INSERT … ON CONFLICT DO UPDATE``.
    With ``assume_new`` nothing is looked up: the COPY fails if a row exists. Returns the
    keys of the rows that did not exist."""
    meta = model._meta
    fields = _fields(model)
    updates = [f for f in fields if not f.primary_key]
    manager = model._base_manager
    keyed_entries = [(e, pk) for e in entries if (pk := e.obj.pk) is not None]
    if not keyed_entries:
        return set()
    keyed = [e.obj for e, _ in keyed_entries]
    pks = [pk for _, pk in keyed_entries]
    existing: set[Any] = set()
    if not assume_new:
        existing = set(manager.using(using).filter(pk__in=pks).values_list("pk", flat=True))
    if existing:
        fresh = [o for o, pk in zip(keyed, pks, strict=True) if pk not in existing]
        upsert = [o for o, pk in zip(keyed, pks, strict=True) if pk in existing]
    else:
        fresh, upsert = keyed, []
    # raw: the attributes as they are, no pre_save(), as save_base(raw=True).
    values = (
        (o.values, o.todo) if type(o) is Row else ([getattr(o, f.attname) for f in fields], None)
        for o in fresh
    )
    copied = _copy(model, fields, values, using)
    if not copied:
        if assume_new:
            existing = set(manager.using(using).filter(pk__in=pks).values_list("pk", flat=True))
            fresh = [o for o, pk in zip(keyed, pks, strict=True) if pk not in existing]
        upsert = keyed
    for start in range(0, len(upsert), INSERT_BATCH):
        postgres.insert_rows(
            model,
            upsert[start : start + INSERT_BATCH],
            fields=fields,
            raw=True,
            using=using,
            on_conflict=OnConflict.UPDATE if updates else OnConflict.IGNORE,
            update_fields=updates or None,
            unique_fields=[meta.pk] if updates else None,
        )
    _mark_saved(keyed, using)
    fresh_keys = {o.pk for o in fresh} if fresh is not keyed else set(pks)
    if tally is not None:
        for entry, pk in keyed_entries:
            if entry.counted:
                new = copied and pk in fresh_keys
                tally[COPIED if new else BULK_INSERTED] += 1
    return fresh_keys


def write_unkeyed(
    model: type[models.Model],
    entries: list[Entry],
    using: str,
    *,
    tally: Counter[str] | None = None,
) -> set[Any]:
    """The entries without a primary key: inserted in their order, so that the sequence
    numbers them as it numbers loaddata's objects. Returns their new keys."""
    meta = model._meta
    unkeyed = [e.obj for e in entries if e.obj.pk is None]
    if not unkeyed:
        return set()
    if tally is not None:
        tally[BULK_INSERTED] += sum(1 for e in entries if e.obj.pk is None and e.counted)
    inserted = [f for f in _fields(model) if f is not meta.auto_field]
    returning = meta.db_returning_fields
    for start in range(0, len(unkeyed), INSERT_BATCH):
        chunk = unkeyed[start : start + INSERT_BATCH]
        rows = postgres.insert_rows(
            model, chunk, fields=inserted, returning_fields=returning, raw=True, using=using
        )
        for obj, row in zip(chunk, rows or (), strict=False):
            for returned, value in zip(returning, row, strict=False):
                setattr(obj, returned.attname, value)
    _mark_saved(unkeyed, using)
    return {o.pk for o in unkeyed}


def _mark_saved(objs: list[Any], using: str) -> None:
    for obj in objs:
        if type(obj) is Row:
            continue  # no state to keep: a Row is written once
        obj._state.adding = False
        obj._state.db = using


def _copy(
    model: Any,
    fields: list[Any],
    rows: Iterable[tuple[Sequence[Any], Sequence[int] | None]],
    using: str,
) -> bool:
    """COPY ``rows`` in as new rows, converted as Django's INSERT converts them; return
    False, having written nothing, when a value or a field needs Django's own SQL.

    Each row is its attribute values (one per field) and the positions of the values
    that may need ``get_db_prep_save()``, or ``None`` for all of them: a value of a type
    the field passes through unchanged is copied as it is."""
    connection = connections[using]
    table = model._meta.db_table
    if not is_psycopg3 or '"' in table or any(hasattr(f, "get_placeholder") for f in fields):
        return False
    checks = [(unchanged_type(f), _converter(f, connection)) for f in fields]
    everything = list(enumerate(checks))
    prepared = []
    for row, todo in rows:
        values: Any = row
        for position, (kind, to_db) in (
            everything if todo is None else [(i, checks[i]) for i in todo]
        ):
            value = values[position]
            if value is None or (type(value) is kind and value != ""):
                continue
            if hasattr(value, "resolve_expression"):
                return False
            if values is row:
                values = list(row)  # the attribute values stay as they are
            values[position] = to_db(value)
        prepared.append(values)
    if prepared:
        postgres.copy_rows(connection, table, [f.column for f in fields], prepared)
    return True


def _converter(f: Any, connection: Any) -> Callable[[Any], Any]:
    """``f.get_db_prep_save``; for a ``DateTimeField``, skipped for aware datetimes, which
    it returns unchanged on PostgreSQL."""
    sample = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    if (
        type(f) is models.DateTimeField
        and settings.USE_TZ
        and connection.ops.adapt_datetimefield_value(sample) is sample
    ):
        prep = f.get_db_prep_save

        def to_db(value: Any) -> Any:
            if type(value) is datetime.datetime and value.tzinfo is not None:
                return value
            return prep(value, connection=connection)

        return to_db
    return functools.partial(f.get_db_prep_save, connection=connection)


def write_m2m(model: type[models.Model], entries: list[Entry], using: str, fresh: set[Any]) -> None:
    """What ``getattr(obj, name).set(values)`` does for each entry, in bulk. Objects whose
    row this batch created (``fresh`` keys) have no many-to-many rows to look up."""
    names: list[str] = []
    for entry in entries:
        names.extend(name for name in entry.m2m if name not in names)
    for name in names:
        m2m = model._meta.get_field(name)
        through = m2m.remote_field.through  # type: ignore[union-attr]
        source = through._meta.get_field(m2m.m2m_field_name())  # type: ignore[union-attr]
        target = through._meta.get_field(m2m.m2m_reverse_field_name())  # type: ignore[union-attr]
        ops = [
            (source.get_foreign_related_value(e.obj)[0], e.m2m[name])
            for e in entries
            if name in e.m2m
        ]
        current: dict[Any, set[Any]] = {key: set() for key, _ in ops}
        by_pk = source.target_field.primary_key
        known = [key for key in current if not (by_pk and key in fresh)]
        if known:
            existing = (
                through._base_manager.using(using)
                .filter(**{f"{source.attname}__in": known})
                .values_list(source.attname, target.attname)
            )
            for key, value in existing:
                current[key].add(value)
        # get_prep_value() returns a value of this type unchanged.
        same, prep = unchanged_type(target), target.get_prep_value
        removals: list[tuple[Any, set[Any]]] = []
        additions: list[tuple[Any, Any]] = []
        conflicts = False
        for key, values in ops:
            # .set(): keep what is there, remove the rest, add what is missing; the same
            # set operations so that the rows come in the same order.
            old_ids = set(current[key])
            new_objs = []
            for value in values:
                prepared = value if type(value) is same else prep(value)
                if prepared in old_ids:
                    old_ids.remove(prepared)
                else:
                    new_objs.append(value)
            if old_ids:
                removals.append((key, old_ids))
            target_ids: set[Any] = set()
            for value in new_objs:
                target_ids.add(value if type(value) is same else prep(value))
            conflicts = conflicts or bool(target_ids & (current[key] - old_ids))
            additions.extend((key, value) for value in target_ids)
            current[key] = (current[key] - old_ids) | target_ids
        for key, old_ids in removals:
            through._base_manager.using(using).filter(
                **{source.attname: key, f"{target.attname}__in": old_ids}
            ).delete()
        # No row conflicts: copy them in. Otherwise ON CONFLICT DO NOTHING, as .add() does,
        # which also takes a sequence value for each conflicting row.
        copied = ((pair, None) for pair in additions)
        if not conflicts and _copy(through, [source, target], copied, using):
            continue
        rows = [through(**{source.attname: k, target.attname: v}) for k, v in additions]
        for start in range(0, len(rows), INSERT_BATCH):
            postgres.insert_rows(
                through,
                rows[start : start + INSERT_BATCH],
                fields=[source, target],
                raw=True,
                using=using,
                on_conflict=OnConflict.IGNORE,
            )
