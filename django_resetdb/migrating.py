"""The migrate step of ``resetdb``: Django's ``migrate`` inside the reset's transaction.

A migration marked ``atomic = False`` is meant to run outside a transaction. On a
database being rebuilt, the only ones Django itself ships for that are the concurrent
index operations, and on tables that were just created, are empty and that nobody else
can see, building an index concurrently or not gives the same index: they run as
``AddIndex`` / ``RemoveIndex`` inside the transaction, and the reset says so. Anything
else in such a migration runs inside the transaction too; if PostgreSQL refuses it there,
the reset fails and changes nothing.
"""

from __future__ import annotations

import io
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.management import call_command
from django.core.management.base import OutputWrapper
from django.db import DatabaseError, connections
from django.db.migrations import Migration
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AddIndex, RemoveIndex
from django.db.migrations.operations.base import Operation
from django.db.models.signals import pre_migrate
from psycopg import errors

from django_resetdb.exceptions import ResetError
from django_resetdb.migrations_reset import MigrationPlan

# The line migrate prints before applying each migration, at verbosity 1.
APPLYING = re.compile(r"^\s*Applying (\S+)\.\.\.", re.MULTILINE)


@dataclass
class MigrateResult:
    applied: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)


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


def migrate(alias: str, *, output: Any | None = None) -> MigrateResult:
    """Run ``migrate`` on ``alias`` in the caller's transaction; see the module's doc."""
    result = MigrateResult()
    non_atomic: list[str] = []

    def before(*, plan: Sequence[tuple[Migration, bool]] | None = None, using: str = "",
               **kwargs: Any) -> None:  # fmt: skip
        # Sent once per app with the same plan: adapt it the first time.
        if using != alias or not plan or result.applied:
            return
        result.applied = [f"{m.app_label}.{m.name}" for m, _ in plan]
        for migration, _ in plan:
            if not migration.atomic:
                non_atomic.append(f"{migration.app_label}.{migration.name}")
                result.adapted += adapt(migration)

    printed = _Tee(output)
    pre_migrate.connect(before, weak=False, dispatch_uid=f"django_resetdb.migrate.{alias}")
    try:
        call_command("migrate", database=alias, interactive=False, verbosity=1, stdout=printed)
    except DatabaseError as exc:
        started = APPLYING.findall(printed.getvalue())
        where = f" in migration {started[-1]}" if started else ""
        if where and started[-1] in non_atomic and _refused_in_transaction(exc):
            raise ResetError(
                f"Migration {started[-1]} is marked atomic = False and runs a statement "
                f"PostgreSQL refuses inside a transaction ({_one_line(exc)}); resetdb runs "
                "every migration inside its one transaction so that a failure changes "
                "nothing: make that statement transactional (for an index, use "
                "AddIndexConcurrently, which a reset runs as AddIndex); the transaction "
                "was rolled back, nothing was changed."
            ) from exc
        raise ResetError(
            f"migrate failed{where}: {type(exc).__name__}: {_one_line(exc)}; the transaction "
            "was rolled back, nothing was changed."
        ) from exc
    finally:
        pre_migrate.disconnect(dispatch_uid=f"django_resetdb.migrate.{alias}")
    return result


def _refused_in_transaction(exc: BaseException) -> bool:
    return isinstance(exc.__cause__, errors.ActiveSqlTransaction)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class PlannedLoader(MigrationLoader):
    """The migration graph as it will be once ``plan`` is applied, built from the
    planned files' text without writing them."""

    def __init__(self, plan: MigrationPlan | None) -> None:
        self._plan = plan
        super().__init__(None, ignore_no_migrations=True)

    def load_disk(self) -> None:
        super().load_disk()
        if self._plan is None:
            return
        for app in self._plan.changed:
            for key in [key for key in self.disk_migrations if key[0] == app.label]:
                del self.disk_migrations[key]
            for new in app.new_files:
                module = types.ModuleType(f"{app.app.module}.{new.path.stem}")
                module.__file__ = str(new.path)
                exec(compile(new.text, str(new.path), "exec"), module.__dict__)
                self.disk_migrations[app.label, new.path.stem] = module.Migration(
                    new.path.stem, app.label
                )
            self.migrated_apps.add(app.label)
            self.unmigrated_apps.discard(app.label)


def planned_sql(alias: str, plan: MigrationPlan | None) -> list[tuple[str, list[str]]]:
    """The SQL ``migrate`` would run on a new, empty schema of ``alias``, per migration,
    once ``plan`` (``None``: the files as they are) is applied. What cannot be written as
    SQL (``RunPython``) shows as Django's comment for it."""
    connection = connections[alias]
    loader = PlannedLoader(plan)
    graph = loader.graph
    order = [graph.nodes[key] for key in _forwards_order(graph)]
    sql: list[tuple[str, list[str]]] = []
    state = None
    for migration in order:
        adapt(migration)
        with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
            if state is None:
                state = loader.project_state((migration.app_label, migration.name), at_end=False)
            state = migration.apply(state, editor, collect_sql=True)
        sql.append((f"{migration.app_label}.{migration.name}", list(editor.collected_sql)))
    return sql


def _forwards_order(graph: Any) -> list[tuple[str, str]]:
    # The order migrate applies them in from a clean start.
    seen: set[tuple[str, str]] = set()
    order: list[tuple[str, str]] = []
    for leaf in graph.leaf_nodes():
        for key in graph.forwards_plan(leaf):
            if key not in seen:
                seen.add(key)
                order.append(key)
    return order
