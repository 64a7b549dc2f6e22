"""What every step shares to report: the log callable, one-line errors, paths shown
relative to the project, and the exit status of an interrupted run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

# How a step reports: ``log(message, verbosity)``; the command prints the messages
# whose verbosity it was given at least.
Log = Callable[[str, int], None]

# The shell's convention for a process ended by Ctrl-C (128 + SIGINT).
INTERRUPTED_EXIT_STATUS = 130


def quiet(message: str, level: int) -> None:
    """The log of a step called without one: says nothing."""


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line, or its type's name when it has none."""
    return " ".join(str(exc).split()) or type(exc).__name__


def relative_path(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root`` when it is inside it, else in full; ``/`` separated.
    A symbolic link is named as the link, not as the file it points to."""
    given = Path(os.path.abspath(path))
    for base in (Path(os.path.abspath(root)), root.resolve()):
        with contextlib.suppress(ValueError):
            return given.relative_to(base).as_posix()
    resolved = given.parent.resolve() / given.name  # through linked folders
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()
