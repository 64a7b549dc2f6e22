"""``resetdb`` on settings that name a database that does not exist yet: the gates run on
the server, then the database is created and built as usual; a refusal, a dry run or a
role that may not create databases leaves no database behind."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from bench.synthetic import Shape, generate
from tests.conftest import (
    PATIENCE,
    ProjectCopy,
    connect,
    database_url,
    drop_database,
    replaced_of,
    snapshots_of,
    states_of,
    target_host,
    target_port,
    target_user,
)

SHAPE = Shape(apps=2, models=3, rows=2)


@pytest.fixture
def missing() -> Iterator[str]:
    """The name of a database that does not exist; whatever is made for it is dropped."""
    name = f"resetdb_cdb_{uuid.uuid4().hex[:12]}"
    yield name
    for database in [name, *snapshots_of(name), *states_of(name), *replaced_of(name)]:
        drop_database(database)


@pytest.fixture
def synthetic(tmp_path: Path, missing: str) -> ProjectCopy:
    """A small generated project whose settings name the missing database."""
    generate(tmp_path / "synthetic", SHAPE)
    return ProjectCopy(tmp_path / "synthetic", database_url(missing), settings="synth.settings")


def database_row(name: str) -> list[tuple[str, str]]:
    """Owner and encoding of database ``name``, from pg_database; [] when there is none."""
    with connect("postgres") as admin:
        return admin.execute(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding) "
            "FROM pg_database WHERE datname = %s",
            [name],
        ).fetchall()


def template_encoding() -> str:
    (encoding,) = database_row("template1")[0][1:]
    return encoding


def query(name: str, text: str) -> list[tuple[object, ...]]:
    with connect(name) as conn:
        return conn.execute(text).fetchall()


def test_a_missing_database_is_created_built_and_restored_the_next_time(synthetic, missing):
    result = synthetic.manage("resetdb", "--no-input")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"Target: database {missing!r} (alias 'default') on {target_host()}:{target_port()} "
        f"as {target_user()!r}, schema(s) public: the database does not exist yet."
    )
    assert re.fullmatch(
        rf"  database    created '{missing}' \(owner '{target_user()}', encoding "
        rf"{template_encoding()}, template template1\) in \d+\.\d\d s",
        lines[1],
    ), lines[1]
    # Built in a new database: the build cache keeps the state its migrations leave.
    assert lines[2] == (
        "  database    building in a second new database, to swap it in for the empty one at "
        "the end: to keep its migrated state in the build cache"
    )
    assert lines[3].startswith("  migrations  regenerated app00, app01 (2 file(s)) in ")
    # Nothing of the user's was dropped: no schema line.
    assert not [line for line in lines if line.startswith("  schema      ")]
    assert len(states_of(missing)) == 1
    assert lines[-1].startswith(f"Rebuilt database {missing!r} (alias 'default'): 16 table(s), ")
    assert database_row(missing) == [(target_user(), template_encoding())]
    assert query(
        missing, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename ~ '^app'"
    ) == [(SHAPE.tables,)]
    applied = "SELECT app, name FROM django_migrations WHERE app ~ '^app' ORDER BY 1"
    assert query(missing, applied) == [("app00", "0001_initial"), ("app01", "0001_initial")]
    assert query(missing, "SELECT count(*) FROM app01_model02") == [(SHAPE.rows,)]
    assert len(snapshots_of(missing)) == 1

    again = synthetic.manage("resetdb", "--no-input")

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].endswith(": 16 table(s), 0 other session(s).")
    assert f"  snapshot    restored {snapshots_of(missing)[0]} (kept " in again.stdout
    assert "created" not in again.stdout
    assert again.stdout.splitlines()[-1].startswith(
        f"Rebuilt database {missing!r} (alias 'default') from its snapshot: 16 table(s), "
    )


def test_two_runs_at_once_create_the_database_once_and_both_build_it(synthetic, missing):
    synthetic.append("synth/settings.py", 'DJANGO_RESETDB["LOCK_TIMEOUT"] = 120\n')
    generated = synthetic.manage("resetmigrations", "--no-input")  # no run regenerates then
    assert generated.returncode == 0, generated.stderr
    runs = [synthetic.start("manage.py", "resetdb", "--no-input", "--keep-migrations")]
    runs.append(synthetic.start("manage.py", "resetdb", "--no-input", "--keep-migrations"))

    outputs = [run.communicate(timeout=PATIENCE) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    created = [out for out, _ in outputs if "  database    created " in out]
    assert len(created) == 1, outputs
    assert database_row(missing) == [(target_user(), template_encoding())]
    assert query(missing, "SELECT count(*) FROM django_migrations WHERE app ~ '^app'") == [(2,)]


def test_a_role_with_createdb_owns_the_database_it_creates(synthetic, missing, scratch_role):
    with connect("postgres") as admin:
        admin.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(scratch_role)))

    result = synthetic.manage(
        "resetdb", "--no-input", "--no-snapshot", url=database_url(missing, user=scratch_role)
    )

    assert result.returncode == 0, result.stderr
    assert f"  database    created {missing!r} (owner {scratch_role!r}, " in result.stdout
    assert database_row(missing) == [(scratch_role, template_encoding())]
    assert query(missing, "SELECT count(*) FROM django_migrations WHERE app ~ '^app'") == [(2,)]


def test_dry_run_says_it_would_create_the_database_and_creates_nothing(synthetic, missing):
    files = synthetic.tree()

    result = synthetic.manage("resetdb", "--dry-run", "--sql")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[7:9] == [
        "  tables    none: the database does not exist yet",
        "  sessions  none",
    ]
    assert lines[10] == (
        f"  database    create {missing!r} (owner {target_user()!r}, encoding "
        f"{template_encoding()}, template template1)"
    )
    start = lines.index(f"SQL on the maintenance database, for {missing!r}:")
    assert lines[start + 1 : start + 4] == [
        f'  CREATE DATABASE "{missing}" OWNER "{target_user()}" TEMPLATE "template1";',
        f"SQL for database {missing!r} (alias 'default'), once created:",
        "  BEGIN;",
    ]
    assert "  -- migrate: app00.0001_initial" in lines
    assert lines[-2:] == ["  COMMIT;", "Dry run: nothing was changed."]
    assert database_row(missing) == []
    assert synthetic.tree() == files


def test_the_prompt_says_the_database_will_be_created_and_a_wrong_answer_creates_nothing(
    synthetic, missing
):
    result = synthetic.manage("resetdb", input="nope\n")

    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert lines[0] == "resetdb will create this database and build it:"
    assert lines[4:9] == [
        f"  database  {missing}",
        f"  user      {target_user()}",
        "  schemas   public",
        "  tables    none: the database does not exist yet",
        "  sessions  none",
    ]
    assert lines[9] == (
        f"  database    create {missing!r} (owner {target_user()!r}, encoding "
        f"{template_encoding()}, template template1)"
    )
    assert result.stderr == (
        f"CommandError: resetdb refused: the answer 'nope' is not the database name "
        f"{missing!r}; type the name exactly, or pass --no-input to skip the prompt.\n"
    )
    assert database_row(missing) == []


def test_a_host_not_in_hosts_is_refused_and_nothing_is_created(synthetic, missing):
    synthetic.append("synth/settings.py", 'DJANGO_RESETDB["HOSTS"] = ["db.example.com"]\n')

    result = synthetic.manage("resetdb", "--no-input")

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: resetdb refused: host {target_host()!r} of database alias 'default' is "
        "not in DJANGO_RESETDB['HOSTS']; add it there to allow resets on that server.\n"
    )
    assert database_row(missing) == []


def test_enabled_false_is_refused_and_nothing_is_created(synthetic, missing):
    synthetic.append("synth/settings.py", 'DJANGO_RESETDB["ENABLED"] = False\n')

    result = synthetic.manage("resetdb", "--no-input")

    assert result.returncode == 3
    assert result.stderr == (
        "CommandError: resetdb refused: DJANGO_RESETDB['ENABLED'] is False for this project "
        "(it defaults to DEBUG); set it to True in a development or CI settings module to "
        "allow resets.\n"
    )
    assert database_row(missing) == []


def test_the_marker_stored_for_the_role_is_honoured_and_nothing_is_created(
    synthetic, missing, scratch_role
):
    role = sql.Identifier(scratch_role)
    with connect("postgres") as admin:
        admin.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(role))
        admin.execute(sql.SQL("ALTER ROLE {} SET django_resetdb.protected = on").format(role))

    result = synthetic.manage("resetdb", "--no-input", url=database_url(missing, user=scratch_role))

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: resetdb refused: database {missing!r} is protected by the PostgreSQL "
        f"setting django_resetdb.protected = 'on' stored for role {scratch_role!r}; only its "
        "removal (ALTER DATABASE/ROLE ... RESET django_resetdb.protected) allows resets.\n"
    )
    assert database_row(missing) == []


def test_a_role_without_createdb_is_told_what_to_run_and_nothing_is_created(
    synthetic, missing, scratch_role
):
    files = synthetic.tree()

    result = synthetic.manage("resetdb", "--no-input", url=database_url(missing, user=scratch_role))

    assert result.returncode == 1
    assert result.stderr == (
        f"CommandError: Database {missing!r} does not exist and role {scratch_role!r} may not "
        f"create it (it has no CREATEDB); create it as a superuser with 'createdb -O "
        f"{scratch_role} {missing}', or let the role create databases with 'ALTER ROLE "
        f'"{scratch_role}" CREATEDB\', then run resetdb again.\n'
    )
    assert database_row(missing) == []
    assert synthetic.tree() == files


def test_a_failed_build_drops_the_database_it_created(synthetic, missing):
    synthetic.append(
        "synth/boom.py", "def fail(database, report):\n    raise ValueError('no such curator')\n"
    )
    seeds = 'DJANGO_RESETDB["SEEDS"] = ["app00", "synth.boom.fail"]\n'
    synthetic.append("synth/settings.py", seeds)

    result = synthetic.manage("resetdb", "--no-input")

    assert result.returncode == 1
    assert result.stderr.startswith(
        "CommandError: Seed 'synth.boom.fail' failed: ValueError: no such curator; "
    )
    assert result.stderr.endswith(
        f"; database {missing!r}, created for this reset, was dropped again.\n"
    ), result.stderr
    assert database_row(missing) == []
    assert snapshots_of(missing) == []


def _answer_when_asked(run: subprocess.Popen[str]) -> str:
    """What the run printed up to its confirmation prompt."""
    assert run.stdout is not None
    seen = ""
    while not seen.endswith(" to continue: "):
        char = run.stdout.read(1)
        assert char, seen
        seen += char
    return seen


@pytest.mark.parametrize("what", ["tables", "marker"])
def test_a_database_made_by_someone_else_while_asking_is_gated_again(synthetic, missing, what):
    # The answer confirmed a database that did not exist; what is there now is not that.
    generated = synthetic.manage("resetmigrations", "--no-input")
    assert generated.returncode == 0, generated.stderr
    run = synthetic.start("manage.py", "resetdb", "--keep-migrations", "--no-snapshot")
    asked = _answer_when_asked(run)
    assert "  tables    none: the database does not exist yet" in asked
    name = sql.Identifier(missing)
    with connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
        if what == "marker":
            admin.execute(
                sql.SQL("ALTER DATABASE {} SET django_resetdb.protected = on").format(name)
            )
    if what == "tables":
        with connect(missing) as conn:
            conn.execute("CREATE TABLE precious (id int)")
            conn.execute("INSERT INTO precious VALUES (1), (2)")

    out, err = run.communicate(f"{missing}\n", timeout=PATIENCE)

    if what == "tables":
        assert run.returncode == 1, (out, err)
        assert err == (
            f"CommandError: Database {missing!r} was created by another session while this "
            "run was about to create it, and it holds 1 table(s) now; nothing was changed. "
            "Run resetdb again to reset it as it is.\n"
        )
        assert query(missing, "SELECT id FROM precious ORDER BY id") == [(1,), (2,)]
    else:
        assert run.returncode == 3, (out, err)
        assert err == (
            f"CommandError: resetdb refused: database {missing!r} is protected by the "
            "PostgreSQL setting django_resetdb.protected = 'on' stored for the database; only "
            "its removal (ALTER DATABASE/ROLE ... RESET django_resetdb.protected) allows "
            "resets.\n"
        )
        assert query(missing, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [
            (0,)
        ]
    assert f"{missing!r} was created by another session meanwhile" in out
