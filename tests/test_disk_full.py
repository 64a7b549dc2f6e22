"""A full disk while migration files are backed up or written: one line, the files as
they were (or whole in the backup), no half-written file left, and ``.resetdb/`` never
left without the ``.gitignore`` that keeps it out of git. The disk is a small tmpfs of
the test's own (mounting needs root; elsewhere these tests are skipped)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_resetdb import backups
from tests.conftest import REPO, ProjectCopy, database_url
from tests.test_resetmigrations import add_nickname, baseline

GITIGNORE = b"# Written by django_resetdb: backups stay out of git.\n*\n"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` until a write fails: not a byte free."""
    filler = disk / "filler"
    handle = filler.open("wb", buffering=0)
    try:
        while True:
            handle.write(b"\0" * 4096)
    except OSError:
        pass
    finally:
        handle.close()
    return filler


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.name != "filler"
    }


@pytest.fixture
def project_on_disk(disk: Path) -> ProjectCopy:
    root = disk / "project"
    root.mkdir()
    shutil.copy2(REPO / "manage.py", root / "manage.py")
    shutil.copytree(
        REPO / "testproject", root / "testproject", ignore=shutil.ignore_patterns("__pycache__")
    )
    project = ProjectCopy(root, database_url("resetdb_t_absent"))
    baseline(project)
    add_nickname(project)
    return project


def test_a_full_disk_while_backing_up_leaves_the_files_and_says_so(project_on_disk, disk):
    before = files_under(project_on_disk.root)
    filler = fill(disk)

    result = project_on_disk.manage("resetmigrations", "--no-input")

    backups_dir = project_on_disk.path(".resetdb/backups")
    assert result.returncode == 1
    assert result.stderr == (
        f"CommandError: Backing up the migration files to {str(backups_dir)!r} failed "
        "(OSError: [Errno 28] No space left on device); nothing was changed.\n"
    )
    assert files_under(project_on_disk.root) == {
        **before,
        **(
            {".resetdb/.gitignore": GITIGNORE}
            if (project_on_disk.path(".resetdb/.gitignore")).exists()
            else {}
        ),
    }
    assert not [p for p in project_on_disk.root.rglob("*.resetdb-tmp")]
    assert not backups_dir.exists() or list(backups_dir.iterdir()) == []

    # With room again, the next run backs up, regenerates, and leaves .resetdb ignored.
    filler.unlink()
    again = project_on_disk.manage("resetmigrations", "--no-input")

    assert again.returncode == 0, again.stderr
    assert project_on_disk.path(".resetdb/.gitignore").read_bytes() == GITIGNORE
    assert (
        "nickname"
        in project_on_disk.path("testproject/account/migrations/0001_initial.py").read_text()
    )


def test_an_empty_gitignore_a_full_disk_left_is_written_again(project_on_disk):
    marker = project_on_disk.path(".resetdb/.gitignore")
    marker.parent.mkdir()
    marker.write_bytes(b"")

    result = project_on_disk.manage("resetmigrations", "--no-input")

    assert result.returncode == 0, result.stderr
    assert marker.read_bytes() == GITIGNORE


def test_writing_a_file_on_a_full_disk_leaves_no_half_written_file(disk):
    target = disk / "0001_initial.py"
    target.write_bytes(b"# as it was\n")
    fill(disk)

    with pytest.raises(OSError):
        backups.write_atomically(target, b"x" * 100_000)

    assert target.read_bytes() == b"# as it was\n"
    assert sorted(p.name for p in disk.iterdir()) == ["0001_initial.py", "filler"]


def test_a_disk_that_fills_after_the_backup_puts_the_files_back_and_says_so(
    project_on_disk, disk, tmp_path
):
    # The backup goes to another disk, and succeeds; the new file, far larger than the
    # one it replaces (a long help text), does not fit on the project's full disk.
    elsewhere = tmp_path / "backups"
    project_on_disk.append(
        "testproject/settings.py", f"\nDJANGO_RESETDB['BACKUP_DIR'] = {str(elsewhere)!r}\n"
    )
    help_text = "x" * 200_000
    project_on_disk.edit(
        "testproject/account/models.py",
        "    nickname = models.CharField(max_length=50, blank=True)\n",
        f"    nickname = models.CharField(max_length=50, blank=True, help_text={help_text!r})\n",
    )
    before = files_under(project_on_disk.root)
    filler = fill(disk)

    result = project_on_disk.manage("resetmigrations", "--no-input")

    (backup,) = [path for path in elsewhere.iterdir() if path.is_dir()]
    assert result.returncode == 1
    assert result.stderr.startswith(
        "CommandError: Regenerating the migrations failed (OSError: [Errno 28] No space left "
        "on device"
    )
    assert result.stderr.endswith(
        f"the migration files were put back from backup {str(backup)!r}.\n"
    )
    assert result.stderr.count("\n") == 1
    # Every file as it was, byte for byte; nothing half-written left beside them.
    assert files_under(project_on_disk.root) == before
    assert not [p for p in project_on_disk.root.rglob("*.resetdb-tmp")]
    assert '"status": "rolled back"' in (backup / "manifest.json").read_text()

    # With room again, the same command regenerates.
    filler.unlink()
    again = project_on_disk.manage("resetmigrations", "--no-input")

    assert again.returncode == 0, again.stderr
    assert (
        help_text
        in project_on_disk.path("testproject/account/migrations/0001_initial.py").read_text()
    )
