"""``resetdb`` on copies of the demo project: regenerate, reset, migrate and seed, all or
nothing, checked through the catalogs (with OIDs), the rows (with their ctid) and the
files' checksums."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from psycopg import sql

from django_resetdb import backups
from django_resetdb.postgres import ADVISORY_LOCK_KEY
from django_resetdb.regenerate import normalized
from tests.conftest import (
    PATIENCE,
    ProjectCopy,
    ScratchDatabase,
    database_state,
    target_host,
    target_port,
    target_user,
)
from tests.test_resetmigrations import (
    ACCOUNT_0001,
    ACCOUNT_MODELS,
    MEMBER_SINCE,
    add_nickname,
    baseline,
)

SEEDS = ["testproject.seeds.create_sample_users", "volunteers", "catalog", "events", "sales"]

# Hashing the sample users' passwords the real way takes seconds; not what is tested
# here, nor is the snapshot cache (see test_snapshots.py): every run rebuilds.
FAST_HASHER = 'PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]\n'
FAST_SETTINGS = FAST_HASHER + 'DJANGO_RESETDB["SNAPSHOTS"] = 0\n'

CATALOG_0002 = "testproject/catalog/migrations/0002_category_name_index.py"
CONCURRENT_INDEX = """\
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("catalog", "0001_initial")]
    operations = [
        AddIndexConcurrently(
            "category", models.Index(fields=["name"], name="category_name_idx")
        ),
    ]
"""
CONCURRENT_SQL = """\
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("catalog", "0001_initial")]
    operations = [
        migrations.RunSQL("CREATE INDEX CONCURRENTLY category_name_idx ON catalog_category (name)"),
    ]
"""
# A statement of the same kind that has no transactional form with the same effect.
VACUUM_SQL = CONCURRENT_SQL.replace(
    "CREATE INDEX CONCURRENTLY category_name_idx ON catalog_category (name)",
    "VACUUM catalog_category",
)


def applied(db):
    return set(db.query("SELECT app, name FROM django_migrations"))


def columns(db, table):
    return {
        name
        for (name,) in db.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", [table]
        )
    }


def tables(db):
    return {
        name
        for (name,) in db.query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
    }


def timeless(text: str) -> list[str]:
    return re.sub(r"\d+\.\d\d s\b", "X s", text).splitlines()


def status(backup: Path) -> str:
    return str(json.loads((backup / "manifest.json").read_text())["status"])


def prepare(project: ProjectCopy, settings: str = FAST_SETTINGS) -> ProjectCopy:
    """The demo at its baseline, with ``settings`` added and the fault runner beside it."""
    baseline(project)
    project.append("testproject/settings.py", settings)
    shutil.copy(Path(__file__).with_name("fault_runner.py"), project.path("faults.py"))
    return project


def rebuild_once(
    project: ProjectCopy, db: ScratchDatabase, settings: str = FAST_SETTINGS
) -> subprocess.CompletedProcess[str]:
    """Prepare the demo, then rebuild its database once; the run must succeed."""
    prepare(project, settings)
    result = project.manage("resetdb", "--no-input", url=db.url())
    assert result.returncode == 0, result.stderr
    return result


def add_row_by_hand(db: ScratchDatabase) -> None:
    with db.connect() as conn:
        conn.execute("INSERT INTO catalog_category (name, slug) VALUES ('Maps', 'maps')")


@pytest.fixture
def built(project: ProjectCopy, scratch_db):
    """A copy of the demo with its database rebuilt once, and a row added by hand since."""
    rebuild_once(project, scratch_db)
    add_row_by_hand(scratch_db)
    return project


def state(project: ProjectCopy, db) -> tuple[object, object]:
    return database_state(db), project.tree()


def settings_line(project: ProjectCopy, text: str) -> None:
    project.append("testproject/settings.py", text)


def test_builds_and_seeds_the_demo_database(project, scratch_db):
    prepare(project)

    result = project.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert timeless(result.stdout) == [
        f"Target: database {scratch_db.name!r} (alias 'default') on {target_host()}:"
        f"{target_port()} as {target_user()!r}, schema(s) public: 0 table(s), "
        "0 other session(s).",
        "  migrations  no changes in account, catalog, event, sales in X s",
        "  schema      dropped 0 table(s) of public in X s",
        "  migrate     applied 22 migration(s) (4 built from the models), 18 table(s) in X s",
        "  seed        5 seed(s), 26 object(s), 31 row(s) in X s",
        f"Rebuilt database {scratch_db.name!r} (alias 'default'): 18 table(s), 31 row(s) "
        "seeded in X s.",
    ]
    assert ("admin", "0001_initial") in applied(scratch_db)
    assert {"account_user", "catalog_artifact", "event_event_artifacts", "sales_ticket"} <= (
        tables(scratch_db)
    )
    assert {("citext",), ("hstore",)} <= set(scratch_db.query("SELECT extname FROM pg_extension"))
    assert scratch_db.query("SELECT count(*) FROM sales_ticket") == [(3,)]
    assert scratch_db.query("SELECT username FROM account_user ORDER BY 1")[:2] == [
        ("admin",),
        ("alice",),
    ]
    assert project.backups() == []


def test_second_run_drops_the_rows_and_rebuilds_the_same_database(built, scratch_db):
    shape = [row[:3] + row[4:] for row in database_state(scratch_db)["catalog"]]
    migrations = applied(scratch_db)
    files = built.tree()

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert (
        "  schema      dropped 18 table(s) of public, restored extension(s) hstore, citext in "
        in result.stdout
    )
    # Same relations, columns, constraints and indexes (new OIDs: they were rebuilt).
    assert [row[:3] + row[4:] for row in database_state(scratch_db)["catalog"]] == shape
    assert applied(scratch_db) == migrations
    assert scratch_db.query("SELECT count(*) FROM catalog_category WHERE slug = 'maps'") == [(0,)]
    assert built.tree() == files


def test_a_model_change_is_regenerated_migrated_and_seeded(built, scratch_db):
    add_nickname(built)

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert timeless(result.stdout)[1:3] == [
        "  migrations  regenerated account (1 file(s)) in X s",
        f"              rewrote {ACCOUNT_0001}",
    ]
    assert "nickname" in built.path(ACCOUNT_0001).read_text()
    assert "nickname" in columns(scratch_db, "account_user")
    assert scratch_db.query("SELECT count(*) FROM sales_ticket") == [(3,)]
    (backup,) = built.backups()
    assert status(backup) == "complete"
    check = built.manage("makemigrations", "--check", "--dry-run")
    assert check.returncode == 0, check.stdout


POINTS = ["regeneration", "schema", "migrate", *(f"seed:{entry}" for entry in SEEDS), "post_reset"]


@pytest.mark.parametrize("kind", ["error", "interrupt"])
@pytest.mark.parametrize("point", POINTS)
def test_a_failure_at_any_step_leaves_database_and_files_as_they_were(
    built, scratch_db, point, kind
):
    add_nickname(built)
    before = state(built, scratch_db)

    result = built.reset_with_fault(f"{point}:{kind}", url=scratch_db.url())

    assert result.returncode == (130 if kind == "interrupt" else 1), result.stderr
    assert result.stderr.startswith("CommandError: ")
    assert result.stderr.count("\n") == 1, result.stderr
    if kind == "interrupt":
        assert result.stderr.startswith("CommandError: Interrupted; ")
    else:
        assert f"RuntimeError: fault injected at {point}" in result.stderr
    (backup,) = built.backups()
    assert result.stderr.endswith(
        f"the migration files were put back from backup {str(backup)!r}.\n"
    )
    assert state(built, scratch_db) == before
    assert status(backup) == "rolled back"


def test_killed_mid_run_changes_nothing_and_one_command_restores_the_files(built, scratch_db):
    add_nickname(built)
    before_db, before_files = state(built, scratch_db)
    process = built.start_reset_with_fault("seed:sales:pause", url=scratch_db.url())
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.strip() == "PAUSED":
                break
        assert lines[-1].strip() == "PAUSED", "".join(lines) + process.stderr.read()
        # Half-way: the files are regenerated, the schema rebuilt and seeded, uncommitted.
        assert "nickname" in built.path(ACCOUNT_0001).read_text()
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL

    assert database_state(scratch_db) == before_db
    (backup,) = built.backups()
    assert status(backup) == "in progress"

    refused = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert refused.returncode == 3
    assert refused.stderr == (
        f"CommandError: resetdb refused: an earlier run was interrupted before it finished "
        f"(backup {backup.name!r}), so the migration files may be half written; run "
        f"'manage.py resetmigrations --restore {backup.name}' first.\n"
    )

    restored = built.manage("resetmigrations", "--restore")

    assert restored.returncode == 0, restored.stderr
    assert built.tree() == before_files
    assert database_state(scratch_db) == before_db

    again = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert again.returncode == 0, again.stderr
    assert "nickname" in columns(scratch_db, "account_user")
    assert scratch_db.query("SELECT count(*) FROM sales_ticket") == [(3,)]


def test_ctrl_c_just_after_the_commit_finishes_the_reset_and_says_so(built, scratch_db):
    add_nickname(built)

    result = built.reset_with_fault("commit:sigint", url=scratch_db.url())

    assert result.returncode == 130, result.stderr
    assert result.stderr == (
        "CommandError: Interrupted after the database was rebuilt: the reset is complete "
        "(the new migration files are in place).\n"
    )
    # The database committed, and the files it was rebuilt from stay.
    assert "nickname" in columns(scratch_db, "account_user")
    assert "nickname" in built.path(ACCOUNT_0001).read_text()
    (backup,) = built.backups()
    assert status(backup) == "complete"


def test_ctrl_c_while_the_summary_is_printed_says_the_reset_is_complete(built, scratch_db):
    result = built.reset_with_fault("summary:sigint", url=scratch_db.url())

    assert result.returncode == 130, result.stderr
    assert result.stderr == (
        "CommandError: Interrupted after the reset had finished: it is complete.\n"
    )
    # Rebuilt: the row added by hand is gone.
    assert scratch_db.query("SELECT count(*) FROM catalog_category WHERE slug = 'maps'") == [(0,)]


def test_killed_just_after_the_commit_the_next_runs_say_what_may_have_happened(built, scratch_db):
    add_nickname(built)
    process = built.start_reset_with_fault("commit:pause", url=scratch_db.url())
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == "PAUSED":
                break
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    # Committed: the database is rebuilt from the new files, which are in place.
    assert "nickname" in columns(scratch_db, "account_user")
    files = built.tree()
    assert "nickname" in built.path(ACCOUNT_0001).read_text()
    (backup,) = built.backups()
    assert status(backup) == "committing"

    refused = built.manage("resetmigrations", url=scratch_db.url())

    assert refused.returncode == 3
    assert refused.stderr == (
        f"CommandError: resetmigrations refused: an earlier run was interrupted while it "
        f"committed the database (backup {backup.name!r}): the new migration files are in "
        "place and whole, and the database may already be rebuilt from them or still be as "
        f"it was; run 'manage.py resetdb' to rebuild it from these files, or 'manage.py "
        f"resetmigrations --restore {backup.name}' and then 'manage.py resetdb "
        "--keep-migrations'.\n"
    )
    assert built.tree() == files

    again = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert again.returncode == 0, again.stderr
    assert (
        f"  migrations  an earlier run was interrupted while it committed (backup "
        f"{backup.name}): rebuilding from the migration files it left"
    ) in again.stdout.splitlines()
    assert status(backup) == "complete"
    assert "nickname" in columns(scratch_db, "account_user")
    assert scratch_db.query("SELECT count(*) FROM sales_ticket") == [(3,)]


OWN_CONNECTION_SEED = """\
import os

import psycopg


def ddl(database, report):
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, application_name="own seed", autocommit=True) as conn:
        conn.execute("ALTER TABLE catalog_category ADD COLUMN note text")
"""


def test_a_seed_waiting_on_its_own_connection_for_the_resets_locks_fails_naming_it(
    built, scratch_db
):
    built.append("own_seeds.py", OWN_CONNECTION_SEED)
    settings_line(built, 'DJANGO_RESETDB["SEEDS"] = [*DJANGO_RESETDB["SEEDS"], "own_seeds.ddl"]\n')
    settings_line(built, 'DJANGO_RESETDB["LOCK_TIMEOUT"] = 1\n')
    before = state(built, scratch_db)

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 1, result.stderr
    assert re.fullmatch(
        r"CommandError: Seed 'own_seeds.ddl' failed: it opened its own connection \(pid \d+, "
        r"application 'own seed'\) that waited for a lock this reset holds, cancelled after "
        r"1 s; use the alias the seed is given \('default'\); nothing was written.\n",
        result.stderr,
    ), result.stderr
    assert state(built, scratch_db) == before
    assert "note" not in columns(scratch_db, "catalog_category")


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ("DJANGO_RESETDB['ENABLED'] = False\n", "DJANGO_RESETDB['ENABLED'] is False"),
        ("DJANGO_RESETDB['HOSTS'] = ['db.example.org']\n", "is not in DJANGO_RESETDB['HOSTS']"),
        ("", "is protected by the PostgreSQL setting django_resetdb.protected = 'on'"),
    ],
    ids=["enabled", "hosts", "protected"],
)
@pytest.mark.parametrize("flags", [[], ["--no-input"]], ids=["prompt", "no-input"])
def test_guards_refuse_before_any_file_or_table_is_touched(
    built, scratch_db, settings, refusal, flags
):
    add_nickname(built)
    settings_line(built, settings)
    if not settings:
        with scratch_db.connect() as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET django_resetdb.protected = on").format(
                    sql.Identifier(scratch_db.name)
                )
            )
    before = state(built, scratch_db)

    result = built.manage("resetdb", *flags, url=scratch_db.url(), input=f"{scratch_db.name}\n")

    assert result.returncode == 3
    assert result.stderr.startswith("CommandError: resetdb refused: ")
    assert refusal in result.stderr
    assert result.stdout == ""
    assert state(built, scratch_db) == before
    assert built.backups() == []


def test_the_prompt_shows_the_plan_and_a_wrong_answer_changes_nothing(built, scratch_db):
    add_nickname(built)
    before = state(built, scratch_db)

    result = built.manage("resetdb", url=scratch_db.url(), input="production\n")

    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert lines[0] == "resetdb will drop everything in these schemas:"
    assert f"  database  {scratch_db.name}" in lines
    assert lines[9:] == [
        "  migrations  regenerate account (backed up first)",
        "    account  testproject/account/migrations  (the project's own app)",
        "        rewrite testproject/account/migrations/0001_initial.py",
        "  schemas     drop and recreate public",
        "  migrate     apply every migration",
        f"  seed        {', '.join(SEEDS)}",
        f"Type the database name ({scratch_db.name!r}) to continue: ",
    ]
    assert result.stderr == (
        "CommandError: resetdb refused: the answer 'production' is not the database name "
        f"{scratch_db.name!r}; type the name exactly, or pass --no-input to skip the prompt.\n"
    )
    assert state(built, scratch_db) == before


def test_the_prompt_answered_with_the_name_goes_ahead(built, scratch_db):
    result = built.manage("resetdb", url=scratch_db.url(), input=f"{scratch_db.name}\n")

    assert result.returncode == 0, result.stderr
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith(f"Rebuilt database {scratch_db.name!r}")
    assert re.search(r" in \d+\.\d\d s \(\d+\.\d\d s of it waiting for the answer\)\.$", summary)


def test_the_summary_counts_the_whole_command_from_the_process_start(built, scratch_db):
    started = time.monotonic()
    result = built.manage("resetdb", "--no-input", url=scratch_db.url())
    wall = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    found = re.search(r" in (\d+\.\d\d) s\.$", result.stdout.splitlines()[-1])
    assert found, result.stdout
    # Python's and Django's start-up count (about half of a short run); only the exit
    # after the summary does not. The summary rounds to hundredths.
    assert 0.5 * wall <= float(found[1]) <= wall + 0.005


CALLED = """
import io, time
import django
django.setup()
from django.core.management import call_command
out = io.StringIO()
begun = time.monotonic()
call_command("resetdb", "--no-input", stdout=out)
print(time.monotonic() - begun)
print(out.getvalue().splitlines()[-1])
"""


def test_called_from_python_the_summary_counts_from_the_call(built, scratch_db):
    result = built.python("-c", CALLED, url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    elapsed, summary = result.stdout.splitlines()[-2:]
    found = re.search(r" in (\d+\.\d\d) s\.$", summary)
    assert found, result.stdout
    # Not the age of the process that called it: its start-up came before the call.
    assert float(found[1]) <= float(elapsed) + 0.005


def test_dry_run_shows_sql_and_files_and_changes_nothing(built, scratch_db):
    add_nickname(built)
    before = state(built, scratch_db)

    result = built.manage("resetdb", "--dry-run", "--sql", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "resetdb would do this (dry run, nothing is changed):"
    assert f"SQL for database {scratch_db.name!r} (alias 'default'):" in lines
    sql_lines = lines[lines.index("  BEGIN;") : lines.index("  COMMIT;") + 1]
    assert sql_lines[1:5] == [
        "  SELECT set_config('lock_timeout', '5000ms', true);",
        f"  SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY});",
        '  DROP SCHEMA "public" CASCADE;',
        '  CREATE SCHEMA "public";',
    ]
    assert "  -- migrate: account.0001_initial" in sql_lines
    # The SQL comes from the regenerated files, which are not written.
    assert any('"nickname" varchar(50) NOT NULL' in line for line in sql_lines)
    assert "  -- seed: 5 seed(s), rows written with COPY and INSERT (not shown)" in sql_lines
    assert "  migrations  regenerate account (backed up first)" in lines
    assert "        rewrite testproject/account/migrations/0001_initial.py" in lines
    assert lines[-1] == "Dry run: nothing was changed."
    assert state(built, scratch_db) == before
    assert built.backups() == []


def test_keep_migrations_and_no_seed(built, scratch_db):
    add_nickname(built)
    files = built.tree()

    result = built.manage(
        "resetdb", "--no-input", "--keep-migrations", "--no-seed", url=scratch_db.url()
    )

    assert result.returncode == 0, result.stderr
    assert built.tree() == files
    assert built.backups() == []
    assert "nickname" not in columns(scratch_db, "account_user")
    assert scratch_db.query("SELECT count(*) FROM account_user") == [(0,)]
    assert [line for line in timeless(result.stdout) if line.startswith("  ")] == [
        "  schema      dropped 18 table(s) of public, restored extension(s) hstore, citext in X s",
        "  migrate     applied 22 migration(s), 18 table(s) in X s",
    ]
    assert timeless(result.stdout)[-1] == (
        f"Rebuilt database {scratch_db.name!r} (alias 'default'): 18 table(s), not seeded in X s."
    )


def index_by_hand(project: ProjectCopy) -> None:
    """A hand-written migration adding an index the models declare too."""
    project.path(CATALOG_0002).write_text(CONCURRENT_INDEX)
    project.edit(
        "testproject/catalog/models.py",
        'verbose_name_plural = "categories"',
        'verbose_name_plural = "categories"\n'
        '        indexes = [models.Index(fields=["name"], name="category_name_idx")]',
    )


def test_an_app_with_hand_written_migrations_is_kept_and_the_others_regenerated(built, scratch_db):
    index_by_hand(built)
    add_nickname(built)
    catalog = {k: v for k, v in built.tree().items() if "/catalog/migrations/" in k}

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    lines = timeless(result.stdout)
    # The regenerated apps' new files name catalog's latest migration.
    assert "  migrations  regenerated account, event, sales (3 file(s)) in X s" in lines
    event = built.path("testproject/event/migrations/0001_initial.py").read_text()
    assert "('catalog', '0002_category_name_index')" in event.replace('"', "'")
    assert (
        "              kept catalog as it is: hand-written content in "
        "0002_category_name_index.py (atomic = False, custom operation "
        "django.contrib.postgres.operations.AddIndexConcurrently)"
    ) in lines
    assert {k: v for k, v in built.tree().items() if "/catalog/migrations/" in k} == catalog
    # The fast build cannot place catalog's migrations, which run for real, before the
    # point where the regenerated tables are built: it says so truthfully.
    assert (
        "              plain migrate: event.0001_initial needs catalog.0002_category_name_index, "
        "which migrate runs after admin.0001_initial, the first migration that needs the "
        "regenerated apps' tables"
    ) in lines
    assert "nickname" in columns(scratch_db, "account_user")
    assert len(index_definition(scratch_db, "category_name_idx")) == 1
    assert ("catalog", "0002_category_name_index") in applied(scratch_db)
    check = built.manage("makemigrations", "--check", "--dry-run", url=scratch_db.url())
    assert check.returncode == 0, check.stdout + check.stderr


def test_an_app_a_kept_migration_depends_on_is_kept_too(built, scratch_db):
    add_nickname(built)
    built.path("testproject/account/migrations/0002_user_nickname.py").write_text(
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("account", "0001_initial")]\n'
        "    operations = [\n"
        '        migrations.AddField("user", "nickname", '
        "models.CharField(blank=True, max_length=50)),\n"
        "    ]\n"
    )
    built.path("testproject/catalog/migrations/0002_by_hand.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("catalog", "0001_initial"), ("account", "0002_user_nickname")]\n'
        "    operations = [migrations.RunSQL('SELECT 1', migrations.RunSQL.noop)]\n"
    )
    files = built.tree("testproject/account"), built.tree("testproject/catalog")

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    lines = timeless(result.stdout)
    assert (
        "              kept account as it is: migration catalog.0002_by_hand depends on its "
        "0002_user_nickname, which regenerating would remove"
    ) in lines
    assert (
        "              kept catalog as it is: hand-written content in 0002_by_hand.py (RunSQL)"
    ) in lines
    assert (built.tree("testproject/account"), built.tree("testproject/catalog")) == files
    assert {("account", "0002_user_nickname"), ("catalog", "0002_by_hand")} <= set(
        applied(scratch_db)
    )
    assert "nickname" in columns(scratch_db, "account_user")


def test_an_app_whose_new_files_would_make_a_cycle_with_a_kept_app_is_kept(built, scratch_db):
    # event is kept (hand-written) and needs the user model; a user that points at a
    # venue would give account a new 0001 needing event's latest migration: a cycle.
    built.path("testproject/event/migrations/0002_by_hand.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("event", "0001_initial")]\n'
        "    operations = [migrations.RunSQL('SELECT 1', migrations.RunSQL.noop)]\n"
    )
    built.edit(
        ACCOUNT_MODELS,
        MEMBER_SINCE,
        MEMBER_SINCE + '    venue = models.ForeignKey("event.Venue", null=True, blank=True, '
        "on_delete=models.SET_NULL)\n",
    )
    account = built.tree("testproject/account/migrations")

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    kept = [line for line in timeless(result.stdout) if "kept account as it is" in line]
    assert len(kept) == 1, result.stdout
    assert "regenerating it would make a dependency cycle (" in kept[0]
    assert kept[0].endswith(" and added a migration for its pending model changes")
    added = "              added   testproject/account/migrations/0002_user_venue.py"
    assert timeless(result.stdout).count(added) == 1
    after = built.tree("testproject/account/migrations")
    assert {name: after[name] for name in account} == account
    assert "venue_id" in columns(scratch_db, "account_user")
    check = built.manage("makemigrations", "--check", "--dry-run", url=scratch_db.url())
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_kept_app_gets_a_migration_for_its_pending_changes(built, scratch_db, other_db):
    index_by_hand(built)
    built.append(
        "testproject/catalog/models.py",
        "\nCategory.add_to_class('note', models.CharField(max_length=20, null=True))\n",
    )

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    new = "testproject/catalog/migrations/0003_category_note.py"
    assert built.path(new).is_file()
    assert "              kept catalog as it is: hand-written content in " in result.stdout
    assert " and added a migration for its pending model changes\n" in result.stdout
    assert result.stdout.count(f"              added   {new}\n") == 1
    assert "note" in columns(scratch_db, "catalog_category")
    # The new file is what makemigrations writes for the same change, from the files
    # as they were before the reset.
    ours = built.path(new).read_text()
    assert built.manage("resetmigrations", "--restore", url=other_db.url()).returncode == 0
    assert not built.path(new).exists()
    written = built.manage("makemigrations", "catalog", url=other_db.url())
    assert written.returncode == 0, written.stderr
    assert normalized(built.path(new).read_text()) == normalized(ours)


def index_definition(db, name):
    return db.query("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])


def test_a_concurrent_index_migration_runs_as_a_plain_one_inside_the_transaction(
    built, scratch_db, other_db
):
    built.path(CATALOG_0002).write_text(CONCURRENT_INDEX)
    plain = built.manage("migrate", "--no-input", url=other_db.url())
    assert plain.returncode == 0, plain.stderr

    result = built.manage("resetdb", "--no-input", "--keep-migrations", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert (
        "              catalog.0002_category_name_index (atomic = False): "
        "AddIndexConcurrently run as AddIndex inside the transaction"
    ) in result.stdout.splitlines()
    assert index_definition(scratch_db, "category_name_idx") == index_definition(
        other_db, "category_name_idx"
    )
    assert len(index_definition(scratch_db, "category_name_idx")) == 1


def test_a_statement_refused_inside_a_transaction_fails_and_changes_nothing(built, scratch_db):
    built.path(CATALOG_0002).write_text(VACUUM_SQL)
    before = state(built, scratch_db)

    result = built.manage("resetdb", "--no-input", "--keep-migrations", url=scratch_db.url())

    assert result.returncode == 1
    assert result.stderr.startswith(
        "CommandError: Migration catalog.0002_category_name_index is marked atomic = False and "
        "runs a statement PostgreSQL refuses inside a transaction (VACUUM "
        "cannot run inside a transaction block"
    ), result.stderr
    assert result.stderr.endswith("the transaction was rolled back, nothing was changed.\n")
    assert state(built, scratch_db) == before


FAILING_MIGRATION = """\
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sales", "0001_initial")]
    operations = [migrations.RunSQL("SELECT 1 / 0")]
"""


def test_a_failing_migration_is_named_and_changes_nothing(built, scratch_db):
    built.path("testproject/sales/migrations/0002_broken.py").write_text(FAILING_MIGRATION)
    before = state(built, scratch_db)

    result = built.manage("resetdb", "--no-input", "--keep-migrations", url=scratch_db.url())

    assert result.returncode == 1
    assert result.stderr == (
        "CommandError: migrate failed in migration sales.0002_broken: DataError: division by "
        "zero; the transaction was rolled back, nothing was changed.\n"
    )
    assert state(built, scratch_db) == before


def test_another_reset_of_the_database_makes_it_wait_then_fail_naming_it(built, scratch_db):
    add_nickname(built)
    settings_line(built, "DJANGO_RESETDB['LOCK_TIMEOUT'] = 1\n")
    before = state(built, scratch_db)

    with scratch_db.connect(application_name="other resetdb") as other:
        other.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        result = built.manage("resetdb", "--no-input", url=scratch_db.url())
        pid = other.info.backend_pid

    assert result.returncode == 1
    assert result.stderr.startswith(
        f"CommandError: Another reset of this database is running (pid {pid}, user "
        f"{target_user()!r}, application 'other resetdb', state 'idle', query 'SELECT "
        "pg_advisory_lock("
    )
    assert result.stderr.endswith("gave up after 1 s. Try again when it has finished.\n")
    assert state(built, scratch_db) == before
    assert built.backups() == []


def test_another_run_changing_the_files_makes_it_wait_then_fail(built, scratch_db):
    add_nickname(built)
    settings_line(built, "DJANGO_RESETDB['LOCK_TIMEOUT'] = 1\n")
    before = state(built, scratch_db)
    backup_dir = built.path(".resetdb/backups")

    with backups.files_lock(backup_dir, 1):
        result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 1
    assert result.stderr == (
        f"CommandError: Another run (pid {os.getpid()}) is changing the "
        f"migration files backed up in {str(backup_dir)!r}; gave up after 1 s. Try again "
        "when it has finished.\n"
    )
    assert state(built, scratch_db) == before
    assert built.backups() == []


def reset_while_files_are_held(built, scratch_db, meanwhile=lambda: None):
    """``resetdb`` started while this process holds the project's migration files, as
    another run changing them would: ``meanwhile`` runs once the reset has planned and
    is waiting, then the files are let go. Returns its first line, output, errors and
    exit status."""
    with backups.files_lock(built.path(".resetdb/backups"), 1):
        run = built.start(
            "manage.py",
            "resetdb",
            "--no-input",
            url=scratch_db.url(),
            env={"PYTHONUNBUFFERED": "1"},
        )
        assert run.stdout is not None
        first = run.stdout.readline()  # planned and gated, under way
        time.sleep(1)
        assert run.poll() is None, run.communicate()
        meanwhile()
    out, err = run.communicate(timeout=PATIENCE)
    assert first.startswith("Target: database "), (first, err)
    return first, out, err, run.returncode


def nickname_columns(scratch_db) -> tuple[int]:
    with scratch_db.connect() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'nickname'"
        ).fetchone()


def test_a_run_waits_for_another_changing_the_files_then_goes_on(built, scratch_db):
    add_nickname(built)

    _, out, err, returncode = reset_while_files_are_held(built, scratch_db)

    assert returncode == 0, err
    assert "for another run changing the migration files" in out
    assert nickname_columns(scratch_db) == (1,)


def files_another_run_writes(project: ProjectCopy, root: Path) -> ProjectCopy:
    """A copy of ``project`` in ``root`` with the migration files a reset of it as it is
    now writes (``resetmigrations`` writes the same)."""
    other = ProjectCopy(root, project.url)
    shutil.copytree(project.root, root, ignore=shutil.ignore_patterns("__pycache__", ".resetdb"))
    result = other.manage("resetmigrations", "--no-input")
    assert result.returncode == 0, result.stderr
    return other


def test_a_run_that_waited_goes_on_when_the_other_wrote_what_it_planned(
    built, scratch_db, tmp_path
):
    add_nickname(built)
    other = files_another_run_writes(built, tmp_path / "other")
    assert other.migration_files() != built.migration_files()
    earlier_backups = built.backups()

    def write_them():
        shutil.rmtree(built.path("testproject"))
        shutil.copytree(other.path("testproject"), built.path("testproject"))
        # Written in another minute than this run renders them: only the header differs.
        for path in built.path("testproject").glob("*/migrations/0*.py"):
            path.write_text(
                re.sub(r"^# Generated by Django (\S+) on .*$", r"# Generated by Django \1 on "
                       "2001-02-03 04:05", path.read_text(), count=1, flags=re.MULTILINE)
            )  # fmt: skip

    _, out, err, returncode = reset_while_files_are_held(built, scratch_db, write_them)

    assert returncode == 0, err
    assert (
        "  migrations  the migration files were changed meanwhile (by another run) to what "
        "this one would write: none left to write\n"
    ) in out
    assert "2001-02-03 04:05" in built.path(ACCOUNT_0001).read_text()  # it wrote nothing
    assert built.backups() == earlier_backups
    assert nickname_columns(scratch_db) == (1,)


def test_a_run_that_waited_stops_when_the_other_changed_the_files_otherwise(built, scratch_db):
    add_nickname(built)
    before = database_state(scratch_db)
    earlier_backups = built.backups()
    first_file = built.path(ACCOUNT_0001)

    def change_them():
        with first_file.open("a") as handle:
            handle.write("# changed by another run\n")

    _, out, err, returncode = reset_while_files_are_held(built, scratch_db, change_them)

    assert returncode == 1, (out, err)
    assert err == (
        "CommandError: The migration files changed after this run planned from them "
        "(another run changing them, or an edit, while it waited), and they are not what "
        "it would write; nothing was changed. Run resetdb again to plan from the files as "
        "they are now.\n"
    )
    assert first_file.read_text().endswith("# changed by another run\n")
    assert database_state(scratch_db) == before
    assert built.backups() == earlier_backups
    assert nickname_columns(scratch_db) == (0,)
    # Run again, it plans from the files as they are.
    again = built.manage("resetdb", "--no-input", url=scratch_db.url())
    assert again.returncode == 0, again.stderr
    assert nickname_columns(scratch_db) == (1,)


NOTES_MODELS = """\
from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=100, unique=True)

    def __str__(self):
        return self.title
"""
NOTES_ROUTER = """\
class NotesRouter:
    # Notes live in "other", everything else in "default".
    def db_for_read(self, model, **hints):
        return "other" if model._meta.app_label == "notes" else None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, **hints):
        return (app_label == "notes") == (db == "other")
"""
NOTES_SETTINGS = """\
import os as _os

from testproject.database import parse_database_url as _parse

INSTALLED_APPS = [*INSTALLED_APPS, "testproject.notes"]
DATABASES["other"] = _parse(_os.environ["OTHER_DATABASE_URL"])
DATABASE_ROUTERS = ["testproject.notes.routers.NotesRouter"]
DJANGO_RESETDB["SEEDS"] = [*DJANGO_RESETDB["SEEDS"], "notes"]
"""


@pytest.fixture
def two_databases(built, other_db):
    for name, text in {
        "__init__.py": "",
        "models.py": NOTES_MODELS,
        "routers.py": NOTES_ROUTER,
        "fixtures/notes.json": '[{"model": "notes.note", "pk": 1, "fields": {"title": "Hi"}}]',
    }.items():
        built.append(f"testproject/notes/{name}", text)
    settings_line(built, NOTES_SETTINGS)
    return {"OTHER_DATABASE_URL": other_db.url()}


def test_two_databases_are_rebuilt_as_the_routers_say(built, scratch_db, other_db, two_databases):
    result = built.manage(
        "resetdb", "--no-input", "--database", "default", "--database", "other",
        url=scratch_db.url(), env=two_databases,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    lines = timeless(result.stdout)
    assert lines[2:4] == [
        "  migrations  regenerated notes (1 file(s)) in X s",
        "              added   testproject/notes/migrations/0001_initial.py",
    ]
    assert lines[4].startswith("  [default] schema      dropped 18 table(s) of public")
    assert "  [other] seed        6 seed(s), 1 object(s), 1 row(s) in X s" in lines
    assert lines[-1] == (
        f"Rebuilt database {scratch_db.name!r} (alias 'default'): 18 table(s), 31 row(s) "
        f"seeded; database {other_db.name!r} (alias 'other'): 2 table(s), 1 row(s) seeded "
        "in X s."
    )
    assert built.path("testproject/notes/migrations/0001_initial.py").is_file()
    assert "notes_note" not in tables(scratch_db)
    assert tables(other_db) == {"django_migrations", "notes_note"}
    assert other_db.query("SELECT title FROM notes_note") == [("Hi",)]
    assert scratch_db.query("SELECT count(*) FROM account_user") == [(6,)]
    assert ("notes", "0001_initial") in applied(other_db)


def test_a_failure_on_the_second_database_rolls_back_the_first(
    built, scratch_db, other_db, two_databases
):
    first = built.manage(
        "resetdb", "--no-input", "--database", "default", "--database", "other",
        url=scratch_db.url(), env=two_databases,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    with other_db.connect() as conn:
        conn.execute("CREATE SCHEMA reporting")
        conn.execute("CREATE VIEW reporting.notes AS SELECT title FROM public.notes_note")
    add_nickname(built)
    before = state(built, scratch_db), database_state(other_db)

    result = built.manage(
        "resetdb", "--no-input", "--database", "default", "--database", "other",
        url=scratch_db.url(), env=two_databases,
    )  # fmt: skip

    assert result.returncode == 3
    assert result.stderr.startswith(
        "CommandError: Reset refused: dropping schema 'public' would also drop objects "
        "outside it that depend on it: rule _RETURN on view reporting.notes;"
    )
    assert (state(built, scratch_db), database_state(other_db)) == before
    assert "nickname" not in columns(scratch_db, "account_user")


def test_the_same_database_under_two_aliases_is_refused(built, scratch_db):
    settings_line(built, "DATABASES['again'] = dict(DATABASES['default'])\n")
    before = state(built, scratch_db)

    result = built.manage(
        "resetdb", "--no-input", "--database", "default", "--database", "again",
        url=scratch_db.url(),
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr == (
        f"CommandError: Database aliases 'default' and 'again' are the same database "
        f"{scratch_db.name!r} on {target_host()}:{target_port()}; name it once.\n"
    )
    assert state(built, scratch_db) == before


def test_the_same_database_under_two_host_spellings_is_refused_at_once(built, scratch_db):
    # localhost and 127.0.0.1 (or a socket directory with a trailing slash) reach one
    # server: the second alias used to wait LOCK_TIMEOUT for its own first connection.
    host = target_host()
    if host.startswith("/"):
        other = host.rstrip("/") + "/"
    elif host == "127.0.0.1":
        other = "localhost"
    else:
        pytest.skip(f"no second spelling known for host {host!r}")
    settings_line(built, f"DATABASES['again'] = {{**DATABASES['default'], 'HOST': {other!r}}}\n")
    before = state(built, scratch_db)

    result = built.manage(
        "resetdb", "--no-input", "--database", "default", "--database", "again",
        url=scratch_db.url(),
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr.startswith(
        "CommandError: Database aliases 'default' and 'again' are the same database "
        f"{scratch_db.name!r} on "
    )
    assert state(built, scratch_db) == before


def test_verbosity_zero_prints_nothing(built, scratch_db):
    add_nickname(built)

    result = built.manage("resetdb", "--no-input", "-v", "0", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert "nickname" in columns(scratch_db, "account_user")


SIGNALS_SCRIPT = """\
import django

django.setup()

from django.db import transaction

import django_resetdb
from django_resetdb.signals import post_reset, pre_reset

seen = []
pre_reset.connect(lambda sender, alias, plan, **kw: seen.append(("pre", alias, len(plan.seeds))))


def created_after(sender, alias, plan, timings, **kw):
    seen.append(("post", alias, sorted(timings)))
    from django.contrib.auth import get_user_model

    get_user_model().objects.using(alias).create(username="from-signal")
    transaction.on_commit(lambda: seen.append(("committed", alias)), using=alias)


post_reset.connect(created_after)
result = django_resetdb.reset(databases=["default"], seed=True)
print(seen)
print(result.summary())
"""


def test_reset_from_python_sends_the_signals(built, scratch_db):
    result = built.python("-c", SIGNALS_SCRIPT, url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    lines = timeless(result.stdout)
    assert lines[0] == (
        "[('pre', 'default', 1), ('post', 'default', ['migrate', 'migrations', 'schema', "
        "'seed']), ('committed', 'default')]"
    )
    assert lines[1] == (
        f"Rebuilt database {scratch_db.name!r} (alias 'default'): 18 table(s), 31 row(s) "
        "seeded in X s."
    )
    assert scratch_db.query("SELECT count(*) FROM account_user WHERE username = 'from-signal'") == [
        (1,)
    ]


API_REFUSAL = """\
import django

django.setup()

import django_resetdb

try:
    django_resetdb.reset(keep_migrations=True)
except django_resetdb.Refused as exc:
    print(exc.returncode, exc)
"""


def test_the_api_goes_through_the_guard(built, scratch_db):
    settings_line(built, "DJANGO_RESETDB['ENABLED'] = False\n")
    before = state(built, scratch_db)

    result = built.python("-c", API_REFUSAL, url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 resetdb refused: DJANGO_RESETDB['ENABLED'] is False")
    assert state(built, scratch_db) == before


DANGLING = (
    '[{"model": "catalog.artifact", "pk": 90, "fields": {"category": 999, "name": "Lost", '
    '"description": "", "replica_price": null, "attributes": {}, '
    '"added": "2024-03-01T10:00:00Z"}}]'
)


def test_a_seed_naming_a_missing_row_is_reported_after_the_fast_build(built, scratch_db):
    # The fast build adds foreign keys once the rows are in: the broken one is still
    # reported with its file and position, and nothing changes.
    add_nickname(built)
    built.append("testproject/catalog/fixtures/dangling.json", DANGLING)
    settings_line(built, with_seeds("dangling"))
    before = state(built, scratch_db)

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: Seeding failed: ")
    assert (
        "testproject/catalog/fixtures/dangling.json, object 1 (catalog.artifact, pk=90): "
        "category = 999 names a catalog.category that does not exist; nothing was written; "
        "the migration files were put back from backup "
    ) in result.stderr
    assert state(built, scratch_db) == before


def with_seeds(*seeds: str) -> str:
    return f"DJANGO_RESETDB['SEEDS'] = [*DJANGO_RESETDB['SEEDS'], {', '.join(map(repr, seeds))}]\n"


def test_an_app_kept_for_many_hand_written_files_is_one_short_line(built, scratch_db):
    # A long history of data migrations: at -v 1 three files are named and the rest
    # counted; -v 2 (and a dry run at -v 2) names every one.
    previous = "0001_initial"
    for number in range(2, 9):
        name = f"{number:04d}_step_{number}"
        sql = "migrations.RunSQL('SELECT 1', migrations.RunSQL.noop)"
        code = "migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)"
        built.path(f"testproject/catalog/migrations/{name}.py").write_text(
            "from django.db import migrations\n\n\n"
            "class Migration(migrations.Migration):\n"
            f'    dependencies = [("catalog", "{previous}")]\n'
            f"    operations = [{sql if number % 2 else code}]\n"
        )
        previous = name
    short = (
        "kept catalog as it is: hand-written content in 0002_step_2.py (RunPython), "
        "0003_step_3.py (RunSQL), 0004_step_4.py (RunPython) and 4 more file(s) "
        "(RunPython, RunSQL; -v 2 lists them)"
    )

    quiet = built.manage("resetdb", "--no-input", url=scratch_db.url())
    detailed = built.manage("resetdb", "--no-input", "-v", "2", url=scratch_db.url())
    dry = built.manage("resetdb", "--dry-run", "-v", "2", url=scratch_db.url())

    assert quiet.returncode == 0, quiet.stderr
    assert f"              {short}" in quiet.stdout.splitlines()
    assert "0008_step_8.py" not in quiet.stdout
    for result in (detailed, dry):
        assert result.returncode == 0, result.stderr
        assert "0008_step_8.py (RunPython))" in result.stdout, result.stdout
