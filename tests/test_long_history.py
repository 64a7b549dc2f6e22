"""A project with a long migration history (over a thousand hand-written migrations, as
large projects have) resets at default settings, and the lock estimate that decides
where a reset runs is at least what such a history really holds in one transaction."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.history import History, generate
from tests.conftest import PATIENCE, REPO, ScratchDatabase, states_of

# Records, from inside the reset's transaction once every migration ran, how many
# lock-table entries its session holds.
LOCK_PROBE = """

from django.db.models.signals import post_migrate


def _count_locks(sender, using, **kwargs):
    from django.db import connections

    with connections[using].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()")
        (held,) = cursor.fetchone()
    path = os.environ.get("LOCKS_FILE")
    if path:
        with open(path, "a") as out:
            out.write(f"{held}\\n")


post_migrate.connect(_count_locks, dispatch_uid="count_locks")
"""


def run(root: Path, db: ScratchDatabase, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=root,
        env={
            **os.environ,
            "DATABASE_URL": db.url(),
            "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]),
            "DJANGO_SETTINGS_MODULE": "synth.settings",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=PATIENCE * 4,
    )


@pytest.fixture
def long_history(tmp_path: Path) -> Path:
    # 20 apps x 55 migrations: 1,100 files, a data migration in each app (so each app is
    # kept as it is, and the whole history applied, by default).
    root = tmp_path / "long"
    generate(root, History(apps=20, migrations=55, rows=2))
    return root


@pytest.mark.slow
def test_a_history_of_1100_migrations_resets_by_default_and_after_an_appended_one(
    long_history, scratch_db
):
    first = run(long_history, scratch_db, "resetdb", "--no-input")
    assert first.returncode == 0, first.stdout + first.stderr
    assert re.search(r"^  migrate     applied 11\d\d migration\(s\)", first.stdout, re.M), (
        first.stdout
    )

    app = long_history / "app10"
    (app / "migrations" / "0056_extra.py").write_text(
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("app10", "0055_step")]\n'
        '    operations = [migrations.AddField("item", "extra", models.IntegerField(null=True))]\n'
    )
    models = app / "models.py"
    models.write_text(
        models.read_text().replace(
            "class Item(models.Model):\n",
            "class Item(models.Model):\n    extra = models.IntegerField(null=True)\n",
        )
    )
    second = run(long_history, scratch_db, "resetdb", "--no-input")

    assert second.returncode == 0, second.stdout + second.stderr
    assert "started from the state after" in second.stdout, second.stdout
    assert "applied 1 migration(s)" in second.stdout
    assert states_of(scratch_db.name)
    assert scratch_db.query(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'app10_item' AND column_name = 'extra'"
    ) == [(1,)]


@pytest.mark.slow
def test_the_lock_estimate_covers_what_a_long_history_holds_in_place(
    long_history, scratch_db, tmp_path
):
    settings = long_history / "synth" / "settings.py"
    settings.write_text(
        settings.read_text()
        + LOCK_PROBE
        + 'DJANGO_RESETDB["STRATEGY"] = "in-place"\nDJANGO_RESETDB["SNAPSHOTS"] = 0\n'
    )
    locks = tmp_path / "locks.txt"
    # Twice: the second drops what the first made, in the same transaction.
    for _ in range(2):
        locks.write_text("")
        result = run(
            long_history, scratch_db, "resetdb", "--no-input", "-v", "2",
            env={"LOCKS_FILE": str(locks)},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        found = re.search(
            r"database    in place: about (\d+) lock-table entries of the (\d+)", result.stdout
        )
        assert found, result.stdout
        held = max(int(line) for line in locks.read_text().split())

        assert int(found[1]) >= held, (int(found[1]), held)
