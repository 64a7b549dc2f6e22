"""Swapping a database in: a restore by name swap, and the lines about blocking sessions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections

from django_resetdb import (
    background,
    faults,
    interrupts,
    postgres,
)
from django_resetdb.conf import get_settings
from django_resetdb.output import one_line
from django_resetdb.progress import NO_PROGRESS, Progress
from django_resetdb.snapshots.store import (
    NotRestorable,
    SnapshotPlan,
    connected_to,
    drop_half_made,
    maintenance_cursor,
    refuse_changed,
    swap_names,
)


def restore(
    plan: SnapshotPlan,
    *,
    terminate_blockers: bool,
    log: Callable[[str, int], None],
    inside: Callable[[], None] = lambda: None,
    committing: Callable[[], None] = lambda: None,
    committed: Callable[[], None] = lambda: None,
    recheck: Callable[[Any], None] = lambda cursor: None,
    progress: Progress = NO_PROGRESS,
    schemas: Sequence[str] = (),
) -> float:
    """Replace the target database with a copy of the snapshot; return the seconds.

    ``inside`` runs connected to the copy, in a transaction, before the swap (the
    post_reset signal); ``progress`` shows the seconds the copy has taken so far. Raises
    :class:`NotRestorable` when the target cannot be swapped this time (sessions that may
    not be ended), with nothing changed.
    """
    assert plan.existing is not None
    kept = plan.existing
    snapshot = kept.name

    def copy(cursor: Any, name: str, wanted: postgres.DatabaseProperties) -> None:
        refuse_changed(cursor, kept)  # under the name lock, just before the copy
        # One statement, however large the database: only the time can be shown.
        with progress.seconds("  snapshot    copying the snapshot to restore it:"):
            postgres.execute(cursor, [postgres.create_database_sql(name, snapshot, wanted.owner)])

    return swap_in(
        plan.alias,
        plan.target,
        make=copy,
        inside=inside,
        terminate_blockers=terminate_blockers,
        log=log,
        committing=committing,
        committed=committed,
        recheck=recheck,
        schemas=schemas,
    )


def split_sessions(
    sessions: Sequence[postgres.Session], *, terminate_blockers: bool
) -> tuple[list[postgres.Session], list[postgres.Session]]:
    """The sessions a swap ends first, and those that keep it from happening.

    Idle sessions holding no lock are ended: they lose their connection, which a client
    such as Django opens again. A session in a transaction or a query, or holding an
    advisory lock, is ended only with ``--terminate-blockers``; one the role may not end
    never is."""
    ending = [s for s in sessions if s.endable and (s.idle or terminate_blockers)]
    return ending, [s for s in sessions if s not in ending]


def _count(sessions: Sequence[postgres.Session], kind: str) -> str:
    return f"{len(sessions)} {kind}session{'' if len(sessions) == 1 else 's'}"


def _pid(session: postgres.Session) -> str:
    return f"pid {session.pid}"


def ending_line(
    target: str,
    sessions: Sequence[postgres.Session],
    *,
    done: bool,
    name: Callable[[postgres.Session], str] = postgres.Session.label,
) -> str:
    """The line naming the sessions a swap ends (``done``) or would end."""
    idle = all(s.idle for s in sessions)
    kind = "idle " if idle else ""
    how = "" if idle else " (--terminate-blockers)"
    verb = "ended" if done else "end"
    named = "; ".join(name(s) for s in sessions)
    later = "" if done else " before the swap"
    return f"sessions    {verb} {_count(sessions, kind)} on {target!r}{later}{how} ({named})"


def blocker_parts(
    target: str,
    sessions: Sequence[postgres.Session],
    name: Callable[[postgres.Session], str] = postgres.Session.describe,
) -> list[str]:
    """Why ``sessions`` keep a swap of ``target`` from happening, naming each: one part
    for those in a transaction or a query, one for those holding an advisory lock, one
    for those the role may not end."""
    locking = [s for s in sessions if s.endable and s.state == "idle" and s.advisory]
    busy = [s for s in sessions if s.endable and s not in locking]
    foreign = [s for s in sessions if not s.endable]
    parts = []
    if locking:
        named = "; ".join(name(s) for s in locking)
        parts.append(
            f"{_count(locking, 'idle ')} on {target!r} holding an advisory lock ({named}), "
            "which --terminate-blockers ends"
        )
    if busy:
        named = "; ".join(name(s) for s in busy)
        parts.append(
            f"{_count(busy, '')} on {target!r} in a transaction or a query ({named}), "
            "which --terminate-blockers ends"
        )
    if foreign:
        named = "; ".join(name(s) for s in foreign)
        parts.append(f"{_count(foreign, '')} on {target!r} that this role may not end ({named})")
    return parts


def planned_session_lines(
    target: str, sessions: Sequence[postgres.Session], *, terminate_blockers: bool, instead: str
) -> list[str]:
    """For the plan: what a swap would do with ``sessions``, connected now (the target's
    lines describe each; these name them by pid). ``instead`` says what the reset would do
    if they keep the swap from happening."""
    ending, blocking = split_sessions(sessions, terminate_blockers=terminate_blockers)
    if blocking:
        lines = [f"sessions    {part}" for part in blocker_parts(target, blocking, _pid)]
        return [*lines, f"            with them connected, {instead}"]
    groups = [[s for s in ending if s.idle], [s for s in ending if not s.idle]]
    return [ending_line(target, group, done=False, name=_pid) for group in groups if group]


def _refuse_blockers(cursor: Any, target: str, terminate_blockers: bool) -> list[postgres.Session]:
    """The sessions to end before the swap; raises :class:`NotRestorable` naming those
    that would keep it from happening."""
    sessions = postgres.other_sessions(cursor, target)
    ending, blocking = split_sessions(sessions, terminate_blockers=terminate_blockers)
    if blocking:
        raise NotRestorable("; ".join(blocker_parts(target, blocking)))
    return ending


# A session that connects between the sessions' ending and the renames makes the swap
# fail; it is tried again this many times, ending the newcomers if they are idle.
SWAP_ATTEMPTS = 3


def _around(alias: str, schemas: Sequence[str]) -> tuple[Any, ...]:
    """What the target (``alias``'s database) holds besides the reset schemas' content,
    read over a connection closed again at once: the swap needs nobody on it."""
    connection = connections[alias]
    try:
        lost, context = postgres.whole_database_context(connection, schemas)
        states = [state.comparable() for state in postgres.schema_states(connection, schemas)]
    finally:
        connection.close()
    return (lost, context, states)


def swap_in(
    alias: str,
    target: str,
    *,
    make: Callable[[Any, str, postgres.DatabaseProperties], None],
    inside: Callable[[], None],
    terminate_blockers: bool,
    log: Callable[[str, int], None],
    ready: Callable[[], None] = lambda: None,
    check: Callable[[postgres.DatabaseProperties], None] = lambda wanted: None,
    committing: Callable[[], None] = lambda: None,
    committed: Callable[[], None] = lambda: None,
    recheck: Callable[[Any], None] = lambda cursor: None,
    schemas: Sequence[str] = (),
) -> float:
    """Make a new database (``make``), give it the target's own properties, run
    ``inside`` connected to it, then end the sessions on the target that may be ended
    (see :func:`split_sessions`) and swap the names in one transaction; return the
    seconds. ``ready`` runs once the sessions connected now allow the swap, before
    anything is made. Until the swap the target is untouched; any failure drops the new
    database.

    Raises :class:`NotRestorable` when the target cannot be swapped this time (sessions
    that may not be ended, properties that cannot be carried over), with nothing changed.

    ``recheck`` gets the maintenance cursor just before each try at the swap, to refuse
    what appeared meanwhile (a DBA's marker). With ``schemas`` (the reset's), what the
    target holds around them (other schemas and their objects, large objects,
    publications, the reset schemas' own grants, comment and default privileges) is read
    as the swap begins and again just before it: a change made meanwhile, which the new
    database would not have, raises :class:`NotRestorable`, and the swap is not made.
    ``committing`` runs just before the swap's
    transaction commits, ``committed`` just after: from then on nothing is undone,
    whatever fails. Once it has, this
    returns with Ctrl-C deferred (see :mod:`interrupts`): the caller finishes what the
    swap began, then calls ``interrupts.resume()``.
    """
    started = time.monotonic()
    new, old = swap_names(target)
    old += uuid.uuid4().hex[:8]
    conf = get_settings()
    connections[alias].close()
    with maintenance_cursor(alias) as cursor:
        postgres.lock_database_name(cursor, target, conf.lock_timeout)
        # Left by runs killed half-way (under this swap's new name, among others): only
        # ours use these names.
        for name in drop_half_made(cursor, target):
            log(f"dropped {name}, left by an earlier run", 2)
        # Before anything is made: a build in a new database may take minutes.
        _refuse_blockers(cursor, target, terminate_blockers)
        wanted = postgres.database_properties(cursor, target)
        check(wanted)  # may raise NotRestorable: still nothing made, nothing said
        around = _around(alias, schemas) if schemas else None
        ready()
        current_user = postgres.current_user(cursor)
        make(cursor, new, wanted)
        try:
            try:
                postgres.execute(
                    cursor, postgres.database_properties_sql(new, wanted, current_user)
                )
            except Exception as exc:
                if not postgres.is_insufficient_privilege(exc):
                    raise
                # A setting only a superuser may store (the marker, even "off", is a
                # placeholder parameter): the new database could not carry it, and a swap
                # would leave it on the replaced one. In place, the database keeps it.
                raise NotRestorable(
                    f"role {current_user!r} may not give the new database what is stored on "
                    f"{target!r} ({one_line(exc)})"
                ) from exc
            copied = postgres.database_properties(cursor, new)
            if copied.comparable() != wanted.comparable():
                raise NotRestorable(
                    f"the new database's properties could not be made equal to {target!r}'s "
                    f"({copied.comparable()!r} != {wanted.comparable()!r})"
                )
            with connected_to(alias, new):
                inside()
            swap = postgres.swap_sql(target, new, old)
            for _ in range(SWAP_ATTEMPTS):
                # Again: sessions may have come or gone while the new database was made.
                ending = _refuse_blockers(cursor, target, terminate_blockers)
                if ending:
                    idle = [s for s in ending if s.idle]
                    busy = [s for s in ending if not s.idle]
                    postgres.terminate_idle_on(cursor, [s.pid for s in idle])
                    postgres.terminate_sessions(cursor, [s.pid for s in busy])
                    for group in (idle, busy):
                        if group:
                            log(ending_line(target, group, done=True), 1)
                # What the DBA stored on the target may have changed while the new
                # database was made (minutes, for a build): read again under the name
                # lock. A change the new database does not carry sends the run in place,
                # which keeps the database and all that is stored on it.
                recheck(cursor)
                if around is not None and _around(alias, schemas) != around:
                    raise NotRestorable(
                        f"what {target!r} holds around the reset schemas (other schemas and "
                        "their objects, large objects, publications, the schemas' grants, "
                        "comment and default privileges) changed while the new database was "
                        "made"
                    )
                latest = postgres.database_properties(cursor, target)
                if latest.comparable() != wanted.comparable():
                    raise NotRestorable(
                        f"what is stored on {target!r} (settings, comment, grants, "
                        "connection limit) changed while the new database was made"
                    )
                committing()
                interrupts.defer()
                try:
                    swapped = postgres.swap_databases(cursor, swap)
                except BaseException:
                    interrupts.resume()  # not swapped: the error says so
                    raise
                if swapped:
                    break
                if interrupts.resume():
                    raise KeyboardInterrupt
            else:
                raise NotRestorable(
                    f"sessions kept connecting to {target!r} while it was being swapped"
                )
        except BaseException:
            postgres.execute(cursor, [postgres.drop_database_sql(new)])
            raise
        # Swapped: the new database is the target now, and nothing is undone (a failure
        # from here on would otherwise drop the name ``new``, gone, and its caller put
        # back files older than the database).
        committed()
        faults.reached("swap", target)
        # The replaced database goes now, without this run waiting for it.
        problem = background.drop_later(cursor.connection, [old])
        if problem:
            log(f"database    could not start dropping {old} ({problem}); the next run drops it", 1)
        else:
            log(f"database    dropping the replaced database {old} in the background", 2)
    return time.monotonic() - started


def planned_statements(plan: SnapshotPlan) -> list[str]:
    """The statements a restore would send (for ``--dry-run``), as text."""
    assert plan.existing is not None
    snapshot = plan.existing.name
    before, swap = _planned_swap(
        plan.alias,
        plan.target,
        lambda new, wanted: postgres.create_database_sql(new, snapshot, wanted.owner),
    )
    return before + swap


def _planned_swap(
    alias: str,
    target: str,
    make: Callable[[str, postgres.DatabaseProperties], Any],
) -> tuple[list[str], list[str]]:
    """The statements that make the new database and give it the target's properties,
    and those that swap it in, as text."""
    new, old = swap_names(target)
    old += "XXXXXXXX"
    with maintenance_cursor(alias) as cursor:
        wanted = postgres.database_properties(cursor, target)
        current_user = postgres.current_user(cursor)
        before = [make(new, wanted), *postgres.database_properties_sql(new, wanted, current_user)]
        swap = postgres.swap_sql(target, new, old)
        return (
            [s.as_string(cursor.connection) for s in before],
            [s.as_string(cursor.connection) for s in swap],
        )
