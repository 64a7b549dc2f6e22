"""When the process started, on the monotonic clock: what a command's summary counts from.

A command's time is what the user waited for, Python's and Django's start-up included,
not only the part after the command began. Where the operating system gives the
process's start (Linux), it is read from there; elsewhere the earliest moment this
package sees is the moment Django imported it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# Waits shorter than this are not worth a line at verbosity 1.
WAIT_SHOWN = 0.1

# The fallback: the package imports this module first thing.
_IMPORTED = time.monotonic()


def _seconds_since_boot() -> float:
    # CLOCK_BOOTTIME is what /proc/self/stat counts from; a container may fake
    # /proc/uptime, not the clock.
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        return time.clock_gettime(boottime)
    return float(Path("/proc/uptime").read_text().split()[0])


def _age_from_proc() -> float | None:
    """Seconds since this process started, as Linux records it, or None."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = os.sysconf("SC_CLK_TCK")
        now = _seconds_since_boot()
    except (OSError, ValueError, AttributeError):
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last
    # ")". The start time is field 22, in clock ticks since boot.
    try:
        started = int(stat[stat.rindex(")") + 2 :].split()[19]) / ticks
    except (ValueError, IndexError):
        return None
    age = now - started
    # Ticks are coarse (10 ms): a process younger than a tick may look a little negative.
    return age if age >= -1.0 else None


def _started() -> float:
    age = _age_from_proc()
    if age is None:
        return _IMPORTED
    return min(time.monotonic() - max(age, 0.0), _IMPORTED)


PROCESS_STARTED = _started()
