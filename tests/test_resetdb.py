"""``resetdb`` on the demo project: guard, schema reset and migrate, all or nothing."""

from __future__ import annotations

import pytest

from tests.conftest import (
    available_extensions,
    last_line,
    relations,
    target_host,
    target_port,
    target_user,
)

pytestmark = pytest.mark.skipif(
    "vector" not in available_extensions(),
    reason="the demo project needs the pgvector extension on the server",
)

DEMO_MIGRATIONS = {
    ("account", "0001_initial"),
    ("catalog", "0001_initial"),
    ("event", "0001_initial"),
    ("sales", "0001_initial"),
}

FAILING_MIGRATION = """\
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("event", "0001_initial")]
    operations = [migrations.RunSQL("SELECT 1 / 0")]
"""


def applied(db):
    return set(db.query("SELECT app, name FROM django_migrations"))


def test_builds_the_demo_database(scratch_db, manage):
    result = manage("resetdb", "--no-input", db=scratch_db)

    assert result.returncode == 0, result.stderr
    assert applied(scratch_db) >= DEMO_MIGRATIONS | {("admin", "0001_initial")}
    tables = {name for schema, name, kind in relations(scratch_db) if kind == "r"}
    assert {"account_user", "catalog_artifact", "event_event_artifacts", "sales_ticket"} <= tables
    assert ("vector",) in scratch_db.query("SELECT extname FROM pg_extension")
    assert last_line(result.stdout).startswith(
        f"Rebuilt database {scratch_db.name!r} (alias 'default'): {len(tables)} table(s) in "
    )
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"Target: database {scratch_db.name!r} (alias 'default') on {target_host()}:"
        f"{target_port()} as {target_user()!r}, schema(s) public: 0 table(s), "
        "0 other session(s)."
    )
    assert lines[1].startswith("  schema    Reset schema(s) public")
    assert lines[2].startswith("  migrate   applied all migrations in ")


def test_second_run_drops_the_rows_and_rebuilds_the_same_schema(scratch_db, manage):
    assert manage("resetdb", "--no-input", db=scratch_db).returncode == 0
    shape = relations(scratch_db)
    migrations = applied(scratch_db)
    with scratch_db.connect() as conn:
        conn.execute("INSERT INTO catalog_category (name, slug) VALUES ('Maps', 'maps')")

    result = manage("resetdb", "--no-input", db=scratch_db)

    assert result.returncode == 0, result.stderr
    assert relations(scratch_db) == shape
    assert applied(scratch_db) == migrations
    assert scratch_db.query("SELECT count(*) FROM catalog_category") == [(0,)]


def test_a_failing_migration_leaves_the_database_as_it_was(scratch_db, manage, tmp_path):
    assert manage("resetdb", "--no-input", db=scratch_db).returncode == 0
    with scratch_db.connect() as conn:
        conn.execute("INSERT INTO catalog_category (name, slug) VALUES ('Maps', 'maps')")
    shape = relations(scratch_db)
    migrations = applied(scratch_db)
    package = tmp_path / "failing_sales"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "0001_initial.py").write_text(FAILING_MIGRATION)

    result = manage(
        "resetdb", "--no-input", db=scratch_db,
        extra_settings='MIGRATION_MODULES = {"sales": "failing_sales"}\n',
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr == (
        "CommandError: DataError: division by zero; the transaction was rolled back, nothing "
        "was changed.\n"
    )
    assert relations(scratch_db) == shape
    assert applied(scratch_db) == migrations
    assert scratch_db.query("SELECT name FROM catalog_category") == [("Maps",)]


def test_dry_run_changes_nothing(scratch_db, manage):
    with scratch_db.connect() as conn:
        conn.execute("CREATE TABLE precious (n int)")

    result = manage("resetdb", "--dry-run", db=scratch_db)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "resetdb would reset this database (dry run, nothing changed):"
    )
    assert "  steps     reset schema(s) public, migrate" in result.stdout.splitlines()
    assert relations(scratch_db) == [("public", "precious", "r")]


def test_verbosity_zero_prints_nothing(scratch_db, manage):
    result = manage("resetdb", "--no-input", "-v", "0", db=scratch_db)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert ("account", "0001_initial") in applied(scratch_db)
