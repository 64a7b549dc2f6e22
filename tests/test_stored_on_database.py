"""What a DBA stores on a database (the protected marker, settings, comment, grants,
connection limit) is on the database after a reset, and a marker stored while a reset
runs stops it before its commit or swap: read again just before, never only at the start.
"""

# The fixtures come from the modules that define them: their names are arguments here.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from psycopg import sql

from tests.conftest import ProjectCopy, ScratchDatabase, connect, database_state, snapshots_of
from tests.test_resetdb import FAST_HASHER, built, prepare, status  # noqa: F401 (fixtures: built)
from tests.test_resetmigrations import ACCOUNT_0001, add_nickname
from tests.test_snapshots import cached  # noqa: F401 (fixtures)

# A seed that runs a statement of the test's on the maintenance database, over a
# connection of its own, while the reset builds: a DBA acting meanwhile.
DBA_SEED = """
import os

import psycopg

from testproject.database import parse_database_url


def act(database, report):
    entry = parse_database_url(os.environ["DATABASE_URL"])
    with psycopg.connect(host=entry["HOST"], port=entry["PORT"] or None,
                         user=entry["USER"] or None, dbname="postgres", autocommit=True) as conn:
        conn.execute(os.environ["RESETDB_TEST_DBA"])
"""


def with_dba_seed(project: ProjectCopy, strategy: str) -> None:
    project.append("dba_seeds.py", DBA_SEED)
    project.append(
        "testproject/settings.py",
        f'DJANGO_RESETDB["STRATEGY"] = {strategy!r}\n'
        'DJANGO_RESETDB["SEEDS"] = [*DJANGO_RESETDB["SEEDS"], "dba_seeds.act"]\n',
    )


def stored(db: ScratchDatabase) -> list[tuple[object, ...]]:
    """What pg_db_role_setting holds for the database, read on the maintenance database."""
    with connect("postgres") as admin:
        return admin.execute(
            "SELECT setrole, setconfig FROM pg_db_role_setting s "
            "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s ORDER BY 1",
            [db.name],
        ).fetchall()


def statement(template: str, db: ScratchDatabase) -> str:
    with connect("postgres") as admin:
        return sql.SQL(template).format(sql.Identifier(db.name)).as_string(admin)


def left_over_swaps(db: ScratchDatabase) -> list[str]:
    with connect("postgres") as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'resetdb_swap_new_%%' "
            "AND datname LIKE %s",
            [f"%{db.name}%"],
        ).fetchall()
    return [name for (name,) in rows]


@pytest.mark.parametrize("strategy", ["new-database", "in-place"])
def test_a_marker_stored_while_the_reset_runs_stops_it_before_the_commit(
    built, scratch_db, strategy
):
    with_dba_seed(built, strategy)
    add_nickname(built)
    before = database_state(scratch_db)
    files = built.migration_files()
    mark = statement("ALTER DATABASE {} SET django_resetdb.protected = on", scratch_db)

    result = built.manage(
        "resetdb", "--no-input", url=scratch_db.url(), env={"RESETDB_TEST_DBA": mark}
    )

    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.startswith(
        f"CommandError: resetdb refused: database {scratch_db.name!r} is protected by the "
        "PostgreSQL setting django_resetdb.protected = 'on' stored for "
    )
    assert "the migration files were put back from backup" in result.stderr
    # Untouched, the marker on it, the files as they were, nothing half-made left.
    assert database_state(scratch_db) == before
    assert stored(scratch_db) == [(0, ["django_resetdb.protected=on"])]
    assert built.migration_files() == files
    assert left_over_swaps(scratch_db) == []


def test_a_comment_stored_while_a_new_database_is_built_stays_on_the_database(built, scratch_db):
    # The new database was given the target's properties as they were when it was made:
    # the swap would leave the comment on the replaced database. The run resets in place
    # instead, which keeps the database and all that is stored on it.
    with_dba_seed(built, "new-database")
    add_nickname(built)
    comment = statement("COMMENT ON DATABASE {} IS 'the shop''s dev copy'", scratch_db)

    result = built.manage(
        "resetdb", "--no-input", url=scratch_db.url(), env={"RESETDB_TEST_DBA": comment}
    )

    assert result.returncode == 0, result.stderr
    assert (
        "  database    the new database was dropped, not swapped in: what is stored on "
        f"{scratch_db.name!r} (settings, comment, grants, connection limit) changed while "
        "the new database was made; resetting in place"
    ) in result.stdout
    with connect("postgres") as admin:
        assert admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [scratch_db.name],
        ).fetchone() == ("the shop's dev copy",)
    with scratch_db.connect() as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'account_user'"
        ).fetchall()
    assert ("nickname",) in columns
    assert "nickname" in built.path(ACCOUNT_0001).read_text()
    assert left_over_swaps(scratch_db) == []
    assert snapshots_of(scratch_db.name) is not None


def test_a_marker_set_to_off_lets_a_role_that_may_not_set_it_reset_and_restore(
    scratch_role, project, scratch_db
):
    # (The role first: it is dropped last, after the database and the snapshots it owns.)
    # Only a superuser may store a placeholder parameter such as the marker: the role's
    # new database could not carry it, and a swap would have left it on the replaced one.
    # The run resets in place instead, which keeps it, whatever it restores or rebuilds.
    with connect("postgres") as admin:
        role, name = sql.Identifier(scratch_role), sql.Identifier(scratch_db.name)
        admin.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(role))
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(name, role))
        admin.execute(sql.SQL("ALTER DATABASE {} SET django_resetdb.protected = off").format(name))
    prepare(project, FAST_HASHER)
    url = scratch_db.url(user=scratch_role)

    first = project.manage("resetdb", "--no-input", url=url)
    add_row = "INSERT INTO catalog_category (name, slug) VALUES ('Maps', 'maps')"
    with scratch_db.connect() as conn:
        conn.execute(add_row)
    second = project.manage("resetdb", "--no-input", url=url)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "may not give the new database what is stored on" in first.stdout + second.stdout
    assert stored(scratch_db) == [(0, ["django_resetdb.protected=off"])]
    assert scratch_db.query("SELECT count(*) FROM catalog_category WHERE slug = 'maps'") == [(0,)]
    assert left_over_swaps(scratch_db) == []


@pytest.mark.parametrize(
    "store",
    [
        "ALTER DATABASE {} SET default_text_search_config = 'pg_catalog.simple'",
        "ALTER ROLE CURRENT_USER IN DATABASE {} SET search_path = public, pg_catalog",
    ],
    ids=["database", "role-in-database"],
)
def test_a_setting_stored_since_the_snapshot_was_kept_makes_the_run_rebuild(
    cached, scratch_db, store
):
    # What a seed writes may follow such a setting (to_tsvector and the text search
    # configuration): the snapshot kept before it is not the database a rebuild leaves.
    with connect("postgres") as admin:
        admin.execute(statement(store, scratch_db))
    try:
        result = cached.manage("resetdb", "--no-input", url=scratch_db.url())
        again = cached.manage("resetdb", "--no-input", url=scratch_db.url())
    finally:
        with connect("postgres") as admin:
            admin.execute(statement("ALTER ROLE CURRENT_USER IN DATABASE {} RESET ALL", scratch_db))

    assert result.returncode == 0, result.stderr
    assert "  snapshot    restored" not in result.stdout
    assert "  seed        " in result.stdout
    # The snapshot kept under the new setting is used by the next run.
    assert again.returncode == 0, again.stderr
    assert "  snapshot    restored" in again.stdout


# A seed that runs the test's statements on the database being reset itself, over a
# connection of its own, while the reset builds a new one: someone working in it.
TARGET_SEED = """
import os

import psycopg

from testproject.database import parse_database_url


def act(database, report):
    done = os.environ["RESETDB_TEST_DONE"]
    if os.path.exists(done):  # once: the run may seed again, in place
        return
    open(done, "w").close()
    entry = parse_database_url(os.environ["DATABASE_URL"])
    with psycopg.connect(host=entry["HOST"], port=entry["PORT"] or None,
                         user=entry["USER"] or None, dbname=entry["NAME"], autocommit=True) as conn:
        conn.execute(os.environ["RESETDB_TEST_TARGET"])
"""


@pytest.mark.parametrize(
    "made, kept",
    [
        ("CREATE SCHEMA audit", "SELECT 'IMPORTANT' FROM pg_namespace WHERE nspname = 'audit'"),
        ("CREATE PUBLICATION audit", "SELECT count(*) > 0 FROM pg_publication"),
        (
            "SELECT lo_from_bytea(0, 'IMPORTANT')",
            "SELECT count(*) > 0 FROM pg_largeobject_metadata",
        ),
        (
            "COMMENT ON SCHEMA public IS 'IMPORTANT'",
            "SELECT obj_description('public'::regnamespace)",
        ),
    ],
    ids=["schema", "publication", "large object", "schema comment"],
)
def test_what_is_made_in_the_database_while_a_new_one_is_built_is_not_swapped_away(
    built, scratch_db, made, kept, tmp_path
):
    built.append("target_seeds.py", TARGET_SEED)
    built.append(
        "testproject/settings.py",
        'DJANGO_RESETDB["STRATEGY"] = "new-database"\n'
        'DJANGO_RESETDB["SEEDS"] = [*DJANGO_RESETDB["SEEDS"], "target_seeds.act"]\n',
    )
    add_nickname(built)

    result = built.manage(
        "resetdb", "--no-input", url=scratch_db.url(),
        env={"RESETDB_TEST_TARGET": made, "RESETDB_TEST_DONE": str(tmp_path / "done")},
    )  # fmt: skip

    # The new database would not have it: the swap is not made, and the run resets in
    # place, which leaves what is outside the reset schemas as it is.
    assert result.returncode == 0, result.stderr
    assert (
        "  database    the new database was dropped, not swapped in: what "
        f"{scratch_db.name!r} holds around the reset schemas "
    ) in result.stdout
    assert scratch_db.query(kept) in ([("IMPORTANT",)], [(True,)]), result.stdout
    assert left_over_swaps(scratch_db) == []
