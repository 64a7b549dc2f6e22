"""The build cache: copies of the database as migrations left it, before the seeds.

A rebuild keeps, besides its snapshot, a *migrated state*: a copy of the new database
taken after the last migration, before ``post_migrate`` and the seeds, recorded with
every migration it holds, a digest of each (its file's text, without makemigrations'
dated header, and the project modules it imports, transitively) and its dependencies,
under a digest of everything else that decides what migrations leave (versions,
installed distributions, settings but ``SEEDS``, the database around the schemas).

The next reset starts from the state that holds the most migrations it can use:

* a migration whose digest changed, and every one that depends on it, must go. They
  can go only when they are whole apps whose migrations were all what makemigrations
  writes (tables of their own models, nothing else): their tables are dropped and
  their rows in ``django_migrations`` forgotten. Else the state is not used.
* the migrations left must be what the new plan applies, unchanged; the ones the new
  plan adds (or brings back) run after them. Where migrate would run one of those
  *before* one of the state's, the two must commute: different apps, and neither may
  read what the other changes (a data migration may read every app it depends on; two
  data migrations may write the same tables; ``RunSQL`` and custom operations may do
  anything). Else the state is not used.

Then the rest is applied (regenerated apps fast-built, the others for real),
``post_migrate`` runs as migrate sends it, and the seeds. States live beside the
snapshots (same prefix, listed and dropped with them) and obey ``SNAPSHOTS`` on their
own count.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.util
import inspect
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps as global_apps
from django.conf import settings
from django.db import connections
from django.db.migrations import operations
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from django.db.models.fields import NOT_PROVIDED

from django_resetdb import dependencies, guard, postgres
from django_resetdb.canonical import canonical
from django_resetdb.migrate_step import forwards
from django_resetdb.output import one_line
from django_resetdb.projectapps import source_text
from django_resetdb.regenerate import (
    PlannedLoader,
    RegenerationPlan,
    is_database_level,
    migration_file,
    normalized,
)
from django_resetdb.snapshots import fingerprints

KIND = "state"

# What a migration's operations may do, for the commute rule.
SCHEMA = "schema"  # Django's own schema operations, on the migration's app's models
DATA = "data"  # RunPython: reads and writes what its dependencies made
ANY = "any"  # RunSQL, custom operations: anything

# Schema operations that rename or remove what another migration may name.
_RENAMING = (
    operations.RenameModel,
    operations.DeleteModel,
    operations.RenameField,
    operations.RemoveField,
    operations.AlterModelTable,
)


@dataclass(frozen=True)
class Facts:
    """What the cache knows of one migration of the new plan."""

    key: str  # "app_label.name"
    app: str
    digest: str
    parents: tuple[str, ...]
    kind: str
    reach: frozenset[str]  # the apps of itself and of everything it depends on
    # The models ("app.model") whose name, table, fields or primary key it renames,
    # removes or alters: what a relation made before or after it may name differently.
    renames: frozenset[str]
    # The extensions and collations it makes, as their operations deconstruct.
    database_level: tuple[str, ...]
    # Nothing a data migration does reads or writes differently whether it ran before or
    # after it: indexes, and nullable columns without a default (a row made or saved
    # without them gets NULL either way).
    quiet: bool = False
    # The models ("app.model") its relations point at.
    references: frozenset[str] = frozenset()


@dataclass
class Planned:
    """The new plan's migrations, in the order migrate applies them on a new database."""

    order: list[Facts]

    @functools.cached_property
    def by_key(self) -> dict[str, Facts]:
        return {facts.key: facts for facts in self.order}

    @functools.cached_property
    def position(self) -> dict[str, int]:
        return {facts.key: index for index, facts in enumerate(self.order)}


@dataclass(frozen=True)
class State:
    """A kept migrated state, as its comment records it."""

    name: str
    created: str
    migrations: dict[str, tuple[str, tuple[str, ...]]]  # key: digest, parents
    apps: dict[str, dict[str, Any]]  # label: {"tables": [...], "removable": bool}
    later: list[tuple[str, tuple[str, ...]]]  # deferred statements and their tables

    @classmethod
    def from_data(cls, name: str, data: dict[str, Any]) -> State | None:
        try:
            return cls(
                name,
                str(data["created"]),
                {str(k): (str(d), tuple(p)) for k, d, p in data["migrations"]},
                {str(k): dict(v) for k, v in data["apps"].items()},
                [(str(s), tuple(t)) for s, t in data.get("later", [])],
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class Start:
    """Where a reset starts from: a state, what it drops of it, and what it applies."""

    state: State
    kept: int  # migrations of the state the reset keeps
    total: int  # migrations of the new plan
    removed_apps: list[str]
    removed_tables: list[str]
    # The state's deferred statements (and the tables they name) still to run: its
    # foreign keys and plain indexes, made once the rows are in.
    later: list[tuple[str, tuple[str, ...]]]
    snapshot: Any = None  # the listing's entry of the state

    @property
    def rest(self) -> int:
        return self.total - self.kept

    @property
    def same(self) -> bool:
        """Whether the state holds the whole new plan as it is (nothing to keep)."""
        return self.rest == 0 and not self.removed_apps

    def line(self) -> str:
        dropped = ""
        if self.removed_apps:
            dropped = f", less {', '.join(self.removed_apps)} (its tables dropped)"
        return (
            f"restore the state after {self.kept} of {self.total} migrations "
            f"({self.state.name}, kept {self.state.created[:19].replace('T', ' ')}"
            f"{dropped}), then apply {self.rest}"
        )


@dataclass
class StatePlan:
    """The build cache for one reset: where it starts (if anywhere), and what it keeps."""

    alias: str
    target: str
    environment: str
    planned: Planned
    removable: frozenset[str]  # apps whose migrations are what makemigrations writes
    # The environment's inputs one by one, kept with a state (see environment_key).
    inputs: dict[str, str] = field(default_factory=dict)
    start: Start | None = None
    misses: list[str] = field(default_factory=list)  # why each state could not be used

    @property
    def key(self) -> str:
        """The digest a state of the whole new plan is kept under."""
        listed = [[f.key, f.digest] for f in self.planned.order]
        return _digest({"environment": self.environment, "migrations": listed})


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


# Digests of migrations ---------------------------------------------------------------


_SCHEMA_MODULES = (
    "django.db.migrations.operations.models",
    "django.db.migrations.operations.fields",
)


def _does_nothing(operation: Operation) -> bool:
    """A ``RunSQL`` or ``RunPython`` whose forward step is the no-op."""
    if isinstance(operation, operations.RunSQL):
        return operation.sql in ("", [], ())
    if isinstance(operation, operations.RunPython):
        return operation.code is operations.RunPython.noop
    return False


def _kind(operation: Operation) -> str:
    if _does_nothing(operation):
        return SCHEMA
    if isinstance(operation, operations.RunPython):
        return DATA
    if isinstance(operation, operations.SeparateDatabaseAndState):
        kinds = {_kind(inner) for inner in operation.database_operations}
        return ANY if ANY in kinds else DATA if DATA in kinds else SCHEMA
    if isinstance(operation, operations.RunSQL):
        return ANY
    if type(operation).__module__.startswith("django.db.migrations.operations."):
        return SCHEMA
    # A subclass of one of Django's model or field operations (wagtail's
    # DeleteModelIfExists, say) is taken to do what its base class does.
    if any(base.__module__ in _SCHEMA_MODULES for base in type(operation).__mro__):
        return SCHEMA
    if type(operation).__module__ == "django.contrib.postgres.operations":
        return SCHEMA  # extensions, collations, concurrent indexes
    return ANY


# What a migration may do to the models it creates itself: their tables are new and empty.
_ON_NEW_MODELS = (
    operations.AddField,
    operations.AddIndex,
    operations.AddConstraint,
    operations.AlterUniqueTogether,
    *([operations.AlterIndexTogether] if hasattr(operations, "AlterIndexTogether") else []),
)


def _db_shape(field: Any) -> tuple[Any, ...]:
    """What of a field the database sees: its deconstruction without the attributes
    Django's schema editor ignores (``help_text``, ``choices``, ``verbose_name``,
    ``validators``, ``related_name``, ...); ``db_column`` and ``on_delete`` stay."""
    _, path, args, kwargs = field.deconstruct()
    # on_delete stays: Django 6.1's database-level options make it part of the column's
    # constraint.
    for attr in getattr(field, "non_db_attrs", ()):
        if attr not in ("db_column", "on_delete"):
            kwargs.pop(attr, None)
    return path, args, kwargs


def _changes_nothing_in_the_database(app: str, operation: Operation, before: Any) -> bool:
    """Whether ``operation``, an ``AlterField`` of app ``app``, leaves the column as it
    is: the field it replaces (in the project state ``before`` the migration) differs
    only in what the schema editor ignores, so it sends no SQL."""
    if before is None or not isinstance(operation, operations.AlterField):
        return False
    try:
        model = before.models.get((app, operation.model_name_lower))
        old = model.fields.get(operation.name) if model is not None else None
        return old is not None and _db_shape(old) == _db_shape(operation.field)
    except Exception:  # a field that cannot be compared is taken to change the column
        return False


def _quiet(operation: Operation, created: set[str], before: Any = None, app: str = "") -> bool:
    """Whether no data migration can see a difference whether ``operation`` ran before it
    or after it: an index, a nullable column without a default, a new model's table
    (``created``: the models its migration creates), what it adds to one, a field
    altered in nothing the database sees (``before``: the project state before the
    migration, when known)."""
    if isinstance(operation, (operations.AddIndex, operations.RemoveIndex)):
        return True
    if _changes_nothing_in_the_database(app, operation, before):
        return True
    if _does_nothing(operation) or isinstance(operation, operations.CreateModel):
        return True
    if isinstance(operation, _ON_NEW_MODELS):
        model = getattr(operation, "model_name_lower", None) or getattr(
            operation, "name_lower", None
        )
        if model in created:
            return True
    if isinstance(operation, operations.AddField):
        field = operation.field
        default = getattr(field, "db_default", NOT_PROVIDED)
        return bool(
            field.null
            and not field.has_default()
            and default is NOT_PROVIDED
            and not field.is_relation
            and not field.unique
            and not field.primary_key
        )
    return False


def _model_key(app: str, name: str) -> str:
    return name.lower() if "." in name else f"{app}.{name.lower()}"


def _renamed(app: str, operation: Operation) -> set[str]:
    """The models whose names, tables or fields ``operation`` renames or removes (or
    whose primary key it alters)."""
    if isinstance(operation, operations.RenameModel):
        return {_model_key(app, operation.old_name), _model_key(app, operation.new_name)}
    if isinstance(operation, (operations.DeleteModel, operations.AlterModelTable)):
        return {_model_key(app, operation.name)}
    if isinstance(operation, (operations.RenameField, operations.RemoveField)):
        return {_model_key(app, operation.model_name)}
    if isinstance(operation, operations.AlterField):
        if getattr(operation.field, "primary_key", False):
            return {_model_key(app, operation.model_name)}
        return set()
    if isinstance(operation, operations.SeparateDatabaseAndState):
        return set().union(*(_renamed(app, inner) for inner in operation.database_operations))
    return set()


def _references(app: str, operation: Operation) -> set[str]:
    """The models the relations ``operation`` makes or alters point at."""
    if isinstance(operation, operations.CreateModel):
        fields = [f for _, f in operation.fields]
    elif isinstance(operation, (operations.AddField, operations.AlterField)):
        fields = [operation.field]
    else:
        return set()
    found = set()
    for f in fields:
        remote = getattr(f, "remote_field", None)
        for target in (getattr(remote, "model", None), getattr(remote, "through", None)):
            if isinstance(target, str):
                found.add(_model_key(app, target))
            elif target is not None and hasattr(target, "_meta"):
                found.add(target._meta.label_lower)
    return found


def _deconstructed(operation: Operation) -> str:
    name, args, kwargs = operation.deconstruct()
    return json.dumps([name, list(args), kwargs], sort_keys=True, default=repr)


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` tests ``TYPE_CHECKING`` (``typing.TYPE_CHECKING``): its body never
    runs."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _Imports(ast.NodeVisitor):
    """The imports a module's text runs: (module, the name it binds) pairs; for ``from x
    import y``, both ``x`` and ``x.y`` (which may be a module). Imports under ``if
    TYPE_CHECKING:`` never run and are left out."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.found: list[tuple[str, str]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, alias.asname or alias.name.partition(".")[0]))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parent = ".".join(parts[: len(parts) - node.level + 1])
            base = f"{parent}.{base}" if base else parent
        if base:
            for alias in node.names:
                bound = alias.asname or alias.name
                self.found += [(base, bound), (f"{base}.{alias.name}", bound)]


def _imports(text: str, package: str) -> list[tuple[str, str]]:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    visitor = _Imports(package)
    visitor.visit(tree)
    return visitor.found


def _imported(text: str, package: str) -> set[str]:
    """The modules ``text`` imports (see :class:`_Imports`)."""
    return {module for module, _ in _imports(text, package)}


@functools.cache
def _origin(module: str) -> str | None:
    """The source file of ``module`` when it is the project's code (not installed)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError, AttributeError):
        return None
    origin = getattr(spec, "origin", None) if spec else None
    if not origin or not origin.endswith(".py"):
        return None
    path = Path(origin).resolve()
    return None if dependencies.is_installed(path) else str(path)


def _package_of(module: str, path: str) -> str:
    return module if path.endswith("__init__.py") else module.rpartition(".")[0]


@functools.cache
def _closure(path: str, module: str) -> frozenset[str]:
    """The project files ``path`` (module ``module``) imports, transitively, itself included."""
    found = {path}
    todo = [(path, module)]
    while todo:
        current, name = todo.pop()
        try:
            text = source_text(current)
        except OSError:
            continue
        for imported in _imported(text, _package_of(name, current)):
            origin = _origin(imported)
            if origin is not None and origin not in found:
                found.add(origin)
                todo.append((origin, imported))
    return frozenset(found)


def _modules_digest(modules: Iterable[str]) -> list[list[str]]:
    """The files of ``modules`` that are the project's code, and what they import,
    transitively, by digest."""
    files: set[str] = set()
    for name in modules:
        origin = _origin(name) if name else None
        if origin is not None:
            files |= _closure(origin, name)
    return [[dependencies.shown(Path(f)), dependencies.file_digest(f)] for f in sorted(files)]


@functools.cache
def _model_modules() -> tuple[str, ...]:
    """The modules that define the installed apps' models."""
    return tuple(
        sorted(
            config.models_module.__name__
            for config in global_apps.get_app_configs()
            if config.models_module is not None
        )
    )


def _is_models(module: str) -> bool:
    return any(module == m or module.startswith(f"{m}.") for m in _model_modules())


def _operations(ops: Iterable[Operation]) -> Iterator[Operation]:
    """``ops`` and the database operations inside them."""
    for op in ops:
        yield op
        if isinstance(op, operations.SeparateDatabaseAndState):
            yield from _operations(op.database_operations)


def _code_names(function: Any) -> set[str] | None:
    """The global and attribute names ``function``'s code (nested code too) uses; None
    when it has no code to read."""
    function = getattr(function, "func", function)  # functools.partial
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    names: set[str] = set()
    todo = [code]
    while todo:
        current = todo.pop()
        names.update(current.co_names)
        todo += [c for c in current.co_consts if hasattr(c, "co_names")]
    return names


def _deconstructed_modules(value: Any, found: set[str], depth: int = 0) -> None:
    """The modules of the classes and functions a deep-deconstructed value names."""
    if depth > 12:
        return
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[0], str):
        found.add(value[0].rpartition(".")[0])
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _deconstructed_modules(item, found, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _deconstructed_modules(item, found, depth + 1)
    elif callable(value):
        found.add(str(getattr(value, "__module__", "") or ""))


@functools.cache
def _deconstructor() -> Any:
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.state import ProjectState

    return MigrationAutodetector(ProjectState(), ProjectState())


def _run_by(ops: Sequence[Operation], bound: set[str]) -> tuple[bool, dict[str, Any]]:
    """Whether what ``ops`` do when they run may depend on the code of the models
    modules. It may unless every operation is Django's own (a custom operation's code is
    not read here), none deconstructs to a class or function of theirs, and the code of
    every ``RunPython`` (and of the functions of the migration module it calls, followed
    transitively) reads no name ``bound`` to them by the migration's imports, no value
    that comes from them, and nothing through a closure. Else, the values that code
    reads from the migration module (computed when it was imported), in canonical form."""
    if "*" in bound:  # a star import binds names that cannot be told
        return True, {}
    reads: dict[str, Any] = {}
    for op in _operations(ops):
        if not type(op).__module__.startswith("django."):
            return True, {}
        modules: set[str] = set()
        try:
            _deconstructed_modules(_deconstructor().deep_deconstruct(op), modules)
        except Exception:  # what cannot be deconstructed is not known not to read them
            return True, {}
        if any(_is_models(module) for module in modules if module):
            return True, {}
        if isinstance(op, operations.RunPython) and not _reads_only_own(op.code, bound, reads):
            return True, {}
    return False, reads


def _reads_only_own(code: Any, bound: set[str], reads: dict[str, Any]) -> bool:
    """Whether the function ``code`` (and the functions of its own module it reads,
    transitively) reads nothing of the models modules (see :func:`_run_by`); adds the
    values it reads from its module to ``reads``."""
    code = getattr(code, "func", code)  # functools.partial
    home = getattr(code, "__module__", None)
    todo, seen = [code], set()
    while todo:
        function = todo.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        names = _code_names(function)
        if names is None or function.__code__.co_freevars or names & bound:
            return False
        namespace = getattr(function, "__globals__", {})
        for name in sorted(names):
            if name not in namespace:
                continue
            value = namespace[name]
            origin = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", "")
            if isinstance(origin, str) and _is_models(origin):
                return False
            if inspect.ismodule(value):
                continue
            if inspect.isfunction(value) and value.__module__ == home:
                todo.append(value)
            reads[name] = canonical(value)
    return True


def _code_digest(
    text: str, package: str, ops: Sequence[Operation] = ()
) -> tuple[list[list[str]], dict[str, Any]]:
    """The project modules a migration's text imports, transitively, by digest, and what
    stands in for the models modules it imports when they are left out.

    The models modules it imports directly are left out when nothing that runs reads
    their code (see :func:`_run_by`): a model edit changes what ``makemigrations`` writes
    next, not what this migration does. What it took from them when it was imported is
    in its operations, kept instead (deep-deconstructed, in canonical form), with the
    values its ``RunPython`` code reads from the migration module."""
    imports = _imports(text, package)
    modules = {module for module, _ in imports}
    models_imported = {module for module in modules if _is_models(module)}
    if not models_imported:
        return _modules_digest(modules), {}
    bound = {name for module, name in imports if module in models_imported}
    needed, reads = _run_by(ops, bound)
    if needed:
        return _modules_digest(modules), {}
    done = [canonical(_deconstructor().deep_deconstruct(op)) for op in ops]
    return _modules_digest(modules - models_imported), {"operations": done, "reads": reads}


def environment_code() -> list[list[str]]:
    """The project code every migration runs with, by digest: the database routers (they
    decide which tables are made where) and a database backend of the project's own."""
    modules = []
    for entry in settings.DATABASE_ROUTERS:
        modules.append(entry if isinstance(entry, str) else type(entry).__module__)
    for database in settings.DATABASES.values():
        engine = database.get("ENGINE", "")
        modules += [engine, f"{engine}.base"] if engine else []
    return _modules_digest(
        candidate for name in modules for candidate in (name, name.rpartition(".")[0])
    )


def planned(plan: RegenerationPlan | None) -> Planned:
    """The migrations of the new plan (``plan`` applied; ``None``: the files as they are),
    in migrate's order on a new database, with their digests."""
    loader = PlannedLoader(plan)
    graph = loader.graph
    texts: dict[tuple[str, str], str] = {}
    if plan is not None:
        for app in plan.changed:
            for new in app.new_files:
                texts[app.label, new.path.stem] = new.text
    order: list[Facts] = []
    reach: dict[tuple[str, str], frozenset[str]] = {}
    # The project state as migrate moves it, to compare an altered field with the one it
    # replaces (None once an operation could not move it).
    state: ProjectState | None = ProjectState()
    for key in forwards(graph):
        migration = graph.nodes[key]
        text = texts.get(key)
        if text is None:
            try:
                text = source_text(migration_file(migration))
            except (OSError, KeyError):
                text = repr(migration.operations)  # no file to read: what it does
        module = type(migration).__module__
        package = module.rpartition(".")[0] or f"{key[0]}.migrations"
        parents = tuple(sorted(parent.key for parent in graph.node_map[key].parents))
        reach[key] = frozenset({key[0]}).union(*(reach[p] for p in parents))
        ops = list(migration.operations)
        created = {op.name_lower for op in ops if isinstance(op, operations.CreateModel)}
        kinds = {_kind(op) for op in ops}
        kind = ANY if ANY in kinds else DATA if DATA in kinds else SCHEMA
        quiet = bool(ops)
        for op in ops:
            quiet = quiet and _quiet(op, created, state, key[0])
            if state is not None:
                try:
                    op.state_forwards(key[0], state)
                except Exception:  # what cannot be followed is taken to change columns
                    state = None
        code, instead = _code_digest(text, package, ops)
        digest = _digest(
            {
                "text": normalized(text),
                "code": code,
                "replaces": list(migration.replaces),
                **instead,
            }
        )
        order.append(
            Facts(
                f"{key[0]}.{key[1]}",
                key[0],
                digest,
                tuple(f"{p[0]}.{p[1]}" for p in parents),
                kind,
                reach[key],
                frozenset().union(*(_renamed(key[0], op) for op in ops)),
                tuple(sorted(_deconstructed(op) for op in ops if is_database_level(op))),
                quiet,
                frozenset().union(*(_references(key[0], op) for op in ops)),
            )
        )
    return Planned(order)


# Which state a reset can start from ------------------------------------------------


def commute(first: Facts, then: Facts) -> bool:
    """Whether running ``then`` before ``first`` (migrate runs ``first`` first) leaves the
    same database."""
    if first.app == then.app:
        return False
    if ANY in (first.kind, then.kind):
        return False
    if first.kind == DATA and then.kind == DATA:
        return False
    return not (_sees(then, first) or _sees(first, then))


def _sees(reader: Facts, changer: Facts) -> bool:
    """Whether ``reader``, which may use the apps it depends on (a data migration reads
    and writes their rows, a relation names their tables), may see what ``changer``
    changes, so that the order of the two matters."""
    if changer.app not in reader.reach:
        return False
    return (
        (reader.kind == DATA and not changer.quiet)
        or (changer.kind == DATA and not reader.quiet)
        or bool(changer.renames & reader.references)
    )


def _children(migrations: dict[str, tuple[str, tuple[str, ...]]]) -> dict[str, set[str]]:
    children: dict[str, set[str]] = {key: set() for key in migrations}
    for key, (_, parents) in migrations.items():
        for parent in parents:
            children.setdefault(parent, set()).add(key)
    return children


def _what_changed(
    app: str,
    changed: set[str],
    removed: set[str],
    old: dict[str, tuple[str, tuple[str, ...]]],
    new: Planned,
) -> str:
    """Why ``app``'s migrations would have to go: which of its own changed or are gone,
    else which changed migration of another app it depends on."""
    own = sorted(k for k in changed if k.partition(".")[0] == app)
    gone = [k for k in own if k not in new.by_key]
    edited = [k for k in own if k in new.by_key]
    parts = [f"{', '.join(edited)} changed"] if edited else []
    parts += [f"{', '.join(gone)} no longer in the plan"] if gone else []
    if parts:
        return "; ".join(parts)
    # The changed migrations its own depend on, directly or not.
    ancestors: set[str] = set()
    todo = [k for k in removed if k.partition(".")[0] == app]
    while todo:
        for parent in old.get(todo.pop(), ("", ()))[1]:
            if parent not in ancestors:
                ancestors.add(parent)
                todo.append(parent)
    causes = sorted(ancestors & changed)
    return f"it depends on {', '.join(causes)}, changed" if causes else "it depends on a change"


def match(state: State, new: Planned) -> tuple[Start | None, str]:
    """Where a reset would start from ``state``, or None and why it cannot."""
    old = state.migrations
    changed = {
        key for key, (digest, _) in old.items()
        if key not in new.by_key or new.by_key[key].digest != digest
    }  # fmt: skip
    children = _children(old)
    removed: set[str] = set()
    todo = list(changed)
    while todo:
        key = todo.pop()
        if key in removed:
            continue
        removed.add(key)
        todo.extend(children.get(key, ()))
        app = key.partition(".")[0]
        # An app goes whole: its tables are dropped.
        todo.extend(k for k in old if k.partition(".")[0] == app and k not in removed)
    removed_apps = sorted({key.partition(".")[0] for key in removed})
    for app in removed_apps:
        recorded = state.apps.get(app, {})
        if not recorded.get("removable"):
            why = _what_changed(app, changed, removed, old, new)
            return None, (
                f"{state.name}: {app} would have to go ({why}), and its migrations are not "
                "all plain tables of its models"
            )
        # Dropping its tables leaves its extensions and collations: the new migrations
        # must make them again.
        making = {op for f in new.order if f.app == app for op in f.database_level}
        left = [op for op in recorded.get("database_level", []) if op not in making]
        if left:
            return None, (
                f"{state.name}: {app} would have to go, and its new migrations no longer "
                f"make what its old ones made ({left[0]})"
            )
    kept = set(old) - removed
    if not kept:
        return None, f"{state.name}: none of its migrations is unchanged"
    for key in kept:
        missing = [p for p in new.by_key[key].parents if p not in kept]
        if missing:
            return None, f"{state.name}: {key} needs {missing[0]}, which it does not hold"
    position = new.position
    rest = [facts for facts in new.order if facts.key not in kept]
    for facts in new.order:
        if facts.key not in kept:
            continue
        for earlier in rest:
            if position[earlier.key] > position[facts.key]:
                break
            if not commute(earlier, facts):
                return None, (
                    f"{state.name}: migrate runs {earlier.key} before {facts.key}, which the "
                    "state already holds, and the two may not be run the other way round"
                )
    tables = sorted({t for app in removed_apps for t in state.apps[app].get("tables", [])})
    later = [(s, t) for s, t in state.later if not set(t) & set(tables)]
    return Start(state, len(kept), len(new.order), removed_apps, tables, later), ""


def removable_apps(plan: RegenerationPlan | None) -> frozenset[str]:
    """The apps whose migrations are what makemigrations writes for their models now."""
    if plan is None:
        return frozenset()
    return frozenset(app.label for app in plan.regenerated)


def environment_key(inputs: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The key of the states' environment, from its ``inputs`` (see
    ``snapshots.environment_inputs``) and the project code every migration runs with;
    and those inputs one by one (see ``snapshots.components``)."""
    code = environment_code()
    one_by_one = {**fingerprints.components(inputs), **{f"file {p}": d[:12] for p, d in code}}
    return _digest([fingerprints.digest(inputs), code]), one_by_one


def with_environment(plan: StatePlan, inputs: dict[str, Any]) -> StatePlan:
    """``plan`` with the environment of ``inputs`` (see :func:`environment_key`)."""
    key, one_by_one = environment_key(inputs)
    return dataclasses.replace(plan, environment=key, inputs=one_by_one)


def plan_states(
    target: guard.Target,
    migrations: RegenerationPlan | None,
    inputs: dict[str, Any],
    kept: Iterable[Any],
) -> StatePlan:
    """The build cache's plan for a reset of ``target``: the new plan's migrations and
    the best of the states ``kept`` (their listing's entries) to start from;
    ``inputs``: its environment's (see ``snapshots.environment_inputs``)."""
    new = planned(migrations)
    environment, one_by_one = environment_key(inputs)
    plan = StatePlan(
        target.alias, target.database, environment, new, removable_apps(migrations), one_by_one
    )
    best: Start | None = None
    for snapshot in kept:
        name, data = snapshot.name, snapshot.data
        if data.get("environment") != environment:
            recorded = data.get("inputs")
            what = (
                fingerprints.differences(recorded, one_by_one) if isinstance(recorded, dict) else ""
            )
            plan.misses.append(f"{name}: {what or 'kept for other versions, settings or database'}")
            continue
        state = State.from_data(name, data)
        if state is None:
            continue
        start, why = match(state, new)
        if start is None:
            plan.misses.append(why)
        elif best is None or (start.kept, state.created) > (best.kept, best.state.created):
            start.snapshot = snapshot
            best = start
    plan.start = best
    return plan


def record(plan: StatePlan, *, later: Sequence[tuple[str, Sequence[str]]]) -> dict[str, Any]:
    """What a state of the whole new plan records, kept under :attr:`StatePlan.key`;
    ``later``: the deferred statements not run in it yet, with the tables they name."""
    by_app: dict[str, list[Facts]] = {}
    for facts in plan.planned.order:
        by_app.setdefault(facts.app, []).append(facts)
    apps: dict[str, dict[str, Any]] = {}
    for label, migrations in by_app.items():
        removable = label in plan.removable and all(f.kind == SCHEMA for f in migrations)
        apps[label] = {
            "removable": removable,
            "tables": _tables_of(label) if removable else [],
            "database_level": sorted({op for f in migrations for op in f.database_level}),
        }
    return {
        "kind": KIND,
        "environment": plan.environment,
        "inputs": plan.inputs,
        "migrations": [[f.key, f.digest, list(f.parents)] for f in plan.planned.order],
        "apps": apps,
        "later": [[s, list(t)] for s, t in later],
    }


def _tables_of(label: str) -> list[str]:
    try:
        config = global_apps.get_app_config(label)
    except LookupError:
        return []
    return sorted(
        model._meta.db_table
        for model in config.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy and not model._meta.swapped
    )


def held(start: Start) -> set[str]:
    """The migrations of ``start``'s state the build keeps."""
    return {
        key for key in start.state.migrations if key.partition(".")[0] not in start.removed_apps
    }


def planned_drops(start: Start) -> list[Any]:
    """The statements that drop from the state's copy what changed."""
    return [
        *postgres.drop_tables_sql(start.removed_tables),
        *postgres.forget_migrations_sql(start.removed_apps),
    ]


def drop_what_changed(alias: str, start: Start) -> None:
    """In the copy of ``start``'s state: drop the tables of the apps that go, and forget
    their migrations. Raises :class:`snapshots.NotRestorable` when something outside
    them depends on those tables (then the state is not used)."""
    from django_resetdb.snapshots import NotRestorable

    connection = connections[alias]
    try:
        postgres.execute(connection, planned_drops(start))
    except Exception as exc:
        raise NotRestorable(
            f"the tables of {', '.join(start.removed_apps)} could not be dropped from the "
            f"state {start.state.name}: {one_line(exc)}"
        ) from exc
