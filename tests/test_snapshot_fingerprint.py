"""A snapshot is restored only when a rebuild would leave the same database: a change to
anything the build depends on (the project's code, the files and environment variables
the seeds read) makes the reset rebuild, and the result is what a rebuild without the
cache leaves. Checked through the catalogs, pg_dump and the rows."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import (
    ProjectCopy,
    ScratchDatabase,
    data_snapshot,
    database_oid,
    database_state,
    schema_dump,
    snapshots_of,
)
from tests.test_resetdb import FAST_HASHER, rebuild_once

GROUP_ENV = "RESETDB_SAMPLE_GROUP"

ROUTER = """\
class Router:
    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return None
"""

RECEIVERS = """\
from django.db.models.signals import post_migrate, post_save
from django.dispatch import receiver


@receiver(post_migrate)
def add_archivists(sender, using, apps, **kwargs):
    if sender.label == "auth":
        apps.get_model("auth", "Group").objects.using(using).get_or_create(name="Archivists")


@receiver(post_save, dispatch_uid="team_of_user")
def add_team(sender, instance, using, **kwargs):
    if sender._meta.label == "account.User":
        from django.contrib.auth.models import Group

        Group.objects.using(using).get_or_create(name=f"team-{instance.username}")
"""

HELPERS = """\
GROUPS = ["Guides"]
"""

EXTRA_SEEDS = """\
import os
from pathlib import Path

from django.contrib.auth.models import Group

from testproject.seedhelpers import GROUPS


def _add(database, names):
    for name in names:
        Group.objects.using(database).get_or_create(name=name)
    return len(names)


def groups_from_file(database, report):
    return _add(database, Path(__file__).with_name("groups.txt").read_text().split())


def groups_from_environ(database, report):
    return _add(database, [os.getenv("RESETDB_SAMPLE_GROUP", "Stewards")])


def groups_from_helper(database, report):
    return _add(database, GROUPS)


def groups_from_late_import(database, report):
    from testproject import latehelpers

    return _add(database, latehelpers.GROUPS)


def groups_from_optional_file(database, report):
    optional = Path(__file__).with_name("optional_groups.txt")
    return _add(database, optional.read_text().split() if optional.exists() else ["Caretakers"])


def groups_from_folder(database, report):
    folder = Path(__file__).with_name("groupnames")
    return _add(database, sorted(path.name for path in folder.iterdir()))


def groups_from_setting(database, report):
    from django.conf import settings

    return _add(database, [settings.SAMPLE_GROUP(), settings.SAMPLE_GROUPS.name])


def groups_from_file_opened_to_update(database, report):
    with open(Path(__file__).with_name("rplus.txt"), "r+") as opened:
        return _add(database, opened.read().split())
"""

EXTRAS_SETTINGS = """
DATABASE_ROUTERS = ["testproject.routers.Router"]
DJANGO_RESETDB["SEEDS"] += [
    "testproject.extra_seeds.groups_from_file",
    "testproject.extra_seeds.groups_from_environ",
    "testproject.extra_seeds.groups_from_helper",
    "testproject.extra_seeds.groups_from_late_import",
    "testproject.extra_seeds.groups_from_optional_file",
    "testproject.extra_seeds.groups_from_folder",
    "testproject.extra_seeds.groups_from_setting",
    "testproject.extra_seeds.groups_from_file_opened_to_update",
]


def SAMPLE_GROUP():
    return "Wardens"


class _Groups:
    def __init__(self, name):
        self.name = name


SAMPLE_GROUPS = _Groups("Sextons")
"""


def add_extras(project: ProjectCopy) -> None:
    """A router, receivers, and seed callables that read a file, an environment variable
    and helper modules (one imported when the callable runs), in the project copy."""
    project.append("testproject/routers.py", ROUTER)
    project.append("testproject/receivers.py", RECEIVERS)
    project.append("testproject/catalog/models.py", "\nfrom testproject import receivers  # noqa\n")
    project.append("testproject/seedhelpers.py", HELPERS)
    project.append("testproject/latehelpers.py", 'GROUPS = ["Porters"]\n')
    project.append("testproject/groups.txt", "Gardeners\nBinders\n")
    project.append("testproject/extra_seeds.py", EXTRA_SEEDS)
    project.append("testproject/groupnames/Curators", "")
    project.append("testproject/rplus.txt", "Ushers\n")


@pytest.fixture
def kept(project: ProjectCopy, scratch_db: ScratchDatabase) -> ProjectCopy:
    """The demo with the extras, rebuilt once: a snapshot kept."""
    add_extras(project)
    rebuild_once(project, scratch_db, FAST_HASHER + EXTRAS_SETTINGS)
    (snapshot,) = snapshots_of(scratch_db.name)
    project.kept = snapshot  # type: ignore[attr-defined]
    return project


def groups(db: ScratchDatabase) -> list[str]:
    return [name for (name,) in db.query("SELECT name FROM auth_group ORDER BY name")]


def column_type(db: ScratchDatabase, table: str, column: str) -> str:
    ((found,),) = db.query(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attname = %s",
        [table, column],
    )
    return str(found)


def comparable(db: ScratchDatabase) -> tuple[str, dict[str, object]]:
    """The schema and the rows, but what differs between two builds of the same project
    (the sample users' salted hashes and joining times, when and in which order
    migrations were applied: a build from a migrated state records the ones it applies
    after the state's)."""
    rows = data_snapshot(db)
    rows.pop("sequence django_migrations_id_seq")
    rows["account_user"] = db.query("SELECT username FROM account_user ORDER BY 1")
    rows["django_migrations"] = db.query("SELECT app, name FROM django_migrations ORDER BY 1, 2")
    return schema_dump(db), rows


def assert_rebuilt_as_without_the_cache(
    project: ProjectCopy,
    db: ScratchDatabase,
    other: ScratchDatabase,
    env: dict[str, str] | None = None,
) -> None:
    """Reset ``db`` after a change: it must be rebuilt, not restored (in a new database
    that starts from a migrated state of the build cache, when one can be used), and
    leave what a rebuild without the cache leaves in ``other``."""
    result = project.manage("resetdb", "--no-input", url=db.url(), env=env)

    assert result.returncode == 0, result.stderr
    assert "  snapshot    restored " not in result.stdout
    assert "  migrate     " in result.stdout
    fresh = project.manage("resetdb", "--no-input", "--no-snapshot", url=other.url(), env=env)
    assert fresh.returncode == 0, fresh.stderr
    (schema, rows), (fresh_schema, fresh_rows) = comparable(db), comparable(other)
    assert schema == fresh_schema
    assert sorted(rows) == sorted(fresh_rows)
    for table, found in rows.items():
        assert (table, found) == (table, fresh_rows[table])


def test_an_unchanged_project_with_its_reads_restores_its_snapshot(kept, scratch_db):
    before = database_state(scratch_db)
    oid = database_oid(scratch_db.name)

    result = kept.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert f"  snapshot    restored {kept.kept} (kept " in result.stdout
    assert database_oid(scratch_db.name) != oid
    assert database_state(scratch_db) == before
    names = groups(scratch_db)
    assert {
        "Archivists", "Binders", "Gardeners", "Guides", "Porters", "Stewards", "Caretakers",
        "Curators", "Wardens", "Sextons", "Ushers", "team-bob",
    } <= set(names)  # fmt: skip


def _db_type(project: ProjectCopy) -> None:
    project.edit("testproject/catalog/fields.py", 'return "citext"', 'return "text"')


def _prep_value(project: ProjectCopy) -> None:
    project.edit(
        "testproject/catalog/fields.py",
        "return self.to_python(super().get_prep_value(value))",
        "return self.to_python(super().get_prep_value(value)).upper()",
    )


def _to_python(project: ProjectCopy) -> None:
    project.edit(
        "testproject/catalog/fields.py", '" ".join(value.split())', '"_".join(value.split())'
    )


def _router(project: ProjectCopy) -> None:
    project.edit(
        "testproject/routers.py",
        "return None",
        'return False if app_label == "sessions" else None',
    )


def _post_migrate(project: ProjectCopy) -> None:
    project.edit("testproject/receivers.py", 'name="Archivists"', 'name="Record keepers"')


def _post_save(project: ProjectCopy) -> None:
    project.edit("testproject/receivers.py", 'f"team-{', 'f"crew-of-{')


def _data_file(project: ProjectCopy) -> None:
    project.path("testproject/groups.txt").write_text("Gardeners\nBookbinders\n")


def _helper(project: ProjectCopy) -> None:
    project.edit("testproject/seedhelpers.py", '"Guides"', '"Museum guides"')


def _late_helper(project: ProjectCopy) -> None:
    project.edit("testproject/latehelpers.py", '"Porters"', '"Night porters"')


def _optional_file(project: ProjectCopy) -> None:
    project.append("testproject/optional_groups.txt", "Porters-in-chief\n")


def _folder(project: ProjectCopy) -> None:
    project.append("testproject/groupnames/Docents", "")


def _setting(project: ProjectCopy) -> None:
    project.edit("testproject/settings.py", 'return "Wardens"', 'return "Bailiffs"')


def _setting_object(project: ProjectCopy) -> None:
    project.edit("testproject/settings.py", '_Groups("Sextons")', '_Groups("Beadles")')


def _file_opened_to_update(project: ProjectCopy) -> None:
    project.path("testproject/rplus.txt").write_text("Vergers\n")


def _check_db_type(db: ScratchDatabase) -> None:
    assert column_type(db, "catalog_artifact", "name") == "text"


def _check_names(expected: str) -> Callable[[ScratchDatabase], None]:
    def check(db: ScratchDatabase) -> None:
        ((name,),) = db.query("SELECT name::text FROM catalog_artifact WHERE id = 1")
        assert name == expected

    return check


def _check_router(db: ScratchDatabase) -> None:
    assert db.query("SELECT to_regclass('django_session')") == [(None,)]


def _check_groups(present: str, absent: str) -> Callable[[ScratchDatabase], None]:
    def check(db: ScratchDatabase) -> None:
        names = groups(db)
        assert present in names
        assert absent not in names

    return check


@pytest.mark.parametrize(
    "change, check",
    [
        pytest.param(_db_type, _check_db_type, id="db_type"),
        pytest.param(_prep_value, _check_names("SALT-GLAZED JUG"), id="get_prep_value"),
        pytest.param(_to_python, _check_names("Salt-glazed_jug"), id="to_python"),
        pytest.param(_router, _check_router, id="router"),
        pytest.param(
            _post_migrate, _check_groups("Record keepers", "Archivists"), id="post_migrate"
        ),
        pytest.param(_post_save, _check_groups("crew-of-bob", "team-bob"), id="post_save"),
        pytest.param(_data_file, _check_groups("Bookbinders", "Binders"), id="data_file"),
        pytest.param(_helper, _check_groups("Museum guides", "Guides"), id="helper"),
        pytest.param(_late_helper, _check_groups("Night porters", "Porters"), id="late_import"),
        pytest.param(
            _optional_file, _check_groups("Porters-in-chief", "Caretakers"), id="file_exists"
        ),
        pytest.param(_folder, _check_groups("Docents", "Nobody"), id="folder_listing"),
        pytest.param(_setting, _check_groups("Bailiffs", "Wardens"), id="settings_function"),
        pytest.param(_setting_object, _check_groups("Beadles", "Sextons"), id="settings_object"),
        pytest.param(_file_opened_to_update, _check_groups("Vergers", "Ushers"), id="file_r_plus"),
    ],
)
def test_a_change_the_build_depends_on_rebuilds(kept, scratch_db, other_db, change, check):
    change(kept)

    assert_rebuilt_as_without_the_cache(kept, scratch_db, other_db)

    check(scratch_db)


def test_an_environment_variable_a_seed_reads_rebuilds(kept, scratch_db, other_db):
    # Unset when the snapshot was kept, then set, then set to something else.
    for value in ("Guards", "Night guards"):
        assert_rebuilt_as_without_the_cache(kept, scratch_db, other_db, env={GROUP_ENV: value})

        assert value in groups(scratch_db)
        assert "Stewards" not in groups(scratch_db)

    again = kept.manage(
        "resetdb", "--no-input", url=scratch_db.url(), env={GROUP_ENV: "Night guards"}
    )

    assert again.returncode == 0, again.stderr
    assert "  snapshot    restored " in again.stdout
