"""Fixtures loaded with ``loaddata``'s result, in bulk.

``loaddata`` saves one object at a time: an UPDATE, then an INSERT when the UPDATE found
no row, then a ``.set()`` per many-to-many field. :class:`BulkLoader` keeps that result
but buffers objects per model and writes them with one ``INSERT … ON CONFLICT (pk) DO
UPDATE`` per batch, which is what the UPDATE-then-INSERT amounts to in raw mode.

What keeps the result identical:

- Objects are read with Django's own deserializers, so values, natural keys and forward
  references are converted exactly as ``loaddata`` converts them.
- Before anything reads the database (a natural-key lookup), the buffered objects that
  lookup could see are written first.
- An object whose primary key is already buffered flushes the buffer first, so the later
  object wins, as it does with ``loaddata``.
- Many-to-many rows are worked out as ``.set()`` does (the same set arithmetic, so the
  same rows are inserted in the same order and get the same ids).
- Models whose save has observers or side effects (``pre_save``/``post_save`` or
  ``m2m_changed`` receivers, ``order_with_respect_to``, symmetrical or custom-through
  many-to-many, composite keys) are saved by Django itself, one object at a time, after
  a flush: receivers are called with ``raw=True`` exactly as under ``loaddata``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from django.apps import apps
from django.core import serializers
from django.core.management.commands import loaddata
from django.core.serializers import base, python, xml_serializer
from django.core.serializers.base import DeserializedObject
from django.db import DatabaseError, connections, models, router, transaction
from django.db.backends.postgresql.psycopg_any import is_psycopg3
from django.db.models import signals
from django.db.models.constants import OnConflict
from django.db.models.manager import BaseManager

from django_resetdb import postgres
from django_resetdb.exceptions import ResetError

# Objects buffered before a flush, and objects per INSERT statement.
FLUSH_EVERY = 5000
INSERT_BATCH = 1000

# The fixture formats read here as loaddata's deserializers read them; any other
# registered format goes through its own deserializer, object by object.
STREAMED_FORMATS = ("json", "jsonl", "yaml", "xml")


@dataclass(frozen=True)
class Where:
    """Where an object comes from, for error messages."""

    file: str
    position: int

    def describe(self) -> str:
        return f"{self.file}, object {self.position}"


@dataclass
class Entry:
    obj: models.Model
    m2m: dict[str, Any]
    where: Where
    # Fields whose natural key named no row when the object was read (saved later).
    waiting: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pending:
    """Buffered objects of one concrete model, in the order they came."""

    entries: list[Entry] = field(default_factory=list)
    pks: set[Any] = field(default_factory=set)


class FixtureFinder:
    """``loaddata``'s own lookup of fixture labels: app ``fixtures`` folders,
    ``FIXTURE_DIRS``, literal paths, formats, compression and database-specific names."""

    def __init__(self, database: str) -> None:
        finder: Any = loaddata.Command()
        finder.using = database
        finder.app_label = None
        finder.verbosity = 0
        finder.format = None
        finder.serialization_formats = serializers.get_public_serializer_formats()
        self._finder: Any = finder

    @property
    def formats(self) -> list[str]:
        return list(self._finder.serialization_formats)

    @property
    def compressions(self) -> list[str]:
        return [name for name in self._finder.compression_formats if name not in (None, "stdin")]

    def find(self, label: str) -> list[str]:
        """Files for ``label``; raises ``CommandError`` as ``loaddata`` does."""
        if label == loaddata.READ_STDIN:
            raise ResetError("Seeds cannot be read from standard input ('-'); name a file.")
        return [path for path, _folder, _name in self._finder.find_fixtures(label)]

    def open(self, path: str) -> tuple[IO[bytes], str, str | None]:
        """The opened file, its serialization format and its compression."""
        _name, ser_fmt, cmp_fmt = self._finder.parse_name(os.path.basename(path))
        opener, mode = self._finder.compression_formats[cmp_fmt]
        return opener(path, mode), ser_fmt, cmp_fmt


class BulkLoader:
    """Loads fixture files into database ``using`` inside the caller's transaction."""

    def __init__(
        self,
        using: str,
        *,
        excluded_models: Iterable[type[models.Model]] = (),
        excluded_apps: Iterable[Any] = (),
    ) -> None:
        self.using = using
        self.connection = connections[using]
        self.excluded_models = set(excluded_models)
        self.excluded_apps = set(excluded_apps)
        # Models of the objects saved, as loaddata collects them: their sequences are
        # reset afterwards.
        self.models: set[type[models.Model]] = set()
        self.files: list[str] = []
        self._pending: dict[type[models.Model], Pending] = {}
        self._pending_count = 0
        self._deferred: list[tuple[DeserializedObject, Where]] = []
        self._exact: dict[type[models.Model], bool] = {}
        self._allowed: dict[type[models.Model], bool] = {}
        self._closures: dict[type[models.Model], frozenset[type[models.Model]]] = {}
        self._lookups: dict[str, tuple[Any, dict[str, tuple[str, Any]]]] = {}
        self._plain: dict[Any, bool] = {}
        self._position = 0
        self._file = ""

    # Reading -----------------------------------------------------------------

    def load_file(self, finder: FixtureFinder, path: str) -> int:
        """Load one fixture file; return the number of objects saved."""
        self.files.append(path)
        self._file = path
        self._position = 0
        stream, ser_fmt, cmp_fmt = finder.open(path)
        saved = 0
        try:
            for obj in self._deserialize(stream, ser_fmt, cmp_fmt):
                if self._add(obj):
                    saved += 1
        except ResetError:
            raise
        except Exception as exc:
            # Whatever the deserializer or a natural-key lookup raised, about this object.
            raise ResetError(f"{self._here()}: {_one_line(exc)}") from exc
        finally:
            stream.close()
        self.flush()
        return saved

    def _here(self) -> str:
        if self._position:
            return Where(self._file, self._position).describe()
        return self._file

    def _deserialize(
        self, stream: IO[bytes], ser_fmt: str, cmp_fmt: str | None
    ) -> Iterator[DeserializedObject]:
        options: dict[str, Any] = {"using": self.using, "handle_forward_references": True}
        if ser_fmt == "xml":
            yield from _XmlDeserializer(stream, before=self._before_xml, **options)
        elif ser_fmt in ("json", "jsonl", "yaml"):
            dicts = read_dicts(stream, ser_fmt, cmp_fmt, self._file)
            yield from python.Deserializer(
                self._watch(dicts), using=self.using, handle_forward_references=True
            )
        else:
            # A format registered by the project: no way to see its lookups coming, so
            # every object is saved as loaddata saves it.
            for obj in serializers.deserialize(ser_fmt, stream, **options):
                self._position += 1
                self.flush()
                self._exact[type(obj.object)] = True
                yield obj

    def _watch(self, dicts: Iterator[Any]) -> Iterator[Any]:
        """Count positions, and flush what a coming natural-key lookup could read."""
        for item in dicts:
            self._position += 1
            if self._pending_count and self._lookups_see_pending(item):
                self.flush()
            yield item

    def _before_xml(self, node: Any) -> None:
        self._position += 1
        if not node.hasAttribute("pk") or node.getElementsByTagName("natural"):
            self.flush()

    def _lookups_see_pending(self, item: Any) -> bool:
        """Whether deserializing ``item`` reads tables that have buffered objects."""
        try:
            natural_pk, relations = self._lookups_of(item["model"])
            fields = item["fields"]
        except Exception:
            return True  # malformed: let the deserializer say what is wrong
        if natural_pk is None and not relations:
            return False
        read: set[type[models.Model]] = set()
        if natural_pk is not None and item.get("pk") is None:
            read |= self._closure(natural_pk)
        for name, (kind, target) in relations.items():
            value = fields.get(name)
            natural = _is_natural(value) and (kind == "fk" or any(_is_natural(v) for v in value))
            if natural:
                read |= self._closure(target)
        return any(model in self._pending for model in read)

    def _lookups_of(self, label: str) -> tuple[Any, dict[str, tuple[str, Any]]]:
        """For a model label: the model if its objects may be found by natural key, and
        its relations whose targets may be named by natural key."""
        if label not in self._lookups:
            model = apps.get_model(label)
            relations: dict[str, tuple[str, Any]] = {}
            for f in model._meta.fields:
                if (f.many_to_one or f.one_to_one) and _by_natural_key(f.related_model):
                    relations[f.name] = ("fk", f.related_model)
            for f in model._meta.many_to_many:
                if _by_natural_key(f.related_model):
                    relations[f.name] = ("m2m", f.related_model)
            natural_pk = model if _has_natural_key(model) else None
            self._lookups[label] = (natural_pk, relations)
        return self._lookups[label]

    def _closure(self, model: Any) -> frozenset[type[models.Model]]:
        """The concrete model and those its foreign keys reach: what a natural-key lookup
        (which may follow foreign keys, as ``Permission``'s does) can read."""
        start = _concrete(model)
        if start not in self._closures:
            seen: set[type[models.Model]] = set()
            todo = [start]
            while todo:
                current = _concrete(todo.pop())
                if current in seen:
                    continue
                seen.add(current)
                todo.extend(
                    f.related_model
                    for f in current._meta.fields
                    if (f.many_to_one or f.one_to_one) and f.related_model
                )
            self._closures[start] = frozenset(seen)
        return self._closures[start]

    # Buffering ---------------------------------------------------------------

    def _add(self, deserialized: DeserializedObject) -> bool:
        obj = deserialized.object
        model = type(obj)
        if model._meta.app_config in self.excluded_apps or model in self.excluded_models:
            return False
        if model not in self._allowed:
            self._allowed[model] = router.allow_migrate_model(self.using, model)
        if not self._allowed[model]:
            return False
        self.models.add(model)
        where = Where(self._file, self._position)
        if deserialized.deferred_fields:
            self._deferred.append((deserialized, where))
        if self._needs_django(model, deserialized.m2m_data):
            self.flush()
            self._save_one(deserialized, where)
            return True
        waiting = {f.name: value for f, value in deserialized.deferred_fields.items()}
        self._buffer(Entry(obj, deserialized.m2m_data or {}, where, waiting))
        return True

    def _buffer(self, entry: Entry) -> None:
        concrete = _concrete(type(entry.obj))
        pending = self._pending.get(concrete)
        if pending is None:
            pending = self._pending[concrete] = Pending()
        pk = entry.obj.pk
        if pk is not None and pk in pending.pks:
            # The later object wins: write the earlier one first.
            self.flush()
            pending = self._pending[concrete] = Pending()
        if pk is not None:
            pending.pks.add(pk)
        pending.entries.append(entry)
        self._pending_count += 1
        if self._pending_count >= FLUSH_EVERY:
            self.flush()

    def _needs_django(self, model: type[models.Model], m2m: dict[str, Any] | None) -> bool:
        """Whether objects of ``model`` must be saved by Django itself."""
        if model not in self._exact:
            meta = model._meta
            self._exact[model] = bool(
                signals.pre_save.has_listeners(model)
                or signals.post_save.has_listeners(model)
                or meta.order_with_respect_to
                or meta.pk is None
                or meta.pk.column is None
            )
        if self._exact[model]:
            return True
        if not m2m:
            return False
        for name in m2m:
            key = (model, name)
            if key not in self._plain:
                self._plain[key] = _plain_m2m(model._meta.get_field(name))
            if not self._plain[key]:
                return True
        return False

    def _save_one(self, deserialized: DeserializedObject, where: Where) -> None:
        try:
            with transaction.atomic(using=self.using):
                deserialized.save(using=self.using)
        except (DatabaseError, ValueError) as exc:
            raise ResetError(f"{where.describe()}: {_describe(deserialized.object, exc)}") from exc

    # Writing -----------------------------------------------------------------

    def flush(self) -> None:
        """Write every buffered object and its many-to-many rows."""
        if not self._pending_count:
            return
        pending, self._pending, self._pending_count = self._pending, {}, 0
        try:
            with transaction.atomic(using=self.using):
                for model, batch in pending.items():
                    _write_objects(model, batch.entries, self.using)
                for model, batch in pending.items():
                    _write_m2m(model, batch.entries, self.using)
        except (DatabaseError, ValueError) as exc:
            # The savepoint is gone; find the object at fault, one by one.
            raise ResetError(self._culprit(pending, exc)) from exc

    def _culprit(self, pending: dict[type[models.Model], Pending], exc: Exception) -> str:
        with transaction.atomic(using=self.using):
            for model, batch in pending.items():
                for entry in batch.entries:
                    try:
                        with transaction.atomic(using=self.using):
                            _write_objects(model, [entry], self.using)
                            _write_m2m(model, [entry], self.using)
                    except (DatabaseError, ValueError) as single:
                        message = f"{entry.where.describe()}: {_describe(entry.obj, single)}"
                        if entry.waiting:
                            names = ", ".join(f"{k} {v!r}" for k, v in entry.waiting.items())
                            message += f" ({names} was not found when the object was read)"
                        return message
            transaction.set_rollback(True, using=self.using)
        first = next(iter(pending.values())).entries[0].where
        return f"{first.file}: {_one_line(exc)}"

    def finish(self) -> None:
        """Write everything, then reset the sequences of the models loaded: what
        ``loaddata`` leaves once its last fixture is read."""
        self.complete()
        self.reset_sequences()

    def reset_sequences(self) -> None:
        if self.models:
            postgres.reset_sequences(self.connection, sorted(self.models, key=_label))

    def complete(self) -> None:
        """Write every buffered object, then the fields that referred to objects not loaded
        yet, as ``loaddata`` does after its last fixture."""
        self.flush()
        deferred, self._deferred = self._deferred, []
        for deserialized, where in deferred:
            self._file, self._position = where.file, where.position
            try:
                _resolve_deferred(deserialized, self.using)
            except Exception as exc:
                raise ResetError(f"{where.describe()}: {_one_line(exc)}") from exc
            model = type(deserialized.object)
            if self._needs_django(model, deserialized.m2m_data):
                self.flush()
                self._save_one(deserialized, where)
                continue
            self._buffer(Entry(deserialized.object, deserialized.m2m_data or {}, where))
        self.flush()


class _XmlDeserializer(xml_serializer.Deserializer):
    """Django's XML deserializer, telling the loader before each object is built."""

    def __init__(self, stream: Any, *, before: Callable[[Any], None], **options: Any) -> None:
        super().__init__(stream, **options)
        self._before = before

    def _handle_object(self, node: Any) -> Any:
        self._before(node)
        return super()._handle_object(node)  # type: ignore[misc]


def read_dicts(stream: IO[bytes], ser_fmt: str, cmp_fmt: str | None, path: str) -> Iterator[Any]:
    """The objects of a JSON, JSON lines or YAML fixture, as Django's deserializers read
    them; JSON lines one line at a time."""
    if ser_fmt == "jsonl":
        lines: Iterable[bytes] = stream.read().splitlines() if cmp_fmt == "zip" else stream
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise ResetError(f"{path}, line {number}: not valid JSON ({exc}).") from exc
        return
    data = stream.read()
    try:
        if ser_fmt == "yaml":
            import yaml
            from django.core.serializers.pyyaml import (  # type: ignore[attr-defined]
                SafeLoader,
            )

            objects = yaml.load(data, Loader=SafeLoader)
        else:
            objects = json.loads(data)
    except Exception as exc:
        raise ResetError(f"{path}: not valid {ser_fmt.upper()} ({_one_line(exc)}).") from exc
    if objects is None:
        return
    if not isinstance(objects, list):
        raise ResetError(f"{path}: expected a list of objects, found {type(objects).__name__}.")
    yield from objects


def _write_objects(model: type[models.Model], entries: list[Entry], using: str) -> None:
    """What ``save_base(raw=True)`` does for each entry, in bulk: objects whose row does not
    exist yet are copied in, the others go through ``INSERT … ON CONFLICT DO UPDATE``."""
    meta = model._meta
    fields = [f for f in meta.local_concrete_fields if not getattr(f, "generated", False)]
    updates = [f for f in fields if not f.primary_key]
    manager = model._base_manager
    with_pk = [e.obj for e in entries if e.obj.pk is not None]
    if with_pk:
        existing = set(
            manager.using(using).filter(pk__in=[o.pk for o in with_pk]).values_list("pk", flat=True)
        )
        fresh = [o for o in with_pk if o.pk not in existing]
        upsert = [o for o in with_pk if o.pk in existing]
        # raw: the attributes as they are, no pre_save(), as save_base(raw=True).
        values = ([getattr(o, f.attname) for f in fields] for o in fresh)
        if not _copy(model, fields, values, using):
            upsert = with_pk
        for start in range(0, len(upsert), INSERT_BATCH):
            manager._insert(  # type: ignore[attr-defined]
                upsert[start : start + INSERT_BATCH],
                fields=fields,
                raw=True,
                using=using,
                on_conflict=OnConflict.UPDATE if updates else OnConflict.IGNORE,
                update_fields=updates or None,
                unique_fields=[meta.pk] if updates else None,
            )
    without_pk = [e.obj for e in entries if e.obj.pk is None]
    if without_pk:
        inserted = [f for f in fields if f is not meta.auto_field]
        returning = meta.db_returning_fields
        for start in range(0, len(without_pk), INSERT_BATCH):
            chunk = without_pk[start : start + INSERT_BATCH]
            rows = manager._insert(  # type: ignore[attr-defined]
                chunk, fields=inserted, returning_fields=returning, raw=True, using=using
            )
            for obj, row in zip(chunk, rows or (), strict=False):
                for returned, value in zip(returning, row, strict=False):
                    setattr(obj, returned.attname, value)
    for entry in entries:
        entry.obj._state.adding = False
        entry.obj._state.db = using


def _copy(model: Any, fields: list[Any], rows: Iterable[Sequence[Any]], using: str) -> bool:
    """COPY ``rows`` (attribute values, one per field) in as new rows, converted as Django's
    INSERT converts them; return False, having written nothing, when a value or a field
    needs Django's own SQL."""
    connection = connections[using]
    table = model._meta.db_table
    if not is_psycopg3 or '"' in table or any(hasattr(f, "get_placeholder") for f in fields):
        return False
    prepared = []
    for row in rows:
        values = []
        for f, value in zip(fields, row, strict=True):
            if hasattr(value, "resolve_expression"):
                return False
            values.append(f.get_db_prep_save(value, connection=connection))
        prepared.append(values)
    if prepared:
        postgres.copy_rows(connection, table, [f.column for f in fields], prepared)
    return True


def _write_m2m(model: type[models.Model], entries: list[Entry], using: str) -> None:
    """What ``getattr(obj, name).set(values)`` does for each entry, in bulk."""
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
        existing = (
            through._base_manager.using(using)
            .filter(**{f"{source.attname}__in": list(current)})
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
            through._base_manager._insert(
                rows[start : start + INSERT_BATCH],
                fields=[source, target],
                raw=True,
                using=using,
                on_conflict=OnConflict.IGNORE,
            )


def _resolve_deferred(deserialized: DeserializedObject, using: str) -> None:
    """``DeserializedObject.save_deferred_fields`` without its save (the loader saves)."""
    obj = deserialized.object
    label = obj._meta.label_lower
    m2m_data: dict[str, Any] = {}
    deserialized.m2m_data = m2m_data
    deferred: dict[Any, Any] = deserialized.deferred_fields
    for f, value in deferred.items():
        if isinstance(f.remote_field, models.ManyToManyRel):
            try:
                values = base.deserialize_m2m_values(
                    f, value, using, handle_forward_references=False
                )
            except base.M2MDeserializationError as exc:
                raise base.DeserializationError.WithData(
                    exc.original_exc, label, obj.pk, exc.pk
                ) from exc
            m2m_data[f.name] = values
        elif isinstance(f.remote_field, models.ManyToOneRel):
            try:
                resolved = base.deserialize_fk_value(
                    f, value, using, handle_forward_references=False
                )
            except Exception as exc:
                raise base.DeserializationError.WithData(exc, label, obj.pk, value) from exc
            setattr(obj, f.attname, resolved)


def _plain_m2m(m2m: Any) -> bool:
    """Whether ``.set()`` on this field is only the rows (no signal, no mirror rows, no
    filtered manager), so that it can be done in bulk."""
    through = m2m.remote_field.through
    manager = m2m.related_model._default_manager
    return bool(
        through._meta.auto_created
        and not m2m.remote_field.symmetrical
        and not signals.m2m_changed.has_listeners(through)
        and type(manager).get_queryset is BaseManager.get_queryset
    )


def _has_natural_key(model: type[models.Model]) -> bool:
    return _by_natural_key(model) and hasattr(model, "natural_key")


def _by_natural_key(model: Any) -> bool:
    return model is not None and hasattr(model._meta.default_manager, "get_by_natural_key")


def _is_natural(value: Any) -> bool:
    # How Django's deserializers tell a natural key from a primary key value.
    return hasattr(value, "__iter__") and not isinstance(value, str)


def _concrete(model: type[models.Model]) -> type[models.Model]:
    return model._meta.concrete_model or model


def _label(model: type[models.Model]) -> str:
    return model._meta.label_lower


def _describe(obj: models.Model, exc: BaseException) -> str:
    return f"could not load {obj._meta.label}(pk={obj.pk!r}): {_one_line(exc)}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
