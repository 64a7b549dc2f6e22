"""The fixture loaders: buffered bulk writes, or Django's one-at-a-time saves.

:class:`BulkLoader` buffers objects and writes them in bulk; :class:`DjangoLoader` saves
them one at a time as ``loaddata`` does, for databases that have no ``COPY``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from django.core import serializers
from django.core.serializers import base, python
from django.core.serializers.base import DeserializedObject
from django.db import DatabaseError, IntegrityError, connections, models, router, transaction

from django_resetdb import postgres
from django_resetdb.exceptions import ResetError
from django_resetdb.fixtureload.reading import FixtureFinder, XmlDeserializer, read_dicts
from django_resetdb.fixtureload.rows import (
    Entry,
    ModelFacts,
    Pending,
    RowPlan,
    Where,
    build_entry,
    concrete_of,
    is_natural,
)
from django_resetdb.fixtureload.writing import (
    BULK_INSERTED,
    COPIED,
    write_keyed,
    write_m2m,
    write_unkeyed,
)
from django_resetdb.output import one_line

# Objects buffered before a flush, and objects per INSERT statement.
FLUSH_EVERY = 5000

# The bulk paths in ``paths``: rows copied in, and rows written by a multi-row INSERT
# (rows that existed already, rows without a primary key).
BULK_PATHS = (COPIED, BULK_INSERTED)
# Why objects were saved one by one, when their format is the reason.
CUSTOM_FORMAT = "a fixture format read by its own deserializer"
NO_COPY = "a database without COPY"


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
        # Objects saved, by the path they took: COPYPATH, BULK_INSERT, or the reason
        # they were saved one by one. Each object counts once (a later write of the
        # fields that referred forward is not counted again).
        self.paths: Counter[str] = Counter()


class BulkLoader(_Loading):
    """Loads fixture files into database ``using`` inside the caller's transaction."""

    def __init__(self, using: str, **exclusions: Any) -> None:
        super().__init__(using, **exclusions)
        self._pending: dict[type[models.Model], Pending] = {}
        self._pending_count = 0
        self._deferred: list[tuple[DeserializedObject, Where]] = []
        self._facts = ModelFacts(using, self.excluded_models, self.excluded_apps)
        # Models whose rows may already exist: looked up before they are written.
        self._look_up_first: set[type[models.Model]] = set()
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
            xml = XmlDeserializer(
                stream, before=self._before_xml, skip=self._facts.skipped, **options
            )
            yield from (obj for obj in xml if obj is not None)
        elif ser_fmt in ("json", "jsonl", "yaml"):
            # Per model label: how its items become Rows, or None (Django makes them).
            plans: dict[Any, Any] = {}
            file = self._file
            for item in read_dicts(stream, ser_fmt, cmp_fmt, self._file):
                self._position += 1
                try:
                    plan = plans[item["model"]]
                except Exception:
                    plan = self._plan(item, plans)
                if plan is not None:
                    entry = build_entry(plan, item, Where(file, self._position))
                    if entry is not None:
                        yield entry
                        continue
                if isinstance(item, dict) and self._facts.skipped(item.get("model")):
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
                self._facts.save_by_django(type(obj.object), CUSTOM_FORMAT)
                yield obj

    def _plan(self, item: Any, plans: dict[Any, Any]) -> RowPlan | None:
        """How the items of ``item``'s model become Rows (see :func:`build_entry`), noted
        in ``plans``; ``None`` to leave them to Django's deserializer."""
        try:
            label = item["model"]
            hash(label)
        except Exception:
            return None  # malformed: the deserializer says what is wrong with it
        plan = None if self._facts.skipped(label) else self._facts.row_plan(label)
        plans[label] = plan
        return plan

    def _before_xml(self, node: Any) -> None:
        self._position += 1
        if not node.hasAttribute("pk") or node.getElementsByTagName("natural"):
            self.flush()

    def _lookups_see_pending(self, item: Any) -> bool:
        """Whether deserializing ``item`` reads tables that have buffered objects."""
        try:
            natural_pk, relations = self._facts.lookups(item["model"])
            fields = item["fields"]
        except Exception:
            return True  # malformed: let the deserializer say what is wrong
        if natural_pk is None and not relations:
            return False
        read: set[type[models.Model]] = set()
        if natural_pk is not None and item.get("pk") is None:
            read |= self._facts.closure(natural_pk)
        for name, (kind, target) in relations.items():
            value = fields.get(name)
            natural = is_natural(value) and (kind == "fk" or any(is_natural(v) for v in value))
            if natural:
                read |= self._facts.closure(target)
        return any(model in self._pending for model in read)

    # Buffering ---------------------------------------------------------------

    def _add(self, loaded: DeserializedObject | Entry) -> bool:
        if type(loaded) is Entry:
            # Built only for the models whose objects go into this database.
            self.models.add(loaded.model)
            self._buffer(loaded)
            return True
        deserialized: Any = loaded
        model = type(deserialized.object)
        if not self._facts.wanted(model):
            return False
        self.models.add(model)
        obj = deserialized.object
        where = Where(self._file, self._position)
        if deserialized.deferred_fields:
            self._deferred.append((deserialized, where))
        reason = self._facts.django_reason(model, deserialized.m2m_data)
        if reason is not None:
            self.flush()
            self._save_one(deserialized, where)
            self.paths[reason] += 1
            return True
        waiting = {f.name: value for f, value in deserialized.deferred_fields.items()}
        self._buffer(Entry(model, obj, deserialized.m2m_data or {}, where, waiting))
        return True

    def _buffer(self, entry: Entry) -> None:
        concrete = concrete_of(entry.model)
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
        value twice), then the many-to-many rows. The paths are counted once all is
        written."""
        tally: Counter[str] = Counter()
        fresh: dict[type[models.Model], set[Any]] = {}
        for model, batch in pending.items():
            guess = optimistic and model not in self._look_up_first
            try:
                fresh[model] = write_keyed(
                    model, batch.entries, self.using, assume_new=guess, tally=tally
                )
            except IntegrityError:
                if guess:
                    self._look_up_first.add(model)
                raise
        for model, batch in pending.items():
            fresh[model] |= write_unkeyed(model, batch.entries, self.using, tally=tally)
        for model, batch in pending.items():
            write_m2m(model, batch.entries, self.using, fresh[model])
        self.paths.update(tally)

    def _culprit(self, pending: dict[type[models.Model], Pending], exc: Exception) -> str:
        with transaction.atomic(using=self.using):
            for model, batch in pending.items():
                for entry in batch.entries:
                    try:
                        with transaction.atomic(using=self.using):
                            fresh = write_keyed(model, [entry], self.using, assume_new=False)
                            fresh |= write_unkeyed(model, [entry], self.using)
                            write_m2m(model, [entry], self.using, fresh)
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
            if self._facts.needs_django(model, deserialized.m2m_data):
                self.flush()
                self._save_one(deserialized, where)
                continue
            m2m = deserialized.m2m_data or {}
            self._buffer(Entry(model, deserialized.object, m2m, where, counted=False))
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
            self.paths[NO_COPY] += 1
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


def _label(model: type[models.Model]) -> str:
    return model._meta.label_lower


def _describe(obj: models.Model, exc: BaseException) -> str:
    return f"could not load {obj._meta.label}(pk={obj.pk!r}): {one_line(exc)}"
