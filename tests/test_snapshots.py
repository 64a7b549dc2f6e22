"""The snapshot cache: kept after a rebuild, restored when nothing that decides the result
changed, with the database's own properties carried over; all or nothing; off when it
cannot be shown safe. Checked through the catalogs (the database's OID tells a restore
from a rebuild) and the rows."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg import sql

from bench.synthetic import Shape, generate
from django_resetdb import postgres
from django_resetdb.snapshots import keep_name, swap_names
from tests.conftest import (
    PATIENCE,
    ProjectCopy,
    connect,
    database_oid,
    database_state,
    database_url,
    drop_database,
    replaced_of,
    server_params,
    sessions_on,
    snapshots_of,
    states_of,
    swaps_in_progress,
    target_host,
    target_user,
    wait_for_replaced_dropped,
    wait_for_session,
    wait_until_gone,
)
from tests.test_resetdb import FAST_HASHER, prepare, rebuild_once, status, timeless
from tests.test_resetmigrations import ACCOUNT_0001, add_nickname


def leave_replaced(target: str, *, legacy: bool = False) -> str:
    """A database as a restore of ``target`` leaves it when its background drop fails:
    named and marked like one (under the names of earlier versions with ``legacy``),
    made through a connection of its own."""
    if legacy:
        name = f"resetdb_swap_old_{hashlib.sha256(target.encode()).hexdigest()[:20]}_"
    else:
        name = swap_names(target)[1]
    name += uuid.uuid4().hex[:8]
    identifier = sql.Identifier(name)
    with connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(identifier))
        comment = sql.Literal(
            f"django_resetdb: the earlier {target}, replaced by a restore or a swap"
        )
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(identifier, comment))
    return name


def replaced(db) -> list[tuple[str, bool]]:
    """Databases restores of ``db`` replaced, and whether they take connections."""
    with connect("postgres") as admin:
        rows = admin.execute(
            "SELECT datname, datallowconn FROM pg_database WHERE datname = ANY(%s)",
            [replaced_of(db.name)],
        ).fetchall()
    return [(name, allowed) for name, allowed in rows]


def properties(db) -> list[object]:
    """The database's own properties, which a copy does not carry: read from pg_database."""
    with connect("postgres") as admin:
        row = admin.execute(
            "SELECT pg_get_userbyid(datdba), datconnlimit, datacl::text[], "
            "shobj_description(oid, 'pg_database'), datistemplate FROM pg_database "
            "WHERE datname = %s",
            [db.name],
        ).fetchone()
        settings = admin.execute(
            "SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), ''), s.setconfig "
            "FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = %s ORDER BY 1",
            [db.name],
        ).fetchall()
    return [row, settings]


@pytest.fixture
def cached(project: ProjectCopy, scratch_db):
    """A copy of the demo whose database was rebuilt once, a snapshot kept."""
    result = rebuild_once(project, scratch_db, FAST_HASHER)
    (kept,) = snapshots_of(scratch_db.name)
    assert f"  snapshot    kept {kept} in " in result.stdout
    project.kept = kept  # type: ignore[attr-defined]
    project.state = database_state(scratch_db)  # type: ignore[attr-defined]
    # Built in a new database for the build cache: the one it replaced goes in the
    # background, and the tests count what is left.
    wait_for_replaced_dropped(scratch_db.name)
    with scratch_db.connect() as conn:
        conn.execute("INSERT INTO catalog_category (name, slug) VALUES ('Maps', 'maps')")
    return project


def test_an_unchanged_project_restores_its_snapshot(cached, scratch_db):
    oid = database_oid(scratch_db.name)

    result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2].startswith(f"  snapshot    restored {cached.kept} (kept ")
    assert lines[-1].startswith(
        f"Rebuilt database {scratch_db.name!r} (alias 'default') from its snapshot: 18 "
        "table(s), 31 row(s) seeded in "
    )
    # A new database (the copy) under the old name, with what the rebuild left.
    assert database_oid(scratch_db.name) != oid
    assert database_state(scratch_db) == cached.state
    assert snapshots_of(scratch_db.name) == [cached.kept]
    assert swaps_in_progress(scratch_db.name) == []
    # The replaced database is dropped in the background, without another run.
    wait_for_replaced_dropped(scratch_db.name)


# Deprecation warnings as errors, as a project's own test settings often have them.
STRICT_WARNINGS = {"PYTHONWARNINGS": "error::DeprecationWarning,error::PendingDeprecationWarning"}


def test_the_cache_key_reads_every_setting_without_deprecation_warnings(project, scratch_db):
    # Django 6.1 warns when a deprecated setting (EMAIL_BACKEND, ...) is read, even at its
    # default; the key reads every setting, which is not the project using them.
    prepare(project, FAST_HASHER)

    built = project.manage("resetdb", "--no-input", url=scratch_db.url(), env=STRICT_WARNINGS)
    restored = project.manage("resetdb", "--no-input", url=scratch_db.url(), env=STRICT_WARNINGS)

    assert (built.returncode, built.stderr) == (0, "")
    (kept,) = snapshots_of(scratch_db.name)
    assert f"  snapshot    kept {kept} in " in built.stdout
    assert (restored.returncode, restored.stderr) == (0, "")
    assert restored.stdout.splitlines()[2].startswith(f"  snapshot    restored {kept} (kept ")


def test_a_run_does_not_wait_for_an_earlier_database_being_dropped(cached, scratch_db):
    earlier = leave_replaced(scratch_db.name)

    with connect("postgres") as blocker:
        # An open transaction that commented on the replaced database holds a lock that
        # DROP DATABASE waits for (as a drop another process is at would); the server
        # ends it if the test is stuck.
        blocker.execute("SET idle_in_transaction_session_timeout = '120s'")
        blocker.execute("BEGIN")
        blocker.execute(sql.SQL("COMMENT ON DATABASE {} IS 'held'").format(sql.Identifier(earlier)))
        result = cached.manage("resetdb", "--no-input", "-v", "2", url=scratch_db.url())
        # The run is over; the drop is still waiting for this transaction.
        still_there = earlier in replaced_of(scratch_db.name)
        blocker.execute("ROLLBACK")

    assert result.returncode == 0, result.stderr
    assert "  snapshot    restored " in result.stdout
    assert "waited" not in result.stdout
    assert (
        f"  dropping {earlier}, left by an earlier run, in the background"
        in result.stdout.splitlines()
    )
    assert still_there
    # Once the lock is free, the process the run started drops it.
    wait_for_replaced_dropped(scratch_db.name)


def test_the_background_drop_leaves_a_database_changed_since_it_was_picked(scratch_db):
    picked = [f"{scratch_db.name}_a", f"{scratch_db.name}_b"]
    with connect("postgres") as admin:
        for name in picked:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        versions = dict(
            admin.execute(
                "SELECT datname, xmin::text FROM pg_database WHERE datname = ANY(%s)", [picked]
            ).fetchall()
        )
        # Someone changes the second after it was picked (opens it to connections, say).
        admin.execute(
            sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 5").format(sql.Identifier(picked[1]))
        )
    params = {key: str(value) for key, value in server_params().items() if value}
    try:
        failed = postgres.drop_databases_over(
            {**params, "dbname": "postgres"}, [(n, versions[n]) for n in picked], 5.0
        )

        assert failed == [f"{picked[1]}: changed since it was picked, left as it is"]
        assert (exists(picked[0]), exists(picked[1])) == (False, True)
    finally:
        for name in picked:
            drop_database(name)


def test_the_database_keeps_its_owner_grants_comment_and_settings(cached, scratch_db, scratch_role):
    name = sql.Identifier(scratch_db.name)
    role = sql.Identifier(scratch_role)
    with connect("postgres") as admin:
        for statement in (
            "ALTER DATABASE {db} OWNER TO {role}",
            "ALTER DATABASE {db} CONNECTION LIMIT 42",
            "REVOKE ALL ON DATABASE {db} FROM PUBLIC",
            "GRANT CONNECT ON DATABASE {db} TO {role} WITH GRANT OPTION",
            "COMMENT ON DATABASE {db} IS 'the heritage site'",
            'ALTER DATABASE {db} SET search_path TO "$user", public, "Odd ""name"""',
            "ALTER DATABASE {db} SET work_mem TO '8MB'",
            "ALTER ROLE {role} IN DATABASE {db} SET statement_timeout TO '5s'",
            "ALTER DATABASE {db} WITH IS_TEMPLATE true",
        ):
            admin.execute(sql.SQL(statement).format(db=name, role=role))
    before = properties(scratch_db)
    row = before[0]
    assert isinstance(row, tuple) and row[-1] is True  # a template

    # Settings stored for the database are part of the fingerprint (what a seed writes
    # may follow them): the first run rebuilds and keeps a snapshot under them, the
    # second restores it. Both keep what the DBA stored.
    rebuilt = cached.manage("resetdb", "--no-input", url=scratch_db.url())
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "  snapshot    restored " not in rebuilt.stdout
    assert properties(scratch_db) == before

    result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert "  snapshot    restored " in result.stdout
    assert properties(scratch_db) == before
    # What the swaps replaced is no template, and goes.
    wait_for_replaced_dropped(scratch_db.name)
    with connect("postgres") as admin:  # so that the fixture can drop it
        admin.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(name))


def test_a_replaced_database_a_drop_left_invalid_is_dropped(tmp_path, scratch_db):
    # A DROP DATABASE interrupted half-way leaves it invalid (datconnlimit -2): it can be
    # dropped, not altered.
    project = synthetic_project(tmp_path / "synthetic", scratch_db.url())
    earlier = leave_replaced(scratch_db.name)
    with connect("postgres") as admin:
        admin.execute("UPDATE pg_database SET datconnlimit = -2 WHERE datname = %s", [earlier])

    dropped = project.manage("resetdb", "--drop-snapshots")

    assert dropped.returncode == 0, dropped.stderr
    assert "could not drop" not in dropped.stdout + dropped.stderr
    assert not exists(earlier)


def test_a_replaced_template_an_earlier_version_left_is_dropped(tmp_path, scratch_db):
    project = synthetic_project(tmp_path / "synthetic", scratch_db.url())
    earlier = leave_replaced(scratch_db.name)
    with connect("postgres") as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true").format(sql.Identifier(earlier))
        )

    dropped = project.manage("resetdb", "--drop-snapshots")

    assert dropped.returncode == 0, dropped.stderr
    assert "could not drop" not in dropped.stdout + dropped.stderr
    assert not exists(earlier)


def test_a_model_change_rebuilds_and_keeps_a_new_snapshot(cached, scratch_db):
    cached.append("testproject/settings.py", 'DJANGO_RESETDB["SNAPSHOTS"] = 1\n')
    add_nickname(cached)

    result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    # account changed, and admin's migrations depend on its user model: no migrated
    # state can be used, the build starts from nothing, in a new database (whose empty
    # schema is no step of its own).
    assert "  migrate     applied 22 migration(s) (4 built from the models)" in result.stdout
    assert "  schema      " not in result.stdout
    # The run made room for the snapshot it kept, before rebuilding.
    (kept,) = snapshots_of(scratch_db.name)
    assert kept != cached.kept
    assert result.stdout.splitlines()[-2].startswith(f"  snapshot    kept {kept} in ")


def test_going_back_to_earlier_models_restores_their_snapshot(cached, scratch_db):
    models = cached.path("testproject/account/models.py")
    original = models.read_text()
    add_nickname(cached)
    changed = cached.manage("resetdb", "--no-input", url=scratch_db.url())
    assert changed.returncode == 0, changed.stderr
    models.write_text(original)

    result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert "  migrations  regenerated account (1 file(s)) in " in result.stdout
    assert f"  snapshot    restored {cached.kept} (kept " in result.stdout
    assert database_state(scratch_db) == cached.state


def test_no_snapshot_rebuilds_and_keeps_nothing(cached, scratch_db):
    result = cached.manage("resetdb", "--no-input", "--no-snapshot", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert "  schema      dropped 18 table(s) of public" in result.stdout
    assert "snapshot" not in result.stdout
    assert snapshots_of(scratch_db.name) == [cached.kept]


def test_snapshots_0_drops_what_the_cache_kept(cached, scratch_db):
    # Turning the cache off for good: its copies would otherwise stay, unused, for ever.
    assert snapshots_of(scratch_db.name) == [cached.kept]
    assert states_of(scratch_db.name) != []
    cached.append("testproject/settings.py", 'DJANGO_RESETDB["SNAPSHOTS"] = 0\n')

    result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert "  snapshot    restored" not in result.stdout
    # Dropped by a process of their own, which the run does not wait for.
    wait_until_gone(lambda: snapshots_of(scratch_db.name) + states_of(scratch_db.name))


def test_list_and_drop_snapshots(cached, scratch_db):
    listed = cached.manage("resetdb", "--list-snapshots", url=scratch_db.url())

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith(f"  {cached.kept}  ")
    assert lines[0].endswith("  18 table(s), 31 row(s) seeded")
    # Then the build cache's migrated state, kept by the same run.
    (state,) = states_of(scratch_db.name)
    assert lines[1].startswith(f"  {state}  ")
    assert lines[1].endswith("  migrated state: 22 migration(s), 18 table(s), not seeded")
    assert lines[2].startswith(
        f"1 snapshot(s) and 1 migrated state(s) of database {scratch_db.name!r} (alias 'default'), "
    )

    dropped = cached.manage("resetdb", "--drop-snapshots", url=scratch_db.url())

    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout == (
        f"Dropped 1 snapshot(s) and 1 migrated state(s) of database {scratch_db.name!r} "
        "(alias 'default').\n"
    )
    assert (snapshots_of(scratch_db.name), states_of(scratch_db.name)) == ([], [])
    assert scratch_db.query("SELECT count(*) FROM catalog_category WHERE slug = 'maps'") == [(1,)]


def test_dry_run_shows_the_restore_and_changes_nothing(cached, scratch_db):
    oid = database_oid(scratch_db.name)
    before = database_state(scratch_db)

    result = cached.manage("resetdb", "--dry-run", "--sql", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"  snapshot    restore {cached.kept} (kept " in "\n".join(lines)
    statements = [line for line in lines if line.startswith(("  CREATE DATABASE", "  ALTER"))]
    assert statements[0].startswith('  CREATE DATABASE "resetdb_swap_new_')
    assert f'TEMPLATE "{cached.kept}"' in statements[0]
    assert f'  ALTER DATABASE "{scratch_db.name}" RENAME TO "resetdb_swap_old_' in statements[1]
    assert (database_oid(scratch_db.name), database_state(scratch_db)) == (oid, before)
    assert (swaps_in_progress(scratch_db.name), replaced(scratch_db)) == ([], [])


# A Django process holding its connection between requests, as a dev server does with
# CONN_MAX_AGE; on a line on stdin it does what Django does at a request's start, and
# prints the pid of the session it then queries through.
PERSISTENT = """
import sys
from django.db import close_old_connections, connection
connection.ensure_connection()
sys.stdin.readline()
close_old_connections()
with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    print(cursor.fetchone()[0], flush=True)
"""
PERSISTENT_SETTINGS = """
DATABASES["default"]["CONN_MAX_AGE"] = None
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
"""


@contextlib.contextmanager
def idle_session(kind: str, project: ProjectCopy, db) -> Iterator[tuple[str, int]]:
    """An idle session on ``db`` of the kind a developer leaves open: its application
    name and pid."""
    application = {"psycopg": "psql", "psql": "psql", "django": "dev server"}[kind]
    if kind == "psycopg":
        with db.connect(application_name=application) as conn:
            yield application, conn.info.backend_pid
        return
    if kind == "psql":
        process = subprocess.Popen(
            ["psql", "-X", "-q", f"{db.url()}?application_name={quote(application)}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    else:
        project.append("testproject/settings.py", PERSISTENT_SETTINGS)
        process = project.start(
            "manage.py", "shell", "-c", PERSISTENT,
            url=db.url(), env={"PGAPPNAME": application},
        )  # fmt: skip
    try:
        pid = wait_for_session(db.name, application)
        yield application, pid
        if kind == "django":
            # The next request finds the connection gone, and opens another.
            output, errors = process.communicate("\n", timeout=PATIENCE)
            assert process.returncode == 0, errors
            assert int(output.split()[-1]) != pid
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        process.communicate(timeout=PATIENCE)


@pytest.mark.parametrize("kind", ["psycopg", "psql", "django"])
def test_an_idle_session_is_ended_and_the_snapshot_restored(cached, scratch_db, kind):
    oid = database_oid(scratch_db.name)

    with idle_session(kind, cached, scratch_db) as (application, pid):
        client = sessions_on(scratch_db.name)[pid][2]
        result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

        assert result.returncode == 0, result.stderr
        assert pid not in sessions_on(scratch_db.name)
        assert (
            f"  sessions    ended 1 idle session on {scratch_db.name!r} (pid {pid}, user "
            f"{target_user()!r}, application {application!r}, {client})"
        ) in result.stdout.splitlines()
        assert f"  snapshot    restored {cached.kept} (kept " in result.stdout
        assert "not used" not in result.stdout
        assert database_oid(scratch_db.name) != oid
        assert scratch_db.query("SELECT count(*) FROM catalog_category WHERE slug = 'maps'") == [
            (0,)
        ]
        assert database_state(scratch_db) == cached.state


def test_an_idle_session_holding_an_advisory_lock_is_not_ended(cached, scratch_db):
    worker = scratch_db.connect(application_name="worker")
    try:
        worker.execute("SELECT pg_advisory_lock(4242)")
        pid = wait_for_session(scratch_db.name, "worker", "idle")

        result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

        assert result.returncode == 0, result.stderr
        assert (
            f"  snapshot    not used: 1 idle session on {scratch_db.name!r} holding an "
            f"advisory lock (pid {pid}, user {target_user()!r}, application 'worker', "
            "state 'idle', query 'SELECT pg_advisory_lock(4242)'), which "
            "--terminate-blockers ends"
        ) in result.stdout.splitlines()
        assert "sessions    ended" not in result.stdout
        # Still connected, still holding its lock.
        assert worker.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 "
            "AND pid = pg_backend_pid()"
        ).fetchone() == (1,)
    finally:
        worker.close()


def test_a_session_in_a_transaction_is_named_and_not_ended(cached, scratch_db):
    idle = scratch_db.connect(application_name="psql")
    busy = scratch_db.connect(application_name="report")
    try:
        busy.execute("BEGIN")
        busy.execute("SELECT 1")
        pid = wait_for_session(scratch_db.name, "report", "idle in transaction")

        result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

        assert result.returncode == 0, result.stderr
        assert (
            f"  snapshot    not used: 1 session on {scratch_db.name!r} in a transaction or a "
            f"query (pid {pid}, user {target_user()!r}, application 'report', state "
            "'idle in transaction', query 'SELECT 1'), which --terminate-blockers ends"
        ) in result.stdout.splitlines()
        assert "  schema      dropped 18 table(s) of public" in result.stdout
        # The reset went on in place: neither session was ended.
        assert "sessions    ended" not in result.stdout
        assert busy.execute("SELECT 2").fetchone() == (2,)
        assert idle.execute("SELECT 3").fetchone() == (3,)
        busy.execute("ROLLBACK")
        busy.execute("BEGIN")
        busy.execute("SELECT 1")
        wait_for_session(scratch_db.name, "report", "idle in transaction")

        ended = cached.manage("resetdb", "--no-input", "--terminate-blockers", url=scratch_db.url())

        assert ended.returncode == 0, ended.stderr
        assert (
            f"  sessions    ended 1 session on {scratch_db.name!r} (--terminate-blockers) (pid "
            f"{pid}, user {target_user()!r}, application 'report', "
        ) in ended.stdout
        assert "  sessions    ended 1 idle session on " in ended.stdout
        assert "  snapshot    restored " in ended.stdout
        assert sessions_on(scratch_db.name) == {}
    finally:
        for conn in (idle, busy):
            with contextlib.suppress(Exception):
                conn.close()


def test_dry_run_says_what_it_would_do_with_the_sessions(cached, scratch_db):
    name = scratch_db.name
    with scratch_db.connect(application_name="psql") as other:
        pid = other.info.backend_pid

        result = cached.manage("resetdb", "--dry-run", url=scratch_db.url())

        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert f"            pid {pid}, user {target_user()!r}, application 'psql', " in (
            result.stdout
        )
        assert f"  sessions    end 1 idle session on {name!r} before the swap (pid {pid})" in lines
        assert other.execute("SELECT 1").fetchone() == (1,)

        other.execute("BEGIN")
        busy = cached.manage("resetdb", "--dry-run", url=scratch_db.url())
        told = cached.manage("resetdb", "--dry-run", "--terminate-blockers", url=scratch_db.url())

        assert busy.returncode == 0, busy.stderr
        lines = busy.stdout.splitlines()
        start = lines.index(
            f"  sessions    1 session on {name!r} in a transaction or a query (pid {pid}), "
            "which --terminate-blockers ends"
        )
        assert lines[start + 1] == (
            "              with them connected, the reset would rebuild in place instead of "
            "restoring the snapshot"
        )
        assert told.returncode == 0, told.stderr
        assert (
            f"  sessions    end 1 session on {name!r} before the swap (--terminate-blockers) "
            f"(pid {pid})"
        ) in told.stdout.splitlines()
        assert other.execute("SELECT 1").fetchone() == (1,)
        other.execute("ROLLBACK")


@pytest.mark.parametrize("kind", ["error", "interrupt"])
def test_a_failure_before_the_swap_changes_nothing(cached, scratch_db, kind):
    oid = database_oid(scratch_db.name)
    before = database_state(scratch_db)

    result = cached.reset_with_fault(f"post_reset:{kind}", url=scratch_db.url())

    assert result.returncode == (130 if kind == "interrupt" else 1), result.stderr
    assert (database_oid(scratch_db.name), database_state(scratch_db)) == (oid, before)
    assert (swaps_in_progress(scratch_db.name), replaced(scratch_db)) == ([], [])
    assert snapshots_of(scratch_db.name) == [cached.kept]


def test_killed_before_the_swap_changes_nothing_and_the_next_run_cleans_up(cached, scratch_db):
    oid = database_oid(scratch_db.name)
    before = database_state(scratch_db)
    process = cached.start_reset_with_fault("post_reset:pause", url=scratch_db.url())
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == "PAUSED":
                break
        assert len(swaps_in_progress(scratch_db.name)) == 1
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()

    assert (database_oid(scratch_db.name), database_state(scratch_db)) == (oid, before)

    again = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert again.returncode == 0, again.stderr
    assert "  snapshot    restored " in again.stdout
    assert swaps_in_progress(scratch_db.name) == []
    assert database_state(scratch_db) == cached.state


def test_ctrl_c_just_after_the_swap_finishes_the_restore_and_says_so(cached, scratch_db):
    oid = database_oid(scratch_db.name)
    files = cached.tree()

    result = cached.reset_with_fault("swap:sigint", url=scratch_db.url())

    assert result.returncode == 130, result.stderr
    assert result.stderr == (
        "CommandError: Interrupted after the snapshot was restored: the reset is complete "
        "(the migration files needed no change).\n"
    )
    assert database_oid(scratch_db.name) != oid
    assert database_state(scratch_db) == cached.state
    assert swaps_in_progress(scratch_db.name) == []
    assert cached.tree() == files


def test_ctrl_c_just_after_the_swap_of_a_changed_project_keeps_the_new_files(cached, scratch_db):
    # Back to models a snapshot was kept for, from files regenerated since: the restore
    # regenerates the files first.
    models = cached.path("testproject/account/models.py")
    original = models.read_text()
    add_nickname(cached)
    changed = cached.manage("resetdb", "--no-input", url=scratch_db.url())
    assert changed.returncode == 0, changed.stderr
    models.write_text(original)
    oid = database_oid(scratch_db.name)

    result = cached.reset_with_fault("swap:sigint", url=scratch_db.url())

    assert result.returncode == 130, result.stderr
    assert result.stderr == (
        "CommandError: Interrupted after the snapshot was restored: the reset is complete "
        "(the new migration files are in place).\n"
    )
    assert database_oid(scratch_db.name) != oid
    assert database_state(scratch_db) == cached.state
    assert "nickname" not in cached.path(ACCOUNT_0001).read_text()
    assert status(cached.backups()[-1]) == "complete"


def test_ctrl_c_just_after_a_snapshot_is_kept_says_it_was(cached, scratch_db):
    add_nickname(cached)
    before = set(snapshots_of(scratch_db.name))

    result = cached.reset_with_fault("kept:sigint", url=scratch_db.url())

    assert result.returncode == 130, result.stderr
    assert result.stderr == (
        "CommandError: Interrupted after the new database was swapped in: the reset is "
        "complete (the new migration files are in place); a snapshot was kept.\n"
    )
    assert len(set(snapshots_of(scratch_db.name)) - before) == 1


def uncommented_leftovers(target: str) -> set[str]:
    """Databases named like the tool's own that carry no comment, from the catalog: any
    snapshot, and the copies in the making whose name is made from ``target``'s (those
    of other targets may be in the making now, in other tests)."""
    digest = hashlib.sha256(target.encode()).hexdigest()[:16]
    with connect("postgres") as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE (starts_with(datname, 'resetdb_snap_') "
            "OR (starts_with(datname, 'resetdb_swap_') AND strpos(datname, %s) > 0)) "
            "AND shobj_description(oid, 'pg_database') IS NULL",
            [digest],
        ).fetchall()
    return {name for (name,) in rows}


def test_killed_while_a_snapshot_is_kept_the_copy_is_listed_and_dropped(project, scratch_db):
    prepare(project, FAST_HASHER)
    before = uncommented_leftovers(scratch_db.name)
    process = project.start_reset_with_fault("snapshot:pause", url=scratch_db.url())
    left: set[str] = set()
    try:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if line.strip() == "PAUSED":
                    break
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate()
        # The first copy is the build cache's migrated state, made while the database
        # is built in a new one: both are left.
        left = uncommented_leftovers(scratch_db.name) - before
        assert len(left) == 2, left
        assert {name.split("_")[2] for name in left} == {"keep", "new"}
        assert snapshots_of(scratch_db.name) == []

        listed = project.manage("resetdb", "--list-snapshots", url=scratch_db.url())

        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[:2] == [
            f"  {name}  left half-made by an interrupted run; the next run drops it"
            for name in sorted(left)
        ]

        again = project.manage("resetdb", "--no-input", url=scratch_db.url())

        assert again.returncode == 0, again.stderr
        assert not left & uncommented_leftovers(scratch_db.name)
        assert len(snapshots_of(scratch_db.name)) == 1
    finally:
        for name in left:
            drop_database(name)


def test_no_snapshot_still_drops_the_database_a_restore_replaced(cached, scratch_db):
    leave_replaced(scratch_db.name)
    assert len(replaced_of(scratch_db.name)) == 1

    result = cached.manage("resetdb", "--no-input", "--no-snapshot", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    wait_for_replaced_dropped(scratch_db.name)
    assert snapshots_of(scratch_db.name) == [cached.kept]


def test_objects_outside_the_schemas_turn_the_cache_off(cached, scratch_db):
    with scratch_db.connect() as conn:
        conn.execute("CREATE SCHEMA reporting")
        conn.execute("CREATE TABLE reporting.visits (n int)")
        conn.execute("INSERT INTO reporting.visits VALUES (7)")

    result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert (
        "  snapshot    not used: a copy of the whole database would also bring back 1 "
        "object(s) in schema 'reporting' outside DJANGO_RESETDB['SCHEMAS']"
    ) in result.stdout.splitlines()
    assert scratch_db.query("SELECT n FROM reporting.visits") == [(7,)]
    assert snapshots_of(scratch_db.name) == [cached.kept]


def test_a_role_that_cannot_create_databases_rebuilds(tmp_path, scratch_db, scratch_role):
    # A project without extensions, so that a plain role can rebuild it.
    generate(tmp_path / "synthetic", Shape(apps=2, models=3, rows=2))
    with connect("postgres") as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(scratch_db.name), sql.Identifier(scratch_role)
            )
        )
    project = ProjectCopy(
        tmp_path / "synthetic", scratch_db.url(user=scratch_role), settings="synth.settings"
    )

    result = project.manage("resetdb", "--no-input")

    assert result.returncode == 0, result.stderr
    assert (
        f"  snapshot    not used: role {scratch_role!r} cannot create databases (CREATEDB)"
    ) in result.stdout.splitlines()
    assert snapshots_of(scratch_db.name) == []


def test_a_session_the_role_may_not_end_is_named_as_a_blocker(tmp_path, scratch_role, scratch_db):
    # (The role comes first so that the database and its snapshots go before it.)
    generate(tmp_path / "synthetic", Shape(apps=2, models=3, rows=2))
    with connect("postgres") as admin:
        admin.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(scratch_role)))
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(scratch_db.name), sql.Identifier(scratch_role)
            )
        )
    project = ProjectCopy(
        tmp_path / "synthetic", scratch_db.url(user=scratch_role), settings="synth.settings"
    )
    first = project.manage("resetdb", "--no-input")
    assert first.returncode == 0, first.stderr
    assert "  snapshot    kept " in first.stdout
    oid = database_oid(scratch_db.name)

    # A superuser's idle session, which a role without superuser may not end.
    with scratch_db.connect(application_name="psql") as other:
        pid = other.info.backend_pid

        result = project.manage("resetdb", "--no-input", "--terminate-blockers")

        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        # The role may not see what the session does, but sees it is there.
        assert lines[0].endswith(": 16 table(s), 1 other session(s).")
        assert lines[2].startswith(
            f"  snapshot    not used: 1 session on {scratch_db.name!r} that this role may not "
            f"end (pid {pid}, user {target_user()!r}, application 'psql', "
        )
        assert "sessions    ended" not in result.stdout
        assert other.execute("SELECT 1").fetchone() == (1,)
    assert database_oid(scratch_db.name) == oid


def test_a_touched_migration_file_is_planned_again_and_still_restores(cached, scratch_db):
    # A new modification time misses the quick key; the files' text still matches.
    first = cached.manage("resetdb", "--no-input", url=scratch_db.url())
    assert "  migrations  no changes since the snapshot was kept" in first.stdout
    cached.path(ACCOUNT_0001).touch()

    result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("  migrations  no changes in account, catalog, event, sales in ")
    assert lines[2].startswith(f"  snapshot    restored {cached.kept} (kept ")

    again = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert again.stdout.splitlines()[1] == (
        "  migrations  no changes since the snapshot was kept (the same models and files)"
    )


def test_a_snapshot_kept_with_the_files_as_they_are_does_not_answer_a_regenerating_run(
    cached, scratch_db
):
    # A change the files do not have yet, and that the seeds' queries do not notice.
    cached.edit("testproject/account/models.py", "max_length=32", "max_length=40")
    kept = cached.manage("resetdb", "--no-input", "--keep-migrations", url=scratch_db.url())
    assert kept.returncode == 0, kept.stderr
    assert phone_type(scratch_db) == "character varying(32)"
    oid = database_oid(scratch_db.name)

    result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert "  snapshot    restored " not in result.stdout
    assert "  migrations  regenerated account (1 file(s)) in X s" in timeless(result.stdout)
    assert phone_type(scratch_db) == "character varying(40)"
    # Rebuilt in a new database for the build cache, not restored.
    assert database_oid(scratch_db.name) != oid


def phone_type(db) -> str:
    ((found,),) = db.query(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'account_user'::regclass AND attname = 'phone'"
    )
    return str(found)


def test_the_listing_shows_the_database_a_restore_replaced(cached, scratch_db):
    old = leave_replaced(scratch_db.name)

    result = cached.manage("resetdb", "--list-snapshots", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert any(
        line.startswith(f"  {old}  ")
        and line.endswith(" MB  replaced by a restore or a swap; the next run drops it")
        for line in result.stdout.splitlines()
    ), result.stdout
    assert replaced_of(scratch_db.name) == [old]  # listing drops nothing


# --- Hygiene on a shared server ----------------------------------------------------------


def synthetic_project(root, db_url: str) -> ProjectCopy:
    """A small project without extensions (any server runs it), with the fault runner."""
    generate(root, Shape(apps=2, models=3, rows=2))
    shutil.copy(Path(__file__).with_name("fault_runner.py"), root / "faults.py")
    return ProjectCopy(root, db_url, settings="synth.settings")


@pytest.fixture
def synthetic(tmp_path, scratch_db) -> ProjectCopy:
    """The small project, its database rebuilt once and a snapshot kept."""
    project = synthetic_project(tmp_path / "synthetic", scratch_db.url())
    first = project.manage("resetdb", "--no-input")
    assert first.returncode == 0, first.stderr
    assert len(snapshots_of(scratch_db.name)) == 1
    # Built in a new database for the build cache: the one it replaced goes in the
    # background, and the tests count what is left.
    wait_for_replaced_dropped(scratch_db.name)
    return project


def url_of(name: str) -> str:
    return database_url(quote(name, safe=""))


@pytest.fixture(
    params=[
        "the_rather_long_name_of_a_project_database",
        "ü数据库_開発",  # a character cut in the middle would be invalid UTF-8
    ],
    ids=["long", "non-ascii"],
)
def named_db(request) -> Iterator[str]:
    """A database of its own whose name is long or not ASCII, dropped afterwards with
    what the tool made for it."""
    name = f"resetdb_shy_{uuid.uuid4().hex[:8]}_{request.param}"
    assert len(name.encode()) <= 63
    with connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        for database in [name, *snapshots_of(name), *states_of(name), *replaced_of(name)]:
            drop_database(database)


def test_snapshot_names_carry_the_target_and_fit(tmp_path, named_db):
    project = synthetic_project(tmp_path / "synthetic", url_of(named_db))

    seeded = project.manage("resetdb", "--no-input")
    unseeded = project.manage("resetdb", "--no-input", "--no-seed")  # another fingerprint

    assert seeded.returncode == 0, seeded.stderr
    assert unseeded.returncode == 0, unseeded.stderr
    names = snapshots_of(named_db)
    assert len(names) == 2
    for name in names:
        # As PostgreSQL holds it (a longer name would have been cut, the digest with it).
        assert len(name.encode()) <= 63
        assert f"  snapshot    kept {name} in " in seeded.stdout + unseeded.stdout
        # The target's name as far as it fits, never half a character.
        start = name.removeprefix("resetdb_snap_").rsplit("_", 1)[0]
        assert start and named_db.startswith(start)
        assert f"resetdb_snap_{named_db[:20]}" in name
    # The same target, two fingerprints: the digests differ.
    assert len({name.rsplit("_", 1)[1] for name in names}) == 2


@pytest.mark.parametrize(
    "target",
    ["resetdb_t_0123456789ab", "x" * 63, "é" * 31, "a" + "数" * 20],
)
def test_the_names_of_copies_and_replaced_databases_fit(target):
    names = [*swap_names(target), keep_name(target)]
    new, old, keeping = names
    replaced_name = old + "0" * 8
    for name in (new, replaced_name, keeping):
        assert len(name.encode()) <= 63
        assert name.encode().decode("utf-8") == name
    part = old.removeprefix("resetdb_swap_old_").rsplit("_", 2)[0]
    assert part and target.startswith(part)
    assert swap_names(target + "b") != swap_names(target)


def make_legacy_snapshot(target: str, *, closed: bool = True) -> str:
    """A snapshot as earlier versions named it (``resetdb_snap_`` and a digest alone),
    made and marked through a connection of its own; open to connections unless
    ``closed``, as the tool never leaves one."""
    name = f"resetdb_snap_{hashlib.sha256(uuid.uuid4().bytes).hexdigest()[:24]}"
    comment = json.dumps(
        {
            "django_resetdb": "0.0.1",
            "target": target,
            "fingerprint": "an earlier version's",
            "created": "2026-11-01T08:00:00+00:00",
            "tables": 4,
            "rows": 2,
        }
    )
    identifier = sql.Identifier(name)
    with connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
        if closed:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(identifier)
            )
        admin.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(identifier, sql.Literal(comment))
        )
    return name


def exists(name: str) -> bool:
    with connect("postgres") as admin:
        row = admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name])
        return row.fetchone() == (1,)


def test_what_earlier_versions_named_is_listed_and_dropped(tmp_path, scratch_db):
    project = synthetic_project(tmp_path / "synthetic", scratch_db.url())
    snapshot = make_legacy_snapshot(scratch_db.name)
    earlier = leave_replaced(scratch_db.name, legacy=True)

    listed = project.manage("resetdb", "--list-snapshots")

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith(f"  {snapshot}  2026-11-01 08:00:00  ")
    assert lines[0].endswith(" MB  4 table(s), 2 row(s) seeded")
    assert lines[1].startswith(f"  {earlier}  ")
    assert lines[1].endswith(" MB  replaced by a restore or a swap; the next run drops it")
    assert lines[2].startswith(f"1 snapshot(s) of database {scratch_db.name!r} (alias 'default'), ")

    dropped = project.manage("resetdb", "--drop-snapshots")

    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout == (
        f"Dropped 1 snapshot(s) of database {scratch_db.name!r} (alias 'default').\n"
    )
    assert (exists(snapshot), exists(earlier)) == (False, False)


def test_a_database_open_to_connections_is_no_snapshot_whatever_its_name_says(tmp_path, scratch_db):
    # Someone's own database under the prefix, with a comment like a snapshot's.
    project = synthetic_project(tmp_path / "synthetic", scratch_db.url())
    forged = make_legacy_snapshot(scratch_db.name, closed=False)
    try:
        with connect(forged) as conn:
            conn.execute("CREATE TABLE important (v text)")
            conn.execute("INSERT INTO important VALUES ('user data')")

        listed = project.manage("resetdb", "--list-snapshots")
        dropped = project.manage("resetdb", "--drop-snapshots")

        assert listed.returncode == 0, listed.stderr
        assert forged not in listed.stdout
        assert dropped.returncode == 0, dropped.stderr
        assert dropped.stdout == (
            f"Dropped 0 snapshot(s) of database {scratch_db.name!r} (alias 'default').\n"
        )
        with connect(forged) as conn:
            assert conn.execute("SELECT v FROM important").fetchall() == [("user data",)]
    finally:
        drop_database(forged)


def test_the_database_a_restore_replaced_is_dropped_without_another_run(synthetic, scratch_db):
    oid = database_oid(scratch_db.name)

    restored = synthetic.manage("resetdb", "--no-input", "-v", "2")

    assert restored.returncode == 0, restored.stderr
    assert "  snapshot    restored " in restored.stdout
    assert database_oid(scratch_db.name) != oid
    (line,) = [line for line in restored.stdout.splitlines() if "in the background" in line]
    assert line.startswith("  database    dropping the replaced database resetdb_swap_old_")
    wait_for_replaced_dropped(scratch_db.name)


def test_a_restore_does_not_wait_for_the_replaced_database_to_be_dropped(synthetic, scratch_db):
    run = synthetic.start_reset_with_fault("swap:pause", url=scratch_db.url())
    try:
        assert run.stdout is not None
        for line in run.stdout:
            if line.strip() == "PAUSED":
                break
        (earlier,) = replaced_of(scratch_db.name)
        with connect("postgres") as blocker:
            # An open transaction that commented on the replaced database holds a lock
            # that DROP DATABASE waits for; the server ends it if the test is stuck.
            blocker.execute("SET idle_in_transaction_session_timeout = '120s'")
            blocker.execute("BEGIN")
            blocker.execute(
                sql.SQL("COMMENT ON DATABASE {} IS 'held'").format(sql.Identifier(earlier))
            )
            # The run goes on from the swap and ends; the drop waits in its own process.
            rest, errors = run.communicate("", timeout=PATIENCE)

            assert run.returncode == 0, errors
            assert "  snapshot    restored " in rest
            assert exists(earlier)
            # Another test's drop may be running on "postgres" too: this one names earlier.
            wait_for_session("postgres", "django_resetdb drop", "active", running=earlier)
            blocker.execute("ROLLBACK")
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()

    wait_for_replaced_dropped(scratch_db.name)


@pytest.mark.parametrize("gate", ["enabled", "marker"])
def test_listing_and_dropping_snapshots_need_neither_enabled_nor_unprotected(
    synthetic, scratch_db, gate
):
    (kept,) = snapshots_of(scratch_db.name)
    if gate == "enabled":
        synthetic.append("synth/settings.py", 'DJANGO_RESETDB["ENABLED"] = False\n')
    else:
        with connect("postgres") as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} SET django_resetdb.protected = on").format(
                    sql.Identifier(scratch_db.name)
                )
            )

    listed = synthetic.manage("resetdb", "--list-snapshots")
    refused = synthetic.manage("resetdb", "--no-input")
    dropped = synthetic.manage("resetdb", "--drop-snapshots")

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith(f"  {kept}  ")
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.startswith("CommandError: resetdb refused: ")
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout == (
        f"Dropped 1 snapshot(s) and 1 migrated state(s) of database {scratch_db.name!r} "
        "(alias 'default').\n"
    )
    assert snapshots_of(scratch_db.name) == []


@pytest.mark.parametrize("flag", ["--drop-snapshots", "--list-snapshots"])
def test_hosts_still_refuses_listing_and_dropping_snapshots(synthetic, scratch_db, flag):
    before = snapshots_of(scratch_db.name)
    synthetic.append("synth/settings.py", 'DJANGO_RESETDB["HOSTS"] = ["db.example.org"]\n')

    result = synthetic.manage("resetdb", flag)

    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr == (
        f"CommandError: resetdb {flag} refused: host {target_host()!r} of database alias "
        "'default' is not in DJANGO_RESETDB['HOSTS']; add it there to allow resets on that "
        "server.\n"
    )
    assert snapshots_of(scratch_db.name) == before


def name_lock_key(target: str) -> int:
    return zlib.crc32(f"django_resetdb:{target}".encode()) & 0x7FFFFFFF


@contextlib.contextmanager
def holding_name_lock(target: str) -> Iterator[None]:
    """The lock a swap or a snapshot of ``target`` takes on its name, held by a session of
    the test's own while inside."""
    with connect("postgres") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [name_lock_key(target)])
        yield


def wait_for_name_lock_request(target: str) -> None:
    """Until a session waits for the lock on ``target``'s name."""
    deadline = time.monotonic() + PATIENCE
    with connect("postgres") as admin:
        while time.monotonic() < deadline:
            waiting = admin.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid = %s",
                [name_lock_key(target)],
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"nobody asked for the lock on {target!r}'s name")


@pytest.mark.parametrize(
    "setting, who",
    [
        # Nobody holds the target's name lock: the sweep at the run's start drops them.
        ('DJANGO_RESETDB["STRATEGY"] = "in-place"\n', "sweep"),
        # The lock is held when the sweep starts, so it leaves them; the build in a new
        # database, once it holds the lock, drops them.
        ("", "swap"),
    ],
)
def test_what_earlier_runs_and_versions_left_is_swept_by_the_next_run(
    tmp_path, scratch_db, setting, who
):
    project = synthetic_project(tmp_path / "synthetic", scratch_db.url())
    project.append("synth/settings.py", 'DJANGO_RESETDB["SNAPSHOTS"] = 1\n' + setting)
    snapshot = make_legacy_snapshot(scratch_db.name)
    earlier = leave_replaced(scratch_db.name, legacy=True)
    # And one whose drop in the background failed.
    replaced_now = leave_replaced(scratch_db.name)
    # A snapshot's copy in the making, left by a killed run of this version and of an
    # earlier one.
    half_made = [
        keep_name(scratch_db.name),
        f"resetdb_swap_keep_{hashlib.sha256(scratch_db.name.encode()).hexdigest()[:20]}",
    ]
    with connect("postgres") as admin:
        for name in half_made:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        if who == "swap":
            with holding_name_lock(scratch_db.name):
                run = project.start(
                    "manage.py", "resetdb", "--no-input", "-v", "2", env={"PYTHONUNBUFFERED": "1"}
                )
                assert run.stdout is not None
                first = run.stdout.readline()  # the sweep starts right after this line
                assert first.startswith("Target: database "), (first, run.communicate())
                # The swap waits for the lock; the sweep, started before it, tried it.
                wait_for_name_lock_request(scratch_db.name)
                time.sleep(0.5)
                assert run.poll() is None, run.communicate()
            out, err = run.communicate(timeout=PATIENCE)
            returncode = run.returncode
        else:
            result = project.manage("resetdb", "--no-input", "-v", "2")
            out, err, returncode = result.stdout, result.stderr, result.returncode

        assert returncode == 0, err
        lines = out.splitlines()
        # The copies a killed run left half-made are dropped at once, under the name lock;
        # the rest is handed to a process that drops them while the run goes on.
        for name in half_made:
            assert f"  dropped {name}, left by an earlier run" in lines, out
            assert not exists(name)
        for name in (earlier, replaced_now, snapshot):
            assert f"  dropping {name}, left by an earlier run, in the background" in lines, out
        wait_until_gone(lambda: [n for n in (earlier, replaced_now, snapshot) if exists(n)])
        swapped = "  swap        swapped the new database in" in out
        assert swapped == (who == "swap"), out
        # Who dropped them: the swap as it began, before the build; the sweep, whose
        # drops are said once the rebuild is done.
        migrated = next(i for i, line in enumerate(lines) if line.startswith("  migrate "))
        for name in half_made:
            said = lines.index(f"  dropped {name}, left by an earlier run")
            assert (said < migrated) == (who == "swap"), out
        (kept,) = snapshots_of(scratch_db.name)
        assert kept.startswith(f"resetdb_snap_{scratch_db.name}_")
    finally:
        for name in half_made:
            drop_database(name)


def edit_by_hand(name: str, statement: str) -> None:
    """Open database ``name`` to connections, run ``statement`` in it, and close it again,
    the way someone edits a snapshot by hand."""
    identifier = sql.Identifier(name)
    with connect("postgres") as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(identifier))
    with connect(name) as conn:
        conn.execute(statement)
    with connect("postgres") as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(identifier))


def slugs(name: str) -> list[str]:
    with connect(name) as conn:
        rows = conn.execute("SELECT slug FROM catalog_category ORDER BY slug").fetchall()
    return [slug for (slug,) in rows]


def test_a_snapshot_edited_by_hand_is_neither_restored_nor_replaced(cached, scratch_db):
    edit_by_hand(cached.kept, "INSERT INTO catalog_category (name, slug) VALUES ('Hand', 'hand')")
    oid = database_oid(cached.kept)

    dry = cached.manage("resetdb", "--dry-run", url=scratch_db.url())
    result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert dry.returncode == 0, dry.stderr
    changed = f"  snapshot    not restored: {cached.kept} was changed after it was kept ("
    assert changed in dry.stdout
    assert f"  snapshot    none kept: {cached.kept} is left as it is" in dry.stdout
    assert result.returncode == 0, result.stderr
    assert changed in result.stdout
    assert "restored" not in result.stdout.replace("not restored", "")
    assert f"  snapshot    not kept: database {cached.kept!r}, which this one" in result.stdout
    # Rebuilt: the seeds' rows, not the hand-made one nor the one added since.
    assert "hand" not in slugs(scratch_db.name)
    assert scratch_db.query("SELECT count(*) FROM catalog_category WHERE slug = 'maps'") == [(0,)]
    # The edited snapshot is left as it was, under its name, and the listing says why: the
    # same database (its size is no measure: the server's own files in it may come and
    # go), with the hand-made row below.
    assert snapshots_of(scratch_db.name) == [cached.kept]
    assert database_oid(cached.kept) == oid
    listed = cached.manage("resetdb", "--list-snapshots", url=scratch_db.url())
    assert listed.returncode == 0, listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if cached.kept in line]
    assert line.endswith("31 row(s) seeded; changed after it was kept, not used")
    assert "hand" in slugs_open(cached.kept)

    # Asked explicitly, --drop-snapshots drops it; the next reset keeps a new one.
    dropped = cached.manage("resetdb", "--drop-snapshots", url=scratch_db.url())
    again = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert dropped.returncode == 0, dropped.stderr
    assert again.returncode == 0, again.stderr
    assert f"  snapshot    kept {cached.kept} in " in again.stdout


def slugs_open(name: str) -> list[str]:
    """The slugs of a closed database, read by opening it for a moment."""
    identifier = sql.Identifier(name)
    with connect("postgres") as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(identifier))
    try:
        return slugs(name)
    finally:
        with connect("postgres") as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(identifier)
            )


def test_a_migrated_state_edited_by_hand_is_not_started_from(cached, scratch_db):
    (state,) = states_of(scratch_db.name)
    edit_by_hand(state, "INSERT INTO catalog_category (name, slug) VALUES ('Hand', 'hand')")
    add_nickname(cached)  # a model change: the build would start from the state

    result = cached.manage("resetdb", "--no-input", "-v", "2", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert "restore the state after" not in result.stdout
    assert "hand" not in slugs(scratch_db.name)
    assert state in states_of(scratch_db.name)


def test_a_snapshot_left_open_to_connections_is_not_replaced(cached, scratch_db):
    identifier = sql.Identifier(cached.kept)
    with connect("postgres") as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(identifier))
    try:
        with connect(cached.kept) as looking:  # someone reading it, connected throughout
            result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

            assert result.returncode == 0, result.stderr
            assert (
                f"  snapshot    not kept: database {cached.kept!r}, which this one would "
                "replace, was opened to connections: it is left as it is." in result.stdout
            )
            assert looking.execute("SELECT count(*) FROM catalog_category").fetchone() == (
                len(slugs(scratch_db.name)),
            )
    finally:
        drop_database(cached.kept)


# Objects a copy of the whole database (a snapshot) would bring back as they were, and a
# new database would not have: of no schema; in another schema but not tables, functions
# or types; made in pg_catalog; privileges changed on what initdb made.
ELSEWHERE = {
    "cast": (["CREATE CAST (uuid AS int8) WITH INOUT"], "1 cast(s)"),
    "server": (
        [
            "CREATE FOREIGN DATA WRAPPER t_fdw",
            "CREATE SERVER t_srv FOREIGN DATA WRAPPER t_fdw",
            "CREATE USER MAPPING FOR CURRENT_USER SERVER t_srv OPTIONS (user 'u')",
        ],
        "1 foreign server(s), 1 foreign-data wrapper(s), 1 user mapping(s)",
    ),
    "access method": (
        ["CREATE ACCESS METHOD t_am TYPE TABLE HANDLER heap_tableam_handler"],
        "1 access method(s)",
    ),
    "collation": (
        ["CREATE SCHEMA extra", "CREATE COLLATION extra.t_coll (locale = 'C')"],
        "1 object(s) in schema 'extra'",
    ),
    "text search": (
        ["CREATE SCHEMA extra", "CREATE TEXT SEARCH CONFIGURATION extra.t_cfg (COPY = english)"],
        "1 object(s) in schema 'extra'",
    ),
    "pg_catalog function": (
        ["CREATE FUNCTION pg_catalog.t_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'"],
        "1 object(s) in schema 'pg_catalog'",
    ),
    "revoke": (
        ["REVOKE EXECUTE ON FUNCTION pg_catalog.now() FROM PUBLIC"],
        "changed privileges on 1 object(s) of pg_catalog",
    ),
}

# Read over a connection of its own: each kind's objects, and the privileges of now().
PRESENT = (
    "SELECT (SELECT count(*) FROM pg_cast WHERE oid >= 16384 AND castsource = 'uuid'::regtype), "
    "(SELECT count(*) FROM pg_foreign_server), (SELECT count(*) FROM pg_user_mappings), "
    "(SELECT count(*) FROM pg_am WHERE amname = 't_am'), "
    "(SELECT count(*) FROM pg_collation WHERE collname = 't_coll'), "
    "(SELECT count(*) FROM pg_ts_config WHERE cfgname = 't_cfg'), "
    "(SELECT count(*) FROM pg_proc WHERE proname = 't_fn'), "
    "(SELECT proacl::text FROM pg_proc WHERE oid = 'pg_catalog.now()'::regprocedure)"
)


@pytest.mark.parametrize("kind", sorted(ELSEWHERE))
def test_what_a_copy_would_lose_turns_the_cache_off_and_survives(cached, scratch_db, kind):
    statements, named = ELSEWHERE[kind]
    plain = scratch_db.query(PRESENT)
    with scratch_db.connect() as conn:
        for statement in statements:
            conn.execute(statement)
    oid = database_oid(scratch_db.name)
    before = scratch_db.query(PRESENT)
    assert before != plain

    result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert (
        f"  snapshot    not used: a copy of the whole database would also bring back {named} "
        "outside DJANGO_RESETDB['SCHEMAS']"
    ) in result.stdout.splitlines()
    # Reset in place: the same database, with them all.
    assert database_oid(scratch_db.name) == oid
    assert scratch_db.query(PRESENT) == before
    assert snapshots_of(scratch_db.name) == [cached.kept]
