"""Writing rows in bulk: ``COPY`` for new rows, ``INSERT … ON CONFLICT`` for the rest.

Many-to-many rows are written as ``.set()`` leaves them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connections, models
from django.db.backends.postgresql.psycopg_any import is_psycopg3
from django.db.models.constants import OnConflict

from django_resetdb import postgres
from django_resetdb.fixtureload.rows import Entry

INSERT_BATCH = 1000


def _fields(model: type[models.Model]) -> list[Any]:
    meta = model._meta
    return [f for f in meta.local_concrete_fields if not getattr(f, "generated", False)]


def write_keyed(
    model: type[models.Model], entries: list[Entry], using: str, *, assume_new: bool
) -> set[Any]:
    """What ``save_base(raw=True)`` does for the entries with a primary key, in bulk: new
    rows are copied in, existing ones go through ``INSERT … ON CONFLICT DO UPDATE``.
    With ``assume_new`` nothing is looked up: the COPY fails if a row exists. Returns the
    keys of the rows that did not exist."""
    meta = model._meta
    fields = _fields(model)
    updates = [f for f in fields if not f.primary_key]
    manager = model._base_manager
    keyed = [e.obj for e in entries if e.obj.pk is not None]
    if not keyed:
        return set()
    existing: set[Any] = set()
    if not assume_new:
        pks = [o.pk for o in keyed]
        existing = set(manager.using(using).filter(pk__in=pks).values_list("pk", flat=True))
    fresh = [o for o in keyed if o.pk not in existing]
    upsert = [o for o in keyed if o.pk in existing]
    # raw: the attributes as they are, no pre_save(), as save_base(raw=True).
    values = ([getattr(o, f.attname) for f in fields] for o in fresh)
    if not _copy(model, fields, values, using):
        if assume_new:
            existing = set(
                manager.using(using)
                .filter(pk__in=[o.pk for o in keyed])
                .values_list("pk", flat=True)
            )
            fresh = [o for o in keyed if o.pk not in existing]
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
    return {o.pk for o in fresh}


def write_unkeyed(model: type[models.Model], entries: list[Entry], using: str) -> set[Any]:
    """The entries without a primary key: inserted in their order, so that the sequence
    numbers them as it numbers loaddata's objects. Returns their new keys."""
    meta = model._meta
    unkeyed = [e.obj for e in entries if e.obj.pk is None]
    if not unkeyed:
        return set()
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
        obj._state.adding = False
        obj._state.db = using


def _copy(model: Any, fields: list[Any], rows: Iterable[Sequence[Any]], using: str) -> bool:
    """COPY ``rows`` (attribute values, one per field) in as new rows, converted as Django's
    INSERT converts them; return False, having written nothing, when a value or a field
    needs Django's own SQL."""
    connection = connections[using]
    table = model._meta.db_table
    if not is_psycopg3 or '"' in table or any(hasattr(f, "get_placeholder") for f in fields):
        return False
    convert = [_converter(f, connection) for f in fields]
    prepared = []
    for row in rows:
        values = []
        for to_db, value in zip(convert, row, strict=True):
            if hasattr(value, "resolve_expression"):
                return False
            values.append(to_db(value))
        prepared.append(values)
    if prepared:
        postgres.copy_rows(connection, table, [f.column for f in fields], prepared)
    return True


# Django fields whose get_db_prep_save() returns a value of this exact type unchanged.
_UNCHANGED: dict[type[Any], type[Any]] = {
    **dict.fromkeys(
        (
            models.AutoField,
            models.BigAutoField,
            models.SmallAutoField,
            models.IntegerField,
            models.BigIntegerField,
            models.SmallIntegerField,
            models.PositiveIntegerField,
            models.PositiveBigIntegerField,
            models.PositiveSmallIntegerField,
        ),
        int,
    ),
    **dict.fromkeys((models.CharField, models.TextField, models.SlugField, models.EmailField), str),
    models.BooleanField: bool,
}


def _converter(f: Any, connection: Any) -> Callable[[Any], Any]:
    """``f.get_db_prep_save``, skipped for the values it would return unchanged."""
    own = f.target_field if isinstance(f, models.ForeignKey) else f
    kind = _UNCHANGED.get(type(own))

    def to_db(value: Any) -> Any:
        if value is None or (type(value) is kind and value != ""):
            return value
        return f.get_db_prep_save(value, connection=connection)

    return to_db


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
        removals: list[tuple[Any, set[Any]]] = []
        additions: list[tuple[Any, Any]] = []
        conflicts = False
        for key, values in ops:
            # .set(): keep what is there, remove the rest, add what is missing; the same
            # set operations so that the rows come in the same order.
            old_ids = set(current[key])
            new_objs = []
            for value in values:
                prepared = target.get_prep_value(value)
                if prepared in old_ids:
                    old_ids.remove(prepared)
                else:
                    new_objs.append(value)
            if old_ids:
                removals.append((key, old_ids))
            target_ids: set[Any] = set()
            for value in new_objs:
                target_ids.add(target.get_prep_value(value))
            conflicts = conflicts or bool(target_ids & (current[key] - old_ids))
            additions.extend((key, value) for value in target_ids)
            current[key] = (current[key] - old_ids) | target_ids
        for key, old_ids in removals:
            through._base_manager.using(using).filter(
                **{source.attname: key, f"{target.attname}__in": old_ids}
            ).delete()
        # No row conflicts: copy them in. Otherwise ON CONFLICT DO NOTHING, as .add() does,
        # which also takes a sequence value for each conflicting row.
        if not conflicts and _copy(through, [source, target], additions, using):
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
