"""Dropping databases in a process of its own: the one a swap replaced, and what earlier
runs left (see ``snapshots.Sweeper``).

On PostgreSQL 15+ ``DROP DATABASE`` forces a checkpoint, which right after a rebuild
has much to write, and a drop another session is at waits for it to end: no run waits
for either. It starts Python on this module's ``main()`` in a session of its own, hands
it the connection's parameters on its standard input (never on the command line, where
other users of the machine could read the password), and goes on. The process drops
the databases and exits; what it cannot drop, the next run's sweeper hands on again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django_resetdb.output import one_line

# How long the process waits for a lock on each database before it leaves its drop to
# the next run: it must not linger for good behind a session that holds one.
LOCK_WAIT = 60.0
# How its session shows in pg_stat_activity.
APPLICATION = "django_resetdb drop"

# The child's program: this module's main(), found through the parent's folder if need be.
_CHILD = (
    "import sys; sys.path.append(sys.argv[1]); "
    "from django_resetdb.background import main; sys.exit(main())"
)

# Started, not waited for: polled when the next one starts, so that none stays a zombie
# in a long-lived process (a dev server calling reset()).
_started: list[subprocess.Popen[bytes]] = []


def drop_later(connection: Any, names: Sequence[str | tuple[str, str]]) -> str:
    """Start a process that drops the databases ``names``, one after the other,
    connected as the psycopg ``connection`` is, and return at once: "" when it started,
    else why not. A name may come with the version its ``pg_database`` row had when it
    was picked: the process leaves it if the row changed since. It never raises: the
    caller's work is done, and the next run drops what is left."""
    try:
        _start(connection, [(n, "") if isinstance(n, str) else n for n in names])
    except Exception as exc:
        return one_line(exc)
    return ""


def _start(connection: Any, names: list[tuple[str, str]]) -> None:
    from django_resetdb import postgres

    _started[:] = [process for process in _started if process.poll() is None]
    params = postgres.connection_parameters(connection)
    request = {
        "connection": {**params, "application_name": APPLICATION},
        "databases": names,
        "lock_timeout": LOCK_WAIT,
    }
    # The package may be importable only through the parent's sys.path (a checkout): its
    # folder goes last on the child's path, after the standard library and site-packages.
    home = str(Path(__file__).resolve().parent.parent)
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, home],
        stdin=subprocess.PIPE,
        # Not the run's own output: whoever reads it would wait for this process too.
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal is not for it
    )
    _started.append(process)
    assert process.stdin is not None
    with process.stdin:
        process.stdin.write(json.dumps(request).encode())


def main() -> int:
    from django_resetdb import postgres

    request = json.loads(sys.stdin.read())
    try:
        failed = postgres.drop_databases_over(
            request["connection"],
            [(str(name), str(version)) for name, version in request["databases"]],
            float(request["lock_timeout"]),
        )
    except Exception:
        return 1  # the next run's sweeper hands them on again
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
