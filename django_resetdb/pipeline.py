"""The whole rebuild of a database, as one transaction."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.management import call_command
from django.db import connections, transaction

from django_resetdb import postgres
from django_resetdb.conf import get_settings
from django_resetdb.schemas import Log, reset_schemas


@dataclass
class RebuildResult:
    alias: str
    database: str
    steps: list[tuple[str, float]] = field(default_factory=list)
    tables: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"Rebuilt database {self.database!r} (alias {self.alias!r}): {self.tables} "
            f"table(s) in {self.seconds:.2f} s."
        )


def rebuild(
    alias: str,
    *,
    terminate_blockers: bool = False,
    log: Log,
    migrate_output: Callable[[], io.TextIOBase] = io.StringIO,
) -> RebuildResult:
    """Reset the configured schemas and migrate, in one transaction: all or nothing.

    Does not run the guard: callers do that first (see ``django_resetdb.guard``).
    """
    schemas = get_settings().schemas
    connection = connections[alias]
    started = time.monotonic()
    result = RebuildResult(alias=alias, database="")
    with transaction.atomic(using=alias):
        step = time.monotonic()
        reset = reset_schemas(alias, schemas, terminate_blockers=terminate_blockers, log=log)
        result.database = reset.database
        result.steps.append(("schema", time.monotonic() - step))
        log(f"  schema    {reset.summary()}", 1)

        step = time.monotonic()
        call_command(
            "migrate", database=alias, interactive=False, verbosity=1, stdout=migrate_output()
        )
        result.steps.append(("migrate", time.monotonic() - step))
        result.tables = postgres.count_tables(connection, schemas)
        log(f"  migrate   applied all migrations in {result.steps[-1][1]:.2f} s", 1)
    result.seconds = time.monotonic() - started
    return result
