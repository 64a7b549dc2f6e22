"""Resets built in a new database and swapped in: what a project too large for one
transaction's locks gets, and what ``STRATEGY = "new-database"`` asks for. All or
nothing: the target keeps its OID and every row until the swap."""

from __future__ import annotations

import signal

import pytest
from psycopg import sql

from bench.synthetic import Shape, generate
from django_resetdb.snapshots import swap_names
from tests.conftest import (
    ProjectCopy,
    connect,
    database_oid,
    database_state,
    sessions_on,
    swaps_in_progress,
    target_user,
    wait_for_replaced_dropped,
    wait_for_session,
)
from tests.test_resetdb import FAST_SETTINGS, add_row_by_hand, rebuild_once
from tests.test_resetmigrations import ACCOUNT_0001, add_nickname

NEW_DATABASE = FAST_SETTINGS + 'DJANGO_RESETDB["STRATEGY"] = "new-database"\n'


def lock_capacity() -> int:
    with connect("postgres") as admin:
        row = admin.execute(
            "SELECT current_setting('max_locks_per_transaction')::int * "
            "(current_setting('max_connections')::int "
            "+ current_setting('max_prepared_transactions')::int)"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.whole_server
def test_a_project_of_1100_tables_resets_twice_at_default_settings(tmp_path, scratch_db):
    if lock_capacity() > 64 * 100:
        pytest.skip("the server's lock table is larger than PostgreSQL's default")
    shape = Shape(apps=85, models=10, rows=2)
    generate(tmp_path / "big", shape)
    project = ProjectCopy(tmp_path / "big", scratch_db.url(), settings="synth.settings")

    first = project.manage("resetdb", "--no-input", timeout=300)

    assert first.returncode == 0, first.stdout + first.stderr
    project.edit(
        "app42/models.py",
        "class Model00(models.Model):\n",
        "class Model00(models.Model):\n    extra = models.IntegerField(null=True)\n",
    )

    second = project.manage("resetdb", "--no-input", timeout=300)

    assert second.returncode == 0, second.stdout + second.stderr
    assert (
        "  database    building in a new database, to swap it in at the end: a reset in place "
        in (second.stdout)
    )
    assert "  migrations  regenerated app42 (1 file(s)) in " in second.stdout
    tables = scratch_db.query(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'app%%'"
    )
    assert tables == [(shape.tables,)] == [(1105,)]
    assert scratch_db.query(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'app42_model00' AND column_name = 'extra'"
    ) == [(1,)]
    assert scratch_db.query("SELECT count(*) FROM app84_model09") == [(2,)]
    assert swaps_in_progress(scratch_db.name) == []
    wait_for_replaced_dropped(scratch_db.name)


@pytest.fixture
def aside(project: ProjectCopy, scratch_db):
    """A copy of the demo, rebuilt once, that builds in a new database every time."""
    rebuild_once(project, scratch_db, NEW_DATABASE)
    add_row_by_hand(scratch_db)
    return project


def test_a_model_change_is_built_aside_and_swapped_in(aside, scratch_db):
    with connect("postgres") as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET work_mem TO '8MB'").format(
                sql.Identifier(scratch_db.name)
            )
        )
    oid = database_oid(scratch_db.name)
    add_nickname(aside)

    result = aside.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == (
        "  database    building in a new database, to swap it in at the end: "
        "DJANGO_RESETDB['STRATEGY'] is 'new-database'"
    )
    # The last step is the swap, perhaps followed by a wait for the background drop.
    steps = [line for line in lines[-3:-1] if not line.startswith("  snapshot    waited ")]
    assert steps[-1].startswith("  swap        swapped the new database in (")
    assert database_oid(scratch_db.name) != oid
    assert "nickname" in aside.path(ACCOUNT_0001).read_text()
    assert scratch_db.query(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'account_user' AND column_name = 'nickname'"
    ) == [(1,)]
    assert scratch_db.query("SELECT count(*) FROM catalog_category WHERE slug = 'maps'") == [(0,)]
    assert scratch_db.query("SELECT count(*) FROM sales_ticket") == [(3,)]
    assert scratch_db.query("SHOW work_mem") == [("8MB",)]


def test_an_idle_session_is_ended_and_the_new_database_swapped_in(aside, scratch_db):
    oid = database_oid(scratch_db.name)
    add_nickname(aside)
    with scratch_db.connect(application_name="psql") as other:
        pid = other.info.backend_pid
        client = sessions_on(scratch_db.name)[pid][2]

        result = aside.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("  database    building in a new database, to swap it in at the ")
    ended = lines.index(
        f"  sessions    ended 1 idle session on {scratch_db.name!r} (pid {pid}, user "
        f"{target_user()!r}, application 'psql', {client})"
    )
    assert lines[ended + 1].startswith("  swap        swapped the new database in (")
    assert "not built" not in result.stdout
    assert pid not in sessions_on(scratch_db.name)
    assert database_oid(scratch_db.name) != oid
    assert scratch_db.query("SELECT count(*) FROM catalog_category WHERE slug = 'maps'") == [(0,)]


def test_a_session_in_a_transaction_means_a_reset_in_place_said_once(aside, scratch_db):
    oid = database_oid(scratch_db.name)
    add_nickname(aside)
    with scratch_db.connect(application_name="report") as other:
        other.execute("BEGIN")
        other.execute("SELECT 1")
        pid = wait_for_session(scratch_db.name, "report", "idle in transaction")

        result = aside.manage("resetdb", "--no-input", url=scratch_db.url())

        assert result.returncode == 0, result.stderr
        assert other.execute("SELECT 2").fetchone() == (2,)
        other.execute("ROLLBACK")

    lines = result.stdout.splitlines()
    assert lines[1] == (
        f"  database    not built in a new one: 1 session on {scratch_db.name!r} in a "
        f"transaction or a query (pid {pid}, user {target_user()!r}, application 'report', "
        "state 'idle in transaction', query 'SELECT 1'), which --terminate-blockers ends; "
        "resetting in place"
    )
    assert not [line for line in lines if "building in a new database" in line]
    assert "  schema      dropped 18 table(s) of public, " in result.stdout
    assert database_oid(scratch_db.name) == oid
    assert scratch_db.query("SELECT count(*) FROM catalog_category WHERE slug = 'maps'") == [(0,)]


@pytest.mark.parametrize("kind", ["error", "interrupt"])
@pytest.mark.parametrize("point", ["schema", "migrate", "seed:sales", "post_reset"])
def test_a_failure_while_building_aside_changes_nothing(aside, scratch_db, point, kind):
    add_nickname(aside)
    oid = database_oid(scratch_db.name)
    before = database_state(scratch_db), aside.tree()

    result = aside.reset_with_fault(f"{point}:{kind}", url=scratch_db.url())

    assert result.returncode == (130 if kind == "interrupt" else 1), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert (database_oid(scratch_db.name), (database_state(scratch_db), aside.tree())) == (
        oid,
        before,
    )
    assert swaps_in_progress(scratch_db.name) == []


def test_killed_while_building_aside_changes_nothing(aside, scratch_db):
    add_nickname(aside)
    oid = database_oid(scratch_db.name)
    before = database_state(scratch_db)
    process = aside.start_reset_with_fault("seed:sales:pause", url=scratch_db.url())
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == "PAUSED":
                break
        assert swaps_in_progress(scratch_db.name) == [swap_names(scratch_db.name)[0]]
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()

    assert (database_oid(scratch_db.name), database_state(scratch_db)) == (oid, before)
    restored = aside.manage("resetmigrations", "--restore")
    assert restored.returncode == 0, restored.stderr

    again = aside.manage("resetdb", "--no-input", url=scratch_db.url())

    assert again.returncode == 0, again.stderr
    assert swaps_in_progress(scratch_db.name) == []
    assert database_oid(scratch_db.name) != oid


def test_asking_for_a_new_database_without_createdb_is_refused(tmp_path, scratch_db, scratch_role):
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
    project.append("synth/settings.py", 'DJANGO_RESETDB["STRATEGY"] = "new-database"\n')

    result = project.manage("resetdb", "--no-input")

    assert result.returncode == 1
    assert result.stderr == (
        "CommandError: Cannot build in a new database as DJANGO_RESETDB['STRATEGY'] asks: "
        f"role {scratch_role!r} cannot create databases (CREATEDB); nothing was changed.\n"
    )
    assert scratch_db.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_dry_run_shows_the_build_aside_and_changes_nothing(aside, scratch_db):
    add_nickname(aside)
    oid = database_oid(scratch_db.name)
    before = database_state(scratch_db), aside.tree()

    result = aside.manage("resetdb", "--dry-run", "--sql", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index(f"SQL on the maintenance database, for {scratch_db.name!r}:")
    new = swap_names(scratch_db.name)[0]
    assert lines[start + 1].startswith(f'  CREATE DATABASE "{new}" TEMPLATE template0 OWNER ')
    prepare = lines.index("SQL in the new database, each step committing on its own:")
    assert lines[prepare + 1 : prepare + 3] == [
        '  DROP SCHEMA "public";',
        '  CREATE SCHEMA "public";',
    ]
    assert "  -- migrate: account.0001_initial" in lines
    swap = lines.index(f"SQL on the maintenance database, to swap it in for {scratch_db.name!r}:")
    assert lines[swap + 1].startswith(
        f'  ALTER DATABASE "{scratch_db.name}" RENAME TO "resetdb_swap_old_'
    )
    assert lines[swap + 2] == f'  ALTER DATABASE "{new}" RENAME TO "{scratch_db.name}";'
    assert lines[-1] == "Dry run: nothing was changed."
    assert (database_oid(scratch_db.name), (database_state(scratch_db), aside.tree())) == (
        oid,
        before,
    )
    assert swaps_in_progress(scratch_db.name) == []
