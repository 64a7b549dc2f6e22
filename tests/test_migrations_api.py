"""The Python API of the migration reset, in-process, on copies of the demo's
migrations that ``MIGRATION_MODULES`` points at."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from django_resetdb import backups, reset_migrations
from django_resetdb.exceptions import Refused, ResetError
from django_resetdb.regenerate import apply_plan, plan_migrations
from tests.conftest import REPO, tree

# A field the copied migration does not have, so the plan has something to do.
DESCRIPTION = "                ('description', models.TextField(blank=True)),\n"


@pytest.fixture
def copied(tmp_path: Path) -> Iterator[Path]:
    """The demo's catalog migrations, copied into a package of their own."""
    package = f"copied_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / package / "catalog"
    folder.mkdir(parents=True)
    (tmp_path / package / "__init__.py").write_text("")
    source = REPO / "testproject" / "catalog" / "migrations"
    for name in ("__init__.py", "0001_initial.py"):
        shutil.copy2(source / name, folder / name)
    initial = folder / "0001_initial.py"
    text = initial.read_text()
    assert DESCRIPTION in text
    initial.write_text(text.replace(DESCRIPTION, ""))
    sys.path.insert(0, str(tmp_path))
    settings = {
        "MIGRATION_MODULES": {"catalog": f"{package}.catalog"},
        "DJANGO_RESETDB": {"BACKUP_DIR": str(tmp_path / "backups")},
    }
    try:
        with override_settings(**settings):
            yield folder
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.startswith(package)]:
            del sys.modules[name]


def test_plan_changes_nothing(copied):
    before = tree(copied)

    plan = plan_migrations(["catalog"])

    assert [app.label for app in plan.changed] == ["catalog"]
    assert [new.path for new in plan.changed[0].new_files] == [copied / "0001_initial.py"]
    assert "('description', models.TextField(blank=True))" in plan.changed[0].new_files[0].text
    assert tree(copied) == before


def test_ctrl_c_after_the_first_write_puts_the_files_back(copied):
    before = tree(copied)
    plan = plan_migrations(["catalog"])

    def interrupt(message: str, level: int) -> None:
        if "wrote" in message:
            raise KeyboardInterrupt

    with pytest.raises(ResetError) as info:
        apply_plan(plan, log=interrupt)

    assert info.value.returncode == 130
    (backup,) = backups.list_backups(copied.parent.parent / "backups")
    assert str(info.value) == (
        f"Interrupted; the migration files were put back from backup {str(backup.path)!r}."
    )
    assert tree(copied) == before
    assert backup.status == backups.ROLLED_BACK


def test_apply_writes_what_the_plan_showed(copied):
    plan = plan_migrations(["catalog"])
    planned = plan.changed[0].new_files[0]

    applied = apply_plan(plan)

    assert applied.written == [planned.path]
    assert planned.path.read_bytes() == planned.data
    assert applied.backup is not None and applied.backup.status == backups.COMPLETE
    assert plan_migrations(["catalog"]).changed == []


def test_reset_migrations_refuses_hand_written_operations_unless_forced(copied):
    (copied / "0002_by_hand.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("catalog", "0001_initial")]\n'
        "    operations = [migrations.RunSQL('SELECT 1', migrations.RunSQL.noop)]\n"
    )
    before = tree(copied)

    with pytest.raises(Refused) as info:
        reset_migrations(["catalog"])

    assert info.value.returncode == 3
    assert f"{copied / '0002_by_hand.py'} (operation 1, RunSQL): Raw SQL operation" in str(
        info.value
    )
    assert tree(copied) == before

    applied = reset_migrations(["catalog"], force=True)

    assert sorted(path.name for path in applied.written) == ["0001_initial.py"]
    assert not (copied / "0002_by_hand.py").exists()
    assert applied.backup is not None
    assert tree(applied.backup.path / "files") == {
        "catalog/0001_initial.py": before["0001_initial.py"],
        "catalog/0002_by_hand.py": before["0002_by_hand.py"],
    }
