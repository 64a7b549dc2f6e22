"""The migrate step of ``resetdb``: Django's ``migrate`` inside the reset's transaction, or
the fast build of the apps whose migrations were just regenerated.

A migration marked ``atomic = False`` is meant to run outside a transaction. On a
database being rebuilt, the only ones Django itself ships for that are the concurrent
index operations, and on tables that were just created, are empty and that nobody else
can see, building an index concurrently or not gives the same index: they run as
``AddIndex`` / ``RemoveIndex`` inside the transaction, and the reset says so. The same
goes for the SQL such a migration runs itself (``RunSQL``, or a ``RunPython`` through the
schema editor): ``CREATE INDEX CONCURRENTLY``, ``DROP INDEX CONCURRENTLY`` and ``REINDEX
INDEX|TABLE ... CONCURRENTLY`` run without ``CONCURRENTLY``. Anything else in such a
migration runs inside the transaction too; if PostgreSQL refuses it there, the reset
fails and changes nothing.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps as global_apps
from django.core.management import call_command
from django.core.management.base import OutputWrapper
from django.core.management.commands.migrate import Command as MigrateCommand
from django.core.management.sql import emit_post_migrate_signal, emit_pre_migrate_signal
from django.db import DatabaseError, connections
from django.db.migrations import Migration, operations
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.operations import AddIndex, RemoveIndex
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ModelState, ProjectState
from django.db.models.signals import pre_migrate

from django_resetdb import postgres
from django_resetdb.exceptions import ResetError
from django_resetdb.output import one_line
from django_resetdb.progress import NO_PROGRESS, Progress
from django_resetdb.regenerate import PlannedLoader, RegenerationPlan, is_database_level

# The line migrate prints before applying each migration, at verbosity 1.
APPLYING = re.compile(r"^\s*Applying (\S+)\.\.\.", re.MULTILINE)


@dataclass
class MigrateResult:
    applied: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    built: int = 0  # migrations the fast build recorded instead of running
    fallback: str = ""  # why a plain migrate ran instead of the fast build
    # Foreign keys and indexes the fast build leaves for once the rows are in: adding a
    # foreign key checks the table in one pass, where loading rows into it would check
    # each row, and an index is built faster from the rows than row by row.
    later: list[str] = field(default_factory=list)
    # The tables each of ``later`` names (of the fast-built apps).
    later_tables: list[tuple[str, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class Shown:
    """Where the migrate step shows how far it is: the in-place line, and the text the
    line starts with."""

    progress: Progress = NO_PROGRESS
    prefix: str = "  migrate     "

    def applying(self, done: int, total: int, name: str) -> None:
        # The first always shows: a step starts with a line of its own.
        self.progress.update(f"{self.prefix}applying {done}/{total} {name}", force=done == 1)

    def step(self, what: str) -> None:
        self.progress.update(f"{self.prefix}{what}", force=True)


def _in_transaction_equivalent(operation: Operation) -> Operation | None:
    try:
        from django.contrib.postgres.operations import (
            AddIndexConcurrently,
            RemoveIndexConcurrently,
        )
    except ImportError:  # psycopg missing: then no migration can use them either
        return None
    if isinstance(operation, AddIndexConcurrently):
        return AddIndex(model_name=operation.model_name, index=operation.index)
    if isinstance(operation, RemoveIndexConcurrently):
        return RemoveIndex(model_name=operation.model_name, name=operation.name)
    return None


def adapt(migration: Migration) -> list[str]:
    """Make a non-atomic migration runnable inside the reset's transaction.

    Replaces its concurrent index operations with their plain equivalents and returns a
    line for each. Changes this ``Migration`` instance only (the loader made it).
    """
    if migration.atomic:
        return []
    notes = []
    operations = list(migration.operations)
    for position, operation in enumerate(operations):
        plain = _in_transaction_equivalent(operation)
        if plain is not None:
            operations[position] = plain
            notes.append(
                f"{migration.app_label}.{migration.name} (atomic = False): "
                f"{type(operation).__name__} run as {type(plain).__name__} inside the "
                "transaction"
            )
    migration.operations = operations  # type: ignore[misc]
    if not notes:
        notes.append(
            f"{migration.app_label}.{migration.name} (atomic = False): run inside the transaction"
        )
    return notes


class _Tee(io.StringIO):
    """Keeps what migrate prints, and passes it on when asked to."""

    def __init__(self, forward: Any | None) -> None:
        super().__init__()
        self.forward = forward

    def write(self, text: str) -> int:
        if isinstance(self.forward, OutputWrapper):
            self.forward.write(text, ending="")
        elif self.forward is not None:
            self.forward.write(text)
        return super().write(text)


class _Migrate(MigrateCommand):
    """Django's ``migrate``, ending each migration as its commit would (see
    ``postgres.end_of_migration``): the reset runs them all in one transaction."""

    def __init__(self, alias: str, shown: Shown, plan: list[str]) -> None:
        super().__init__()
        self.alias = alias
        self.shown = shown
        self.plan = plan  # the migrations to apply, once pre_migrate has told them
        self.started = 0
        self.current = ""  # the migration being applied

    def migration_progress_callback(
        self, action: str, migration: Migration | None = None, fake: bool = False
    ) -> None:
        if action == "apply_start" and migration is not None:
            self.current = f"{migration.app_label}.{migration.name}"
            self.started += 1
            total = max(len(self.plan), self.started)
            self.shown.applying(self.started, total, f"{migration.app_label}.{migration.name}")
        # Before migrate prints " OK": the checks fired here belong to the migration.
        if action == "apply_success":
            self.current = ""  # what runs after (post_migrate) is no migration's
            postgres.end_of_migration(connections[self.alias])
        super().migration_progress_callback(action, migration, fake)


def migrate(alias: str, *, output: Any | None = None, shown: Shown = Shown()) -> MigrateResult:
    """Run ``migrate`` on ``alias`` in the caller's transaction; see the module's doc.

    ``shown`` gets the number and name of each migration as it starts.
    """
    result = MigrateResult()
    non_atomic: list[str] = []

    def before(*, plan: Sequence[tuple[Migration, bool]] | None = None, using: str = "",
               **kwargs: Any) -> None:  # fmt: skip
        # Sent once per app with the same plan: adapt it the first time.
        if using != alias or not plan or result.applied:
            return
        # In place: the command's progress reads the same list.
        result.applied[:] = [f"{m.app_label}.{m.name}" for m, _ in plan]
        for migration, _ in plan:
            if not migration.atomic:
                non_atomic.append(f"{migration.app_label}.{migration.name}")
                result.adapted += adapt(migration)

    printed = _Tee(output)
    command = _Migrate(alias, shown, result.applied)
    rewritten: set[str] = set()

    def in_transaction(execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        # A statement of a non-atomic migration that PostgreSQL runs only outside a
        # transaction, and that has a transactional form giving the same result on a
        # schema nobody else sees (see module doc): that form.
        if command.current in non_atomic and isinstance(sql, str):
            plain = without_concurrently(sql)
            if plain != sql:
                sql = plain
                if command.current not in rewritten:
                    rewritten.add(command.current)
                    result.adapted.append(
                        f"{command.current} (atomic = False): its SQL's CONCURRENTLY index "
                        "statements run without CONCURRENTLY inside the transaction"
                    )
        return execute(sql, params, many, context)

    pre_migrate.connect(before, weak=False, dispatch_uid=f"django_resetdb.migrate.{alias}")
    try:
        with connections[alias].execute_wrapper(in_transaction):
            call_command(
                command,
                database=alias,
                interactive=False,
                verbosity=1,
                stdout=printed,
            )
    except DatabaseError as exc:
        started = APPLYING.findall(printed.getvalue())
        where = f" in migration {started[-1]}" if started else ""
        if where and started[-1] in non_atomic and _refused_in_transaction(exc):
            raise ResetError(
                f"Migration {started[-1]} is marked atomic = False and runs a statement "
                f"PostgreSQL refuses inside a transaction ({one_line(exc)}); resetdb runs "
                "every migration inside its one transaction so that a failure changes "
                "nothing: make that statement transactional (an index built or dropped "
                "CONCURRENTLY is run without it); the transaction "
                "was rolled back, nothing was changed."
            ) from exc
        raise ResetError(
            f"migrate failed{where}: {type(exc).__name__}: {one_line(exc)}; the transaction "
            "was rolled back, nothing was changed."
        ) from exc
    finally:
        pre_migrate.disconnect(dispatch_uid=f"django_resetdb.migrate.{alias}")
    return result


# Index statements PostgreSQL runs only outside a transaction block when CONCURRENTLY,
# at the start of the SQL or of a statement after a semicolon.
# Comments before a statement (as a RunSQL list item may start with one) are skipped.
# REINDEX SCHEMA is left alone: PostgreSQL refuses it in a transaction either way.
_CONCURRENTLY = re.compile(
    r"(^|;)((?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*(?:CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX|"
    r"REINDEX\s+(?:\([^)]*\)\s*)?(?:INDEX|TABLE))\s+)CONCURRENTLY\s+",
    re.IGNORECASE | re.DOTALL,
)


def without_concurrently(sql: str) -> str:
    """``sql`` with ``CONCURRENTLY`` taken out of its index statements: ``CREATE [UNIQUE]
    INDEX``, ``DROP INDEX`` and ``REINDEX INDEX|TABLE`` build or drop the same index
    without it."""
    return _CONCURRENTLY.sub(r"\1\2", sql)


def _refused_in_transaction(exc: BaseException) -> bool:
    return postgres.is_active_sql_transaction(exc)


@dataclass
class PlannedSQL:
    """One migration's SQL as a dry run shows it."""

    name: str  # app_label.name
    statements: list[str] = field(default_factory=list)
    not_shown: str = ""  # why its SQL cannot be shown
    # The schema editor asked the database for names (of constraints, indexes,
    # sequences): the answer describes the database as it is now, not as the earlier
    # migrations would leave a new schema.
    looked_up: bool = False
    # It asked and the database had none: what would drop them is missing from the SQL.
    found_none: bool = False


# Lookups of the database as it is, which the schema editor makes to name what it drops.
_LOOKUPS = ("_constraint_names", "_get_sequence_name")


def planned_sql(alias: str, plan: RegenerationPlan | None) -> Iterator[PlannedSQL]:
    """The SQL ``migrate`` would run on a new, empty schema of ``alias``, per migration,
    once ``plan`` (``None``: the files as they are) is applied. What cannot be written as
    SQL (``RunPython``) shows as Django's comment for it.

    Rendering a migration can fail where it needs the database as the earlier migrations
    leave it (Django looks constraint names up in the database to drop them): then that
    migration comes with the reason instead of its SQL, the planned state moves on
    without it, and the next migrations render. Nothing is written to the database.
    """
    connection = connections[alias]
    try:
        loader = PlannedLoader(plan)
        graph = loader.graph
        order = [graph.nodes[key] for key in forwards(graph)]
    except Exception as exc:  # a dry run shows what it can; the reset itself will fail
        cause = f"{type(exc).__name__}: {one_line(exc)}"
        yield PlannedSQL(
            "(every migration)",
            not_shown=(
                f"the planned migrations cannot be loaded: {cause}; resetdb would fail "
                "here and roll back"
                + (", and put the migration files back" if plan is not None else "")
            ),
        )
        return
    if not order:
        return
    first = order[0]
    state = loader.project_state((first.app_label, first.name), at_end=False)
    for migration in order:
        planned = PlannedSQL(f"{migration.app_label}.{migration.name}")
        adapt(migration)
        before = state.clone()
        try:
            with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
                _note_lookups(editor, planned)
                state = migration.apply(state, editor, collect_sql=True)
        except Exception as exc:  # whatever stops one migration's SQL, show the rest
            planned.not_shown = _not_shown(exc)
            try:
                state = migration.mutate_state(before, preserve=False)
            except Exception:  # its models stay out; what needs them says so in turn
                state = before
        else:
            planned.statements = list(editor.collected_sql)
        yield planned


def _note_lookups(editor: Any, planned: PlannedSQL) -> None:
    for name in _LOOKUPS:
        method = getattr(editor, name, None)
        if method is None:
            continue

        def noted(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            found = _method(*args, **kwargs)
            if found:
                planned.looked_up = True
            else:
                planned.found_none = True
            return found

        setattr(editor, name, noted)


def _not_shown(exc: BaseException) -> str:
    cause = f"{type(exc).__name__}: {one_line(exc)}"
    if isinstance(exc, ValueError) and str(exc).startswith("Found wrong number"):
        return (
            "it looks up constraint names in the database, which a dry run cannot do "
            f"before the earlier migrations ran: {cause}"
        )
    if isinstance(exc, DatabaseError):
        return (
            "it reads the database, which a dry run cannot do before the earlier "
            f"migrations ran: {cause}"
        )
    return cause


# What makemigrations writes in a project's first migrations; the fast build knows how
# each of these ends up in the database (the tables of the final state).
_BUILT_OPERATIONS: tuple[type[Operation], ...] = (
    operations.CreateModel,
    operations.AddField,
    operations.AddIndex,
    operations.AddConstraint,
    operations.AlterUniqueTogether,
    *([operations.AlterIndexTogether] if hasattr(operations, "AlterIndexTogether") else []),
)


@dataclass
class FastBuildPlan:
    """How to bring a new, empty schema to what ``migrate`` would make of it."""

    plan: list[Migration]  # migrate's own plan, in its order
    fast: frozenset[tuple[str, str]]  # recorded, their tables built from the final state
    build_at: int  # the tables are built before plan[build_at]
    executor: MigrationExecutor
    # The migrations applied already (a migrated state restored): the plan starts after
    # them, from the state they leave.
    applied: frozenset[tuple[str, str]] = frozenset()
    fallback: str = ""  # why no app is fast-built, when none is


def plan_build(alias: str, labels: Sequence[str]) -> tuple[FastBuildPlan | None, str]:
    """The fast build of apps ``labels`` on ``alias``, or ``None`` and why not.

    Only apps whose migrations are exactly what makemigrations writes for their models
    qualify (the caller knows: it just regenerated or compared them), and only when what
    each operation does can be proven to be creating the final state's tables.
    """
    if not labels:
        return None, "no regenerated app"
    executor = MigrationExecutor(connections[alias])
    graph = executor.loader.graph
    plan = [graph.nodes[key] for key in forwards(graph)]
    return _fast_plan(executor, plan, labels)


def plan_rest(alias: str, labels: Sequence[str]) -> FastBuildPlan:
    """The build of what is not applied yet on ``alias`` (a migrated state restored):
    apps ``labels`` fast-built when they qualify (see :func:`plan_build`), the other
    migrations run for real, in migrate's order."""
    executor = MigrationExecutor(connections[alias])
    loader = executor.loader
    graph = loader.graph
    applied = frozenset(key for key in loader.applied_migrations if key in graph.nodes)
    plan = [graph.nodes[key] for key in forwards(graph) if key not in applied]
    found, why = _fast_plan(executor, plan, labels) if labels else (None, "no regenerated app")
    if found is None:
        found = FastBuildPlan(plan, frozenset(), len(plan), executor, fallback=why)
    found.applied = applied
    return found


def _fast_plan(
    executor: MigrationExecutor, plan: list[Migration], labels: Sequence[str]
) -> tuple[FastBuildPlan | None, str]:
    loader = executor.loader
    graph = loader.graph
    fast = frozenset((m.app_label, m.name) for m in plan if m.app_label in set(labels))
    if not fast:
        return None, "no regenerated app left to build"
    for migration in plan:
        if (migration.app_label, migration.name) not in fast:
            continue
        name = f"{migration.app_label}.{migration.name}"
        if not migration.atomic or migration.run_before or migration.replaces:
            return None, f"{name} is not a plain initial migration"
        for operation in migration.operations:
            if not isinstance(operation, _BUILT_OPERATIONS) and not is_database_level(operation):
                return None, f"{name} has a {type(operation).__name__} operation"
    state = loader.project_state()
    for model_state in state.models.values():
        if model_state.app_label in set(labels):
            if not model_state.options.get("managed", True):
                return None, f"model {model_state.app_label}.{model_state.name} is unmanaged"
            if model_state.options.get("swappable"):
                return None, f"model {model_state.app_label}.{model_state.name} is swappable"
    # The tables are built once, before the first other migration that needs them; every
    # other migration the regenerated ones need must come before that point.
    position = {(m.app_label, m.name): i for i, m in enumerate(plan)}
    needs = {key: set(graph.forwards_plan(key)) for key in position}
    build_at = next(
        (
            i
            for i, m in enumerate(plan)
            if (m.app_label, m.name) not in fast and needs[m.app_label, m.name] & fast
        ),
        len(plan),
    )
    first = plan[build_at] if build_at < len(plan) else None
    for key in sorted(fast, key=position.__getitem__):
        late = sorted(
            (k for k in needs[key] if k in position and k not in fast and position[k] >= build_at),
            key=position.__getitem__,
        )
        if not late:
            continue
        # Name the chain that forces it: a migration run for real between two regenerated
        # apps, or else one that the plan runs after the point the tables are built at.
        between = next((k for k in late if needs[k] & fast), None)
        if between is not None:
            needed = min(needs[between] & fast, key=position.__getitem__)
            return None, (
                f"{key[0]}.{key[1]} needs {between[0]}.{between[1]}, which needs "
                f"{needed[0]}.{needed[1]}: the regenerated apps' tables are built in one step"
            )
        assert first is not None
        return None, (
            f"{key[0]}.{key[1]} needs {late[-1][0]}.{late[-1][1]}, which migrate runs "
            f"after {first.app_label}.{first.name}, the first migration that needs the "
            "regenerated apps' tables"
        )
    return FastBuildPlan(plan, fast, build_at, executor), ""


def forwards(graph: Any) -> list[tuple[str, str]]:
    """migrate's plan for a clean start: each leaf's ancestors, in order, once."""
    seen: set[tuple[str, str]] = set()
    order: list[tuple[str, str]] = []
    for leaf in graph.leaf_nodes():
        for key in graph.forwards_plan(leaf):
            if key not in seen:
                seen.add(key)
                order.append(key)
    return order


def build(
    alias: str,
    build_plan: FastBuildPlan,
    *,
    output: Any | None = None,
    shown: Shown = Shown(),
    checkpoint: Callable[[MigrateResult], None] | None = None,
) -> MigrateResult:
    """What ``migrate`` does on a new schema, in the caller's transaction, without
    rendering the project state for each regenerated migration.

    Other migrations run for real, through Django's executor, in the plan's order; the
    regenerated ones are recorded at their place in it, and their tables are created
    from the final state of the migrations (so with the columns in the order migrate
    leaves them) by the schema editor, in one pass. Then the post_migrate signal, as
    migrate sends it. ``shown`` gets the number and name of each migration in turn.

    With ``build_plan.applied``, the plan starts from the state those migrations leave.
    ``checkpoint`` runs once every migration is applied, before post_migrate (the build
    cache keeps its migrated state there).
    """
    connection = connections[alias]
    executor = build_plan.executor
    loader = executor.loader
    printed = _Tee(output)
    result = MigrateResult()
    plan = [(m, False) for m in build_plan.plan]
    final = loader.project_state()
    connection.prepare_database()
    executor.recorder.ensure_schema()
    if build_plan.applied:
        # From the leaves only: the state of a set closed under dependencies.
        applied = build_plan.applied
        leaves = [
            key
            for key in sorted(applied)
            if not any(child.key in applied for child in loader.graph.node_map[key].children)
        ]
        state = loader.project_state(leaves, at_end=True)
    else:
        state = ProjectState(real_apps=loader.unmigrated_apps)
    emit_pre_migrate_signal(1, False, alias, stdout=printed, apps=state.clone().apps, plan=plan)
    # Until the tables are built, the migrations that run see a state without them, as
    # the database is: nothing tries to alter a table that does not exist yet. Built
    # from the final state, the tables already have what such changes would give them.
    waiting: list[Migration] | None = []
    # Built from the models are the apps whose migrations are what makemigrations
    # writes from nothing: regenerated by this run, or already so.
    built = "the apps built from their models"
    current = built
    try:
        for index, migration in enumerate(build_plan.plan):
            if index == build_plan.build_at:
                current = built
                shown.step(f"creating the tables of {built}")
                result.later, result.later_tables = _create_tables(connection, final, build_plan)
                state = _moved_on(state, waiting or [])
                waiting = None
            current = f"{migration.app_label}.{migration.name}"
            shown.applying(index + 1, len(build_plan.plan), current)
            if (migration.app_label, migration.name) in build_plan.fast:
                executor.recorder.record_applied(migration.app_label, migration.name)
                result.built += 1
                if waiting is None:
                    state = _moved_on(state, [migration])
                else:
                    waiting.append(migration)
            else:
                printed.write(f"  Applying {current}...")
                state = executor.apply_migration(state, migration)
                postgres.end_of_migration(connection)
                printed.write(" OK\n")
            result.applied.append(current)
        if waiting is not None:
            current = built
            shown.step(f"creating the tables of {built}")
            result.later, result.later_tables = _create_tables(connection, final, build_plan)
        # A squashed migration counts as applied once all it replaces are, as migrate
        # records it.
        executor.check_replacements()
    except DatabaseError as exc:
        raise ResetError(
            f"migrate failed in {current}: {type(exc).__name__}: {one_line(exc)}; "
            "the transaction was rolled back, nothing was changed."
        ) from exc
    if checkpoint is not None:
        checkpoint(result)
    # The state after every migration is the final one, already rendered.
    emit_post_migrate_signal(
        1, False, alias, stdout=printed, apps=_post_migrate_apps(final), plan=plan
    )
    return result


def _moved_on(state: ProjectState, migrations: Sequence[Migration]) -> ProjectState:
    if migrations:
        # Without rendered models, moving the state on costs next to nothing.
        state.__dict__.pop("apps", None)
        for migration in migrations:
            state = migration.mutate_state(state, preserve=False)
    return state


def _create_tables(
    connection: Any, final: ProjectState, build_plan: FastBuildPlan
) -> tuple[list[str], list[tuple[str, ...]]]:
    """Create the regenerated apps' tables; return the statements that are better run
    once the rows are in (the foreign keys and the indexes that enforce nothing), and
    the tables of those apps each one names."""
    fast = [m for m in build_plan.plan if (m.app_label, m.name) in build_plan.fast]
    if not fast:
        return [], []
    models = final.apps
    tables: list[str] = []
    with connection.schema_editor(atomic=False) as editor:
        # Extensions and collations first, for real: the tables may use them.
        for migration in fast:
            for operation in migration.operations:
                if is_database_level(operation):
                    operation.database_forwards(migration.app_label, editor, final, final)
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        for migration in fast:
            for operation in migration.operations:
                if isinstance(operation, operations.CreateModel):
                    model = models.get_model(migration.app_label, operation.name)
                    if operation.allow_migrate_model(connection.alias, model):
                        editor.create_model(model)
                        tables.append(model._meta.db_table)
                        tables += [
                            f.remote_field.through._meta.db_table
                            for f in model._meta.local_many_to_many
                            if f.remote_field.through._meta.auto_created
                        ]
        deferred = [s for s in editor.deferred_sql if postgres.runs_after_rows(str(s))]
        editor.deferred_sql = [
            s for s in editor.deferred_sql if not postgres.runs_after_rows(str(s))
        ]
    postgres.execute_batches(connection, editor.collected_sql)
    named = [
        tuple(t for t in tables if hasattr(s, "references_table") and s.references_table(t))
        for s in deferred
    ]
    return [str(s) for s in deferred], named


def _post_migrate_apps(state: ProjectState) -> Any:
    """The models post_migrate receivers get, made as migrate makes them."""
    post_apps = state.apps
    with post_apps.bulk_update():
        keys = []
        for model_state in post_apps.real_models:
            key = model_state.app_label, model_state.name_lower
            keys.append(key)
            post_apps.unregister_model(*key)
    post_apps.render_multiple([ModelState.from_model(global_apps.get_model(*key)) for key in keys])
    return post_apps
