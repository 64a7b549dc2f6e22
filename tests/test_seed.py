"""``seed`` leaves the rows ``loaddata`` leaves: each case loads the same fixtures with
``loaddata`` into one database and with ``seed`` into another, then compares every table
and sequence over a connection of its own."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    REPO,
    Manage,
    ProjectCopy,
    ScratchDatabase,
    clone_database,
    data_snapshot,
    drop_database,
)

SEEDCASES = 'INSTALLED_APPS = [*INSTALLED_APPS, "tests.seedcases.apps.SeedCasesConfig"]\n'
WHEN = "2020-01-02T03:04:05Z"
LATER = "2021-06-07T08:09:10Z"


@pytest.fixture(scope="session")
def migrated(tmp_path_factory) -> Any:
    """A database with the demo's and the seed cases' tables, to clone from."""
    manage = Manage(tmp_path_factory.mktemp("template"))
    template = clone_database("template0")
    try:
        result = manage("migrate", "--no-input", db=template, extra_settings=SEEDCASES)
        assert result.returncode == 0, result.stderr
        yield template
    finally:
        drop_database(template.name)


class Cases:
    """Fixture files in a folder of their own, and databases cloned from ``migrated``."""

    def __init__(self, manage: Manage, folder: Path, template: ScratchDatabase) -> None:
        self.manage = manage
        self.folder = folder
        self.folder.mkdir()
        self.template = template
        self.databases: list[ScratchDatabase] = []

    def database(self) -> ScratchDatabase:
        db = clone_database(self.template.name)
        self.databases.append(db)
        return db

    def write(self, name: str, content: Any) -> Path:
        path = self.folder / name
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=1))
        return path

    def run(self, *args: str, db: ScratchDatabase, settings: str = "", **kw: Any) -> Any:
        extra = SEEDCASES + f"FIXTURE_DIRS = [{str(self.folder)!r}]\n" + settings
        return self.manage(*args, db=db, extra_settings=extra, **kw)

    def ok(self, *args: str, db: ScratchDatabase, **kw: Any) -> Any:
        result = self.run(*args, db=db, **kw)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def both(self, *labels: str) -> tuple[ScratchDatabase, ScratchDatabase]:
        """``loaddata LABELS`` into one new database, ``seed LABELS`` into another."""
        by_loaddata, by_seed = self.database(), self.database()
        self.ok("loaddata", *labels, db=by_loaddata)
        self.ok("seed", *labels, db=by_seed)
        return by_loaddata, by_seed


@pytest.fixture
def cases(manage, tmp_path, migrated):
    cases = Cases(manage, tmp_path / "fixtures", migrated)
    yield cases
    for db in cases.databases:
        drop_database(db.name)


def book(pk: int | None, title: str, author: Any, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "model": "seedcases.book",
        "fields": {"title": title, "author": author, "created": WHEN, "updated": LATER, **fields},
    }
    if pk is not None:
        item["pk"] = pk
    return item


def obj(model: str, pk: Any = None, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"model": f"seedcases.{model}", "fields": fields}
    if pk is not None:
        item["pk"] = pk
    return item


PLAIN = [
    obj("author", 101, name="Ann", born=1950),
    obj("author", 102, name="Bo", born=None),
    obj("tag", None, label="poetry"),  # no pk: the sequence gives it one
    obj("tag", 5, label="prose"),
    book(1, "First", 101, sequel=2, tags=[5]),  # the sequel comes later: a forward reference
    book(2, "Second", 102, sequel=None, tags=[5, 1]),
]

NATURAL = [
    obj("author", name="Cy", born=1960),  # natural primary key
    book(10, "Nat", ["Cy"], editor=["Di"], tags=[["verse"], ["prose"]]),  # Di, verse: later
    obj("tag", label="verse"),
    obj("tag", label="prose"),
    obj("author", name="Di", born=None),
]


def test_pks_foreign_keys_m2m_and_auto_now_as_loaddata(cases):
    cases.write("plain.json", PLAIN)

    by_loaddata, by_seed = cases.both("plain")

    assert data_snapshot(by_seed) == data_snapshot(by_loaddata)
    assert by_seed.query("SELECT title, created, updated FROM seedcases_book ORDER BY id") == (
        by_loaddata.query("SELECT title, created, updated FROM seedcases_book ORDER BY id")
    )
    assert by_seed.query("SELECT to_char(created, 'YYYY') FROM seedcases_book") == [
        ("2020",),
        ("2020",),
    ]


def test_natural_keys_and_forward_references_as_loaddata(cases):
    cases.write("natural.json", NATURAL)

    by_loaddata, by_seed = cases.both("natural")

    assert data_snapshot(by_seed) == data_snapshot(by_loaddata)
    assert by_seed.query(
        "SELECT b.title, a.name, e.name FROM seedcases_book b JOIN seedcases_author a "
        "ON a.id = b.author_id JOIN seedcases_author e ON e.id = b.editor_id"
    ) == [("Nat", "Cy", "Di")]


def test_a_second_run_changes_nothing(cases):
    cases.write("plain.json", PLAIN)
    cases.write("natural.json", NATURAL)
    by_loaddata, by_seed = cases.both("plain", "natural")
    once = data_snapshot(by_seed)

    cases.ok("seed", "plain", "natural", db=by_seed)
    cases.ok("loaddata", "plain", "natural", db=by_loaddata)

    assert data_snapshot(by_seed) == once == data_snapshot(by_loaddata)


def test_objects_without_a_key_are_added_on_each_run_as_loaddata_adds_them(cases):
    cases.write(
        "places.json",
        [
            obj("place", 101, name="Keyed"),
            obj("place", None, name="Unkeyed A"),
            obj("place", 102, name="Keyed too"),
            obj("place", None, name="Unkeyed B"),
        ],
    )
    by_loaddata, by_seed = cases.both("places")

    cases.ok("loaddata", "places", db=by_loaddata)
    cases.ok("seed", "places", db=by_seed)

    assert data_snapshot(by_seed) == data_snapshot(by_loaddata)
    assert by_seed.query("SELECT id, name FROM seedcases_place ORDER BY id") == [
        (1, "Unkeyed A"),
        (2, "Unkeyed B"),
        (101, "Keyed"),
        (102, "Keyed too"),
        (103, "Unkeyed A"),
        (104, "Unkeyed B"),
    ]


def test_objects_appearing_twice_the_later_wins_as_loaddata(cases):
    cases.write(
        "twice.json",
        [
            obj("author", 1, name="Ann", born=1950),
            obj("tag", 1, label="a"),
            obj("tag", 2, label="b"),
            obj("tag", 3, label="c"),
            book(1, "draft", 1, tags=[1, 2]),
            book(2, "other", 1, tags=[3]),
            book(1, "final", 1, tags=[2, 3, 3]),
            obj("author", 1, name="Ann B.", born=1951),
        ],
    )

    by_loaddata, by_seed = cases.both("twice")

    assert data_snapshot(by_seed) == data_snapshot(by_loaddata)
    assert by_seed.query("SELECT title FROM seedcases_book WHERE id = 1") == [("final",)]


def test_proxies_inheritance_and_order_with_respect_to_as_loaddata(cases):
    cases.write(
        "shapes.json",
        [
            obj("famousauthor", 7, name="Famous", born=1900),
            obj("restaurant", 2, serves_pizza=True),  # before its parent row
            obj("place", 1, name="Inn"),
            obj("place", 2, name="Pizzeria"),
            obj("restaurant", 1, serves_pizza=False),
            obj("recipe", 1, name="Bread"),
            obj("step", None, recipe=1, text="knead"),
            obj("step", None, recipe=1, text="bake"),
            obj("step", 9, recipe=1, text="eat", _order=0),
        ],
    )

    by_loaddata, by_seed = cases.both("shapes")

    assert data_snapshot(by_seed) == data_snapshot(by_loaddata)
    assert by_seed.query("SELECT name FROM seedcases_author WHERE id = 7") == [("Famous",)]


def test_receivers_are_called_with_raw_true_as_under_loaddata(cases):
    cases.write(
        "reviews.json",
        [
            obj("author", 1, name="Ann", born=None),
            book(1, "First", 1),
            obj("review", 1, book=1, stars=4),
            obj("review", 2, book=1, stars=2),
            obj("review", 1, book=1, stars=5),
        ],
    )

    by_loaddata, by_seed = cases.both("reviews")

    assert data_snapshot(by_seed) == data_snapshot(by_loaddata)
    calls = by_seed.query(
        "SELECT signal, review, raw, created, reviews_in_table FROM seedcases_receivercall "
        "ORDER BY id"
    )
    assert calls == [
        ("pre_save", 1, True, None, 0),
        ("post_save", 1, True, True, 1),
        ("pre_save", 2, True, None, 1),
        ("post_save", 2, True, True, 2),
        ("pre_save", 1, True, None, 2),
        ("post_save", 1, True, False, 2),
    ]


FORMATS = {
    "xml": ("xml", "xml.xml"),
    "yaml": ("yaml", "yaml.yaml"),
    "jsonl": ("jsonl", "lines.jsonl"),
    "gzip": ("json", "gzip.json.gz"),
    "bzip2": ("json", "bzip2.json.bz2"),
    "xz": ("json", "xz.json.xz"),
}


def test_every_format_and_compression_loads_as_loaddata(cases):
    cases.write("plain.json", PLAIN)
    cases.write("natural.json", NATURAL)
    source = cases.database()
    cases.ok("loaddata", "plain", "natural", db=source)
    dump = ("dumpdata", "seedcases", "--natural-foreign", "--natural-primary")
    cases.ok(*dump, "-o", str(cases.folder / "dump.json"), db=source)
    for fmt, name in FORMATS.values():
        cases.ok(*dump, "--format", fmt, "-o", str(cases.folder / name), db=source)
    (cases.folder / "special.default.json").write_bytes((cases.folder / "dump.json").read_bytes())
    expected = cases.database()
    cases.ok("loaddata", "dump", db=expected)
    wanted = data_snapshot(expected)

    literal = str(cases.folder / "dump.json")
    labels = {**FORMATS, "database-specific": ("json", "special"), "literal path": ("", literal)}
    for kind, (_, name) in labels.items():
        db = cases.database()
        result = cases.ok("seed", name, db=db)
        assert data_snapshot(db) == wanted, kind
        assert " 10 object(s)" in result.stdout, kind


def test_exclude_skips_an_app_or_a_model_as_loaddata(cases):
    cases.write("plain.json", PLAIN)
    by_loaddata, by_seed = cases.database(), cases.database()

    excluded = ("-e", "seedcases.tag", "--exclude", "seedcases.book")
    cases.ok("loaddata", "plain", *excluded, db=by_loaddata)
    cases.ok("seed", "plain", *excluded, db=by_seed)

    assert data_snapshot(by_seed) == data_snapshot(by_loaddata)
    assert by_seed.query("SELECT count(*) FROM seedcases_book") == [(0,)]


def test_output_is_a_line_per_seed_and_a_summary(cases):
    cases.write("plain.json", PLAIN)
    db = cases.database()

    result = cases.ok("seed", "plain", "testproject.seeds.create_sample_users", db=db)

    lines = result.stdout.splitlines()
    assert re.fullmatch(r"  plain {33} 6 object\(s\) in \d+\.\d\d s", lines[0]), lines
    assert re.fullmatch(
        r"  testproject\.seeds\.create_sample_users  4 object\(s\) in \d+\.\d\d s", lines[1]
    )
    assert re.fullmatch(
        rf"Seeded database '{db.name}' \(alias 'default'\): 2 seed\(s\), 10 object\(s\) "
        r"in \d+\.\d\d s\.",
        lines[2],
    )
    assert len(lines) == 3


def test_verbosity_zero_prints_nothing(cases):
    cases.write("plain.json", PLAIN)

    result = cases.ok("seed", "plain", "-v", "0", db=cases.database())

    assert result.stdout == result.stderr == ""


def test_list_shows_files_and_callables_and_loads_nothing(cases):
    cases.write("plain.json", PLAIN)
    db = cases.database()
    before = data_snapshot(db)

    result = cases.ok("seed", "--list", "testproject.seeds.create_sample_users", "plain", db=db)

    assert result.stdout == (
        "2 seed(s) for database alias 'default', in order:\n"
        "  1. testproject.seeds.create_sample_users  callable in testproject/seeds.py\n"
        f"  2. plain                                  fixture {cases.folder / 'plain.json'}\n"
    )
    assert data_snapshot(db) == before


def test_the_settings_seeds_are_the_default(cases):
    db = cases.database()

    first = cases.ok("seed", db=db)
    once = data_snapshot(db)
    cases.ok("seed", db=db)

    assert [line.split()[0] for line in first.stdout.splitlines()[:-1]] == [
        "testproject.seeds.create_sample_users",
        "volunteers",
        "catalog",
        "events",
        "sales",
    ]
    assert data_snapshot(db) == once
    assert db.query("SELECT count(*) FROM sales_ticket") == [(3,)]


# Objects that name later ones, loaded the way each command loads them. ``migrate`` adds
# seedcases.Book.publisher with an ALTER TABLE in 0002, which leaves that foreign key
# checked immediately for the rest of the transaction: resetdb migrates and seeds in one.

FORWARD_FIRST = [
    book(1, "By pk", 1, publisher=5),  # publisher 5: later in this file
    book(2, "By natural key", 1, publisher=["Later Press"], editor=["Bo"]),  # Bo: next file
    book(3, "Across files", 2, publisher=6),  # author 2 and publisher 6: next file
    obj("author", 1, name="Ann", born=1950),
    obj("publisher", 5, name="Five"),
    obj("publisher", name="Later Press"),  # natural primary key, as --natural-primary
]
FORWARD_SECOND = [
    obj("author", 2, name="Bo", born=None),
    obj("publisher", 6, name="Six"),
]
FORWARD_BOOKS = [
    (1, "By pk", "Ann", None, "Five"),
    (2, "By natural key", "Ann", "Bo", "Later Press"),
    (3, "Across files", "Bo", None, "Six"),
]


def seedcases_data(db: ScratchDatabase) -> dict[str, Any]:
    """The seed cases' rows and sequences: the rest of a rebuilt database differs from a
    migrated one in what it must (migration times)."""
    snapshot = data_snapshot(db)
    return {
        k: v for k, v in snapshot.items() if k.removeprefix("sequence ").startswith("seedcases_")
    }


def books_as_read(db: ScratchDatabase) -> list[Any]:
    return db.query(
        "SELECT b.id, b.title, a.name, e.name, p.name FROM seedcases_book b "
        "JOIN seedcases_author a ON a.id = b.author_id "
        "LEFT JOIN seedcases_author e ON e.id = b.editor_id "
        "LEFT JOIN seedcases_publisher p ON p.id = b.publisher_id ORDER BY b.id"
    )


def forward_cases(cases: Cases) -> ScratchDatabase:
    """Both fixtures written, and loaded by ``loaddata`` into a migrated database."""
    cases.write("first.json", FORWARD_FIRST)
    cases.write("second.json", FORWARD_SECOND)
    by_loaddata = cases.database()
    cases.ok("loaddata", "first", "second", db=by_loaddata)
    assert books_as_read(by_loaddata) == FORWARD_BOOKS
    return by_loaddata


SEED_FORWARD = "DJANGO_RESETDB = {'SEEDS': ['first', 'second']}\n"


@pytest.mark.parametrize(
    "how",
    [("seed", "first", "second"), ("resetdb", "--no-input", "--no-snapshot", "--keep-migrations")],
    ids=["seed", "keep-migrations"],
)
def test_forward_references_in_a_file_and_across_seeds_as_loaddata(cases, how):
    by_loaddata = forward_cases(cases)
    by_seed = cases.database()

    result = cases.run(*how, db=by_seed, settings=SEED_FORWARD)

    assert result.returncode == 0, result.stdout + result.stderr
    assert books_as_read(by_seed) == FORWARD_BOOKS
    assert seedcases_data(by_seed) == seedcases_data(by_loaddata)


def test_forward_references_with_the_fast_build_as_loaddata(cases, project):
    # The demo's apps are regenerated and built from the models; the seed cases, whose
    # code lies outside the copied project, are migrated in the same transaction.
    by_loaddata = forward_cases(cases)
    by_seed = cases.database()
    project.append(
        "testproject/settings.py",
        SEEDCASES + f"FIXTURE_DIRS = [{str(cases.folder)!r}]\n" + SEED_FORWARD,
    )
    copy = ProjectCopy(project.root, by_seed.url(), pythonpath=(REPO,))

    result = copy.manage("resetdb", "--no-input", "--no-snapshot")

    assert result.returncode == 0, result.stdout + result.stderr
    assert " built from the models)" in result.stdout
    assert books_as_read(by_seed) == FORWARD_BOOKS
    assert seedcases_data(by_seed) == seedcases_data(by_loaddata)


MIGRATE_THEN_SEED = """
from django.core.management import call_command
from django.db import transaction

import django_resetdb

with transaction.atomic():
    call_command("migrate", verbosity=0)
    django_resetdb.seed(["first", "second"])
"""


def test_forward_references_when_seeding_in_the_transaction_that_migrated(cases):
    # The caller's own transaction: Django's migrate, run inside it, leaves the foreign
    # key that 0002 adds checked immediately.
    by_loaddata = forward_cases(cases)
    by_seed = clone_database("template0")
    cases.databases.append(by_seed)

    cases.ok("shell", "-c", MIGRATE_THEN_SEED, db=by_seed)

    assert books_as_read(by_seed) == FORWARD_BOOKS
    assert seedcases_data(by_seed) == seedcases_data(by_loaddata)


def test_a_missing_key_after_a_forward_reference_is_refused_with_kept_migrations(cases):
    cases.write("first.json", FORWARD_FIRST)
    cases.write("second.json", FORWARD_SECOND)
    path = cases.write("dangling.json", [book(30, "Lost", 1, publisher=9)])
    db = cases.database()
    before = data_snapshot(db, sequences=False)
    settings = "DJANGO_RESETDB = {'SEEDS': ['first', 'dangling', 'second']}\n"

    result = cases.run(
        "resetdb", "--no-input", "--no-snapshot", "--keep-migrations", db=db, settings=settings
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        f"CommandError: Seeding failed: {path}, object 1 (seedcases.book, pk=30): publisher = "
        "9 names a seedcases.publisher that does not exist; nothing was written.\n"
    )
    assert data_snapshot(db, sequences=False) == before


# Bad input: one clear error naming the file and the object, and nothing written. Rows
# only: PostgreSQL's sequences are not transactional, a rolled back run may move them.


def refused(cases: Cases, *labels: str, settings: str = "") -> str:
    cases.write("plain.json", PLAIN)
    db = cases.database()
    cases.ok("seed", "plain", db=db)  # rows that must survive the failing run
    before = data_snapshot(db, sequences=False)

    result = cases.run("seed", "plain", *labels, db=db, settings=settings)

    assert result.returncode == 1, result.stdout + result.stderr
    assert data_snapshot(db, sequences=False) == before
    assert "Traceback" not in result.stderr
    return str(result.stderr)


def test_unknown_model_is_refused_naming_the_file_and_the_model(cases):
    path = cases.write("bad.json", [obj("tag", 40, label="x"), obj("nosuch", 1, name="?")])

    error = refused(cases, "bad")

    assert error == (
        f"CommandError: Seed 'bad': fixture {path}, object 2, names model 'seedcases.nosuch', "
        "which is "
        "not installed; nothing was changed.\n"
    )


def test_missing_foreign_key_target_is_refused_naming_the_object(cases):
    path = cases.write("dangling.json", [obj("tag", 40, label="x"), book(30, "Lost", 999)])

    error = refused(cases, "dangling")

    assert error == (
        f"CommandError: Seeding failed: {path}, object 2 (seedcases.book, pk=30): author = "
        "999 names a seedcases.author that does not exist; nothing was written.\n"
    )


def test_missing_many_to_many_target_is_refused_naming_the_object(cases):
    path = cases.write("dangling.json", [book(30, "Lost", 101, tags=[5, 77])])

    error = refused(cases, "dangling")

    assert error == (
        f"CommandError: Seeding failed: {path}, object 1 (seedcases.book, pk=30): tags lists "
        "seedcases.tag 77; nothing was written.\n"
    )


def test_malformed_json_is_refused(cases):
    path = cases.write("broken.json", '[{"model": "seedcases.tag", "pk": 1,')

    error = refused(cases, "broken")

    assert error == (
        f"CommandError: Seed 'broken': fixture {path} is not valid JSON (Expecting property "
        "name enclosed in double quotes: line 1 column 37 (char 36)); nothing was changed.\n"
    )


def test_bad_value_is_refused_naming_the_object(cases):
    path = cases.write("value.json", [obj("author", 40, name="Ed", born="nineteen")])

    error = refused(cases, "value")

    assert error.startswith(f"CommandError: Seed 'value' failed: {path}, object 1: ")
    assert "nineteen" in error


def test_unique_violation_in_a_batch_names_the_object(cases):
    path = cases.write(
        "unique.json",
        [obj("tag", 40, label="x"), obj("tag", 41, label="y"), obj("tag", 42, label="x")],
    )

    error = refused(cases, "unique")

    assert error.startswith(
        f"CommandError: Seed 'unique' failed: {path}, object 3: could not load "
        "seedcases.Tag(pk=42): duplicate key value violates unique constraint"
    )


def test_missing_natural_key_is_refused_naming_the_object(cases):
    path = cases.write("natural.json", [obj("tag", 40, label="x"), book(30, "Lost", ["Nobody"])])

    error = refused(cases, "natural")

    assert error.startswith(
        f"CommandError: Seed 'natural' failed: {path}, object 2: could not load "
        'seedcases.Book(pk=30): null value in column "author_id"'
    )
    assert error.endswith(
        "(author ['Nobody'] was not found when the object was read); nothing was written.\n"
    )


def test_missing_natural_key_of_a_nullable_field_is_refused_naming_the_object(cases):
    path = cases.write("natural.json", [book(30, "Lost", 101, editor=["Nobody"])])

    error = refused(cases, "natural")

    assert error == (
        f"CommandError: Seeding failed: {path}, object 1: Author matching query does not "
        "exist.: (seedcases.book:pk=30) field_value was '['Nobody']'; nothing was written.\n"
    )


def test_failing_callable_is_refused_and_rolls_back_the_fixtures(cases, tmp_path):
    (tmp_path / "failing_seeds.py").write_text(
        "def boom(database, report):\n    raise RuntimeError('the printer is on fire')\n"
    )

    error = refused(cases, "testproject.seeds.create_sample_users", "failing_seeds.boom")

    assert error == (
        "CommandError: Seed 'failing_seeds.boom' failed: RuntimeError: the printer is on fire; "
        "nothing was written.\n"
    )


@pytest.mark.parametrize("code", [0, 3, "'bye'"])
def test_a_callable_that_calls_sys_exit_is_a_failed_seed(cases, tmp_path, code):
    (tmp_path / "exiting_seeds.py").write_text(
        f"import sys\n\ndef leave(database, report):\n    sys.exit({code})\n"
    )

    error = refused(cases, "testproject.seeds.create_sample_users", "exiting_seeds.leave")

    assert error == (
        f"CommandError: Seed 'exiting_seeds.leave' failed: it called sys.exit({code}): a seed "
        "must return or raise; nothing was written.\n"
    )


def test_ctrl_c_rolls_back_with_exit_130(cases, tmp_path):
    (tmp_path / "interrupting_seeds.py").write_text(
        "def interrupt(database, report):\n    raise KeyboardInterrupt\n"
    )
    cases.write("plain.json", PLAIN)
    db = cases.database()
    before = data_snapshot(db, sequences=False)

    result = cases.run("seed", "plain", "interrupting_seeds.interrupt", db=db)

    assert result.returncode == 130
    assert result.stderr == (
        "CommandError: Interrupted; the transaction was rolled back, nothing was changed.\n"
    )
    assert data_snapshot(db, sequences=False) == before


def test_unknown_label_is_refused_before_anything_runs(cases):
    db = cases.database()
    before = data_snapshot(db)

    missing = cases.run("seed", "nosuch", db=db)
    dotted = cases.run("seed", "testproject.seeds.nosuch", db=db)

    assert missing.returncode == dotted.returncode == 1
    assert missing.stderr == "CommandError: Seed 'nosuch': No fixture named 'nosuch' found.\n"
    assert dotted.stderr == (
        "CommandError: Seed 'testproject.seeds.nosuch' cannot be imported: module "
        "'testproject.seeds' has no attribute 'nosuch'; fix the dotted path or name a "
        "fixture.\n"
    )
    assert data_snapshot(db) == before


# Gates: sample users must never reach a database a reset would not be allowed on.


@pytest.mark.parametrize(
    ("settings", "sentence"),
    [
        ("DJANGO_RESETDB = {'ENABLED': False}\n", "DJANGO_RESETDB['ENABLED'] is False"),
        ("DEBUG = False\n", "DJANGO_RESETDB['ENABLED'] is False"),
        ("DJANGO_RESETDB = {'HOSTS': ['db.example.org']}\n", "is not in DJANGO_RESETDB['HOSTS']"),
    ],
    ids=["enabled", "debug", "hosts"],
)
def test_gates_refuse_with_exit_3_and_nothing_written(cases, settings, sentence):
    db = cases.database()
    before = data_snapshot(db)

    result = cases.run("seed", db=db, settings=settings)

    assert result.returncode == 3
    assert result.stderr.startswith("CommandError: seed refused: ")
    assert sentence in result.stderr
    assert data_snapshot(db) == before


def test_protected_database_refuses_with_exit_3(cases):
    db = cases.database()
    with db.connect() as conn:
        conn.execute(f'ALTER DATABASE "{db.name}" SET django_resetdb.protected = on')
    before = data_snapshot(db)

    result = cases.run("seed", db=db)

    assert result.returncode == 3
    assert "is protected by the PostgreSQL setting django_resetdb.protected" in result.stderr
    assert data_snapshot(db) == before


# The paths seed counts (copied, inserted in bulk, saved one by one and why), and the
# values it copies without Django's conversions, checked against what the fixture holds
# and against the rows loaddata leaves.


def paths_line(cases: Cases, *labels: str, db: Any) -> str:
    result = cases.ok("seed", *labels, "-v", "2", db=db)
    found = re.findall(r"^  (objects by path: .*)$", result.stdout, flags=re.M)
    assert len(found) == 1, result.stdout
    return str(found[0])


def count(db: Any, table: str) -> int:
    return int(db.query(f"SELECT count(*) FROM seedcases_{table}")[0][0])


def test_rows_with_a_key_are_copied_and_rows_without_one_inserted_in_bulk(cases):
    cases.write("plain.json", PLAIN)
    with_key = sum(1 for item in PLAIN if "pk" in item)
    without_key = len(PLAIN) - with_key
    by_loaddata, by_seed = cases.database(), cases.database()
    cases.ok("loaddata", "plain", db=by_loaddata)

    line = paths_line(cases, "plain", db=by_seed)

    assert (with_key, without_key) == (5, 1)
    assert line == "objects by path: 5 copied, 1 inserted in bulk, 0 saved one by one"
    rows = count(by_seed, "author") + count(by_seed, "tag") + count(by_seed, "book")
    assert rows == len(PLAIN)
    assert data_snapshot(by_seed) == data_snapshot(by_loaddata)


def test_rows_that_exist_already_are_inserted_in_bulk(cases):
    cases.write("plain.json", PLAIN)
    db, by_loaddata = cases.database(), cases.database()
    cases.ok("seed", "plain", db=db)
    for _ in range(2):
        cases.ok("loaddata", "plain", db=by_loaddata)

    line = paths_line(cases, "plain", db=db)

    # The keyed rows exist: written again by INSERT ... ON CONFLICT; the tag without a
    # key is found by its natural key, as loaddata finds it, and updated.
    assert line == "objects by path: 0 copied, 6 inserted in bulk, 0 saved one by one"
    assert count(db, "tag") == 2
    assert data_snapshot(db) == data_snapshot(by_loaddata)


def test_receivers_and_order_with_respect_to_are_saved_one_by_one_and_counted(cases):
    cases.write(
        "mixed.json",
        [
            obj("author", 1, name="Ann", born=None),
            book(1, "First", 1),
            obj("review", 1, book=1, stars=4),
            obj("review", 2, book=1, stars=2),
            obj("recipe", 1, name="Bread"),
            obj("step", None, recipe=1, text="knead"),
            obj("step", 9, recipe=1, text="bake", _order=1),
        ],
    )
    by_loaddata, by_seed = cases.database(), cases.database()
    cases.ok("loaddata", "mixed", db=by_loaddata)

    line = paths_line(cases, "mixed", db=by_seed)

    assert line == (
        "objects by path: 3 copied, 4 saved one by one "
        "(order_with_respect_to: 2, pre_save/post_save receivers: 2)"
    )
    # The receivers ran, once before and once after each review, as under loaddata.
    calls = by_seed.query("SELECT signal, review, raw FROM seedcases_receivercall ORDER BY id")
    assert calls == [
        ("pre_save", 1, True),
        ("post_save", 1, True),
        ("pre_save", 2, True),
        ("post_save", 2, True),
    ]
    assert count(by_seed, "review") == 2
    assert count(by_seed, "step") == 2
    assert data_snapshot(by_seed) == data_snapshot(by_loaddata)


# Values of every field type the seed cases and the benchmark use, in the spellings a
# fixture may hold them: the copied rows must be the ones loaddata leaves.
ODD_VALUES = [
    obj("author", 1, name="Ann", born=1950),
    obj("author", "2", name="Bö ünicode ✓", born="1960"),  # key and integer as strings
    obj("author", 3, name="", born=None),  # empty string, null
    obj("author", 4, name="x" * 50, born=-7),
    obj("author", 5, name="Ed", born=True),  # a boolean for an integer
    obj("author", 6, name=12, born=0),  # an integer for a string
    obj("tag", 1, label="a"),
    obj("tag", "2", label="b"),
    book(1, "One", 1, created="2020-01-02T03:04:05+02:00", updated="2020-01-02T03:04:05.123456Z"),
    book(2, "Two", "2", editor="3", sequel="1", tags=["1", 2], created="2020-01-02"),
    book(3, "Three", 4, editor=None, sequel=None, tags=[], created="2019-12-31T23:59:59-11:30"),
    obj("place", 1, name="Inn"),
    obj("restaurant", 1, serves_pizza=True),
    obj("place", "2", name="Bar"),
    obj("restaurant", "2", serves_pizza="False"),
    obj("recipe", 1, name="Bread"),
    obj("receivercall", 1, signal="s", review="3", raw="t", created=None, reviews_in_table=0),
    obj("receivercall", 2, signal="s", review=3, raw=False, created=True, reviews_in_table="1"),
]


def test_values_in_every_spelling_are_copied_as_loaddata_leaves_them(cases):
    cases.write("odd.json", ODD_VALUES)
    cases.write("odd_lines.jsonl", "".join(json.dumps(o) + "\n" for o in ODD_VALUES))

    by_loaddata, by_seed = cases.both("odd")
    by_lines = cases.database()
    line = paths_line(cases, "odd_lines", db=by_lines)

    assert line == f"objects by path: {len(ODD_VALUES)} copied, 0 saved one by one"
    expected = data_snapshot(by_loaddata)
    assert data_snapshot(by_seed) == expected
    assert data_snapshot(by_lines) == expected
    for table in ("author", "book", "tag", "book_tags", "place", "restaurant", "receivercall"):
        assert expected[f"seedcases_{table}"], table  # every table got rows
    assert by_seed.query("SELECT created::text FROM seedcases_book ORDER BY id") == (
        by_loaddata.query("SELECT created::text FROM seedcases_book ORDER BY id")
    )


def test_a_callable_that_rolls_back_the_transaction_is_a_failed_seed(cases, tmp_path):
    (tmp_path / "ending_seeds.py").write_text(
        "from django.db import connections\n\n"
        "def end(database, report):\n"
        "    with connections[database].cursor() as cursor:\n"
        "        cursor.execute('ROLLBACK')\n"
    )

    error = refused(cases, "testproject.seeds.create_sample_users", "ending_seeds.end")

    assert error == (
        "CommandError: Seed 'ending_seeds.end' failed: it rolled back the transaction it runs "
        "in (a ROLLBACK sent as SQL); a seed must not end the transaction; nothing was written.\n"
    )


@pytest.mark.parametrize("then", ["", "    raise ValueError('after the commit')\n"])
def test_a_callable_that_commits_the_transaction_says_what_is_committed(cases, tmp_path, then):
    (tmp_path / "ending_seeds.py").write_text(
        "from django.db import connections\n\n"
        "def end(database, report):\n"
        "    with connections[database].cursor() as cursor:\n"
        "        cursor.execute('COMMIT')\n" + then
    )
    cases.write("plain.json", PLAIN)
    db = cases.database()
    cases.ok("seed", "plain", db=db)
    before = data_snapshot(db, sequences=False)

    result = cases.run(
        "seed", "plain", "testproject.seeds.create_sample_users", "ending_seeds.end", db=db
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        "CommandError: Seed 'ending_seeds.end' failed: it committed the transaction it runs in "
        "(a COMMIT sent as SQL); a seed must not end the transaction; what was written up to "
        "it is committed, the seeds after it did not run.\n"
    )
    # True: the users the seed before it made are there.
    assert data_snapshot(db, sequences=False) != before
    assert db.query("SELECT count(*) > 0 FROM account_user") == [(True,)]


def test_a_model_with_a_composite_field_without_a_column_loads_as_loaddata(cases):
    # A private field of two columns (an amount and a currency), as e-commerce projects
    # have: dumpdata writes its columns, the field itself has no column and no to_python.
    items = [
        obj("price", 1, label="tea", price_amount="3.50", price_currency="EUR"),
        obj("price", 2, label="cake", price_amount="12", price_currency="USD"),
        obj("price", 3, label="free", price_amount="0.00", price_currency="EUR"),
    ]
    cases.write("prices.json", items)
    by_lines = cases.database()

    by_loaddata, by_seed = cases.both("prices")
    line = paths_line(cases, "prices", db=by_lines)

    assert line == "objects by path: 3 copied, 0 saved one by one"
    expected = data_snapshot(by_loaddata)
    assert expected["seedcases_price"]
    assert data_snapshot(by_seed) == expected
    assert data_snapshot(by_lines) == expected


def test_receivers_that_return_on_a_raw_save_leave_the_objects_to_the_bulk_path(cases):
    # Note's receivers all return at once on loaddata's raw save (four ways of writing
    # it, one connected for every model): calling them or not leaves the same rows.
    items = [
        obj("author", 1, name="Ann", born=1950),
        book(1, "First", 1),
        obj("review", 1, book=1, stars=5),
        *(obj("note", n, text=f"note {n}", review=1 if n % 2 else None) for n in range(1, 7)),
    ]
    cases.write("notes.json", items)
    by_lines = cases.database()

    by_loaddata, by_seed = cases.both("notes")
    line = paths_line(cases, "notes", db=by_lines)

    # The review still goes one by one: its receivers act.
    assert line == (
        "objects by path: 8 copied, 1 saved one by one (pre_save/post_save receivers: 1)"
    )
    expected = data_snapshot(by_loaddata)
    assert len(expected["seedcases_note"]) == 6
    assert data_snapshot(by_seed) == expected
    assert data_snapshot(by_lines) == expected
