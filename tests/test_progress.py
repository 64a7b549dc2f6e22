"""Progress of the long steps: on a terminal a line updated in place (migrate's migration
n of N, the objects a seed has loaded, the seconds a snapshot's copy has taken), which
leaves the screen as it is without one; off a terminal and at verbosity 0, nothing extra.

The commands run on a pseudo-terminal, in a process of their own; what they wrote is read
from its other end, as a terminal would get it."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from django_resetdb.management.base import PLANNING, PLANNING_FILES
from django_resetdb.progress import Progress
from tests.conftest import PATIENCE, ProjectCopy, ScratchDatabase, snapshots_of
from tests.test_resetdb import FAST_HASHER, prepare, timeless


def on_terminal(
    project: ProjectCopy, *args: str, db: ScratchDatabase, timeout: float = PATIENCE
) -> tuple[int, str, str]:
    """Run ``manage.py ARGS`` with its output on a pseudo-terminal; return the exit
    status, what reached the terminal (its "\\r\\n" made "\\n" again) and stderr."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=project.root,
            env=project._env(db.url(), None),
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(follower)
    deadline = time.monotonic() + timeout
    received = bytearray()
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer has closed its end
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(leader)
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    return returncode, received.decode().replace("\r\n", "\n"), stderr


def screen(text: str) -> str:
    """What stays on the screen: each "\\r" goes back to the line's start, and what comes
    after it is written over what was there."""
    lines = []
    for line in text.split("\n"):
        shown: list[str] = []
        column = 0
        for char in line:
            if char == "\r":
                column = 0
                continue
            if column < len(shown):
                shown[column] = char
            else:
                shown.append(char)
            column += 1
        lines.append("".join(shown).rstrip())
    return "\n".join(lines)


def updates(text: str) -> list[str]:
    """The in-place lines, as each was written (the text after each "\\r")."""
    return [part.rstrip() for part in re.split(r"[\r\n]", text) if part.strip()]


def built_lines(name: str) -> list[str]:
    """What a first rebuild of the demo prints after its target line, times left out, as
    test_resetdb has it."""
    return [
        "  migrations  no changes in account, catalog, event, sales in X s",
        "  schema      dropped 0 table(s) of public in X s",
        "  migrate     applied 22 migration(s) (4 built from the models), 18 table(s) in X s",
        "  seed        5 seed(s), 26 object(s), 31 row(s) in X s",
        f"Rebuilt database {name!r} (alias 'default'): 18 table(s), 31 row(s) seeded in X s.",
    ]


NO_CACHE = FAST_HASHER + 'DJANGO_RESETDB["SNAPSHOTS"] = 0\n'


def test_resetdb_on_a_terminal_shows_migrate_and_seed_progress_and_leaves_the_usual_lines(
    project, scratch_db
):
    prepare(project, NO_CACHE)

    returncode, output, stderr = on_terminal(
        project, "resetdb", "--no-input", "--no-color", db=scratch_db
    )

    assert returncode == 0, stderr
    shown = updates(output)
    assert "  migrate     applying 1/22 " in "\n".join(shown)
    assert all(
        re.fullmatch(r"  migrate     (applying \d+/22 \w+\.\w+|creating the tables of .*)", line)
        for line in shown
        if line.startswith("  migrate     ") and "applied" not in line
    ), shown
    assert "  seed        testproject.seeds.create_sample_users: running, 0 s" in shown
    assert "  seed        volunteers: 0 object(s) so far" in shown
    assert "  seed        volunteers: 1 object(s) so far" in shown
    assert "  seed        26 object(s): writing, then foreign keys and indexes" in shown
    # Cleared before each line that stays: the screen reads as it does without progress.
    lines = timeless(screen(output))
    assert lines[0].startswith(f"Target: database {scratch_db.name!r} ")
    assert [line for line in lines[1:] if line] == built_lines(scratch_db.name)
    assert scratch_db.query("SELECT count(*) FROM sales_ticket") == [(3,)]


def test_at_verbosity_two_migrates_own_lines_are_its_progress(project, scratch_db):
    prepare(project, NO_CACHE)

    returncode, output, stderr = on_terminal(
        project, "resetdb", "--no-input", "--no-color", "-v", "2", db=scratch_db
    )

    assert returncode == 0, stderr
    assert "applying 1/22" not in output
    on_screen = screen(output).splitlines()
    assert "  Applying contenttypes.0001_initial... OK" in on_screen
    assert "  seed        volunteers: 1 object(s) so far" in updates(output)
    assert [line for line in on_screen if line.startswith("  seed        ")] == [
        line for line in on_screen if re.fullmatch(r"  seed        5 seed\(s\), .*", line)
    ]


def test_resetdb_through_a_pipe_prints_no_progress(project, scratch_db):
    prepare(project, NO_CACHE)

    result = project.manage("resetdb", "--no-input", url=scratch_db.url())

    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout
    assert timeless(result.stdout)[1:] == built_lines(scratch_db.name)


def test_resetdb_at_verbosity_zero_on_a_terminal_prints_nothing(project, scratch_db):
    prepare(project, NO_CACHE)

    returncode, output, stderr = on_terminal(
        project, "resetdb", "--no-input", "-v", "0", db=scratch_db
    )

    assert returncode == 0, stderr
    assert output == ""
    assert scratch_db.query("SELECT count(*) FROM sales_ticket") == [(3,)]


def test_a_snapshot_kept_and_restored_shows_the_seconds_of_the_copy(project, scratch_db):
    prepare(project, FAST_HASHER)

    first = on_terminal(project, "resetdb", "--no-input", "--no-color", db=scratch_db)
    (kept,) = snapshots_of(scratch_db.name)
    again = on_terminal(project, "resetdb", "--no-input", "--no-color", db=scratch_db)

    assert first[0] == 0, first[2]
    assert "  snapshot    copying the database to keep a snapshot: 0 s" in updates(first[1])
    assert f"  snapshot    kept {kept} in " in screen(first[1])
    assert again[0] == 0, again[2]
    assert "  snapshot    copying the snapshot to restore it: 0 s" in updates(again[1])
    restored = [line for line in timeless(screen(again[1])) if line]
    assert restored[2].startswith(f"  snapshot    restored {kept} (kept ")
    assert restored[-1] == (
        f"Rebuilt database {scratch_db.name!r} (alias 'default') from its snapshot: 18 "
        "table(s), 31 row(s) seeded in X s."
    )


def test_seed_on_a_terminal_shows_the_objects_and_leaves_the_usual_lines(project, scratch_db):
    prepare(project, NO_CACHE)
    built = project.manage("resetdb", "--no-input", "--no-seed", url=scratch_db.url())
    assert built.returncode == 0, built.stderr

    returncode, output, stderr = on_terminal(project, "seed", "--no-color", db=scratch_db)
    piped = project.manage("seed", url=scratch_db.url())

    assert returncode == 0, stderr
    shown = updates(output)
    assert "  testproject.seeds.create_sample_users: running, 0 s" in shown
    assert "  catalog: 1 object(s) so far" in shown
    assert "  26 object(s): writing" in shown
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stdout
    # The objects a callable reports differ on a second run; the shape is the same.
    same_shape = re.compile(r"\d+ object\(s\)")
    on_screen = [line for line in timeless(screen(output)) if line]
    assert [same_shape.sub("N", line) for line in on_screen] == [
        same_shape.sub("N", line) for line in timeless(piped.stdout)
    ]


# The Progress object itself, on a stream that says it is a terminal.


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_off_through_a_pipe_and_at_verbosity_zero():
    assert not Progress.for_output(io.StringIO(), 1).enabled
    assert not Progress.for_output(Terminal(), 0).enabled
    assert Progress.for_output(Terminal(), 1).enabled


def test_updates_are_throttled_overwritten_and_cleared():
    stream = Terminal()
    progress = Progress(stream, interval=3600)

    progress.update("step 1/3 first")
    progress.update("step 2/3 second")  # within the interval: not shown
    progress.update("step 3/3 x", force=True)
    progress.clear()
    progress.update("next")  # the first update after a clear shows
    progress.clear()

    assert stream.getvalue() == (
        "\rstep 1/3 first\rstep 3/3 x    \rstep 3/3 x\r          \r\rnext\r    \r"
    )
    assert screen(stream.getvalue()) == ""


def test_seconds_shows_the_time_at_once_and_clears_the_line():
    stream = Terminal()
    progress = Progress(stream)

    with progress.seconds("copying:"):
        pass

    assert stream.getvalue() == "\rcopying: 0 s\r            \r"


@pytest.mark.parametrize("verbosity", [0, 1])
def test_off_a_terminal_nothing_is_written(verbosity):
    stream = io.StringIO()
    progress = Progress.for_output(stream, verbosity)

    progress.update("step", force=True)
    with progress.seconds("copying:"):
        pass
    progress.clear()

    assert stream.getvalue() == ""


def test_seconds_after_a_delay_shows_nothing_for_a_quick_block():
    stream = Terminal()
    progress = Progress(stream)

    with progress.seconds("planning:", after=60):
        pass

    assert stream.getvalue() == ""


def test_seconds_after_a_delay_shows_the_line_once_the_block_outlasts_it():
    stream = Terminal()
    progress = Progress(stream)

    with progress.seconds("planning:", after=0.01):
        # The block outlasts the delay: it waits for the line to be written.
        deadline = time.monotonic() + PATIENCE
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)

    assert screen(stream.getvalue()) == ""  # cleared at the end
    assert stream.getvalue().startswith("\rplanning: 0 s")


# A migration of the project that takes a while to import: planning reads every one.
SLOW_IMPORT = "\nimport time\n\ntime.sleep(1.5)  # a project slow to plan\n"


@pytest.mark.parametrize(
    ("command", "line"),
    [
        (("resetdb", "--dry-run"), PLANNING),
        (("resetmigrations", "--dry-run"), PLANNING_FILES),
    ],
)
def test_planning_that_takes_over_a_second_shows_a_line(project, scratch_db, command, line):
    prepare(project, NO_CACHE)
    project.append("testproject/catalog/migrations/0001_initial.py", SLOW_IMPORT)

    returncode, output, stderr = on_terminal(project, *command, "--no-color", db=scratch_db)

    assert returncode == 0, stderr
    # Shown once planning has taken a second (counted from its start), then each second.
    shown = [update for update in updates(output) if update.startswith(line)]
    assert shown and all(re.fullmatch(rf"{re.escape(line)} [1-9]\d* s", s) for s in shown)
    # Cleared before the plan is printed: nothing of it stays on the screen.
    assert line not in screen(output)
