"""``resetdb --keep-migrations`` on a project with a long, hand-written migration history.

``python -m bench.history --apps 20 --migrations 10 --rows 100 --repeat 3`` writes a project
whose every app has ``migrations`` migration files, written directly as a team accumulates
them (``makemigrations`` never regenerates them): ``0001_initial`` with a foreign key to the
previous app's model, then AddField, AlterField, AddIndex and RenameField migrations in
turn, a second cross-app foreign key, and a data migration (``RunPython``) as every app's
``0005`` that creates the categories the fixtures point at. Each app has a JSON fixture of
``rows`` items and ``rows`` notes. Each repetition times whole processes, from start to
exit, Django's start-up included:

* the baseline, as a developer would run it: ``manage.py migrate`` on an empty database
  then ``manage.py loaddata`` of every fixture (two processes, times summed; a new database
  each repetition);
* ``resetdb --no-input --keep-migrations`` after one new migration file (an AddField) was
  appended to one app: a new one each repetition, so it is always one new migration (after
  a first warm-up run, not timed);
* the same again with nothing changed (warm).

It prints medians, the ratio baseline / ``resetdb`` and peak memory (the whole process).
The server comes from ``DATABASE_URL`` (default
``postgres://postgres@127.0.0.1:5432/postgres``); the databases it creates are dropped,
snapshots included.
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg
from psycopg import sql

from bench.reset import Site, header, median, row
from bench.seed import DEFAULT_URL, Server
from bench.synthetic import CREATED, MANAGE, SETTINGS

DATA_MIGRATION = 5  # every app's 0005 is a RunPython
CATEGORIES = 5  # rows the data migration creates, which the fixtures point at
BASE_FIELDS = {
    "item": {
        "name": "models.CharField(max_length=60)",
        "number": "models.IntegerField()",
        "code": "models.CharField(max_length=40, unique=True)",
        "created": "models.DateTimeField(auto_now_add=True)",
        "category": "models.ForeignKey('category', on_delete=models.SET_NULL, null=True, "
        "related_name='items')",
    },
    "note": {
        "item": "models.ForeignKey('item', on_delete=models.CASCADE, related_name='notes')",
        "text": "models.CharField(max_length=100)",
    },
}
# The field of each model an AlterField widens, and its first length.
WIDENED = {"item": ("name", 60), "note": ("text", 100)}
ID = "models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')"

MIGRATION = """\
from django.db import migrations, models
import django.db.models.deletion


{functions}class Migration(migrations.Migration):
    dependencies = {dependencies!r}

    operations = [
{operations}
    ]
"""

FORWARDS = """\
def create_categories(apps, schema_editor):
    Category = apps.get_model({label!r}, "Category")
    Category.objects.bulk_create(
        Category(name=f"{label} category {{i}}") for i in range(1, {count} + 1)
    )
    # What a data migration of a live project does to rows it finds (none here).
    apps.get_model({label!r}, "Item").objects.filter(number__lt=0).update(number=0)


"""


@dataclass(frozen=True)
class History:
    apps: int
    migrations: int
    rows: int

    @staticmethod
    def app(index: int) -> str:
        return f"app{index:02d}"

    @property
    def fixture_rows(self) -> int:
        return self.apps * self.rows * 2


@dataclass
class AppState:
    """An app's models as its migrations so far leave them: field name -> source."""

    label: str
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    indexes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    added: dict[str, list[str]] = field(default_factory=dict)  # renamable added fields
    has_categories: bool = False

    def models_source(self) -> str:
        lines = ["from django.db import models"]
        for model in ("category", "item", "note"):
            lines += ["", "", f"class {model.title()}(models.Model):"]
            if model == "category":
                lines.append("    name = models.CharField(max_length=60)")
                continue
            for name, source in self.fields[model].items():
                lines.append(f"    {name} = {source}")
            if self.indexes[model]:
                lines += ["", "    class Meta:", "        indexes = ["]
                for column, index in self.indexes[model]:
                    lines.append(f"            models.Index(fields=[{column!r}], name={index!r}),")
                lines.append("        ]")
        return "\n".join(lines) + "\n"


def field_op(op: str, label: str, model: str, name: str, source: str) -> str:
    return (
        f"        migrations.{op}(\n            model_name={model!r},\n"
        f"            name={name!r},\n            field={qualified(source, label)},\n        ),"
    )


def qualified(source: str, label: str) -> str:
    """A field's source as a migration writes it: lazy references with their app label."""
    for model in ("category", "item", "note"):
        source = source.replace(f"ForeignKey('{model}'", f"ForeignKey('{label}.{model}'")
    return source


def initial(state: AppState, index: int) -> tuple[list[tuple[str, str]], str]:
    label = state.label
    state.fields = {model: dict(fields) for model, fields in BASE_FIELDS.items()}
    state.indexes = {"item": [], "note": []}
    state.lengths = {model: length for model, (_, length) in WIDENED.items()}
    state.added = {"item": [], "note": []}
    dependencies: list[tuple[str, str]] = []
    if index > 0:
        upstream = History.app(index - 1)
        state.fields["item"]["upstream"] = (
            f"models.ForeignKey('{upstream}.item', on_delete=models.SET_NULL, null=True, "
            "related_name='+')"
        )
        dependencies.append((upstream, "0001_initial"))
    operations = [
        "        migrations.CreateModel(\n            name='Category',\n            fields=[\n"
        f"                ('id', {ID}),\n"
        "                ('name', models.CharField(max_length=60)),\n            ],\n        ),"
    ]
    for model in ("item", "note"):
        columns = "".join(
            f"                ({name!r}, {qualified(source, label)}),\n"
            for name, source in state.fields[model].items()
        )
        operations.append(
            f"        migrations.CreateModel(\n            name={model.title()!r},\n"
            f"            fields=[\n                ('id', {ID}),\n{columns}            ],\n"
            "        ),"
        )
    return dependencies, "\n".join(operations)


def step(state: AppState, index: int, number: int, turn: int) -> tuple[list[tuple[str, str]], str]:
    """The operations of migration ``number``, the ``turn``-th schema migration of the app."""
    label = state.label
    kinds = ("add", "alter", "index", "rename")
    kind = kinds[turn % len(kinds)]
    model = ("item", "note")[(turn // len(kinds)) % 2]
    if kind == "rename" and not state.added[model]:
        kind = "add"
    dependencies: list[tuple[str, str]] = []
    if kind == "add":
        name = f"f{number}"
        source = "models.IntegerField(null=True)"
        if model == "note" and index > 0 and "peer" not in state.fields["note"]:
            # The second cross-app foreign key: to the previous app's notes.
            name = "peer"
            source = (
                f"models.ForeignKey('{History.app(index - 1)}.note', "
                "on_delete=models.SET_NULL, null=True, related_name='+')"
            )
            dependencies.append((History.app(index - 1), "0001_initial"))
        else:
            state.added[model].append(name)
        state.fields[model][name] = source
        return dependencies, field_op("AddField", label, model, name, source)
    if kind == "alter":
        column, _ = WIDENED[model]
        state.lengths[model] += 20
        source = f"models.CharField(max_length={state.lengths[model]})"
        state.fields[model][column] = source
        return dependencies, field_op("AlterField", label, model, column, source)
    if kind == "index":
        column = state.added[model].pop() if state.added[model] else WIDENED[model][0]
        index_name = f"{label}_{model}_{number}_idx"
        state.indexes[model].append((column, index_name))
        return dependencies, (
            f"        migrations.AddIndex(\n            model_name={model!r},\n"
            f"            index=models.Index(fields=[{column!r}], name={index_name!r}),\n"
            "        ),"
        )
    old = state.added[model].pop()
    new = f"{old}_r{number}"
    state.fields[model] = {
        (new if name == old else name): source for name, source in state.fields[model].items()
    }
    state.added[model].append(new)
    return dependencies, (
        f"        migrations.RenameField(\n            model_name={model!r},\n"
        f"            old_name={old!r},\n            new_name={new!r},\n        ),"
    )


def write_migration(
    folder: Path,
    name: str,
    dependencies: list[tuple[str, str]],
    operations: str,
    functions: str = "",
) -> None:
    (folder / f"{name}.py").write_text(
        MIGRATION.format(functions=functions, dependencies=dependencies, operations=operations)
    )


def migration_name(number: int) -> str:
    return f"{number:04d}_initial" if number == 1 else f"{number:04d}_step"


def write_app(root: Path, history: History, index: int) -> AppState:
    label = history.app(index)
    folder = root / label
    migrations = folder / "migrations"
    migrations.mkdir(parents=True)
    (folder / "fixtures").mkdir()
    (folder / "__init__.py").write_text("")
    (migrations / "__init__.py").write_text("")
    state = AppState(label)
    turn = 0
    for number in range(1, history.migrations + 1):
        name = migration_name(number)
        if number == 1:
            dependencies, operations = initial(state, index)
            write_migration(migrations, name, dependencies, operations)
            continue
        previous = [(label, migration_name(number - 1))]
        if number == DATA_MIGRATION:
            state.has_categories = True
            functions = FORWARDS.format(label=label, count=CATEGORIES)
            operations = (
                "        migrations.RunPython(create_categories, migrations.RunPython.noop),"
            )
            write_migration(migrations, name, previous, operations, functions)
            continue
        dependencies, operations = step(state, index, number, turn)
        turn += 1
        write_migration(migrations, name, previous + dependencies, operations)
    (folder / "models.py").write_text(state.models_source())
    return state


def fixture(history: History, index: int, state: AppState) -> list[dict[str, object]]:
    label = history.app(index)
    objects: list[dict[str, object]] = []
    for i in range(1, history.rows + 1):
        fields: dict[str, object] = {}
        for name in state.fields["item"]:
            if name == "category":
                has = state.has_categories and i % 4
                fields[name] = (i % CATEGORIES) + 1 if has else None
            elif name == "upstream":
                fields[name] = None if i % 5 == 0 else (i * 3) % history.rows + 1
            elif name == "code":
                fields[name] = f"{label}-{i}"
            elif name == "name":
                fields[name] = f"{label} item {i}"
            elif name == "created":
                fields[name] = CREATED
            else:
                fields[name] = i
        objects.append({"model": f"{label}.item", "pk": i, "fields": fields})
    for i in range(1, history.rows + 1):
        fields = {}
        for name in state.fields["note"]:
            if name == "item":
                fields[name] = (i * 7) % history.rows + 1
            elif name == "text":
                fields[name] = f"note {i} of {label}"
            elif name == "peer":
                fields[name] = None if i % 3 == 0 else i
            else:
                fields[name] = i * 2
        objects.append({"model": f"{label}.note", "pk": i, "fields": fields})
    return objects


def generate(out: Path, history: History) -> list[str]:
    """Write the project into ``out`` (which must not exist); its fixture labels."""
    out.mkdir(parents=True)
    (out / "manage.py").write_text(MANAGE)
    package = out / "synth"
    package.mkdir()
    (package / "__init__.py").write_text("")
    labels = [history.app(a) for a in range(history.apps)]
    (package / "settings.py").write_text(
        SETTINGS.format(
            apps="\n".join(f"    {label!r}," for label in labels),
            seeds=", ".join(repr(label) for label in labels),
        )
    )
    for index, label in enumerate(labels):
        state = write_app(out, history, index)
        objects = fixture(history, index, state)
        (out / label / "fixtures" / f"{label}.json").write_text(json.dumps(objects, indent=1))
    return labels


@dataclass
class Project(Site):
    """The generated history with a database of its own."""

    history: History
    labels: list[str] = field(default_factory=list)
    appended: int = 0
    latest: str = ""  # the last appended migration

    def __post_init__(self) -> None:
        self.labels = generate(self.root, self.history)
        self.server.create(self.database)
        # The hand-written files describe the models exactly: nothing left to make.
        self.run("manage.py", "makemigrations", "--check", "--dry-run", "-v", "0")

    def append_migration(self) -> str:
        """One more AddField migration, in a new file of the middle app, and its model."""
        self.appended += 1
        label = self.labels[len(self.labels) // 2]
        number = self.history.migrations + self.appended
        name = f"{number:04d}_extra"
        folder = self.root / label
        column = f"extra{self.appended}"
        source = "models.IntegerField(null=True)"
        previous = self.latest or migration_name(self.history.migrations)
        write_migration(
            folder / "migrations",
            name,
            [(label, previous)],
            field_op("AddField", label, "item", column, source),
        )
        self.latest = name
        models = folder / "models.py"
        marker = "class Item(models.Model):\n"
        models.write_text(models.read_text().replace(marker, f"{marker}    {column} = {source}\n"))
        return f"{label}_item.{column}"


def check(made: Project, column: str) -> None:
    """Fail unless the database has the appended column, every fixture row and the rows
    of the data migrations, as counted over a connection of this process."""
    table, name = column.split(".")
    history = made.history
    with psycopg.connect(made.server.url_for(made.database)) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s AND column_name = %s",
            [table, name],
        ).fetchone()
        counts = {}
        for label in made.labels:
            for model in ("category", "item", "note"):
                query = sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(f"{label}_{model}")
                )
                (counts[f"{label}_{model}"],) = conn.execute(query).fetchone() or (0,)
    categories = CATEGORIES if history.migrations >= DATA_MIGRATION else 0
    expected = {
        f"{label}_{model}": categories if model == "category" else history.rows
        for label in made.labels
        for model in ("category", "item", "note")
    }
    if found != (1,) or counts != expected:
        raise SystemExit(f"resetdb left {column} {found} and rows {counts}, not {expected}.")


@contextmanager
def project(server: Server, root: Path, history: History) -> Iterator[Project]:
    made = Project(server, root, history=history, database=f"bench_h_{uuid.uuid4().hex[:10]}")
    try:
        yield made
    finally:
        made.drop()


def run(options: argparse.Namespace) -> int:
    server = Server(options.url)
    history = History(options.apps, options.migrations, options.rows)
    print(
        f"Project: {history.apps} app(s) x {history.migrations} hand-written migration(s) "
        f"({history.apps * history.migrations} files), {history.fixture_rows} fixture rows."
    )
    names = ("baseline", "of which migrate", "of which loaddata", "one new", "warm")
    times: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, list[float]] = {name: [] for name in names}
    reset = ("manage.py", "resetdb", "--no-input", "--keep-migrations")
    last: dict[str, list[str]] = {}
    with (
        TemporaryDirectory(prefix="resetdb-bench-") as folder,
        project(server, Path(folder) / "hand", history) as hand,
        project(server, Path(folder) / "tool", history) as tool,
    ):
        tool.run(*reset, "-v", "0")
        for _ in range(options.repeat):
            empty = Site(server, hand.root, database=f"bench_h_{uuid.uuid4().hex[:10]}")
            server.create(empty.database)
            try:
                migrated = empty.run("manage.py", "migrate", "--no-input", "-v", "0")
                loaded = empty.run("manage.py", "loaddata", *hand.labels, "-v", "0")
            finally:
                empty.drop()
            times["baseline"].append(migrated.seconds + loaded.seconds)
            peaks["baseline"].append(max(migrated.peak_mib, loaded.peak_mib))
            times["of which migrate"].append(migrated.seconds)
            times["of which loaddata"].append(loaded.seconds)

            column = tool.append_migration()
            for name in ("one new", "warm"):
                done = tool.run(*reset)
                times[name].append(done.seconds)
                peaks[name].append(done.peak_mib)
                last[name] = done.stdout.splitlines()
            check(tool, column)

    baseline = median(times["baseline"])
    print(f"\nMedian of {options.repeat} run(s), whole processes:")
    header()
    row("migrate + loaddata (baseline)", baseline, "1.0x", max(peaks["baseline"]))
    row("  of which migrate", median(times["of which migrate"]), "", None)
    row("  of which loaddata", median(times["of which loaddata"]), "", None)
    for name, label in (
        ("one new", "resetdb --keep-migrations, 1 new"),
        ("warm", "resetdb --keep-migrations, warm"),
    ):
        seconds = median(times[name])
        row(label, seconds, f"{baseline / seconds:.1f}x faster", max(peaks[name]))
    for name, title in (("one new", "after one new migration"), ("warm", "warm")):
        print(f"\nLast resetdb {title}:")
        for line in last.get(name, []):
            print(f"  {line}")
    return 0


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=textwrap.dedent(__doc__ or "").strip())
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--migrations", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(run(parse_options(argv)))


if __name__ == "__main__":
    main()
