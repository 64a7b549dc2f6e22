"""Seeds are checked before anything changes: a fixture that does not parse or names a
model that is not installed, a dotted path that does not import, a label that no fixture
has. Each is one sentence that says what is wrong and, when something close exists, what
was meant. What did not change is read over channels of their own: the catalogs (with
OIDs), the rows (with their ctid) and the sequences over psycopg, the files by their
checksums."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from django_resetdb.exceptions import ResetError
from django_resetdb.seeding import resolve_seeds
from tests.conftest import ProjectCopy, ScratchDatabase, data_snapshot, database_state
from tests.test_resetdb import add_row_by_hand, rebuild_once, settings_line, state
from tests.test_resetmigrations import add_nickname

CATALOG_JSON = "testproject/catalog/fixtures/catalog.json"


def misspell_a_model(project: ProjectCopy) -> None:
    project.edit(CATALOG_JSON, '"model": "catalog.artifact"', '"model": "catalog.artefact"')


def misspell_a_module(project: ProjectCopy) -> None:
    settings_line(
        project,
        'DJANGO_RESETDB["SEEDS"] = ["testproject.seedz.create_sample_users", '
        '*DJANGO_RESETDB["SEEDS"][1:]]\n',
    )


def misspell_a_label(project: ProjectCopy) -> None:
    settings_line(
        project,
        'DJANGO_RESETDB["SEEDS"] = [s.replace("catalog", "catalogue") '
        'for s in DJANGO_RESETDB["SEEDS"]]\n',
    )


def break_the_json(project: ProjectCopy) -> None:
    project.edit(CATALOG_JSON, '"pk": 2, "fields"', '"pk": 2 "fields"')


MISTAKES: dict[str, tuple[Callable[[ProjectCopy], None], str]] = {
    "model": (
        misspell_a_model,
        "Seed 'catalog': fixture testproject/catalog/fixtures/catalog.json, object 4, names model "
        "'catalog.artefact', which is not installed (did you mean 'catalog.artifact'?); "
        "nothing was changed.",
    ),
    "module": (
        misspell_a_module,
        "Seed 'testproject.seedz.create_sample_users' cannot be imported: No module named "
        "'testproject.seedz' (did you mean 'testproject.seeds.create_sample_users'?); fix the "
        "dotted path in DJANGO_RESETDB['SEEDS'] or name a fixture.",
    ),
    "label": (
        misspell_a_label,
        "Seed 'catalogue': No fixture named 'catalogue' found (did you mean 'catalog'?).",
    ),
    "syntax": (
        break_the_json,
        "Seed 'catalog': fixture testproject/catalog/fixtures/catalog.json is not valid JSON "
        "(Expecting ',' delimiter: line 3 column 41 (char 134)); nothing was changed.",
    ),
}


@pytest.fixture
def built(project: ProjectCopy, scratch_db: ScratchDatabase) -> ProjectCopy:
    """A copy of the demo with its database rebuilt once, a row added by hand since, and
    a model changed: a reset would regenerate the account app's migrations."""
    rebuild_once(project, scratch_db)
    add_row_by_hand(scratch_db)
    add_nickname(project)
    return project


@pytest.mark.parametrize("mistake", MISTAKES)
def test_resetdb_refuses_a_seed_mistake_before_anything_changes(built, scratch_db, mistake):
    make, message = MISTAKES[mistake]
    make(built)
    migrations = built.migration_files()
    before = state(built, scratch_db)

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == f"CommandError: {message}\n"
    assert result.stdout == ""
    assert state(built, scratch_db) == before
    # No migration regenerated, not even for a while: no backup was made to restore from.
    assert built.migration_files() == migrations
    assert built.backups() == []
    assert scratch_db.query("SELECT name FROM catalog_category WHERE slug = 'maps'") == [("Maps",)]


def test_seed_with_a_misspelled_model_runs_no_seed_at_all(project, scratch_db):
    migrated = project.manage("migrate", "--no-input", url=scratch_db.url())
    assert migrated.returncode == 0, migrated.stderr
    misspell_a_model(project)
    files = project.tree()
    before = data_snapshot(scratch_db)

    result = project.manage("seed", url=scratch_db.url())

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == f"CommandError: {MISTAKES['model'][1]}\n"
    assert result.stdout == ""
    # Sequences are not rolled back: had the users and volunteers before the catalog been
    # written, then rolled back, their sequences would have moved.
    assert data_snapshot(scratch_db) == before
    assert scratch_db.query("SELECT last_value, is_called FROM account_user_id_seq") == [(1, False)]
    assert scratch_db.query("SELECT count(*) FROM account_user") == [(0,)]
    assert project.tree() == files


# The same checks in this process, on each format and compression the finder reads: no
# database, no process.


@pytest.fixture
def folder(settings: Any, tmp_path: Path) -> Path:
    """A fixture folder of its own, in FIXTURE_DIRS."""
    path = tmp_path / "fixtures"
    path.mkdir()
    settings.FIXTURE_DIRS = [str(path)]
    return path


def refusal(*entries: str) -> str:
    with pytest.raises(ResetError) as raised:
        resolve_seeds(entries)
    return str(raised.value)


CATEGORY = {"model": "catalog.category", "pk": 9, "fields": {"name": "Maps", "slug": "maps"}}
# A JSON field holding a "model" key: not an object's model.
ARTEFACT = {"model": "catalog.artefact", "pk": 1, "fields": {"attributes": {"model": "x"}}}
XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<django-objects version="1.0">\n'
XML_OBJECTS = (
    '<object model="catalog.category" pk="9"><field name="name" type="CharField">Maps'
    "</field></object>\n"
    # A many-to-many value is an <object> inside a field: not an object of the fixture.
    '<object model="catalog.artefact" pk="1"><field name="tags" rel="ManyToManyRel" '
    'to="catalog.tag"><object pk="3"></object></field></object>\n'
)
YAML_OBJECTS = (
    "- model: catalog.category\n  pk: 9\n  fields: {name: Maps, slug: maps}\n"
    "- model: catalog.artefact\n  pk: 1\n  fields: {attributes: {model: x}}\n"
)


def _zip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("things.json", data)
    return buffer.getvalue()


def _json_lines(text: str) -> str:
    return "".join(json.dumps(item) + "\n" for item in json.loads(text))


# Each file name the finder reads, and how a fixture's text in JSON, YAML or XML becomes
# that file's bytes.
FORMATS: dict[str, tuple[str, Callable[[str], bytes]]] = {
    "things.json": ("json", str.encode),
    "things.jsonl": ("json", lambda text: _json_lines(text).encode()),
    "things.yaml": ("yaml", str.encode),
    "things.xml": ("xml", str.encode),
    "things.json.gz": ("json", lambda text: gzip.compress(text.encode())),
    "things.json.bz2": ("json", lambda text: bz2.compress(text.encode())),
    "things.json.xz": ("json", lambda text: lzma.compress(text.encode())),
    "things.json.zip": ("json", lambda text: _zip(text.encode())),
}
TEXTS = {
    "json": json.dumps([CATEGORY, ARTEFACT]),
    "yaml": YAML_OBJECTS,
    "xml": XML_HEAD + XML_OBJECTS + "</django-objects>\n",
}


def write_fixture(folder: Path, name: str, *, misspelled: bool) -> Path:
    kind, encode = FORMATS[name]
    text = TEXTS[kind] if misspelled else TEXTS[kind].replace("artefact", "artifact")
    path = folder / name
    path.write_bytes(encode(text))
    return path


@pytest.mark.parametrize("name", FORMATS)
def test_a_misspelled_model_is_found_in_every_format_and_compression(folder, name):
    path = write_fixture(folder, name, misspelled=True)

    assert refusal("things") == (
        f"Seed 'things': fixture {path}, object 2, names model 'catalog.artefact', which is not "
        "installed (did you mean 'catalog.artifact'?); nothing was changed."
    )


@pytest.mark.parametrize("name", FORMATS)
def test_a_fixture_of_installed_models_passes_in_every_format(folder, name):
    path = write_fixture(folder, name, misspelled=False)

    (seed,) = resolve_seeds(["things"])

    assert seed.files == (str(path),)


CLOSE = "(did you mean 'catalog.artifact'?)"


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        ("catalogue.artifact", f"but no app 'catalogue' is installed {CLOSE}"),
        ("Catalog.artifact", f"but no app 'Catalog' is installed {CLOSE}"),
        ("artifact", f"which is not an 'app_label.ModelName' label {CLOSE}"),
        ("catalog.nothing_like_it", "which is not installed"),
    ],
)
def test_an_unknown_app_or_a_label_of_another_shape_is_named(folder, label, problem):
    path = folder / "things.json"
    path.write_text(json.dumps([CATEGORY, {"model": label, "pk": 1, "fields": {}}]))

    assert refusal("things") == (
        f"Seed 'things': fixture {path}, object 2, names model {label!r}, {problem}; nothing "
        "was changed."
    )


def test_a_model_name_in_another_case_is_the_model_as_for_loaddata(folder):
    (folder / "things.json").write_text(json.dumps([{**CATEGORY, "model": "catalog.Category"}]))

    assert [seed.entry for seed in resolve_seeds(["things"])] == ["things"]


@pytest.mark.parametrize(
    ("item", "what"),
    [
        ({"pk": 1, "fields": {}}, "names no model"),
        ({"model": 5, "pk": 1}, "names model 5, not a label"),
        ([1, 2], "is not an object: [1, 2]"),
    ],
)
def test_an_object_without_a_model_label_is_named_with_its_position(folder, item, what):
    path = folder / "things.json"
    path.write_text(json.dumps([CATEGORY, item]))

    assert (
        refusal("things")
        == f"Seed 'things': fixture {path}, object 2, {what}; nothing was changed."
    )


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        (
            "things.json",
            '[{"model": "catalog.category", "pk": 1,',
            " is not valid JSON (Expecting property name enclosed in double quotes: line 1 "
            "column 40 (char 39))",
        ),
        ("things.json", '{"model": "catalog.category"}', " holds a dict, not a list of objects"),
        (
            "things.jsonl",
            json.dumps(CATEGORY) + '\n{"model": \n',
            ", line 2, is not valid JSON (Expecting value: line 2 column 1 (char 11))",
        ),
        (
            "things.xml",
            XML_HEAD + '<object model="catalog.category" pk="9">\n</django-objects>\n',
            " is not valid XML (mismatched tag: line 4, column 2)",
        ),
        (
            "things.yaml",
            "- model: catalog.category\n  pk: [1\n",
            ' is not valid YAML (while parsing a flow sequence in "<byte string>", line 2, '
            "column 7 did not find expected ',' or ']' in \"<byte string>\", line 3, column 1)",
        ),
    ],
    ids=["json", "not a list", "jsonl", "xml", "yaml"],
)
def test_a_fixture_that_does_not_parse_is_named_with_where_it_breaks(
    folder, name, content, problem
):
    path = folder / name
    path.write_text(content)

    assert refusal("things") == f"Seed 'things': fixture {path}{problem}; nothing was changed."


def test_yaml_aliases_and_merge_keys_are_read_as_the_deserializer_reads_them(folder):
    (folder / "things.yaml").write_text(
        "- &category\n  model: catalog.category\n  pk: 9\n  fields: {name: Maps, slug: maps}\n"
        "- <<: *category\n  pk: 10\n"
        "- {model: &artifact catalog.artifact, pk: 1, fields: {}}\n"
        "- {model: *artifact, pk: 2, fields: {}}\n"
        "- <<: *category\n  model: catalog.artefact\n"
    )

    assert refusal("things") == (
        f"Seed 'things': fixture {folder / 'things.yaml'}, object 5, names model "
        "'catalog.artefact', "
        "which is not installed (did you mean 'catalog.artifact'?); nothing was changed."
    )


def test_an_xml_document_type_is_left_to_the_loader_and_expands_nothing(folder):
    (folder / "things.xml").write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>\n'
        '<django-objects><object model="catalog.nosuch" pk="9">&a;</object></django-objects>\n'
    )

    assert [seed.entry for seed in resolve_seeds(["things"])] == ["things"]


FIX = "fix the dotted path or name a fixture."


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "testproject.seeds.create_sampel_users",
            "cannot be imported: module 'testproject.seeds' has no attribute "
            "'create_sampel_users' (did you mean 'testproject.seeds.create_sample_users'?)",
        ),
        (
            "testprojekt.seeds.create_sample_users",
            "cannot be imported: No module named 'testprojekt' (did you mean "
            "'testproject.seeds.create_sample_users'?)",
        ),
        ("testproject.seeds.SAMPLE_USERS", "is a list, not a callable"),
        ("testproject.seeds", "is a module, not a callable"),
        (
            "testproject.seeds.nosuch",
            "cannot be imported: module 'testproject.seeds' has no attribute 'nosuch'",
        ),
    ],
    ids=["attribute", "top-level module", "not callable", "module", "nothing close"],
)
def test_a_dotted_path_that_does_not_import_leads_with_why(folder, entry, message):
    assert refusal(entry) == f"Seed {entry!r} {message}; {FIX}"


def test_the_setting_is_named_when_the_entry_comes_from_it(folder, settings):
    entry = "testproject.seeds.create_sampel_users"
    settings.DJANGO_RESETDB = {**settings.DJANGO_RESETDB, "SEEDS": [entry]}

    assert refusal(entry).endswith(
        "; fix the dotted path in DJANGO_RESETDB['SEEDS'] or name a fixture."
    )


def test_a_module_that_fails_to_import_is_a_real_error(folder, tmp_path, monkeypatch):
    (tmp_path / "broken_seeds.py").write_text(
        "import no_such_dependency\n\ndef run(db, report): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    assert refusal("broken_seeds.run") == (
        "Seed 'broken_seeds.run': importing it failed: No module named 'no_such_dependency'."
    )


@pytest.mark.parametrize(
    ("files", "label", "close"),
    [
        (["volunteers.json"], "volunteer", "volunteers"),
        (["events.default.json"], "event", "events"),  # a database's own fixture
        (["catalog.yaml", "catalogue_old.json"], "catalgo.yaml", "catalog.yaml"),
        (["sub/tours.json.gz"], "sub/tour", "sub/tours"),
    ],
)
def test_a_label_no_fixture_has_names_the_closest_that_one_has(folder, files, label, close):
    for name in files:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("[]")

    assert refusal(label) == (
        f"Seed {label!r}: No fixture named {label.rpartition('/')[2].split('.')[0]!r} found "
        f"(did you mean {close!r}?)."
    )


def test_a_misspelled_extension_names_the_fixture(folder):
    (folder / "things.json").write_text("[]")

    assert refusal("things.jsno") == (
        "Seed 'things.jsno': Problem installing fixture 'things': jsno is not a known "
        "serialization format (did you mean 'things.json'?)."
    )


# A "billion laughs" in a field's value: nine levels of ten aliases, 10**9 strings once
# expanded, in a few hundred bytes.
LAUGHS = (
    "- model: catalog.category\n  pk: 9\n  fields:\n    name: Maps\n    slug: maps\n"
    "    note: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"    n{level}: &l{level} [{', '.join(f'*l{level - 1}' for _ in range(10))}]\n"
        for level in range(1, 10)
    )
)


def test_a_yaml_alias_bomb_is_refused_in_seconds_before_anything_is_built(folder):
    path = folder / "things.yaml"
    path.write_text(LAUGHS)

    assert refusal("things") == (
        f"Seed 'things': fixture {path}: its YAML aliases expand to more than 5,000,000 "
        "nodes (an alias bomb?); write the values out, or split the file; nothing was "
        "changed."
    )


def test_yaml_nested_deeper_than_the_bound_is_refused(folder):
    path = folder / "things.yaml"
    deep = "[" * 300 + "]" * 300
    path.write_text(
        f"- model: catalog.category\n  pk: 9\n  fields: {{name: &a x, slug: *a, n: {deep}}}\n"
    )

    assert refusal("things") == (
        f"Seed 'things': fixture {path} nests deeper than 200 levels; nothing was changed."
    )


def test_modest_yaml_aliases_load_as_loaddata_reads_them(folder):
    path = folder / "things.yaml"
    path.write_text(
        "- model: catalog.category\n  pk: 9\n  fields: &f {name: Maps, slug: maps}\n"
        "- model: catalog.category\n  pk: 10\n  fields: {<<: *f, slug: maps-2, name: More}\n"
    )

    (seed,) = resolve_seeds(["things"])

    assert seed.files == (str(path),)


def test_seed_refuses_an_alias_bomb_without_writing_a_row(project, scratch_db):
    rebuild_once(project, scratch_db)
    fixtures = project.path("testproject/catalog/fixtures")
    (fixtures / "laughs.yaml").write_text(LAUGHS)
    before = database_state(scratch_db)

    result = project.manage("seed", "catalog", "laughs", url=scratch_db.url(), timeout=120)

    assert result.returncode == 1
    assert result.stderr == (
        "CommandError: Seed 'laughs': fixture testproject/catalog/fixtures/laughs.yaml: its "
        "YAML aliases expand to more than 5,000,000 nodes (an alias bomb?); write the "
        "values out, or split the file; nothing was changed.\n"
    )
    assert database_state(scratch_db) == before
