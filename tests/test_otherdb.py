"""Projects with database aliases that are not PostgreSQL (SQLite here): no noise on
commands that do not concern them, a refusal from the destructive commands, and
``seed`` loading into them what ``loaddata`` would."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Manage, ScratchDatabase, database_state, last_line

MODELS = """
from django.db import models


class Shelf(models.Model):
    code = models.CharField(max_length=20, unique=True)


class Tag(models.Model):
    name = models.CharField(max_length=20)


class Book(models.Model):
    title = models.CharField(max_length=100)
    shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE)
    tags = models.ManyToManyField(Tag)


class Note(models.Model):
    text = models.CharField(max_length=100, unique=True)
"""

MIGRATION = """
import django.db.models.deletion
from django.db import migrations, models


def key():
    return models.BigAutoField(auto_created=True, primary_key=True, serialize=False)


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[("id", key()), ("text", models.CharField(max_length=100, unique=True))],
        ),
        migrations.CreateModel(
            name="Shelf",
            fields=[("id", key()), ("code", models.CharField(max_length=20, unique=True))],
        ),
        migrations.CreateModel(
            name="Tag", fields=[("id", key()), ("name", models.CharField(max_length=20))]
        ),
        migrations.CreateModel(
            name="Book",
            fields=[
                ("id", key()),
                ("title", models.CharField(max_length=100)),
                (
                    "shelf",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, to="shelves.shelf"
                    ),
                ),
                ("tags", models.ManyToManyField(to="shelves.tag")),
            ],
        ),
    ]
"""

SEEDS_MODULE = """
def add_note(database, report):
    from shelves.models import Note, Shelf

    shelves = Shelf.objects.using(database).count()
    Note.objects.using(database).update_or_create(text=f"{shelves} shelves")
    return 1
"""

# Book 1 names shelf 2 of the next seed and tags later in its file; book 2 appears twice
# (the later one wins).
BOOKS = [
    {"model": "shelves.book", "pk": 1, "fields": {"title": "Hymnal", "shelf": 2, "tags": [1, 2]}},
    {"model": "shelves.book", "pk": 2, "fields": {"title": "Draft", "shelf": 1, "tags": []}},
    {"model": "shelves.book", "pk": 2, "fields": {"title": "Ledger", "shelf": 1, "tags": [2]}},
    {"model": "shelves.tag", "pk": 1, "fields": {"name": "music"}},
    {"model": "shelves.tag", "pk": 2, "fields": {"name": "archive"}},
]
SHELVES = [
    {"model": "shelves.shelf", "pk": 1, "fields": {"code": "A"}},
    {"model": "shelves.shelf", "pk": 2, "fields": {"code": "B"}},
]
BROKEN = [{"model": "shelves.book", "pk": 3, "fields": {"title": "Lost", "shelf": 99}}]

FIXTURE_TABLES = ("shelves_shelf", "shelves_tag", "shelves_book", "shelves_book_tags")


def sqlite_alias(name: str, path: Path) -> str:
    return f"""
DATABASES = {{**DATABASES, {name!r}: {{
    "ENGINE": "django.db.backends.sqlite3", "NAME": {str(path)!r},
}}}}
"""


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sqlite_rows(path: Path, tables: tuple[str, ...]) -> dict[str, Any]:
    """Every row of ``tables`` and their AUTOINCREMENT counters, read with the sqlite3
    module: the second channel."""
    connection = sqlite3.connect(path)
    try:
        rows: dict[str, Any] = {
            table: sorted(connection.execute(f'SELECT * FROM "{table}"').fetchall())
            for table in tables
        }
        placeholders = ", ".join("?" for _ in tables)
        rows["sqlite_sequence"] = sorted(
            connection.execute(
                f"SELECT name, seq FROM sqlite_sequence WHERE name IN ({placeholders})", tables
            ).fetchall()
        )
    finally:
        connection.close()
    return rows


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
    extra = sqlite_alias("legacy", legacy)

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


@pytest.mark.parametrize(
    "aliases", [("legacy",), ("default", "legacy")], ids=["alone", "after-a-postgresql-one"]
)
def test_the_refusal_is_the_real_reason_whatever_enabled_says(
    scratch_db: ScratchDatabase, manage: Manage, legacy: Path, aliases: tuple[str, ...]
) -> None:
    # Before any alias is gated: not the ENABLED sentence of the PostgreSQL one first.
    before = checksum(legacy)
    tables = scratch_db.query("SELECT count(*) FROM pg_class")

    result = manage(
        "resetdb",
        *[arg for alias in aliases for arg in ("--database", alias)],
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
    assert scratch_db.query("SELECT count(*) FROM pg_class") == tables


def shelves_project(tmp_path: Path, *aliases: str) -> str:
    """The ``shelves`` app (models, migration, fixtures, a seed callable) in ``tmp_path``
    and settings lines adding it, with an SQLite alias per name in ``aliases``."""
    app = tmp_path / "shelves"
    (app / "migrations").mkdir(parents=True)
    (app / "fixtures").mkdir()
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "models.py").write_text(MODELS)
    (app / "migrations" / "0001_initial.py").write_text(MIGRATION)
    (app / "seeds.py").write_text(SEEDS_MODULE)
    for name, objects in [("books", BOOKS), ("shelves", SHELVES), ("broken", BROKEN)]:
        (app / "fixtures" / f"{name}.json").write_text(json.dumps(objects))
    extra = 'INSTALLED_APPS = [*INSTALLED_APPS, "shelves"]\n'
    for alias in aliases:
        extra += sqlite_alias(alias, tmp_path / f"{alias}.sqlite3")
    return extra


def migrate_shelves(manage: Manage, db: ScratchDatabase, extra: str, *aliases: str) -> None:
    """The shelves app's tables in each SQLite database of ``aliases``."""
    for alias in aliases:
        migrated = manage("migrate", "shelves", "--database", alias, db=db, extra_settings=extra)
        assert migrated.returncode == 0, migrated.stderr


SEEDS = ["books", "shelves", "shelves.seeds.add_note"]
SUMMARY = re.compile(
    r"Seeded database '(?P<name>[^']+)' \(alias 'legacy'\): 3 seed\(s\), 8 object\(s\) in "
    r"\d+\.\d\d s\."
)


def test_seed_loads_into_sqlite_what_loaddata_loads(
    scratch_db: ScratchDatabase, manage: Manage, tmp_path: Path
) -> None:
    extra = shelves_project(tmp_path, "legacy", "other")
    # No host is allowed: an SQLite database has none, so HOSTS does not apply.
    conf = {"SEEDS": SEEDS, "HOSTS": []}
    migrate_shelves(manage, scratch_db, extra, "legacy", "other")
    # A row that was broken before: loaddata does not look at it, neither does seed.
    with sqlite3.connect(tmp_path / "legacy.sqlite3") as connection:
        connection.execute(
            "CREATE TABLE ledger (id INTEGER PRIMARY KEY, shelf_id INTEGER REFERENCES "
            "shelves_shelf (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        connection.execute("INSERT INTO ledger (shelf_id) VALUES (7)")
    connection.close()

    seeded = manage(
        "seed", "--database", "legacy", db=scratch_db, resetdb_settings=conf, extra_settings=extra
    )
    loaded = manage(
        "loaddata", "books", "shelves", "--database", "other", db=scratch_db, extra_settings=extra
    )

    assert seeded.returncode == 0, seeded.stderr
    assert loaded.returncode == 0, loaded.stderr
    found = SUMMARY.fullmatch(last_line(seeded.stdout))
    assert found is not None, seeded.stdout
    assert found["name"] == str(tmp_path / "legacy.sqlite3")
    legacy_rows = sqlite_rows(tmp_path / "legacy.sqlite3", FIXTURE_TABLES)
    assert legacy_rows == sqlite_rows(tmp_path / "other.sqlite3", FIXTURE_TABLES)
    assert legacy_rows["shelves_book"] == [(1, "Hymnal", 2), (2, "Ledger", 1)]
    assert legacy_rows["shelves_book_tags"] == [(1, 1, 1), (2, 1, 2), (3, 2, 2)]
    # The callable ran after the fixtures before it, in the same run.
    everything = sqlite_rows(tmp_path / "legacy.sqlite3", (*FIXTURE_TABLES, "shelves_note"))
    assert everything["shelves_note"] == [(1, "2 shelves")]

    again = manage(
        "seed", "--database", "legacy", db=scratch_db, resetdb_settings=conf, extra_settings=extra
    )
    loaded_again = manage(
        "loaddata", "books", "shelves", "--database", "other", db=scratch_db, extra_settings=extra
    )

    # Running it again changes what loaddata run again changes: book 2's first version
    # clears its tags, the second adds one back under a new id.
    assert again.returncode == 0, again.stderr
    assert loaded_again.returncode == 0, loaded_again.stderr
    rows_again = sqlite_rows(tmp_path / "legacy.sqlite3", (*FIXTURE_TABLES, "shelves_note"))
    assert rows_again["shelves_note"] == everything["shelves_note"]
    assert rows_again["shelves_book"] == everything["shelves_book"]
    assert sqlite_rows(tmp_path / "legacy.sqlite3", FIXTURE_TABLES) == sqlite_rows(
        tmp_path / "other.sqlite3", FIXTURE_TABLES
    )


def test_seed_on_sqlite_is_all_or_nothing(
    scratch_db: ScratchDatabase, manage: Manage, tmp_path: Path
) -> None:
    extra = shelves_project(tmp_path, "legacy")
    conf = {"SEEDS": SEEDS}
    migrate_shelves(manage, scratch_db, extra, "legacy")
    path = tmp_path / "legacy.sqlite3"
    before = checksum(path)

    result = manage(
        "seed",
        "shelves",
        "books",
        "broken",
        "--database",
        "legacy",
        db=scratch_db,
        resetdb_settings=conf,
        extra_settings=extra,
    )

    assert result.returncode == 1, result.stderr
    assert last_line(result.stderr) == (
        "CommandError: Seeding failed: The row in table 'shelves_book' with primary key '3' "
        "has an invalid foreign key: shelves_book.shelf_id contains a value '99' that does "
        "not have a corresponding value in shelves_shelf.id; nothing was written."
    )
    assert checksum(path) == before
    assert sqlite_rows(path, FIXTURE_TABLES) == {
        **{table: [] for table in FIXTURE_TABLES},
        "sqlite_sequence": [],
    }


def test_seed_on_sqlite_goes_through_enabled(
    scratch_db: ScratchDatabase, manage: Manage, tmp_path: Path
) -> None:
    extra = shelves_project(tmp_path, "legacy")
    migrate_shelves(manage, scratch_db, extra, "legacy")
    path = tmp_path / "legacy.sqlite3"
    before = checksum(path)

    result = manage(
        "seed",
        "--database",
        "legacy",
        db=scratch_db,
        resetdb_settings={"SEEDS": SEEDS, "ENABLED": False},
        extra_settings=extra,
    )

    assert result.returncode == 3, result.stderr
    assert last_line(result.stderr) == (
        "CommandError: seed refused: DJANGO_RESETDB['ENABLED'] is False for this project "
        "(it defaults to DEBUG); set it to True in a development or CI settings module to "
        "allow resets."
    )
    assert checksum(path) == before


def test_seed_refuses_a_server_it_cannot_check_against_hosts(
    scratch_db: ScratchDatabase, manage: Manage
) -> None:
    # Django's dummy backend (vendor "unknown") stands in for MySQL and the others: a
    # server, but not one whose reached address the guard can read.
    extra = """
DATABASES = {**DATABASES, "ghost": {"ENGINE": "django.db.backends.dummy"}}
"""

    result = manage(
        "seed", "--database", "ghost", db=scratch_db, resetdb_settings={}, extra_settings=extra
    )

    assert result.returncode == 3, result.stderr
    assert last_line(result.stderr) == (
        "CommandError: seed refused: alias 'ghost' uses unknown, whose server django_resetdb "
        "cannot check against DJANGO_RESETDB['HOSTS']; add '*' there to allow seeding it."
    )
