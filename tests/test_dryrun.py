"""``resetdb --dry-run`` on projects whose migrations Django cannot render as SQL without
the database the earlier migrations would leave: the plan is printed, the SQL of each
other migration too, one line says what cannot be shown, the exit status is 0 and the
database and files are as they were (checked through the catalogs and the checksums)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import django
import pytest

from bench.synthetic import Shape, generate
from tests.conftest import PATIENCE, ProjectCopy, ScratchDatabase, database_state

# A third-party app (installed outside the project folder) whose second migration drops a
# unique_together: Django finds the constraint's name by asking the database.
SHELVES_0001 = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            name="Shelf",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=40, unique=True)),
                ("code", models.CharField(max_length=10)),
                ("size", models.IntegerField()),
            ],
            options={"unique_together": {("code", "size")}},
        ),
    ]
"""
SHELVES_0002 = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shelves", "0001_initial")]
    operations = [
        migrations.AlterUniqueTogether(name="shelf", unique_together=set()),
        migrations.AddField("shelf", "label", models.CharField(max_length=20, default="")),
    ]
"""
SHELVES_0003 = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shelves", "0002_drop_unique_together")]
    operations = [
        migrations.RemoveField("shelf", "label"),
        migrations.AlterField("shelf", "name", models.CharField(max_length=40)),
    ]
"""
NOT_SHOWN = (
    "  -- migrate: shelves.0002_drop_unique_together: SQL not shown (it looks up constraint "
    "names in the database, which a dry run cannot do before the earlier migrations ran: "
    "ValueError: Found wrong number (0) of constraints for shelves_shelf(code, size))"
)
LOOKED_UP = (
    "  -- (names of existing constraints or sequences were looked up in the database as it "
    "is now, not as the earlier migrations leave it)"
)
FOUND_NONE = (
    "  -- (names of existing constraints or sequences were looked up in the database as it "
    "is now and some were not there: the statements that would drop or rename them are "
    "missing here)"
)


def shelves_project(tmp_path: Path, db: ScratchDatabase, shape: Shape) -> ProjectCopy:
    generate(tmp_path / "synthetic", shape)
    vendor = tmp_path / "vendor" / "shelves"
    (vendor / "migrations").mkdir(parents=True)
    (vendor / "__init__.py").write_text("")
    (vendor / "models.py").write_text(
        "from django.db import models\n\n\n"
        "class Shelf(models.Model):\n"
        "    name = models.CharField(max_length=40)\n"
        "    code = models.CharField(max_length=10)\n"
        "    size = models.IntegerField()\n"
    )
    migrations = vendor / "migrations"
    (migrations / "__init__.py").write_text("")
    (migrations / "0001_initial.py").write_text(SHELVES_0001)
    (migrations / "0002_drop_unique_together.py").write_text(SHELVES_0002)
    (migrations / "0003_plain_name.py").write_text(SHELVES_0003)
    project = ProjectCopy(
        tmp_path / "synthetic",
        db.url(),
        pythonpath=(tmp_path / "vendor",),
        settings="synth.settings",
    )
    project.append("synth/settings.py", 'INSTALLED_APPS += ["shelves"]\n')
    return project


@pytest.mark.parametrize("migrated", [False, True], ids=["empty", "migrated"])
@pytest.mark.parametrize("flag", ["--keep-migrations", "--no-snapshot"])
def test_a_migration_whose_sql_needs_the_database_is_named_and_the_rest_shown(
    tmp_path, scratch_db, flag, migrated
):
    project = shelves_project(tmp_path, scratch_db, Shape(apps=1, models=2, rows=1))
    if migrated:
        done = project.manage("migrate", "--no-input")
        assert done.returncode == 0, done.stderr
    before = database_state(scratch_db), project.tree(), project.tree("../vendor")

    # In place (--no-snapshot: without the build cache, which builds in a new database).
    options = [flag] if flag == "--no-snapshot" else [flag, "--no-snapshot"]
    result = project.manage("resetdb", "--dry-run", "--sql", *options)

    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == "resetdb would do this (dry run, nothing is changed):"
    assert f"  database  {scratch_db.name}" in lines
    steps = lines.index("Steps:")
    sql = lines.index(f"SQL for database {scratch_db.name!r} (alias 'default'):")
    assert steps < sql
    if flag == "--keep-migrations":
        assert lines[steps + 1] == "  migrations  kept as they are (--keep-migrations)"
    else:
        assert lines[steps + 1 : steps + 4] == [
            "  migrations  regenerate app00 (backed up first)",
            "    app00  app00/migrations  (the project's own app)",
            "        add     app00/migrations/0001_initial.py",
        ]
        assert "  -- migrate: app00.0001_initial" in lines
    # The one that cannot be shown, in a line of its own; the migrations before and
    # after it rendered from the planned state, which moved on past it (0003 removes the
    # column 0002 added).
    assert NOT_SHOWN in lines
    assert "  -- migrate: shelves.0001_initial" in lines
    third = lines.index("  -- migrate: shelves.0003_plain_name")
    # Django 6.0 dropped CASCADE from the schema editor's DROP COLUMN.
    cascade = " CASCADE" if django.VERSION < (6, 0) else ""
    assert f'  ALTER TABLE "shelves_shelf" DROP COLUMN "label"{cascade};' in lines[third:]
    # The database has no unique constraint for 0003 to drop (empty: never made;
    # migrated: 0003 dropped it already), and the line says the drop is missing.
    assert lines[third + 1] == FOUND_NONE
    assert lines[-2:] == ["  COMMIT;", "Dry run: nothing was changed."]
    assert (database_state(scratch_db), project.tree(), project.tree("../vendor")) == before
    assert project.backups() == []


def test_names_found_in_the_database_as_it_is_are_said_to_be_so(tmp_path, scratch_db):
    project = shelves_project(tmp_path, scratch_db, Shape(apps=1, models=2, rows=1))
    # Up to 0002: the unique constraint 0003 drops is there to be found.
    done = project.manage("migrate", "--no-input", "shelves", "0002")
    assert done.returncode == 0, done.stderr

    result = project.manage("resetdb", "--dry-run", "--sql", "--keep-migrations")

    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    third = lines.index("  -- migrate: shelves.0003_plain_name")
    assert lines[third + 1] == LOOKED_UP
    assert FOUND_NONE not in lines[third:]


def test_long_lists_and_tables_come_one_item_per_line(tmp_path, scratch_db, other_db):
    project = shelves_project(tmp_path, scratch_db, Shape(apps=30, models=1, rows=1))
    project.edit(
        "app07/models.py",
        "    name = models.CharField(max_length=60)\n",
        "".join(f"    extra{n:02d} = models.CharField(max_length=60)\n" for n in range(40)),
    )

    result = project.manage("resetdb", "--dry-run", "--sql", "--no-snapshot")

    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) < 400
    start = lines.index("  migrations  regenerate app00,")
    assert lines[start + 1 : start + 30] == [
        *(f"                         app{n:02d}," for n in range(1, 29)),
        "                         app29 (backed up first)",
    ]
    create = lines.index('  CREATE TABLE "app07_model00" (')
    end = next(i for i in range(create, len(lines)) if lines[i].endswith(");"))
    assert lines[create + 2] == '      "extra00" varchar(60) NOT NULL,'
    assert end - create == 45  # id, 40 extras, number, code, created, upstream
    # Broken up, the statement still runs as it is.
    with other_db.connect() as conn:
        conn.execute("\n".join(lines[create : end + 1]))
    assert other_db.query(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'app07_model00'"
    ) == [(45,)]


def test_a_reader_that_stops_early_gets_one_line_not_a_traceback(project, scratch_db):
    # As `resetdb --dry-run | head -n 1` does: the pipe is closed after the first line.
    run = subprocess.Popen(
        [sys.executable, "manage.py", "resetdb", "--dry-run", "--sql"],
        cwd=project.root,
        env=project._env(scratch_db.url(), None),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None and run.stderr is not None
    first = run.stdout.readline()
    run.stdout.close()
    errors = run.stderr.read()
    returncode = run.wait(timeout=PATIENCE)

    assert first == "resetdb would do this (dry run, nothing is changed):\n"
    assert (returncode, errors) == (
        1,
        "CommandError: The output was closed before the command had written it all (broken "
        "pipe).\n",
    )


def test_without_sql_the_dry_run_shows_the_plan_only(project, scratch_db):
    project.url = scratch_db.url()

    result = project.manage("resetdb", "--dry-run")
    alone = project.manage("resetdb", "--sql")

    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert "Steps:" in lines
    assert lines[-2:] == [
        "SQL: not shown (--sql shows the statements each database would run)",
        "Dry run: nothing was changed.",
    ]
    assert not any(line.startswith("SQL for database") for line in lines)
    assert alone.returncode == 1
    assert alone.stderr == (
        "CommandError: --sql goes with --dry-run (it shows what would run); nothing was done.\n"
    )
