"""History-aware regeneration on copies of the demo under git: the migrations committed at
the shared point are kept as they are, the developer's own after it become one new
migration; checked through ``git status``, file checksums, ``makemigrations --check``
and ``pg_dump`` of databases migrated from the files."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.conftest import ProjectCopy, last_line, schema_dump
from tests.test_resetmigrations import CATALOG_0001, CATEGORY_NOTE, CATEGORY_SLUG, baseline

CATALOG_MODELS = "testproject/catalog/models.py"
CATALOG_MIGRATIONS = "testproject/catalog/migrations"
COLOUR = "    colour = models.CharField(max_length=20, blank=True)\n"
RANK = "    rank = models.IntegerField(default=0)\n"
STARS = "    stars = models.IntegerField(default=0)\n"


def git(project: ProjectCopy, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    result = subprocess.run(
        ["git", *args], cwd=project.root, capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def under_git(project: ProjectCopy, branch: str = "main") -> None:
    """Make the project a repository with everything committed on ``branch``."""
    baseline(project)
    (project.root / ".gitignore").write_text("__pycache__/\n.resetdb/\n")
    git(project, "init", "-q", "-b", branch)
    commit(project, "start")


def commit(project: ProjectCopy, message: str) -> None:
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message)


def add_field(project: ProjectCopy, field: str) -> None:
    """A model change and the migration makemigrations writes for it."""
    project.edit(CATALOG_MODELS, CATEGORY_SLUG, CATEGORY_SLUG + field)
    made = project.manage("makemigrations", "catalog")
    assert made.returncode == 0, made.stderr


def migration_names(project: ProjectCopy) -> list[str]:
    folder = project.path(CATALOG_MIGRATIONS)
    return sorted(p.name for p in folder.iterdir() if p.name[:4].isdigit())


def status(project: ProjectCopy) -> list[str]:
    return sorted(git(project, "status", "--porcelain", "--untracked-files=all").splitlines())


def check_clean(project: ProjectCopy) -> None:
    check = project.manage("makemigrations", "--check", "--dry-run")
    assert check.returncode == 0, check.stdout + check.stderr


def teammate_and_own(project: ProjectCopy) -> dict[str, str]:
    """The demo under git with a teammate's migration committed, then two of the
    developer's own, not committed; returns the tree as committed."""
    under_git(project)
    add_field(project, CATEGORY_NOTE)
    commit(project, "catalog: note")
    shared = project.tree()
    add_field(project, COLOUR)
    add_field(project, RANK)
    return shared


def test_a_teammates_committed_migration_is_kept_and_own_ones_become_one(project):
    shared = teammate_and_own(project)
    assert migration_names(project) == [
        "0001_initial.py",
        "0002_category_note.py",
        "0003_category_colour.py",
        "0004_category_rank.py",
    ]
    before = project.tree()

    result = project.manage("resetmigrations", "--no-input")

    assert result.returncode == 0, result.stderr
    assert migration_names(project) == [
        "0001_initial.py",
        "0002_category_note.py",
        "0003_category_colour_category_rank.py",
    ]
    # What the team shares is byte for byte as committed.
    for name in (CATALOG_0001, f"{CATALOG_MIGRATIONS}/0002_category_note.py"):
        assert project.tree()[name] == shared[name]
    assert status(project) == [
        f" M {CATALOG_MODELS}",
        f"?? {CATALOG_MIGRATIONS}/0003_category_colour_category_rank.py",
    ]
    # Each file named once, with the reason.
    assert f"      delete  {CATALOG_MIGRATIONS}/0003_category_colour.py" in result.stdout
    assert f"      delete  {CATALOG_MIGRATIONS}/0004_category_rank.py" in result.stdout
    assert f"      add     {CATALOG_MIGRATIONS}/0003_category_colour_category_rank.py" in (
        result.stdout
    )
    assert (
        f"  catalog  {CATALOG_MIGRATIONS}  2 shared migration(s) kept (committed at main ("
    ) in result.stdout
    assert "); its own after them (2) regenerated" in result.stdout
    check_clean(project)

    # Nothing to do the second time.
    again = project.manage("resetmigrations", "--no-input")
    assert again.returncode == 0, again.stderr
    assert last_line(again.stdout) == (
        "No changes: the migrations of account, catalog, event, sales already match the "
        "models; no file was touched."
    )
    # The backup holds the own files: a restore brings the four back, byte for byte.
    restored = project.manage("resetmigrations", "--restore")
    assert restored.returncode == 0, restored.stderr
    assert project.tree() == before


def test_resetdb_keeps_the_shared_migration_and_migrates_as_plain_migrate_would(
    project, scratch_db, other_db
):
    shared = teammate_and_own(project)
    project.append("testproject/settings.py", 'DJANGO_RESETDB["SNAPSHOTS"] = 0\n')

    result = project.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert (
        "              kept 2 shared migration(s) of catalog as they are (committed at main ("
    ) in result.stdout
    assert f"              deleted {CATALOG_MIGRATIONS}/0004_category_rank.py" in result.stdout
    assert migration_names(project)[-1] == "0003_category_colour_category_rank.py"
    name = f"{CATALOG_MIGRATIONS}/0002_category_note.py"
    assert project.tree()[name] == shared[name]
    check_clean(project)
    # The same schema as a plain migrate of the files it left.
    migrated = project.manage("migrate", "--no-input", url=other_db.url())
    assert migrated.returncode == 0, migrated.stderr
    assert schema_dump(scratch_db) == schema_dump(other_db)


def test_a_branchs_own_commits_are_collapsed_and_mains_kept(project):
    under_git(project)
    for field in (CATEGORY_NOTE, COLOUR):  # main's: two more migrations, three in all
        add_field(project, field)
        commit(project, "main")
    git(project, "checkout", "-q", "-b", "feature")
    for field in (RANK, STARS):  # the branch's own two, committed on it only
        add_field(project, field)
        commit(project, "feature")
    assert len(migration_names(project)) == 5

    result = project.manage("resetmigrations", "--no-input")

    assert result.returncode == 0, result.stderr
    assert migration_names(project) == [
        "0001_initial.py",
        "0002_category_note.py",
        "0003_category_colour.py",
        "0004_category_rank_category_stars.py",
    ]
    assert "3 shared migration(s) kept (committed at merge base of HEAD and main (" in (
        result.stdout
    )
    # Main's files are as main has them; the branch's two became one.
    assert (
        git(
            project, "diff", "--stat", "main", "--", f"{CATALOG_MIGRATIONS}/0003_category_colour.py"
        )
        == ""
    )
    check_clean(project)


def test_regenerate_all_collapses_the_whole_history_and_warns(project):
    teammate_and_own(project)

    result = project.manage("resetmigrations", "--no-input", "--regenerate", "all")

    assert result.returncode == 0, result.stderr
    assert migration_names(project) == ["0001_initial.py"]
    for name in ("0002_category_note.py", "0003_category_colour.py", "0004_category_rank.py"):
        assert f"      delete  {CATALOG_MIGRATIONS}/{name}" in result.stdout
    assert f"      rewrite {CATALOG_0001}" in result.stdout
    assert ("      warning: 2 shared migration(s) of catalog (committed at main (") in result.stdout
    assert "every other database that applied them (teammates', deployed ones) must be " in (
        result.stdout
    )
    check_clean(project)


def test_regenerate_all_as_a_setting_does_the_same(project):
    teammate_and_own(project)
    project.append("testproject/settings.py", 'DJANGO_RESETDB["REGENERATE"] = "all"\n')

    dry = project.manage("resetmigrations", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert "      warning: 2 shared migration(s) of catalog" in dry.stdout
    assert f"      delete  {CATALOG_MIGRATIONS}/0002_category_note.py" in dry.stdout


def test_shared_ref_names_another_point(project):
    teammate_and_own(project)
    first = git(project, "rev-list", "--max-parents=0", "HEAD").strip()

    # At the first commit, the teammate's migration was not there: it is regenerated too.
    result = project.manage("resetmigrations", "--no-input", "--shared-ref", first)

    assert result.returncode == 0, result.stderr
    assert migration_names(project) == [
        "0001_initial.py",
        "0002_category_colour_category_note_category_rank.py",
    ]
    assert f"1 shared migration(s) kept (committed at {first} (" in result.stdout


def test_a_shared_ref_that_does_not_exist_is_an_error(project):
    teammate_and_own(project)
    before = project.tree()

    result = project.manage("resetmigrations", "--no-input", "--shared-ref", "no-such-branch")

    assert result.returncode == 1, result.stdout
    assert "The shared point 'no-such-branch' is not a commit of the repository in" in (
        result.stderr
    )
    assert project.tree() == before


def test_without_git_the_whole_history_is_regenerated_as_before(project):
    baseline(project)
    add_field(project, CATEGORY_NOTE)
    add_field(project, COLOUR)

    result = project.manage("resetmigrations", "--no-input")

    assert result.returncode == 0, result.stderr
    assert migration_names(project) == ["0001_initial.py"]
    assert "shared" not in result.stdout


def test_snapshots_and_the_build_cache_work_with_kept_shared_migrations(project, scratch_db):
    teammate_and_own(project)
    first = project.manage("resetdb", "--no-input", url=scratch_db.url())
    assert first.returncode == 0, first.stderr
    assert "  snapshot    kept " in first.stdout

    # Nothing changed: the snapshot is restored, the files left as they are.
    files = project.tree()
    warm = project.manage("resetdb", "--no-input", url=scratch_db.url())

    assert warm.returncode == 0, warm.stderr
    assert "  snapshot    restored " in warm.stdout
    assert project.tree() == files

    # Another change of one's own: rebuilt, the own migrations regenerated again into one
    # on top of the shared ones.
    project.edit(CATALOG_MODELS, RANK, RANK + STARS)
    changed = project.manage("resetdb", "--no-input", url=scratch_db.url())

    assert changed.returncode == 0, changed.stderr
    assert "  migrations  regenerated catalog (1 file(s)) in " in changed.stdout
    assert migration_names(project) == [
        "0001_initial.py",
        "0002_category_note.py",
        "0003_category_colour_category_rank_category_stars.py",
    ]
    check_clean(project)


def test_git_that_stops_answering_is_one_line_and_nothing_changed(project, tmp_path):
    teammate_and_own(project)
    before = project.tree()
    # The only git on PATH finds the repository, then is gone: the next call cannot run.
    real = shutil.which("git")
    assert real is not None
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\n/bin/rm -f "$0"\nexec {real} "$@"\n')
    fake.chmod(0o755)

    result = project.manage("resetmigrations", "--no-input", env={"PATH": str(fake.parent)})

    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(
        "CommandError: git stopped answering while the shared point was read ("
    )
    assert result.stderr.endswith("); nothing was changed.\n")
    assert result.stderr.count("\n") == 1
    assert project.tree() == before


def test_the_note_on_the_database_counts_only_the_migrations_replaced(project, scratch_db):
    under_git(project)
    add_field(project, CATEGORY_NOTE)
    commit(project, "catalog: note")
    # The database holds the shared migrations only; the own ones come after.
    assert project.manage("migrate", "--no-input", url=scratch_db.url()).returncode == 0
    add_field(project, COLOUR)
    add_field(project, RANK)

    result = project.manage("resetmigrations", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    # Its files are kept byte for byte: nothing it applied was replaced.
    assert "was migrated with the replaced files" not in result.stdout + result.stderr

    # Once one of the developer's own is applied, it is what the note counts.
    assert project.manage("migrate", "--no-input", url=scratch_db.url()).returncode == 0
    project.edit(CATALOG_MODELS, RANK, RANK + STARS)
    again = project.manage("resetmigrations", "--no-input", url=scratch_db.url())

    assert again.returncode == 0, again.stderr
    assert (
        f"Database {scratch_db.name!r} (alias 'default') was migrated with the replaced files "
        "(1 migration(s) of catalog)"
    ) in again.stderr


ARTIFACT_DESCRIPTION = "    description = models.TextField(blank=True)\n"
PERIOD = "    period = models.CharField(max_length=40, blank=True)\n"


def teammate_adds_period(project: ProjectCopy) -> dict[str, str]:
    """On main, a teammate's change to another model, with its migration, committed;
    returns the tree as committed."""
    git(project, "checkout", "-q", "main")
    project.edit(CATALOG_MODELS, ARTIFACT_DESCRIPTION, ARTIFACT_DESCRIPTION + PERIOD)
    assert project.manage("makemigrations", "catalog").returncode == 0
    commit(project, "catalog: period")
    return project.tree()


TEAMMATES = f"{CATALOG_MIGRATIONS}/0002_artifact_period.py"


def test_a_teammates_migration_merged_in_but_not_committed_yet_is_kept(project):
    under_git(project)
    git(project, "checkout", "-q", "-b", "feat")
    add_field(project, COLOUR)
    commit(project, "catalog: colour")
    shared = teammate_adds_period(project)
    git(project, "checkout", "-q", "feat")
    git(project, "merge", "-q", "--no-commit", "--no-ff", "main")
    merged = project.manage("makemigrations", "--merge", "--no-input")
    assert merged.returncode == 0, merged.stderr

    result = project.manage("resetmigrations", "--no-input")

    assert result.returncode == 0, result.stderr
    # Main's migration is the team's, merge or no merge: kept byte for byte.
    assert project.tree()[TEAMMATES] == shared[TEAMMATES]
    assert f"delete  {TEAMMATES}" not in result.stdout
    assert "2 shared migration(s) kept" in result.stdout
    assert migration_names(project) == [
        "0001_initial.py",
        "0002_artifact_period.py",
        "0003_category_colour.py",
    ]
    check_clean(project)


def test_a_teammates_migration_pulled_from_main_into_a_pushed_branch_is_kept(project, tmp_path):
    under_git(project)
    remote = tmp_path / "remote.git"
    git(project, "init", "-q", "--bare", str(remote))
    git(project, "remote", "add", "origin", str(remote))
    git(project, "push", "-q", "-u", "origin", "main")
    git(project, "checkout", "-q", "-b", "feat")
    git(project, "push", "-q", "-u", "origin", "feat")
    shared = teammate_adds_period(project)
    git(project, "push", "-q", "origin", "main")
    git(project, "checkout", "-q", "feat")
    git(project, "merge", "-q", "main")  # not pushed: the upstream is behind
    add_field(project, COLOUR)
    add_field(project, RANK)

    result = project.manage("resetmigrations", "--no-input")

    assert result.returncode == 0, result.stderr
    assert project.tree()[TEAMMATES] == shared[TEAMMATES]
    assert migration_names(project) == [
        "0001_initial.py",
        "0002_artifact_period.py",
        "0003_category_colour_category_rank.py",
    ]
    assert "2 shared migration(s) kept (committed at merge base of HEAD and origin/feat (" in (
        result.stdout
    )
    assert ", or at merge base of HEAD and main); its own after them (2) regenerated" in (
        result.stdout
    )
    check_clean(project)


def test_an_app_in_a_repository_of_its_own_is_asked_of_that_repository(project):
    baseline(project)
    add_field(project, CATEGORY_NOTE)
    # The app is a repository of its own inside the project's (a submodule's layout).
    app = "testproject/catalog"
    git(project, "-C", app, "init", "-q", "-b", "main")
    git(project, "-C", app, "add", "-A")
    git(project, "-C", app, "commit", "-q", "-m", "catalog")
    (project.root / ".gitignore").write_text("__pycache__/\n.resetdb/\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start")
    shared = project.tree()
    add_field(project, COLOUR)
    add_field(project, RANK)

    result = project.manage("resetmigrations", "--no-input")

    assert result.returncode == 0, result.stderr
    for name in (CATALOG_0001, f"{CATALOG_MIGRATIONS}/0002_category_note.py"):
        assert project.tree()[name] == shared[name]
    assert migration_names(project) == [
        "0001_initial.py",
        "0002_category_note.py",
        "0003_category_colour_category_rank.py",
    ]
    assert "2 shared migration(s) kept (committed at main (" in result.stdout
    assert ") in catalog); its own after them (2) regenerated" in result.stdout
    check_clean(project)
