"""The fault-injection hook: named points of a run where a test can make it fail.

The code of a reset calls ``reached(point, subject)`` at each point below. It does nothing
unless a hook was installed with ``install()``; the tests install one that raises, sends
itself SIGINT or waits to be killed there, to show that a failure at that moment loses
nothing. ``subject`` says which one of several: the seed's entry, the database's alias.

``regeneration``  the new migration files written and verified
``schema``        the schemas dropped, not yet created again
``seed``          a seed done (subject: its entry, as configured)
``commit``        a database's transaction committed (subject: the alias)
``swap``          a swap of names committed (subject: the target database)
``snapshot``      a snapshot's copy made, not yet marked as one
``kept``          a snapshot kept, named and marked
``state``         a migrated state kept (subject: its name), the seeds not yet run
``summary``       the last line worked out

``migrate`` and ``post_reset`` need no point of their own: Django's ``post_migrate`` and
this app's ``post_reset`` signal are public hooks already.
"""

from __future__ import annotations

from collections.abc import Callable

Hook = Callable[[str, str], None]

POINTS = frozenset(
    {
        "regeneration",
        "schema",
        "seed",
        "commit",
        "swap",
        "snapshot",
        "kept",
        "state",
        "summary",
    }
)

_hook: Hook | None = None


def install(hook: Hook | None) -> Hook | None:
    """Call ``hook(point, subject)`` at every point from now on (``None``: stop); return
    the hook installed before."""
    global _hook
    previous, _hook = _hook, hook
    return previous


def reached(point: str, subject: str = "") -> None:
    """Mark ``point`` of a run: call the installed hook, if any."""
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}")
    if _hook is not None:
        _hook(point, subject)
