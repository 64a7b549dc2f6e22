"""Ctrl-C around a commit: held back until the run knows what the commit did.

A ``KeyboardInterrupt`` raised while a transaction commits, or just after, cannot say
whether the commit happened; the reset would then put the migration files back next to
a database that was rebuilt from the new ones, and say nothing was changed. While a run
is in its commit window (:func:`defer` to :func:`resume`), SIGINT is only recorded; the
run finishes what the commit began, then reports the interruption truthfully.
Outside the window Ctrl-C raises ``KeyboardInterrupt`` as it always does.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_deferring = False
_received = False


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    if _deferring:
        _received = True
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Let :func:`defer` hold Ctrl-C back while inside. Signal handlers belong to the
    main thread: elsewhere, and when the program handles SIGINT its own way, nothing
    changes."""
    usable = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if usable else None
    if previous is not signal.default_int_handler:
        yield
        return
    resume()  # a window a caller of swap_in() left open ends here
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        resume()


def defer() -> None:
    """From now on, record Ctrl-C instead of raising it."""
    global _deferring
    _deferring = True


def resume() -> bool:
    """Raise Ctrl-C again from now on; whether one came while it was deferred."""
    global _deferring, _received
    _deferring = False
    received, _received = _received, False
    return received
