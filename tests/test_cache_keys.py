"""The key of the snapshot cache and the build cache: the same for the same project in
every process, changed only by what decides the result, and, when a kept copy is not
used, a line naming the input that changed."""

from __future__ import annotations

from tests.conftest import ProjectCopy, ScratchDatabase, snapshots_of
from tests.test_buildcache import VOLUNTEERS, assert_same_as_a_rebuild
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
