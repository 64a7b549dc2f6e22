"""Once the rebuild has committed, nothing is undone, and no message may say otherwise:
whatever fails afterwards (keeping a snapshot, a lock, the summary, a hook) is said to
have come after a complete reset, and the database and the files are the rebuilt ones."""

# The fixtures come from the modules that define them: their names are arguments here.
# ruff: noqa: F811

from __future__ import annotations

import pytest

from tests.conftest import connect, snapshots_of
from tests.test_resetdb import built, columns, status  # noqa: F401 (fixtures: built)
from tests.test_resetmigrations import ACCOUNT_0001, add_nickname
from tests.test_snapshots import cached, holding_name_lock  # noqa: F401 (fixtures)


def assert_rebuilt(project, db) -> None:
    """The database holds the rebuild from the new files, which are in place."""
    assert "nickname" in columns(db, "account_user")
    assert "nickname" in project.path(ACCOUNT_0001).read_text()
    (backup,) = project.backups()
    assert status(backup) == "complete"


def test_an_error_just_after_the_commit_says_the_reset_is_complete(built, scratch_db):
    add_nickname(built)

    result = built.reset_with_fault("commit:error", url=scratch_db.url())

    assert result.returncode == 1
    assert result.stderr == (
        "CommandError: RuntimeError: fault injected at commit; this came after the database "
        "was rebuilt: the reset is complete (the new migration files are in place).\n"
    )
    assert_rebuilt(built, scratch_db)


def test_an_error_just_after_the_swap_says_the_reset_is_complete(cached, scratch_db):
    add_nickname(cached)

    result = cached.reset_with_fault("swap:error", url=scratch_db.url())

    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: RuntimeError: fault injected at swap; ")
    assert result.stderr.endswith(
        ": the reset is complete (the new migration files are in place).\n"
    )
    assert "rolled back" not in result.stderr and "nothing was changed" not in result.stderr
    assert_rebuilt(cached, scratch_db)


@pytest.mark.parametrize(("point", "kept"), [("snapshot", False), ("kept", True)])
def test_an_error_while_the_snapshot_is_kept_is_reported_and_the_reset_succeeds(
    cached, scratch_db, point, kept
):
    add_nickname(cached)
    before = set(snapshots_of(scratch_db.name))

    result = cached.reset_with_fault(f"{point}:error", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    new = set(snapshots_of(scratch_db.name)) - before
    if kept:
        (name,) = new
        assert f"  snapshot    kept {name}, then: RuntimeError: fault injected at kept\n" in (
            result.stdout
        )
    else:
        assert new == set()
        assert "  snapshot    not kept: RuntimeError: fault injected at snapshot\n" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(f"Rebuilt database {scratch_db.name!r}")
    assert_rebuilt(cached, scratch_db)
    # A copy the failure left half-made is listed, and the tool's own clean-up drops it.
    listed = cached.manage("resetdb", "--list-snapshots", url=scratch_db.url())
    half_made = [line for line in listed.stdout.splitlines() if "left half-made" in line]
    assert len(half_made) == (0 if kept else 1), listed.stdout
    dropped = cached.manage("resetdb", "--drop-snapshots", url=scratch_db.url())
    assert dropped.returncode == 0, dropped.stderr
    with connect("postgres") as admin:
        left = admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, 'resetdb_swap_keep_') "
            "AND datname LIKE %s",
            [f"%{scratch_db.name}%"],
        ).fetchall()
    assert left == []


def test_a_lock_timeout_while_the_snapshot_is_kept_in_place_is_reported(cached, scratch_db):
    # Another session holds the target's name lock while the snapshot would be copied:
    # the reset has committed already, so it is only said.
    cached.append(
        "testproject/settings.py",
        'DJANGO_RESETDB["STRATEGY"] = "in-place"\nDJANGO_RESETDB["LOCK_TIMEOUT"] = 1\n',
    )
    add_nickname(cached)
    before = set(snapshots_of(scratch_db.name))

    with holding_name_lock(scratch_db.name):
        result = cached.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert "  snapshot    not kept: " in result.stdout
    assert "lock" in next(
        line for line in result.stdout.splitlines() if "snapshot    not kept" in line
    )
    assert set(snapshots_of(scratch_db.name)) == before
    assert_rebuilt(cached, scratch_db)


def test_an_error_while_the_summary_is_made_says_the_reset_is_complete(built, scratch_db):
    add_nickname(built)

    result = built.reset_with_fault("summary:error", url=scratch_db.url())

    assert result.returncode == 1
    assert result.stderr == (
        "CommandError: RuntimeError: fault injected at summary; this came after the reset "
        "had finished: it is complete.\n"
    )
    assert_rebuilt(built, scratch_db)
    with connect(scratch_db.name) as conn:  # the row added by hand went with the rebuild
        assert conn.execute(
            "SELECT count(*) FROM catalog_category WHERE slug = 'maps'"
        ).fetchone() == (0,)


COMMITTING_SEED = """\
from django.db import connections


def commit(database, report):
    with connections[database].cursor() as cursor:
        cursor.execute("COMMIT")
    raise ValueError("after the commit")
"""


def test_a_seed_that_commits_a_reset_in_place_says_what_is_committed(built, scratch_db):
    # A raw COMMIT ends the reset's transaction: what it had done stays, the files with it.
    built.path("testproject/committing.py").write_text(COMMITTING_SEED)
    built.append(
        "testproject/settings.py",
        'DJANGO_RESETDB["STRATEGY"] = "in-place"\n'
        'DJANGO_RESETDB["SEEDS"] = ["testproject.seeds.create_sample_users", '
        '"testproject.committing.commit", "catalog"]\n',
    )
    add_nickname(built)

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 1
    (backup,) = built.backups()
    assert result.stderr == (
        "CommandError: Seed 'testproject.committing.commit' failed: it committed the "
        "transaction it runs in (a COMMIT sent as SQL); a seed must not end the transaction: "
        "the database holds the rebuild up to it, committed, and the migration "
        f"files are those it was rebuilt from (backup {str(backup)!r} holds the earlier "
        "ones); run resetdb again.\n"
    )
    # True on both sides: the rebuilt schema (nickname) and the users, not the catalog.
    assert_committed_with_the_new_files(built, scratch_db, backup)
    with connect(scratch_db.name) as conn:
        assert conn.execute("SELECT count(*) > 0 FROM account_user").fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM catalog_category").fetchone() == (0,)


def assert_committed_with_the_new_files(project, db, backup) -> None:
    """The rebuilt schema (nickname) is committed, the migration files that made it kept,
    and the backup of the earlier ones marked complete."""
    assert "nickname" in columns(db, "account_user")
    assert "nickname" in project.path(ACCOUNT_0001).read_text()
    assert status(backup) == "complete"


COMMITTING_RECEIVER = """
from django_resetdb.signals import post_reset


def _commit_then_fail(sender, alias, **kwargs):
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute("COMMIT")
    raise ValueError("after the commit")


post_reset.connect(_commit_then_fail, weak=False)
"""


def test_a_receiver_that_commits_then_fails_says_what_is_committed(built, scratch_db):
    built.append(
        "testproject/settings.py",
        'DJANGO_RESETDB["STRATEGY"] = "in-place"\n' + COMMITTING_RECEIVER,
    )
    add_nickname(built)

    result = built.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 1
    (backup,) = built.backups()
    assert result.stderr == (
        "CommandError: ValueError: after the commit; but code run inside the reset (a "
        "migration's RunPython or a receiver) had committed its transaction itself (a COMMIT "
        "sent as SQL): the database holds the rebuild up to it, committed, and the migration "
        f"files are those it was rebuilt from (backup {str(backup)!r} holds the earlier "
        "ones); run resetdb again.\n"
    )
    assert_committed_with_the_new_files(built, scratch_db, backup)
