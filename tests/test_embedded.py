"""The demo's embedded PostgreSQL refuses a data folder another major version made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from testproject.database import start_embedded
from tests.conftest import tree


def old_data_folder(tmp_path: Path, pid: int | None = None) -> Path:
    """A folder as PostgreSQL 16 (the earlier embedded server) leaves it, with a
    postmaster.pid naming ``pid`` when given."""
    folder = tmp_path / ".pgdata"
    (folder / "base").mkdir(parents=True)
    (folder / "PG_VERSION").write_text("16\n")
    if pid is not None:
        (folder / "postmaster.pid").write_text(f"{pid}\n{folder}\n1700000000\n5432\n")
    return folder


def test_a_folder_of_postgresql_16_is_refused_with_what_to_do(tmp_path):
    folder = old_data_folder(tmp_path)
    before = tree(folder)

    with pytest.raises(ImproperlyConfigured) as refused:
        start_embedded(folder)

    assert str(refused.value) == (
        f"The embedded PostgreSQL is version 18, but {folder} holds the data of PostgreSQL 16, "
        "which it cannot read. Delete the folder (it holds only the demo's database, which "
        "`python manage.py resetdb` rebuilds) or set DATABASE_URL."
    )
    assert tree(folder) == before, "the refusal touched the folder"


def test_a_server_still_running_on_the_old_folder_is_named(tmp_path):
    # A live pid stands for the old server: this test's own process.
    folder = old_data_folder(tmp_path, pid=os.getpid())

    with pytest.raises(ImproperlyConfigured) as refused:
        start_embedded(folder)

    pid = os.getpid()
    assert str(refused.value) == (
        f"The embedded PostgreSQL is version 18, but {folder} holds the data of PostgreSQL 16, "
        f"which it cannot read. Its server is still running (pid {pid}): stop it first "
        f"(kill {pid}). Delete the folder (it holds only the demo's database, which "
        "`python manage.py resetdb` rebuilds) or set DATABASE_URL."
    )
