"""``python faults.py ARGS``: ``manage.py ARGS`` with a fault injected at one point of a reset.

Copied into the tests' project copies. ``RESETDB_FAULT=POINT:KIND`` where POINT is
``regeneration`` (the new migration files written and verified), ``schema`` (the schemas
dropped, not yet created again), ``migrate`` (every migration applied), ``seed:ENTRY``
(that seed done), ``post_reset`` (a receiver of the signal), ``commit`` (the database's
transaction committed), ``swap`` (a swap of names committed), ``snapshot`` (a snapshot's
copy made, not yet marked as one), ``kept`` (a snapshot kept, named and marked) or
``summary`` (the last line worked out), and KIND is
``error`` (an exception), ``interrupt`` (``KeyboardInterrupt``, as Ctrl-C raises it),
``sigint`` (SIGINT sent to the process itself, as Ctrl-C sends it) or ``pause`` (print
``PAUSED`` and wait, to be killed).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
django.setup()

from django.core.management import execute_from_command_line  # noqa: E402
from django.db.backends.base.base import BaseDatabaseWrapper  # noqa: E402
from django.db.models.signals import post_migrate  # noqa: E402

from django_resetdb import (  # noqa: E402
    fixtureload,
    pipeline,
    postgres,
    regenerate,
    seeding,
    snapshots,
)
from django_resetdb.signals import post_reset  # noqa: E402

POINT, _, KIND = os.environ["RESETDB_FAULT"].rpartition(":")


def fault(*args: Any, **kwargs: Any) -> None:
    if KIND == "pause":
        print("PAUSED", flush=True)
        sys.stdin.read()
        return
    if KIND == "interrupt":
        raise KeyboardInterrupt
    if KIND == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
        return
    raise RuntimeError(f"fault injected at {POINT}")


def after(owner: Any, name: str, applies: Any) -> None:
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        value = original(*args, **kwargs)
        if applies(*args, **kwargs):
            fault()
        return value

    setattr(owner, name, wrapper)


if POINT == "regeneration":
    after(regenerate, "verify", lambda plan: True)
elif POINT == "schema":
    original_sql = postgres.create_schema_sql

    def create_schema_sql(*args: Any, **kwargs: Any) -> Any:
        fault()
        return original_sql(*args, **kwargs)

    postgres.create_schema_sql = create_schema_sql
elif POINT == "migrate":
    post_migrate.connect(fault, weak=False)
elif POINT.startswith("seed:"):
    entry = POINT.partition(":")[2]
    after(seeding, "_call", lambda item, database, log: item.entry == entry)
    after(
        fixtureload.BulkLoader,
        "load_file",
        lambda loader, finder, path, *rest: Path(path).name.split(".")[0] == entry,
    )
elif POINT == "post_reset":
    post_reset.connect(fault, weak=False)
elif POINT == "commit":
    after(BaseDatabaseWrapper, "commit", lambda connection: True)
elif POINT == "swap":
    after(postgres, "swap_databases", lambda cursor, statements: True)
elif POINT == "summary":
    after(pipeline.ResetResult, "summary", lambda result: True)
elif POINT == "kept":
    after(snapshots, "keep", lambda *args, **kwargs: True)
elif POINT == "snapshot":
    original_marks = postgres.snapshot_marks_sql

    def snapshot_marks_sql(*args: Any, **kwargs: Any) -> Any:
        fault()
        return original_marks(*args, **kwargs)

    postgres.snapshot_marks_sql = snapshot_marks_sql
else:
    raise SystemExit(f"unknown fault point {POINT!r}")

execute_from_command_line(["manage.py", *sys.argv[1:]])
