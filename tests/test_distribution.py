"""What users install: the wheel holds every module of the package, and the sdist holds
that and everything its own test suite needs."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import django_resetdb
from tests.conftest import PATIENCE, REPO

SOURCE = REPO / "django_resetdb"
# What the sdist carries besides the package: its suite runs from the unpacked folder.
SDIST_FOLDERS = ("tests", "testproject", "bench", "docs")
SDIST_FILES = ("pyproject.toml", "README.rst", "CHANGELOG.rst", "LICENSE", "manage.py")


def tree_files(root: Path) -> set[str]:
    """The files under ``root``, relative to the repository, as a distribution names
    them; compiled files and what a build or a run leaves are not sources."""
    found = set()
    for path in root.rglob("*"):
        parts = path.relative_to(REPO).parts
        if (
            path.is_file()
            and "__pycache__" not in parts
            and path.suffix not in (".pyc", ".pyo")
            and not any(part.startswith(".") or part == "_build" for part in parts)
        ):
            found.add("/".join(parts))
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not SOURCE.is_dir():
        pytest.skip("no source tree here: the suite runs against an installed copy")
    # The tests of this module may run on two pytest-xdist workers at once, and two builds
    # in one source tree trip over each other's release folder: one build, under a lock,
    # in a folder every worker of this run shares.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    out = shared / "dist"
    with (shared / "dist.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if not (out / "done").is_file():
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                # The sdist first, then the wheel built from the unpacked sdist: what
                # PyPI users get.
                result = subprocess.run(
                    [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                    capture_output=True,
                    text=True,
                    timeout=PATIENCE,
                )
                assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
                (out / "done").touch()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def test_the_wheel_holds_every_file_of_the_package_and_nothing_else(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        names = {name for name in archive.namelist() if ".dist-info/" not in name}

    assert names == tree_files(SOURCE)
    assert "django_resetdb/py.typed" in names
    assert "django_resetdb/pipeline/__init__.py" in names


def test_the_sdist_holds_the_package_and_what_its_suite_needs(built):
    _, sdist = built
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {
            name.removeprefix(f"{top}/")
            for name, member in zip(archive.getnames(), archive.getmembers(), strict=True)
            if member.isfile()
        }
    wanted = tree_files(SOURCE)
    for folder in SDIST_FOLDERS:
        wanted |= tree_files(REPO / folder)

    assert wanted - names == set()
    assert set(SDIST_FILES) - names == set()


def test_the_suite_imports_the_copy_it_was_asked_to_test():
    # .ci/run sets RESETDB_TEST_INSTALLED when it runs the suite of the unpacked sdist
    # against the installed wheel: a checkout on sys.path would hide a missing module.
    where = Path(django_resetdb.__file__).resolve()
    if os.environ.get("RESETDB_TEST_INSTALLED"):
        assert REPO not in where.parents, f"django_resetdb imported from {where}"
        assert "site-packages" in where.parts
    else:
        assert where.parent == SOURCE.resolve() or "site-packages" in where.parts
