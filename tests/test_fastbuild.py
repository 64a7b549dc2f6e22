"""The fast build gives what ``migrate`` gives: the same ``pg_dump --schema-only``, the same
``django_migrations`` rows in the same order, the same content types and permissions; and
plain ``migrate`` runs whenever that cannot be shown."""

from __future__ import annotations

import difflib

import pytest

from bench.synthetic import Shape, generate
from tests.conftest import ProjectCopy, schema_dump
from tests.test_resetmigrations import add_nickname, baseline

CYCLE = (
    "    address = models.CharField(max_length=200, blank=True)\n",
    "    address = models.CharField(max_length=200, blank=True)\n"
    '    sponsor = models.ForeignKey("sales.Order", on_delete=models.SET_NULL, null=True)\n',
)
UNMANAGED = """

class Legacy(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        managed = False
        db_table = "legacy_catalog"
"""


def rows(db):
    return {
        "migrations": db.query("SELECT app, name FROM django_migrations ORDER BY id"),
        "content types": db.query("SELECT id, app_label, model FROM django_content_type"),
        "permissions": db.query(
            "SELECT id, name, content_type_id, codename FROM auth_permission ORDER BY id"
        ),
    }


def reset_and_migrate(project: ProjectCopy, fast_db, plain_db, *flags: str):
    reset = project.manage(
        "resetdb", "--no-input", "--no-seed", "--no-snapshot", *flags, url=fast_db.url()
    )
    assert reset.returncode == 0, reset.stderr
    plain = project.manage("migrate", "--no-input", url=plain_db.url())
    assert plain.returncode == 0, plain.stderr
    return reset.stdout


def assert_same(fast_db, plain_db):
    fast, plain = schema_dump(fast_db), schema_dump(plain_db)
    assert fast == plain, "".join(
        difflib.unified_diff(fast.splitlines(True), plain.splitlines(True), "fast", "migrate")
    )
    assert rows(fast_db) == rows(plain_db)


def test_the_demo_is_built_as_migrate_builds_it(project, scratch_db, other_db):
    baseline(project)

    output = reset_and_migrate(project, scratch_db, other_db)

    assert "  migrate     applied 22 migration(s) (4 built from the models), 18 table(s) in " in (
        output
    )
    assert_same(scratch_db, other_db)


def test_a_model_change_with_a_cycle_is_built_as_migrate_builds_it(project, scratch_db, other_db):
    # The cycle makes makemigrations split an app in two files, the second adding the
    # foreign key to an existing table: its column comes last, and so it must here.
    baseline(project)
    add_nickname(project)
    project.edit("testproject/event/models.py", *CYCLE)

    output = reset_and_migrate(project, scratch_db, other_db)

    assert "  migrations  regenerated account, event (3 file(s)) in " in output
    assert "(5 built from the models)" in output
    assert_same(scratch_db, other_db)
    assert scratch_db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'event_venue' "
        "ORDER BY ordinal_position DESC LIMIT 1"
    ) == [("sponsor_id",)]


def test_a_synthetic_project_is_built_as_migrate_builds_it(tmp_path, scratch_db, other_db):
    generate(tmp_path / "synthetic", Shape(apps=3, models=5, rows=2))
    project = ProjectCopy(tmp_path / "synthetic", scratch_db.url(), settings="synth.settings")

    output = reset_and_migrate(project, scratch_db, other_db)

    assert "  migrations  regenerated app00, app01, app02 (3 file(s)) in " in output
    assert "(3 built from the models)" in output
    assert_same(scratch_db, other_db)


@pytest.mark.parametrize(
    ("change", "flags", "fallback"),
    [
        ("unmanaged", (), "              plain migrate: model catalog.Legacy is unmanaged"),
        ("setting", (), None),
        ("keep", ("--keep-migrations",), None),
    ],
)
def test_plain_migrate_when_the_fast_build_cannot_be_shown_equal(
    project, scratch_db, other_db, change, flags, fallback
):
    baseline(project)
    if change == "unmanaged":
        project.append("testproject/catalog/models.py", UNMANAGED)
    if change == "setting":
        project.append("testproject/settings.py", "DJANGO_RESETDB['FAST_BUILD'] = False\n")

    output = reset_and_migrate(project, scratch_db, other_db, *flags)

    assert "built from the models" not in output
    lines = output.splitlines()
    migrate = next(i for i, line in enumerate(lines) if line.startswith("  migrate "))
    if fallback:
        assert lines[migrate + 1] == fallback
    else:
        assert not lines[migrate + 1].startswith("              ")
    assert_same(scratch_db, other_db)
