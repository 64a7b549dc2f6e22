"""Fixtures loaded with ``loaddata``'s result, in bulk.

``loaddata`` saves one object at a time: an UPDATE, then an INSERT when the UPDATE found
no row, then a ``.set()`` per many-to-many field. :class:`BulkLoader` keeps that result
but buffers objects per model: rows that do not exist yet are written with ``COPY``, the
others with ``INSERT … ON CONFLICT (pk) DO UPDATE``, which is what the UPDATE-then-INSERT
amounts to in raw mode.

What keeps the result identical:

- Items are converted as Django's deserializer converts them: by Django's deserializer
  itself, or, for models with no natural key and no code that runs on instantiation, by
  the same field conversions into a :class:`Row` of attribute values (creating model
  instances is most of what loading costs).
- Before a natural-key lookup reads the database, the buffered objects it could see are
  written first.
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

import itertools
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
from django.db import (
    DatabaseError,
    IntegrityError,
    connections,
    models,
    router,
    transaction,
)
from django.db.backends.postgresql.psycopg_any import is_psycopg3
from django.db.models import signals
from django.db.models.constants import OnConflict
from django.db.models.manager import BaseManager

from django_resetdb import postgres
from django_resetdb.exceptions import ResetError
from django_resetdb.output import one_line

# Objects buffered before a flush, and objects per INSERT statement.
FLUSH_EVERY = 5000
INSERT_BATCH = 1000


@dataclass(frozen=True)
class Where:
    """Where an object comes from, for error messages."""

    file: str
    position: int

    def describe(self) -> str:
        return f"{self.file}, object {self.position}"


@dataclass
class Entry:
    model: type[models.Model]
    obj: Any  # the model instance, or a Row
    m2m: dict[str, Any]
    where: Where
    # Fields whose natural key named no row when the object was read (saved later).
    waiting: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pending:
    """Buffered objects of one concrete model, in the order they came."""

    entries: list[Entry] = field(default_factory=list)
    pks: set[Any] = field(default_factory=set)


class Row:
    """The attribute values of one object, standing in for the instance where only the
    values are needed: creating model instances is most of what loading costs."""

    __slots__ = ("_meta", "_state", "values")

    def __init__(self, model: type[models.Model], values: dict[str, Any]) -> None:
        object.__setattr__(self, "_meta", model._meta)
        object.__setattr__(self, "_state", models.base.ModelState())
        object.__setattr__(self, "values", values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.values[name] = value

    @property
    def pk(self) -> Any:
        return self.values.get(self._meta.pk.attname)


@dataclass(frozen=True)
class Plan:
    """How items of one model become Rows: per field name, its kind (plain, fk, m2m), the
    attribute it sets, the conversion Django's deserializer applies, and whether a natural
    key could stand in its place."""

    model: type[models.Model]
    natural_pk: bool
    fields: dict[str, tuple[str, str, Callable[[Any], Any], bool]]
    defaults: list[Any]


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


class _Loading:
    """What both loaders keep: where they load, what to leave out, what they loaded."""

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


class BulkLoader(_Loading):
    """Loads fixture files into database ``using`` inside the caller's transaction."""

    def __init__(self, using: str, **exclusions: Any) -> None:
        super().__init__(using, **exclusions)
        self._pending: dict[type[models.Model], Pending] = {}
        self._pending_count = 0
        self._deferred: list[tuple[DeserializedObject, Where]] = []
        self._exact: dict[type[models.Model], bool] = {}
        self._allowed: dict[type[models.Model], bool] = {}
        self._skipped_labels: dict[str, bool] = {}
        self._closures: dict[type[models.Model], frozenset[type[models.Model]]] = {}
        self._lookups: dict[str, tuple[Any, dict[str, tuple[str, Any]]]] = {}
        self._plans: dict[str, Plan | None] = {}
        # Models whose rows may already exist: looked up before they are written.
        self._look_up_first: set[type[models.Model]] = set()
        self._plain: dict[Any, bool] = {}
        self._position = 0
        self._file = ""

    # Reading -----------------------------------------------------------------

    def load_file(
        self, finder: FixtureFinder, path: str, counted: Callable[[int], None] | None = None
    ) -> int:
        """Load one fixture file; return the number of objects saved. ``counted`` gets
        the number so far after each object."""
        self.files.append(path)
        self._file = path
        self._position = 0
        stream, ser_fmt, cmp_fmt = finder.open(path)
        saved = 0
        try:
            for obj in self._deserialize(stream, ser_fmt, cmp_fmt):
                if self._add(obj):
                    saved += 1
                    if counted is not None:
                        counted(saved)
        except ResetError:
            raise
        except Exception as exc:
            # Whatever the deserializer or a natural-key lookup raised, about this object.
            raise ResetError(f"{self._here()}: {one_line(exc)}") from exc
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
    ) -> Iterator[DeserializedObject | Entry]:
        options: dict[str, Any] = {"using": self.using, "handle_forward_references": True}
        if ser_fmt == "xml":
            xml = _XmlDeserializer(stream, before=self._before_xml, skip=self._skipped, **options)
            yield from (obj for obj in xml if obj is not None)
        elif ser_fmt in ("json", "jsonl", "yaml"):
            for item in read_dicts(stream, ser_fmt, cmp_fmt, self._file):
                self._position += 1
                if isinstance(item, dict) and self._skipped(item.get("model")):
                    continue
                entry = self._build(item)
                if entry is not None:
                    yield entry
                    continue
                if self._pending_count and self._lookups_see_pending(item):
                    self.flush()
                yield from python.Deserializer([item], **options)
        else:
            # A format registered by the project: no way to see its lookups coming, so
            # every object is saved as loaddata saves it.
            for obj in serializers.deserialize(ser_fmt, stream, **options):
                self._position += 1
                self.flush()
                self._exact[type(obj.object)] = True
                yield obj

    def _build(self, item: Any) -> Entry | None:
        """What Django's deserializer and ``Model(**data)`` make of ``item``, as a Row of
        attribute values, for the common case: no natural key, no model code that would
        run. ``None`` leaves the item to Django's deserializer, errors included."""
        try:
            plan = self._plans[item["model"]]
        except KeyError:
            plan = self._plans[item["model"]] = self._plan(item["model"])
        except Exception:
            return None
        if plan is None:
            return None
        try:
            values: dict[str, Any] = {}
            pk = plan.model._meta.pk
            if "pk" in item:
                values[pk.attname] = pk.to_python(item["pk"])
            if plan.natural_pk and values.get(pk.attname) is None:
                return None
            m2m: dict[str, Any] = {}
            for name, value in item["fields"].items():
                kind, attname, convert, natural = plan.fields[name]
                if kind == "m2m":
                    if natural and any(_is_natural(v) for v in value):
                        return None
                    m2m[name] = [convert(v) for v in value]
                elif kind == "fk":
                    if natural and _is_natural(value):
                        return None
                    values[attname] = None if value is None else convert(value)
                else:
                    values[attname] = convert(value)
            for f in plan.defaults:
                if f.attname not in values:
                    values[f.attname] = f.get_default()
        except Exception:
            return None
        return Entry(plan.model, Row(plan.model, values), m2m, Where(self._file, self._position))

    def _plan(self, label: str) -> Plan | None:
        try:
            model = apps.get_model(label)
        except Exception:
            return None
        if (
            self._needs_django(model, None)
            or model.__init__ is not models.Model.__init__
            or signals.pre_init.has_listeners(model)
            or signals.post_init.has_listeners(model)
        ):
            return None
        fields: dict[str, tuple[str, str, Callable[[Any], Any], bool]] = {}
        for f in model._meta.fields:
            if f.many_to_one or f.one_to_one:
                remote: Any = f.remote_field
                target = remote.model._meta.get_field(remote.field_name)
                natural = _by_natural_key(remote.model)
                fields[f.name] = ("fk", f.attname, target.to_python, natural)
            else:
                fields[f.name] = ("plain", f.attname, f.to_python, False)
        for f in model._meta.many_to_many:
            if not self._plain_field(model, f.name):
                continue  # an item that sets it goes to Django (KeyError above)
            target_model: Any = f.related_model
            natural = _by_natural_key(target_model)
            fields[f.name] = ("m2m", f.name, target_model._meta.pk.to_python, natural)
        concrete = _concrete(model)._meta.local_concrete_fields
        defaults = [f for f in concrete if not getattr(f, "generated", False)]
        return Plan(model, _has_natural_key(model), fields, defaults)

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

    def _wanted(self, model: type[models.Model]) -> bool:
        """Whether objects of ``model`` go into this database (not excluded, routers)."""
        if model not in self._allowed:
            self._allowed[model] = not (
                model._meta.app_config in self.excluded_apps or model in self.excluded_models
            ) and router.allow_migrate_model(self.using, model)
        return self._allowed[model]

    def _skipped(self, label: object) -> bool:
        """Whether the objects of model ``label`` are left out here. Decided before they
        are read, so that a natural key naming a table that lives in another database is
        never looked up (``loaddata`` would look it up, then leave the object out)."""
        if not isinstance(label, str):
            return False  # malformed: the deserializer says what is wrong with it
        if label not in self._skipped_labels:
            try:
                model = apps.get_model(label)
            except Exception:
                return False  # the deserializer says what is wrong with it
            self._skipped_labels[label] = not self._wanted(model)
        return self._skipped_labels[label]

    def _add(self, loaded: DeserializedObject | Entry) -> bool:
        model = loaded.model if isinstance(loaded, Entry) else type(loaded.object)
        if not self._wanted(model):
            return False
        self.models.add(model)
        if isinstance(loaded, Entry):
            self._buffer(loaded)
            return True
        deserialized = loaded
        obj = deserialized.object
        where = Where(self._file, self._position)
        if deserialized.deferred_fields:
            self._deferred.append((deserialized, where))
        if self._needs_django(model, deserialized.m2m_data):
            self.flush()
            self._save_one(deserialized, where)
            return True
        waiting = {f.name: value for f, value in deserialized.deferred_fields.items()}
        self._buffer(Entry(model, obj, deserialized.m2m_data or {}, where, waiting))
        return True

    def _buffer(self, entry: Entry) -> None:
        concrete = _concrete(entry.model)
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
        return not all(self._plain_field(model, name) for name in m2m)

    def _plain_field(self, model: type[models.Model], name: str) -> bool:
        key = (model, name)
        if key not in self._plain:
            self._plain[key] = _plain_m2m(model._meta.get_field(name))
        return self._plain[key]

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
            try:
                with transaction.atomic(using=self.using):
                    self._write(pending, optimistic=True)
            except IntegrityError:
                # A row copied in as new existed after all: write this batch again, with
                # the models marked to be looked up first. A genuine error comes again.
                with transaction.atomic(using=self.using):
                    self._write(pending, optimistic=False)
        except (DatabaseError, ValueError) as exc:
            # The savepoint is gone; find the object at fault, one by one.
            raise ResetError(self._culprit(pending, exc)) from exc

    def _write(self, pending: dict[type[models.Model], Pending], *, optimistic: bool) -> None:
        """Rows with a primary key first, then the others (so that a retry takes no sequence
        value twice), then the many-to-many rows."""
        fresh: dict[type[models.Model], set[Any]] = {}
        for model, batch in pending.items():
            guess = optimistic and model not in self._look_up_first
            try:
                fresh[model] = _write_keyed(model, batch.entries, self.using, assume_new=guess)
            except IntegrityError:
                if guess:
                    self._look_up_first.add(model)
                raise
        for model, batch in pending.items():
            fresh[model] |= _write_unkeyed(model, batch.entries, self.using)
        for model, batch in pending.items():
            _write_m2m(model, batch.entries, self.using, fresh[model])

    def _culprit(self, pending: dict[type[models.Model], Pending], exc: Exception) -> str:
        with transaction.atomic(using=self.using):
            for model, batch in pending.items():
                for entry in batch.entries:
                    try:
                        with transaction.atomic(using=self.using):
                            fresh = _write_keyed(model, [entry], self.using, assume_new=False)
                            fresh |= _write_unkeyed(model, [entry], self.using)
                            _write_m2m(model, [entry], self.using, fresh)
                    except (DatabaseError, ValueError) as single:
                        message = f"{entry.where.describe()}: {_describe(entry.obj, single)}"
                        if entry.waiting:
                            names = ", ".join(f"{k} {v!r}" for k, v in entry.waiting.items())
                            message += f" ({names} was not found when the object was read)"
                        return message
            transaction.set_rollback(True, using=self.using)
        first = next(iter(pending.values())).entries[0].where
        return f"{first.file}: {one_line(exc)}"

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
                raise ResetError(f"{where.describe()}: {one_line(exc)}") from exc
            model = type(deserialized.object)
            if self._needs_django(model, deserialized.m2m_data):
                self.flush()
                self._save_one(deserialized, where)
                continue
            self._buffer(Entry(model, deserialized.object, deserialized.m2m_data or {}, where))
        self.flush()


class DjangoLoader(_Loading):
    """Loads fixture files into database ``using`` as ``loaddata`` does, one object at a
    time through Django, inside the caller's transaction: for databases other than
    PostgreSQL, which have no ``COPY``. The same interface as :class:`BulkLoader`."""

    def __init__(self, using: str, **exclusions: Any) -> None:
        super().__init__(using, **exclusions)
        self._deferred: list[tuple[DeserializedObject, Where]] = []

    def load_file(
        self, finder: FixtureFinder, path: str, counted: Callable[[int], None] | None = None
    ) -> int:
        """Load one fixture file; return the number of objects saved. ``counted`` gets
        the number saved so far after each object."""
        self.files.append(path)
        stream, ser_fmt, _cmp_fmt = finder.open(path)
        saved = 0
        try:
            objects = serializers.deserialize(
                ser_fmt,
                stream,
                using=self.using,
                ignorenonexistent=False,
                handle_forward_references=True,
            )
            for position in itertools.count(1):
                where = Where(path, position)
                try:
                    deserialized = next(objects)
                except StopIteration:
                    break
                except Exception as exc:
                    raise ResetError(f"{where.describe()}: {one_line(exc)}") from exc
                if self._save(deserialized, where):
                    saved += 1
                    if counted is not None:
                        counted(saved)
        finally:
            stream.close()
        return saved

    def _save(self, deserialized: DeserializedObject, where: Where) -> bool:
        # loaddata's save_obj(): excluded objects are skipped, the routers decide.
        model = type(deserialized.object)
        if model._meta.app_config in self.excluded_apps or model in self.excluded_models:
            return False
        saved = router.allow_migrate_model(self.using, model)
        if saved:
            self.models.add(model)
            try:
                deserialized.save(using=self.using)
            except (DatabaseError, ValueError) as exc:
                raise ResetError(
                    f"{where.describe()}: {_describe(deserialized.object, exc)}"
                ) from exc
        if deserialized.deferred_fields:
            self._deferred.append((deserialized, where))
        return saved

    def complete(self) -> None:
        """Save the fields that referred to objects not loaded yet, as ``loaddata`` does
        after its last fixture."""
        deferred, self._deferred = self._deferred, []
        for deserialized, where in deferred:
            try:
                deserialized.save_deferred_fields(using=self.using)
            except Exception as exc:
                raise ResetError(f"{where.describe()}: {one_line(exc)}") from exc

    def reset_sequences(self) -> None:
        # The statements Django's backend makes for it (none on SQLite, where a key
        # written explicitly moves the counter itself), run as loaddata runs them.
        if self.models:
            postgres.reset_sequences(self.connection, sorted(self.models, key=_label))

    def finish(self) -> None:
        self.complete()
        self.reset_sequences()


# Either loader, as the database's vendor calls for.
Loader = BulkLoader | DjangoLoader


class _XmlDeserializer(xml_serializer.Deserializer):
    """Django's XML deserializer, telling the loader before each object is built."""

    def __init__(
        self,
        stream: Any,
        *,
        before: Callable[[Any], None],
        skip: Callable[[Any], bool],
        **options: Any,
    ) -> None:
        super().__init__(stream, **options)
        self._before = before
        self._skip = skip

    def _handle_object(self, node: Any) -> Any:
        self._before(node)
        if self._skip(node.getAttribute("model")):
            return None
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
        raise ResetError(f"{path}: not valid {ser_fmt.upper()} ({one_line(exc)}).") from exc
    if objects is None:
        return
    if not isinstance(objects, list):
        raise ResetError(f"{path}: expected a list of objects, found {type(objects).__name__}.")
    yield from objects


def _fields(model: type[models.Model]) -> list[Any]:
    meta = model._meta
    return [f for f in meta.local_concrete_fields if not getattr(f, "generated", False)]


def _write_keyed(
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


def _write_unkeyed(model: type[models.Model], entries: list[Entry], using: str) -> set[Any]:
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


def _write_m2m(
    model: type[models.Model], entries: list[Entry], using: str, fresh: set[Any]
) -> None:
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
    return f"could not load {obj._meta.label}(pk={obj.pk!r}): {one_line(exc)}"
