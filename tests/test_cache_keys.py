"""The key of the snapshot cache and the build cache: the same for the same project in
every process, changed only by what decides the result, and, when a kept copy is not
used, a line naming the input that changed."""

from __future__ import annotations

import pytest
from django.db import migrations, models

from django_resetdb import buildcache
from testproject.catalog.models import Category
from tests.conftest import ProjectCopy, ScratchDatabase, snapshots_of
from tests.test_buildcache import (
    VOLUNTEERS,
    assert_same_as_a_kept_rebuild,
    assert_same_as_a_rebuild,
)
from tests.test_resetdb import FAST_HASHER, prepare

# A setting whose repr is ordered differently in each process: a dataclass holding a set
# of strings (ordered by their hash, randomized per process) and a set of objects hashed
# by identity (ordered by where they live in memory), as a project's configuration
# objects are.
UNORDERED_SETTING = """
import dataclasses


class _Flag:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"_Flag({self.name!r})"


@dataclasses.dataclass
class _Plugins:
    names: set
    flags: set
    options: dict


PLUGINS = _Plugins(
    names={f"plugin-{n}" for n in range(40)},
    flags={_Flag(f"flag-{n}") for n in range(40)},
    options={"levels": {f"level-{n}" for n in range(20)}},
)
"""


def reset(project: ProjectCopy, db: ScratchDatabase, seed: str) -> str:
    result = project.manage(
        "resetdb", "--no-input", url=db.url(), env={"PYTHONHASHSEED": seed}, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_setting_whose_repr_order_varies_per_process_restores_its_snapshot(project, scratch_db):
    prepare(project, FAST_HASHER + UNORDERED_SETTING)
    reset(project, scratch_db, "1")
    (kept,) = snapshots_of(scratch_db.name)

    for seed in ("2", "3", "random"):
        out = reset(project, scratch_db, seed)
        assert f"  snapshot    restored {kept}" in out, out


def test_the_state_the_first_run_keeps_is_used_by_the_next(project, scratch_db, other_db):
    # The first run finds an empty database; its migrations make extensions there. The
    # state it keeps is found by the next run, whose database has them.
    prepare(project, FAST_HASHER)
    first = reset(project, scratch_db, "1")
    assert "  cache       kept the migrated state " in first
    project.edit(VOLUNTEERS, '"Dora"', '"Dorothea"')  # the snapshot does not answer

    out = reset(project, scratch_db, "1")

    assert "  migrate     started from the state after 22 of 22 migrations (" in out, out
    assert_same_as_a_rebuild(project, scratch_db, other_db)


CATALOG_MODELS = "testproject/catalog/models.py"
CODE_FIELD = """\
CODE_LENGTH = 12


class Category(models.Model):
    code = models.CharField(max_length=CODE_LENGTH, null=True)
"""
# A migration that imports the models module: for a constant of an operation, for typing
# (under TYPE_CHECKING), and beside a data step that reads the historical models.
CATALOG_0002 = """\
from typing import TYPE_CHECKING

from django.db import migrations, models

from testproject.catalog import models as catalog_models

if TYPE_CHECKING:
    from testproject.event.models import Venue  # noqa: F401


def fill(apps, schema_editor):
    Category = apps.get_model("catalog", "Category")
    Category.objects.using(schema_editor.connection.alias).filter(code=None).update(code="-")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [
        migrations.AddField(
            "category",
            "code",
            models.CharField(max_length=catalog_models.CODE_LENGTH, null=True),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
"""
CATALOG_0003 = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_category_code")]
    operations = [
        migrations.AddField("artifact", "shelf", models.CharField(max_length=9, null=True)),
    ]
"""


def keep_reset(project: ProjectCopy, db: ScratchDatabase) -> str:
    result = project.manage("resetdb", "--no-input", "--keep-migrations", url=db.url())
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_model_edit_keeps_the_state_of_a_migration_that_imports_the_models(
    project, scratch_db, other_db
):
    prepare(project, FAST_HASHER)
    project.edit(CATALOG_MODELS, "\n\nclass Category(models.Model):\n", "\n\n" + CODE_FIELD)
    project.append("testproject/catalog/migrations/0002_category_code.py", CATALOG_0002)
    assert "  cache       kept the migrated state " in keep_reset(project, scratch_db)

    # A model edit and its migration: only the new migration runs.
    project.edit(
        CATALOG_MODELS,
        "    description = models.TextField(blank=True)\n",
        "    description = models.TextField(blank=True)\n"
        "    shelf = models.CharField(max_length=9, null=True)\n",
    )
    project.append("testproject/catalog/migrations/0003_artifact_shelf.py", CATALOG_0003)
    out = keep_reset(project, scratch_db)

    assert "  migrate     started from the state after 23 of 24 migrations (" in out, out
    assert "applied 1 migration(s)" in out
    assert_same_as_a_kept_rebuild(project, scratch_db, other_db)

    # What the migration took from the models module changed: it must run again.
    project.edit(CATALOG_MODELS, "CODE_LENGTH = 12", "CODE_LENGTH = 14")
    dry = project.manage("resetdb", "--dry-run", "--keep-migrations", url=scratch_db.url())
    out = keep_reset(project, scratch_db)

    assert "catalog.0002_category_code" in dry.stdout and "changed" in dry.stdout, dry.stdout
    assert "started from the state after 23 of 24" not in out
    assert_same_as_a_kept_rebuild(project, scratch_db, other_db)
    assert scratch_db.query(
        "SELECT character_maximum_length FROM information_schema.columns "
        "WHERE table_name = 'catalog_category' AND column_name = 'code'"
    ) == [(14,)]


def _live_step(apps, schema_editor):
    # Reads the live model through the name the migration bound to the models module.
    catalog_models.Category.objects.count()  # type: ignore[name-defined]  # noqa: F821


def _helper_reading_a_model():
    return Category.objects.count()


def _step_through_a_helper(apps, schema_editor):
    _helper_reading_a_model()


def _closure_step(value):
    def step(apps, schema_editor):
        return value

    return step


@pytest.mark.parametrize(
    ("text", "ops", "models_kept"),
    [
        pytest.param(
            "from testproject.catalog.models import Category\n",
            [migrations.RunPython(_step_through_a_helper)],
            True,
            id="data-step-calls-a-helper-that-reads-a-model",
        ),
        pytest.param(
            "from testproject.catalog import models as catalog_models\n",
            [migrations.RunPython(_closure_step(1))],
            True,
            id="data-step-is-a-closure",
        ),
        pytest.param(
            "from testproject.catalog.models import *\n",
            [migrations.AddField("category", "code", models.CharField(max_length=12))],
            True,
            id="a-star-import",
        ),
        pytest.param(
            "from testproject.catalog import models as catalog_models\n",
            [migrations.RunPython(_live_step)],
            True,
            id="data-step-reads-the-models-module",
        ),
        pytest.param(
            "from testproject.catalog.models import Category\n",
            [
                migrations.CreateModel(
                    "Shelf", [("id", models.AutoField(primary_key=True))], bases=(Category,)
                )
            ],
            True,
            id="a-model-class-as-a-base",
        ),
        pytest.param(
            "from testproject.catalog import models as catalog_models\n",
            [migrations.AddField("category", "code", models.CharField(max_length=12))],
            False,
            id="a-constant-of-an-operation",
        ),
        pytest.param(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from testproject.catalog.models import Category\n",
            [migrations.RunPython(migrations.RunPython.noop)],
            False,
            id="typing-only",
        ),
    ],
)
def test_the_models_module_counts_in_a_migration_only_when_what_runs_reads_it(
    text, ops, models_kept
):
    code, instead = buildcache._code_digest(text, "testproject.catalog.migrations", ops)

    digested = {path for path, _ in code}
    assert ("testproject/catalog/models.py" in digested) is models_kept
    # Left out, the operations stand in for what was taken from it.
    assert bool(instead) is (not models_kept and "TYPE_CHECKING" not in text)


def reason_lines(out: str) -> list[str]:
    return [
        line.strip()
        for line in out.splitlines()
        if line.startswith(("  snapshot    not restored: ", "  cache       not used: "))
    ]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(
            lambda p: p.append("testproject/settings.py", 'SAMPLE_TITLE = "Archive"\n'),
            "setting SAMPLE_TITLE changed",
            id="setting",
        ),
        pytest.param(
            lambda p: p.append("testproject/catalog/fields.py", "\n# an edit\n"),
            "file testproject/catalog/fields.py changed",
            id="module",
        ),
        pytest.param(
            lambda p: p.path("testproject/catalog/fixtures/catalog.json").write_text(
                p.path("testproject/catalog/fixtures/catalog.json")
                .read_text()
                .replace('"Pottery"', '"Ceramics"')
            ),
            "seed catalog changed",
            id="fixture-file",
        ),
    ],
)
def test_a_kept_copy_not_used_names_the_input_that_changed(project, scratch_db, change, named):
    prepare(project, FAST_HASHER + 'SAMPLE_TITLE = "Museum"\n')
    reset(project, scratch_db, "1")
    change(project)

    dry = project.manage("resetdb", "--dry-run", url=scratch_db.url())
    out = reset(project, scratch_db, "1")

    for text in (dry.stdout, out):
        (line,) = [line for line in reason_lines(text) if line.startswith("snapshot")]
        assert line.startswith(f"snapshot    not restored: {named} since resetdb_snap_"), line
        assert line.endswith(" was kept"), line


def test_a_package_upgrade_is_named_with_its_versions(project, scratch_db, tmp_path):
    # A distribution of its own on the path, at version 1.0, then 2.0.
    site = tmp_path / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "sample_dist-1.0.dist-info").mkdir()
    project.pythonpath = (site,)
    prepare(project, FAST_HASHER)
    reset(project, scratch_db, "1")
    (site / "sample_dist-1.0.dist-info").rename(site / "sample_dist-2.0.dist-info")

    out = reset(project, scratch_db, "1")

    assert "  snapshot    not restored: package sample-dist 1.0 -> 2.0 since " in out, out
    assert "  cache       not used: " in out
    assert "package sample-dist 1.0 -> 2.0" in out.split("  cache       not used: ")[1]


def test_a_setting_made_anew_at_each_start_up_is_named_as_such(project, scratch_db):
    prepare(project, FAST_HASHER + "import secrets\nSECRET_KEY = secrets.token_hex(16)\n")
    reset(project, scratch_db, "1")
    second = reset(project, scratch_db, "1")

    assert (
        "  snapshot    not restored: setting SECRET_KEY changed though no settings file did: "
        "made anew at each start-up or read from the environment (if no seed reads it, leave "
        "it out of the key: DJANGO_RESETDB['IGNORED_SETTINGS'] = ['SECRET_KEY']) since "
    ) in second, second

    # Left out as the line says: the next run restores what the one after it keeps.
    project.append(
        "testproject/settings.py", 'DJANGO_RESETDB["IGNORED_SETTINGS"] = ["SECRET_KEY"]\n'
    )
    reset(project, scratch_db, "1")
    out = reset(project, scratch_db, "1")
    assert "  snapshot    restored " in out, out
    # An edit of the settings file is an edit.
    project.append("testproject/settings.py", 'SAMPLE_TITLE = "Archive"\n')
    edited = reset(project, scratch_db, "1")
    assert "  snapshot    not restored: setting SAMPLE_TITLE added since " in edited, edited


def test_split_settings_count_by_their_values_not_as_code(project, scratch_db):
    # mysite/settings/{base,dev}.py, as `wagtail start` lays them out.
    prepare(project, FAST_HASHER)
    project.append("conf/__init__.py", "")
    project.append("conf/settings/__init__.py", "")
    project.append(
        "conf/settings/base.py", 'from testproject.settings import *  # noqa\nTITLE = "A"\n'
    )
    project.append("conf/settings/dev.py", "from conf.settings.base import *  # noqa\n")
    project.settings = "conf.settings.dev"
    reset(project, scratch_db, "1")

    project.append("conf/settings/base.py", "# a comment changes no value\n")
    assert "  snapshot    restored " in reset(project, scratch_db, "1")

    project.edit("conf/settings/base.py", 'TITLE = "A"', 'TITLE = "B"')
    out = reset(project, scratch_db, "1")
    assert "  snapshot    not restored: setting TITLE changed since " in out, out


EVENT_DATA = """\
from django.db import migrations


def name_venues(apps, schema_editor):
    Venue = apps.get_model("event", "Venue")
    Venue.objects.using(schema_editor.connection.alias).create(name="Annex")


class Migration(migrations.Migration):
    dependencies = [("event", "0001_initial"), ("catalog", "0001_initial")]
    operations = [migrations.RunPython(name_venues, migrations.RunPython.noop)]
"""
HELP_TEXT = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [
        migrations.AlterField(
            "category",
            "name",
            models.CharField(max_length=100, unique=True, help_text="Shown on the site"),
        ),
    ]
"""


def test_a_field_altered_in_nothing_the_database_sees_moves_past_a_data_migration(
    project, scratch_db, other_db
):
    # migrate runs the new catalog migration before event's data migration, which reads
    # catalog and which the state holds: a help_text sends no SQL, so the two commute.
    prepare(project, FAST_HASHER)
    project.append("testproject/event/migrations/0002_annex.py", EVENT_DATA)
    keep_reset(project, scratch_db)
    project.edit(
        CATALOG_MODELS,
        "    name = models.CharField(max_length=100, unique=True)\n",
        '    name = models.CharField(max_length=100, unique=True, help_text="Shown on the site")\n',
    )
    project.append("testproject/catalog/migrations/0002_category_help.py", HELP_TEXT)

    out = keep_reset(project, scratch_db)

    assert "  migrate     started from the state after 23 of 24 migrations (" in out, out
    assert_same_as_a_kept_rebuild(project, scratch_db, other_db)


@pytest.mark.parametrize(
    ("new", "nothing"),
    [
        (models.CharField(max_length=100, help_text="Shown"), True),
        (models.CharField(max_length=100, verbose_name="title", choices=[("a", "A")]), True),
        (models.CharField(max_length=120), False),
        (models.CharField(max_length=100, null=True), False),
        (models.CharField(max_length=100, db_column="label"), False),
        (models.CharField(max_length=100, default="x"), False),
    ],
)
def test_an_altered_field_is_quiet_only_when_the_column_stays(new, nothing):
    from django.db.migrations.state import ModelState, ProjectState

    state = ProjectState()
    state.add_model(
        ModelState(
            "shop",
            "item",
            [
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=100)),
            ],
        )
    )
    operation = migrations.AlterField("item", "name", new)

    assert buildcache._quiet(operation, set(), state, "shop") is nothing
