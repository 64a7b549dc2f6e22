"""Row building: what a fixture's item becomes, and what is known of its model.

An item becomes an :class:`Entry` holding a :class:`Row` of attribute values or a model
instance; :class:`ModelFacts` answers, once per model, what loading asks about it
(exclusions, natural keys, what a lookup reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import models, router
from django.db.models import signals
from django.db.models.manager import BaseManager


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
class RowPlan:
    """How items of one model become Rows: per field name, its kind (plain, fk, m2m), the
    attribute it sets, the conversion Django's deserializer applies, and whether a natural
    key could stand in its place."""

    model: type[models.Model]
    natural_pk: bool
    fields: dict[str, tuple[str, str, Callable[[Any], Any], bool]]
    defaults: list[Any]


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
    run. ``None`` leaves the item to Django's deserializer, errors included."""
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
                if natural and any(is_natural(v) for v in value):
                    return None
                m2m[name] = [convert(v) for v in value]
            elif kind == "fk":
                if natural and is_natural(value):
                    return None
                values[attname] = None if value is None else convert(value)
            else:
                values[attname] = convert(value)
        for f in plan.defaults:
            if f.attname not in values:
                values[f.attname] = f.get_default()
    except Exception:
        return None
    return Entry(plan.model, Row(plan.model, values), m2m, where)


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

    def save_by_django(self, model: type[models.Model]) -> None:
        """Objects of ``model`` are saved by Django from now on."""
        self._known["django", model] = True

    def needs_django(self, model: type[models.Model], m2m: dict[str, Any] | None) -> bool:
        """Whether objects of ``model`` must be saved by Django itself."""

        def exact() -> bool:
            meta = model._meta
            return bool(
                signals.pre_save.has_listeners(model)
                or signals.post_save.has_listeners(model)
                or meta.order_with_respect_to
                or meta.pk is None
                or meta.pk.column is None
            )

        if self._once("django", model, exact):
            return True
        if not m2m:
            return False
        return not all(self.plain_field(model, name) for name in m2m)

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
        fields: dict[str, tuple[str, str, Callable[[Any], Any], bool]] = {}
        for f in model._meta.fields:
            if f.many_to_one or f.one_to_one:
                remote: Any = f.remote_field
                target = remote.model._meta.get_field(remote.field_name)
                natural = by_natural_key(remote.model)
                fields[f.name] = ("fk", f.attname, target.to_python, natural)
            else:
                fields[f.name] = ("plain", f.attname, f.to_python, False)
        for f in model._meta.many_to_many:
            if not self.plain_field(model, f.name):
                continue  # an item that sets it goes to Django (KeyError in build_entry)
            target_model: Any = f.related_model
            natural = by_natural_key(target_model)
            fields[f.name] = ("m2m", f.name, target_model._meta.pk.to_python, natural)
        concrete = concrete_of(model)._meta.local_concrete_fields
        defaults = [f for f in concrete if not getattr(f, "generated", False)]
        return RowPlan(model, has_natural_key(model), fields, defaults)

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
