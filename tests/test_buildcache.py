"""The build cache of migrated states: a rebuild keeps the database as its migrations
left it, the next reset starts from the state that holds the most unchanged migrations,
and what it leaves is what a rebuild from nothing leaves: compared with ``pg_dump``
(schema and rows; ``django_migrations`` by its set of names, its order and times
aside) against a build of the same project with the cache off, in another database."""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import os
import re
import signal
import subprocess

import pytest
from psycopg import sql

from django_resetdb import buildcache
from tests.conftest import (
    ATTVER,
    ProjectCopy,
    ScratchDatabase,
    connect,
    database_oid,
    database_state,
    pg_dump_binary,
    server_params,
    snapshots_of,
    states_of,
    swaps_in_progress,
    wait_until_gone,
)
from tests.test_resetdb import FAST_HASHER, prepare
from tests.test_resetmigrations import add_nickname

CATALOG_MODELS = "testproject/catalog/models.py"
VOLUNTEERS = "testproject/account/fixtures/volunteers.json"
ARTIFACT_FIELD = "    description = models.TextField(blank=True)\n"
# What no two builds share: the demo's seed callable hashes passwords with a random
# salt, and its users and artifacts are stamped with the time they were made.
MADE_NOW = re.compile(
    rf"^(md5\$.*|({datetime.date.today()}|{datetime.date.today() - datetime.timedelta(days=1)}) "
    r"\d\d:\d\d:\d\d(\.\d+)?\+\d\d(:\d\d)?)$"
)

EVENT_0002 = "testproject/event/migrations/0002_event_note.py"
EVENT_NOTE = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("event", "0001_initial")]
    operations = [
        migrations.AddField("event", "note", models.CharField(max_length=30, null=True)),
    ]
"""


def full_dump(db: ScratchDatabase) -> tuple[list[str], list[tuple[str, str]]]:
    """``pg_dump`` of ``db`` (schema and rows), without the ``\\restrict`` key, and the
    applied migrations by name: their ids, order and times are when they ran."""
    server = server_params()
    command = [pg_dump_binary(), "-d", db.name, "-h", server["host"]]
    if server["port"]:
        command += ["-p", str(server["port"])]
    if server["user"]:
        command += ["-U", server["user"]]
    env = {**os.environ, **({"PGPASSWORD": server["password"]} if server["password"] else {})}
    text = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    lines: list[str] = []
    applied: list[tuple[str, str]] = []
    in_migrations = False
    for line in text.splitlines():
        if line.startswith("COPY public.django_migrations "):
            in_migrations = True
            continue
        if in_migrations:
            if line == "\\.":
                in_migrations = False
            else:
                applied.append(tuple(line.split("\t")[1:3]))  # type: ignore[arg-type]
            continue
        if line.startswith(("\\restrict", "\\unrestrict", "--")) or not line.strip():
            continue
        if ATTVER.match(line + "\n"):  # when a column was made, not what it is
            continue
        if "'public.django_migrations_id_seq'" in line:
            continue
        fields = line.split("\t")
        lines.append("\t".join("(made now)" if MADE_NOW.match(f) else f for f in fields))
    return lines, sorted(applied)


def add_field(project: ProjectCopy, line: str) -> None:
    """A new field on catalog's Artifact, which sales and event point at."""
    project.edit(CATALOG_MODELS, ARTIFACT_FIELD, f"{ARTIFACT_FIELD}    {line}\n")


def reset(project: ProjectCopy, db: ScratchDatabase, *args: str) -> str:
    result = project.manage("resetdb", "--no-input", *args, url=db.url())
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def warmed(project: ProjectCopy, scratch_db: ScratchDatabase) -> ProjectCopy:
    """The demo, seeded by its fixtures only, rebuilt twice: the first run keeps the
    migrated state, under the database as its migrations leave it (with the extensions
    they make), and the second, with another seed, starts from it."""
    prepare(project, FAST_HASHER)
    first = reset(project, scratch_db)
    assert "  cache       kept the migrated state " in first
    # Another seed: the snapshot does not answer, the state does.
    project.edit(VOLUNTEERS, '"Dora"', '"Dorothea"')
    second = reset(project, scratch_db)
    assert "  migrate     started from the state after 22 of 22 migrations (" in second
    assert len(states_of(scratch_db.name)) == 1
    assert len(snapshots_of(scratch_db.name)) == 2
    return project


def assert_same_as_a_rebuild(project: ProjectCopy, db: ScratchDatabase, other: ScratchDatabase):
    """``db`` holds what a rebuild from nothing of the project as it is now leaves."""
    fresh = project.manage("resetdb", "--no-input", "--no-snapshot", url=other.url())
    assert fresh.returncode == 0, fresh.stderr
    assert "started from the state" not in fresh.stdout
    cached, rebuilt = full_dump(db), full_dump(other)
    assert cached[1] == rebuilt[1]
    differ = "\n".join(difflib.unified_diff(cached[0], rebuilt[0], lineterm="", n=0))
    assert cached[0] == rebuilt[0], differ[:3000]


def assert_same_as_a_kept_rebuild(
    project: ProjectCopy, db: ScratchDatabase, other: ScratchDatabase
) -> None:
    """``db`` holds what a rebuild from nothing with ``--keep-migrations`` leaves."""
    fresh = project.manage(
        "resetdb", "--no-input", "--no-snapshot", "--keep-migrations", url=other.url()
    )
    assert fresh.returncode == 0, fresh.stderr
    assert full_dump(db) == full_dump(other)


def test_changed_seeds_start_from_the_whole_state(warmed, scratch_db, other_db):
    warmed.edit("testproject/catalog/fixtures/catalog.json", '"Pottery"', '"Ceramics"')

    out = reset(warmed, scratch_db)

    assert "  migrate     started from the state after 22 of 22 migrations (" in out
    assert "applied 0 migration(s)" in out
    assert "  cache       kept the migrated state" not in out  # it holds all of it already
    assert_same_as_a_rebuild(warmed, scratch_db, other_db)


def test_one_app_changed_drops_it_and_what_points_into_it(warmed, scratch_db, other_db):
    add_field(warmed, 'shelf = models.CharField(max_length=9, default="A1")')
    dry = warmed.manage("resetdb", "--dry-run", "--sql", url=scratch_db.url())
    assert dry.returncode == 0, dry.stderr
    steps = " ".join(line.strip() for line in dry.stdout.splitlines())
    assert "  migrate     restore the state after 19 of 22 migrations (" in dry.stdout
    assert "less catalog, event, sales (its tables dropped)), then apply 3" in steps
    lines = dry.stdout.splitlines()
    assert "  -- the 19 migration(s) the state " in dry.stdout
    drop = next(line for line in lines if line.startswith("  DROP TABLE "))
    assert '"catalog_artifact"' in drop and '"sales_ticket"' in drop
    assert "  DELETE FROM django_migrations WHERE app IN ('catalog', 'event', 'sales');" in lines
    shown = [line for line in lines if line.startswith("  -- migrate: ")]
    assert shown == [
        "  -- migrate: catalog.0001_initial",
        "  -- migrate: event.0001_initial",
        "  -- migrate: sales.0001_initial",
    ]

    out = reset(warmed, scratch_db)

    # sales and event point into catalog: they go with it, the rest is kept.
    assert "started from the state after 19 of 22 migrations (" in out
    assert "less catalog, event, sales), applied 3 migration(s) (3 built from the models)" in out
    columns = scratch_db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'catalog_artifact'"
    )
    assert ("shelf",) in columns
    assert_same_as_a_rebuild(warmed, scratch_db, other_db)


def test_an_appended_migration_with_keep_migrations_is_all_that_runs(warmed, scratch_db, other_db):
    reset(warmed, scratch_db, "--keep-migrations")  # a state for the files as they are
    warmed.append(EVENT_0002, EVENT_NOTE)

    dry = warmed.manage("resetdb", "--dry-run", "--keep-migrations", url=scratch_db.url())
    out = reset(warmed, scratch_db, "--keep-migrations")

    assert "restore the state after 22 of 23 migrations (" in dry.stdout, dry.stdout
    assert "started from the state after 22 of 23 migrations (" in out
    assert "applied 1 migration(s)" in out
    assert_same_as_a_kept_rebuild(warmed, scratch_db, other_db)


def test_a_change_to_the_user_model_third_party_apps_depend_on_is_rebuilt(
    warmed, scratch_db, other_db
):
    # admin's migrations depend on the custom user model's app: they would have to go
    # with it, and they are not the project's (their tables cannot be told from the
    # models), so no state is used.
    add_nickname(warmed)

    dry = warmed.manage("resetdb", "--dry-run", url=scratch_db.url())
    out = reset(warmed, scratch_db)

    assert "  cache       not used: " in dry.stdout
    assert "admin would have to go" in dry.stdout
    assert "started from the state" not in out
    assert "applied 22 migration(s)" in out
    assert_same_as_a_rebuild(warmed, scratch_db, other_db)


def test_a_state_that_does_not_hold_what_it_records_is_not_used(warmed, scratch_db, other_db):
    # Tampered with: a migration they record is no longer applied in them. The tamper
    # also records the row's new version, as a kept state would: the check of what the
    # state holds is the one under test, not the check that it was not changed.
    for state in states_of(scratch_db.name):
        identifier = sql.Identifier(state)
        with connect("postgres") as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(identifier)
            )
        with connect(state) as conn:
            conn.execute("DELETE FROM django_migrations WHERE app = 'sessions'")
        with connect("postgres") as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(identifier)
            )
            ((comment, version),) = admin.execute(
                "SELECT shobj_description(oid, 'pg_database'), xmin::text FROM pg_database "
                "WHERE datname = %s",
                [state],
            ).fetchall()
            stamped = json.dumps({**json.loads(comment), "row": version})
            admin.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(identifier, sql.Literal(stamped))
            )
    warmed.edit("testproject/catalog/fixtures/catalog.json", '"Pottery"', '"Ceramics"')

    out = reset(warmed, scratch_db)

    assert "does not hold the migrations it records" in out
    assert "resetting in place" in out
    assert_same_as_a_rebuild(warmed, scratch_db, other_db)


def test_states_are_listed_dropped_and_bounded_by_snapshots(warmed, scratch_db):
    listed = warmed.manage("resetdb", "--list-snapshots", url=scratch_db.url())
    assert listed.returncode == 0, listed.stderr
    for state in states_of(scratch_db.name):
        assert state in listed.stdout
    assert "migrated state: 22 migration(s), 18 table(s), not seeded" in listed.stdout

    warmed.append("testproject/settings.py", 'DJANGO_RESETDB["SNAPSHOTS"] = 1\n')
    for width in (7, 8):
        add_field(warmed, f"w{width} = models.IntegerField(default={width})")
        out = reset(warmed, scratch_db)
        assert "  cache       kept the migrated state " in out
        # The one it started from and the one it kept: the others go, in the background.
        wait_until_gone(lambda: states_of(scratch_db.name)[2:])
    dropped = warmed.manage("resetdb", "--drop-snapshots", url=scratch_db.url())
    assert dropped.returncode == 0, dropped.stderr
    assert (states_of(scratch_db.name), snapshots_of(scratch_db.name)) == ([], [])


def test_no_snapshot_neither_uses_nor_keeps_a_state(warmed, scratch_db):
    before = states_of(scratch_db.name)

    out = reset(warmed, scratch_db, "--no-snapshot")

    assert "started from the state" not in out and "cache" not in out
    assert states_of(scratch_db.name) == before


def test_killed_while_the_state_is_copied_changes_nothing(warmed, scratch_db, other_db):
    add_field(warmed, "height = models.IntegerField(default=1)")
    oid = database_oid(scratch_db.name)
    before = database_state(scratch_db)
    files = warmed.migration_files()
    process = warmed.start_reset_with_fault("snapshot:pause", url=scratch_db.url())
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == "PAUSED":
                break
        assert len(swaps_in_progress(scratch_db.name)) >= 1
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert (database_oid(scratch_db.name), database_state(scratch_db)) == (oid, before)
    # Killed while its backup was in progress: the next run says how to put it back.
    refused = warmed.manage("resetdb", "--no-input", url=scratch_db.url())
    assert refused.returncode == 3, refused.stderr
    (backup,) = warmed.backups()
    assert f"resetmigrations --restore {backup.name}" in refused.stderr
    restored = warmed.manage("resetmigrations", "--restore", backup.name, "--no-input")
    assert restored.returncode == 0, restored.stderr
    assert warmed.migration_files() == files

    out = reset(warmed, scratch_db)

    assert swaps_in_progress(scratch_db.name) == []
    assert "  cache       kept the migrated state " in out
    assert_same_as_a_rebuild(warmed, scratch_db, other_db)


def test_ctrl_c_while_the_state_is_kept_puts_everything_back(warmed, scratch_db):
    add_field(warmed, "depth = models.IntegerField(default=1)")
    oid = database_oid(scratch_db.name)
    before = database_state(scratch_db)
    files = warmed.tree("testproject")
    states = states_of(scratch_db.name)

    result = warmed.reset_with_fault("state:interrupt", url=scratch_db.url())

    assert result.returncode == 130, result.stderr
    assert (database_oid(scratch_db.name), database_state(scratch_db)) == (oid, before)
    assert warmed.tree("testproject") == files
    assert swaps_in_progress(scratch_db.name) == []
    # The state was kept before the interruption: it is good, the next run may use it.
    assert set(states) <= set(states_of(scratch_db.name))


# The commute rule, on migrations described by hand ------------------------------------


def facts(key: str, kind=buildcache.SCHEMA, reach=(), renames=(), quiet=False, points_at=()):
    app = key.partition(".")[0]
    reached = frozenset({app, *reach})
    return buildcache.Facts(
        key, app, "d" + key, (), kind, reached, frozenset(renames), (), quiet, frozenset(points_at)
    )


@pytest.mark.parametrize(
    ("first", "then", "expected"),
    [
        (facts("a.1"), facts("b.1"), True),  # two apps' own tables
        (facts("a.1"), facts("b.1", reach=("a",)), True),  # a relation into a new column
        (facts("a.1"), facts("a.2"), False),  # one app: the order of its columns
        # b points at a model a renames: it may name it as it was.
        (facts("a.1", renames=["a.m"]), facts("b.1", reach=("a",), points_at=["a.m"]), False),
        (facts("a.1", renames=["a.m"]), facts("b.1", reach=("a",), points_at=["a.n"]), True),
        (facts("a.1"), facts("b.1", buildcache.DATA, reach=("a",)), False),  # b reads a
        (facts("a.1"), facts("b.1", buildcache.DATA), True),  # b reads nothing of a
        (facts("a.1", buildcache.DATA), facts("b.1", buildcache.DATA), False),  # shared rows
        (facts("a.1", buildcache.ANY), facts("b.1"), False),  # RunSQL: anything
        (facts("a.1", buildcache.DATA, reach=("b",)), facts("b.1"), False),  # a read b
        (facts("a.1", quiet=True), facts("b.1", buildcache.DATA, reach=("a",)), True),  # index
        (facts("a.1", buildcache.DATA, reach=("b",)), facts("b.1", quiet=True), True),
        # New tables of an app that depends on b, and b's data migration: b cannot see them.
        (facts("a.1", reach=("b",), quiet=True), facts("b.1", buildcache.DATA), True),
        (facts("a.1", reach=("b",)), facts("b.1", buildcache.DATA), False),
    ],
)
def test_two_migrations_commute_only_when_neither_can_see_the_other(first, then, expected):
    assert buildcache.commute(first, then) is expected


def test_a_state_matches_only_what_it_can_start_from():
    new = buildcache.Planned([facts("a.1"), facts("b.1", reach=("a",)), facts("c.1")])
    record = {
        "created": "2026-01-01T00:00:00",
        "migrations": [["a.1", "da.1", []], ["b.1", "db.1", ["a.1"]], ["c.1", "old", []]],
        "apps": {
            "a": {"removable": True, "tables": ["a_t"]},
            "c": {"removable": True, "tables": ["c_t"]},
        },
        "later": [["ALTER TABLE c_t ADD FOREIGN KEY", ["c_t"]], ["CREATE INDEX ON a_t", ["a_t"]]],
    }
    state = buildcache.State.from_data("s", json.loads(json.dumps(record)))
    assert state is not None

    start, why = buildcache.match(state, new)

    assert why == "" and start is not None
    assert (start.kept, start.total, start.removed_apps, start.removed_tables) == (
        2,
        3,
        ["c"],
        ["c_t"],
    )
    assert [s for s, _ in start.later] == ["CREATE INDEX ON a_t"]

    # b changed: it must go, and it cannot (not recorded as removable).
    changed = buildcache.Planned([facts("a.1"), facts("b.2", reach=("a",)), facts("c.1")])
    start, why = buildcache.match(state, changed)
    assert start is None and "b would have to go (b.1 no longer in the plan)" in why
    # a changed: b, not removable, goes with it, and the line names a's migration.
    edited = dataclasses.replace(facts("a.1"), digest="edited")
    changed = buildcache.Planned([edited, facts("b.1", reach=("a",))])
    start, why = buildcache.match(state, changed)
    assert start is None and "b would have to go (it depends on a.1, changed)" in why, why
