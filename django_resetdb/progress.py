"""A status line that a long step updates in place, on a terminal only.

Off a terminal (a pipe, a file, CI's log) and at verbosity 0 a :class:`Progress` does
nothing, so what a script reads stays exactly the same. On a terminal the line is
rewritten with a carriage return, at most ten times a second, and cleared before any
other line is written: the output that stays on the screen is the same as off one.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["INTERVAL", "NO_PROGRESS", "Progress"]

# At most ten updates a second: quick to read, and costs nothing measurable.
INTERVAL = 0.1


class Progress:
    """The in-place line of a command's output; does nothing when ``stream`` is None."""

    def __init__(self, stream: Any | None = None, *, interval: float = INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self._shown = ""  # the text on the line now, "" when it is clear
        self._last = -math.inf  # when it was last written: the first update always shows
        # Held while the line is written or cleared, and while another line is written
        # (see :meth:`cleared`): a thread showing seconds may write meanwhile.
        self._lock = threading.RLock()

    @classmethod
    def for_output(cls, stdout: Any, verbosity: int) -> Progress:
        """A Progress on ``stdout`` when it is a terminal and ``verbosity`` is at least 1."""
        isatty = getattr(stdout, "isatty", None)
        on = verbosity >= 1 and callable(isatty) and bool(isatty())
        return cls(stdout if on else None)

    @property
    def enabled(self) -> bool:
        return self.stream is not None

    def update(self, text: str, *, force: bool = False) -> None:
        """Show ``text`` in place of the line shown, unless one was shown less than
        ``interval`` ago (``force``: whatever the time)."""
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        with self._lock:
            self._last = now
            text = text[: self._width() - 1]
            # Spaces over what is left of a longer line: no terminal escape needed.
            padding = " " * max(0, len(self._shown) - len(text))
            self._write(f"\r{text}{padding}")
            if padding:
                self._write("\r" + text)
            self._shown = text

    def clear(self) -> None:
        """Blank the line and put the cursor back at its start; the next update shows."""
        if self.stream is None:
            return
        with self._lock:
            if self._shown:
                self._write("\r" + " " * len(self._shown) + "\r")
                self._shown = ""
            self._last = -math.inf

    @contextlib.contextmanager
    def cleared(self) -> Iterator[None]:
        """Clear the line, and keep it clear while the block writes a line of its own."""
        with self._lock:
            self.clear()
            yield

    @contextlib.contextmanager
    def seconds(self, text: str, *, after: float = 0.0) -> Iterator[None]:
        """While the block runs (one long statement), show ``text`` and the seconds since
        it began, from a thread of its own, once it has run ``after`` seconds; clear the
        line at the end."""
        if self.stream is None:
            yield
            return
        started = time.monotonic()
        stopping = threading.Event()

        def tick() -> None:
            if stopping.wait(after):
                return  # done before it was worth a line
            # Then each second: the count is in whole seconds.
            while True:
                self.update(f"{text} {time.monotonic() - started:.0f} s", force=True)
                if stopping.wait(1.0):
                    return

        thread = threading.Thread(target=tick, name="django_resetdb progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stopping.set()
            thread.join()
            self.clear()

    def _write(self, text: str) -> None:
        assert self.stream is not None
        write = self.stream.write
        try:
            # Django's OutputWrapper would add its line ending.
            write(text, ending="")
        except TypeError:
            write(text)
        self.stream.flush()

    def _width(self) -> int:
        # A line wider than the terminal would wrap, and "\r" go back to its last row only.
        assert self.stream is not None
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return columns or shutil.get_terminal_size().columns or 80


# What the library's functions get when called from Python: no line.
NO_PROGRESS = Progress()
