"""Row building: what a fixture's item becomes, and what is known of its model.

An item becomes an :class:`Entry` holding a :class:`Row` of attribute values or a model
instance; :class:`ModelFacts` answers, once per model, what loading asks about it
(exclusions, natural keys, what a lookup reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.apps import apps
from django.db import models, router
from django.db.models import signals
from django.db.models.manager import BaseManager

from django_resetdb.fixtureload.receivers import acting


class Where(NamedTuple):
    """Where an object comes from, for error messages. (A tuple: one is made for each
    object read.)"""

    file: str
    position: int

    def describe(self) -> str:
        return f"{self.file}, object {self.position}"


@dataclass(slots=True)
class Entry:
    model: type[models.Model]
    obj: Any  # the model instance, or a Row
    m2m: dict[str, Any]
    where: Where
    # Fields whose natural key named no row when the object was read (saved later).
    waiting: dict[str, Any] = field(default_factory=dict)
    # Whether its write counts in the loader's paths (not for a second write).
    counted: bool = True


@dataclass
class Pending:
    """Buffered objects of one concrete model, in the order they came."""

    entries: list[Entry] = field(default_factory=list)
    pks: set[Any] = field(default_factory=set)


# Django fields whose to_python() returns a value of this exact type unchanged, and whose
# get_db_prep_save() on PostgreSQL returns it unchanged too (or as an int subclass that
# COPY writes the same): such a value goes from the fixture to COPY untouched.
UNCHANGED: dict[type[Any], type[Any]] = {
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


def unchanged_type(f: Any) -> type[Any] | None:
    """The type of the values ``f`` passes through unchanged (see ``UNCHANGED``); for a
    foreign key, its target's."""
    own = f.target_field if isinstance(f, models.ForeignKey) else f
    return UNCHANGED.get(type(own))


class _Nothing:
    """No value was given (the field's default applies)."""


MISSING: Any = _Nothing()

# The kinds of fields a RowPlan knows.
PLAIN, FK, M2M = 0, 1, 2


class Row:
    """The attribute values of one object, standing in for the instance where only the
    values are needed: creating model instances is most of what loading costs.

    ``values`` holds one value per column of the model's table, in the order of
    :attr:`RowPlan.columns`, and ``todo`` the positions of those that may not be ready
    for the database as they are (``get_db_prep_save()`` is applied to them when they
    are copied). Attributes of no column of the table (an inherited field set by the
    fixture) are kept aside, as the instance would keep them."""

    __slots__ = ("_extra", "_index", "_meta", "todo", "values")

    def __init__(self, plan: RowPlan, values: list[Any], todo: list[int]) -> None:
        object.__setattr__(self, "_meta", plan.model._meta)
        object.__setattr__(self, "_index", plan.index)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "todo", todo)
        object.__setattr__(self, "_extra", None)

    def __getattr__(self, name: str) -> Any:
        index = self._index.get(name)
        if index is not None:
            return self.values[index]
        if self._extra is not None and name in self._extra:
            return self._extra[name]
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        index = self._index.get(name)
        if index is not None:
            self.values[index] = value
            if index not in self.todo:
                self.todo.append(index)
            return
        if self._extra is None:
            object.__setattr__(self, "_extra", {})
        self._extra[name] = value

    @property
    def pk(self) -> Any:
        return self.values[self._index[self._meta.pk.attname]]


@dataclass(frozen=True)
class RowPlan:
    """How items of one model become Rows: per field name, its kind (PLAIN, FK, M2M), the
    position of its column in ``columns`` (or its name, for a many-to-many field, or its
    attribute name when the table has no column for it), the conversion Django's
    deserializer applies, whether a natural key could stand in its place, and the type
    of the values that need no conversion at all (``None``: every value is converted)."""

    model: type[models.Model]
    natural_pk: bool
    fields: dict[str, tuple[int, Any, Callable[[Any], Any], bool, Any]]
    # The table's columns (the concrete model's local concrete fields, generated ones
    # left out), as they are copied.
    columns: list[Any]
    index: dict[str, int]  # attribute name -> position in columns
    pk_type: Any  # the type of primary key values taken as they are


def plain_m2m(m2m: Any) -> bool:
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


def has_natural_key(model: type[models.Model]) -> bool:
    return by_natural_key(model) and hasattr(model, "natural_key")


def by_natural_key(model: Any) -> bool:
    return model is not None and hasattr(model._meta.default_manager, "get_by_natural_key")


def is_natural(value: Any) -> bool:
    # How Django's deserializers tell a natural key from a primary key value.
    return hasattr(value, "__iter__") and not isinstance(value, str)


def concrete_of(model: type[models.Model]) -> type[models.Model]:
    return model._meta.concrete_model or model


def build_entry(plan: RowPlan, item: Any, where: Where) -> Entry | None:
    """What Django's deserializer and ``Model(**data)`` make of ``item``, as a Row of
    attribute values, for the common case: no natural key, no model code that would
    run. ``None`` leaves the item to Django's deserializer, errors included.

    A value whose type the field passes through unchanged is taken as it is; any other
    is converted with the field's ``to_python()``, as the deserializer converts it."""
    try:
        columns = plan.columns
        values = [MISSING] * len(columns)
        todo: list[int] = []
        extra: dict[Any, Any] | None = None
        pk = plan.model._meta.pk
        if "pk" in item:
            index = plan.index[pk.attname]
            value = item["pk"]
            if type(value) is not plan.pk_type:
                value = pk.to_python(value)
                if value is None:
                    if plan.natural_pk:
                        return None
                elif type(value) is not plan.pk_type:
                    todo.append(index)
            values[index] = value
        elif plan.natural_pk:
            return None
        m2m: dict[str, Any] = {}
        for name, value in item["fields"].items():
            kind, index, convert, natural, fast = plan.fields[name]
            if kind == M2M:
                if natural and any(is_natural(v) for v in value):
                    return None
                m2m[name] = [v if type(v) is fast else convert(v) for v in value]
                continue
            if type(value) is not fast and not (value is None and kind == FK):
                if kind == FK and natural and is_natural(value):
                    return None
                value = convert(value)
                if value is not None and type(value) is not fast and type(index) is int:
                    todo.append(index)
            if type(index) is int:
                values[index] = value
            else:
                if extra is None:
                    extra = {}
                extra[index] = value
        if MISSING in values:
            for index, f in enumerate(columns):
                if values[index] is MISSING:
                    values[index] = f.get_default()
                    todo.append(index)
    except Exception:
        return None
    row = Row(plan, values, todo)
    if extra is not None:
        object.__setattr__(row, "_extra", extra)
    return Entry(plan.model, row, m2m, where)


# Why objects are saved by Django, one by one.
RECEIVERS = "pre_save/post_save receivers"
ORDERED = "order_with_respect_to"
COMPOSITE_KEY = "a composite primary key"
M2M_SET = "a many-to-many field set by Django (receivers, custom through or symmetrical)"


class ModelFacts:
    """What loading asks about a model again and again, each answer worked out once:
    whether its objects go into database ``using``, whether Django must save them, how
    its items become Rows, and what its natural-key lookups read."""

    def __init__(
        self,
        using: str,
        excluded_models: Iterable[type[models.Model]],
        excluded_apps: Iterable[Any],
    ) -> None:
        self.using = using
        self.excluded_models = excluded_models
        self.excluded_apps = excluded_apps
        self._known: dict[tuple[str, Any], Any] = {}

    def _once(self, question: str, key: Any, answer: Callable[[], Any]) -> Any:
        try:
            return self._known[question, key]
        except KeyError:
            value = self._known[question, key] = answer()
            return value

    def wanted(self, model: type[models.Model]) -> bool:
        """Whether objects of ``model`` go into this database (not excluded, routers)."""
        return bool(
            self._once(
                "wanted",
                model,
                lambda: (
                    not (
                        model._meta.app_config in self.excluded_apps
                        or model in self.excluded_models
                    )
                    and router.allow_migrate_model(self.using, model)
                ),
            )
        )

    def skipped(self, label: object) -> bool:
        """Whether the objects of model ``label`` are left out here. Decided before they
        are read, so that a natural key naming a table that lives in another database is
        never looked up (``loaddata`` would look it up, then leave the object out)."""
        if not isinstance(label, str):
            return False  # malformed: the deserializer says what is wrong with it
        if ("skipped", label) not in self._known:
            try:
                model = apps.get_model(label)
            except Exception:
                return False  # the deserializer says what is wrong with it
            self._known["skipped", label] = not self.wanted(model)
        return bool(self._known["skipped", label])

    def save_by_django(self, model: type[models.Model], reason: str) -> None:
        """Objects of ``model`` are saved by Django from now on, for ``reason``."""
        self._known["django", model] = reason

    def needs_django(self, model: type[models.Model], m2m: dict[str, Any] | None) -> bool:
        """Whether objects of ``model`` must be saved by Django itself."""
        return self.django_reason(model, m2m) is not None

    def django_reason(self, model: type[models.Model], m2m: dict[str, Any] | None) -> str | None:
        """Why objects of ``model`` (setting the many-to-many fields ``m2m``) must be saved
        by Django itself, one by one; ``None`` when they can be written in bulk."""

        def exact() -> str | None:
            meta = model._meta
            # Receivers that return at once on loaddata's raw save (see receivers) are
            # not called: they would do nothing.
            if acting(signals.pre_save, model) or acting(signals.post_save, model):
                return RECEIVERS
            if meta.order_with_respect_to:
                return ORDERED
            if meta.pk is None or meta.pk.column is None:
                return COMPOSITE_KEY
            return None

        reason: str | None = self._once("django", model, exact)
        if reason is not None or not m2m:
            return reason
        if all(self.plain_field(model, name) for name in m2m):
            return None
        return M2M_SET

    def plain_field(self, model: type[models.Model], name: str) -> bool:
        return bool(
            self._once("plain", (model, name), lambda: plain_m2m(model._meta.get_field(name)))
        )

    def row_plan(self, label: str) -> RowPlan | None:
        """How items of model ``label`` become Rows; ``None`` when Django must make them."""
        plan: RowPlan | None = self._once("row plan", label, lambda: self._row_plan(label))
        return plan

    def _row_plan(self, label: str) -> RowPlan | None:
        try:
            model = apps.get_model(label)
        except Exception:
            return None
        if (
            self.needs_django(model, None)
            or model.__init__ is not models.Model.__init__
            or signals.pre_init.has_listeners(model)
            or signals.post_init.has_listeners(model)
        ):
            return None
        concrete = concrete_of(model)._meta.local_concrete_fields
        columns = [f for f in concrete if not getattr(f, "generated", False)]
        index = {f.attname: position for position, f in enumerate(columns)}
        fields: dict[str, tuple[int, Any, Callable[[Any], Any], bool, Any]] = {}
        for f in model._meta.fields:
            if not getattr(f, "concrete", False) or getattr(f, "column", None) is None:
                # A field without a column of its own (a private or composite one, made
                # of other fields' columns): an item naming it goes to Django's
                # deserializer, as loaddata reads it (KeyError in build_entry).
                continue
            where: Any = index.get(f.attname, f.attname)
            if f.many_to_one or f.one_to_one:
                remote: Any = f.remote_field
                target = remote.model._meta.get_field(remote.field_name)
                natural = by_natural_key(remote.model)
                fields[f.name] = (FK, where, target.to_python, natural, unchanged_type(f))
            else:
                fields[f.name] = (PLAIN, where, f.to_python, False, unchanged_type(f))
        for f in model._meta.many_to_many:
            if not self.plain_field(model, f.name):
                continue  # an item that sets it goes to Django (KeyError in build_entry)
            target_model: Any = f.related_model
            natural = by_natural_key(target_model)
            target_pk = target_model._meta.pk
            fast = unchanged_type(target_pk)
            fields[f.name] = (M2M, f.name, target_pk.to_python, natural, fast)
        pk_type = unchanged_type(model._meta.pk)
        return RowPlan(model, has_natural_key(model), fields, columns, index, pk_type)

    def lookups(self, label: str) -> tuple[Any, dict[str, tuple[str, Any]]]:
        """For a model label: the model if its objects may be found by natural key, and
        its relations whose targets may be named by natural key."""

        def work() -> tuple[Any, dict[str, tuple[str, Any]]]:
            model = apps.get_model(label)
            relations: dict[str, tuple[str, Any]] = {}
            for f in model._meta.fields:
                if (f.many_to_one or f.one_to_one) and by_natural_key(f.related_model):
                    relations[f.name] = ("fk", f.related_model)
            for f in model._meta.many_to_many:
                if by_natural_key(f.related_model):
                    relations[f.name] = ("m2m", f.related_model)
            return (model if has_natural_key(model) else None), relations

        found: tuple[Any, dict[str, tuple[str, Any]]] = self._once("lookups", label, work)
        return found

    def closure(self, model: Any) -> frozenset[type[models.Model]]:
        """The concrete model and those its foreign keys reach: what a natural-key lookup
        (which may follow foreign keys, as ``Permission``'s does) can read."""

        def work() -> frozenset[type[models.Model]]:
            seen: set[type[models.Model]] = set()
            todo = [start]
            while todo:
                current = concrete_of(todo.pop())
                if current in seen:
                    continue
                seen.add(current)
                todo.extend(
                    f.related_model
                    for f in current._meta.fields
                    if (f.many_to_one or f.one_to_one) and f.related_model
                )
            return frozenset(seen)

        start = concrete_of(model)
        reach: frozenset[type[models.Model]] = self._once("closure", start, work)
        return reach
