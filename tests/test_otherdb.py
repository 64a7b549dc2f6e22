"""Projects with database aliases that are not PostgreSQL (SQLite here): no noise on
commands that do not concern them, a refusal from the destructive commands."""

from __future__ import annotations

import hashlib
import sqlite3
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Manage, ScratchDatabase, database_state, last_line

# The demo's apps that need pgvector (and those that depend on them), left out where a
# test migrates the default database: the server need not have it.
VECTOR_APPS = ("testproject.catalog", "testproject.event", "testproject.sales")


def sqlite_alias(name: str, path: Path) -> str:
    return f"""
DATABASES = {{**DATABASES, {name!r}: {{
    "ENGINE": "django.db.backends.sqlite3", "NAME": {str(path)!r},
}}}}
"""


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """An SQLite database file with a table and a row, made without Django."""
    path = tmp_path / "legacy.sqlite3"
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE archive (id INTEGER PRIMARY KEY, title TEXT)")
        connection.execute("INSERT INTO archive (title) VALUES ('minutes 1887')")
    connection.close()
    return path


def test_check_and_migrate_say_nothing_of_a_sqlite_alias(
    scratch_db: ScratchDatabase, manage: Manage, legacy: Path
) -> None:
    extra = sqlite_alias("legacy", legacy) + textwrap.dedent(
        f"""
        INSTALLED_APPS = [a for a in INSTALLED_APPS if a not in {VECTOR_APPS!r}]
        """
    )

    checked = manage("check", db=scratch_db, extra_settings=extra)
    migrated = manage("migrate", "--database", "default", db=scratch_db, extra_settings=extra)

    assert (checked.returncode, checked.stderr) == (0, "")
    assert checked.stdout == "System check identified no issues (0 silenced).\n"
    assert migrated.returncode == 0, migrated.stderr
    assert "W002" not in migrated.stdout + migrated.stderr
    assert "System check identified" not in migrated.stdout + migrated.stderr
    assert scratch_db.query("SELECT count(*) FROM django_migrations")[0][0] > 0


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (("resetschema", "--database", "legacy", "--no-input"), "resetschema"),
        (("resetdb", "--database", "legacy", "--no-input"), "resetdb"),
        (("resetdb", "--database", "default", "--database", "legacy", "--no-input"), "resetdb"),
        (("resetdb", "--database", "legacy", "--drop-snapshots"), "resetdb --drop-snapshots"),
        (("resetdb", "--database", "legacy", "--list-snapshots"), "resetdb --list-snapshots"),
    ],
)
def test_destructive_commands_refuse_a_sqlite_alias(
    scratch_db: ScratchDatabase,
    manage: Manage,
    legacy: Path,
    args: tuple[str, ...],
    command: str,
) -> None:
    with scratch_db.connect() as conn:
        conn.execute("CREATE TABLE kept (id int)")
        conn.execute("INSERT INTO kept VALUES (1)")
    before = checksum(legacy), database_state(scratch_db)

    result = manage(*args, db=scratch_db, extra_settings=sqlite_alias("legacy", legacy))

    assert result.returncode == 3, result.stderr
    assert last_line(result.stderr) == (
        f"CommandError: {command} refused: alias 'legacy' uses sqlite; django_resetdb "
        f"resets only PostgreSQL databases."
    )
    assert (checksum(legacy), database_state(scratch_db)) == before


def test_the_refusal_is_the_real_reason_whatever_enabled_says(
    scratch_db: ScratchDatabase, manage: Manage, legacy: Path
) -> None:
    before = checksum(legacy)

    result = manage(
        "resetdb",
        "--database",
        "legacy",
        "--no-input",
        db=scratch_db,
        resetdb_settings={"ENABLED": False},
        extra_settings=sqlite_alias("legacy", legacy),
    )

    assert result.returncode == 3, result.stderr
    assert last_line(result.stderr) == (
        "CommandError: resetdb refused: alias 'legacy' uses sqlite; django_resetdb resets "
        "only PostgreSQL databases."
    )
    assert checksum(legacy) == before
