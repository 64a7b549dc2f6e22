"""Sessions and locks: who is connected, who blocks, the advisory locks, lock timeouts."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Sequence

from django.db import DatabaseError, transaction

from django_resetdb.postgres.connections import Where, _rows, _run
from django_resetdb.postgres.failures import is_lock_timeout
from django_resetdb.postgres.statements import lock_timeout_sql, reset_lock_sql
from django_resetdb.postgres.values import ADVISORY_LOCK_KEY, LockBusy, Session

_SESSION_COLUMNS = (
    "a.pid, a.usename, coalesce(a.application_name, ''), a.state, coalesce(a.query, ''), "
    "coalesce(host(a.client_addr), ''), "
    # What pg_terminate_backend() allows (a superuser's sessions only to a superuser).
    "coalesce(a.backend_type = 'client backend' AND CASE "
    "  WHEN (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = a.usesysid) "
    "  THEN (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) "
    "  ELSE pg_has_role(current_user, a.usesysid, 'USAGE') "
    "    OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE') END, false), "
    # A session-level advisory lock is held outside any transaction: an idle session
    # holding one coordinates work that ending it would break.
    "EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory')"
)


# Client sessions only: PostgreSQL itself ends the autovacuum workers of a database it
# renames or drops, and a parallel worker belongs to a client session's query.
_CLIENT_BACKEND = "coalesce(a.backend_type, 'client backend') = 'client backend'"


def other_sessions(where: Where, database: str | None = None) -> list[Session]:
    """The other client sessions connected to ``database`` (None: the session's own)."""
    rows = _rows(
        where,
        f"SELECT {_SESSION_COLUMNS} FROM pg_stat_activity a "
        "WHERE a.datname = COALESCE(%s::name, current_database()) "
        "AND a.pid <> pg_backend_pid() "
        # A role sees no backend_type for another role's sessions; they count.
        f"AND {_CLIENT_BACKEND} ORDER BY a.pid",
        [database],
    )
    return [Session(*row) for row in rows]


# The name the calls on a cursor of the maintenance database use, naming the database.


def blocking_sessions(where: Where, schemas: Sequence[str]) -> list[Session]:
    """Sessions holding a lock on a relation of ``schemas`` or on the schemas themselves."""
    rows = _rows(
        where,
        f"SELECT DISTINCT {_SESSION_COLUMNS} FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "LEFT JOIN pg_class c ON l.locktype = 'relation' AND c.oid = l.relation "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "  OR (l.locktype = 'object' AND l.classid = 'pg_namespace'::regclass "
        "      AND l.objid = n.oid) "
        "WHERE l.granted AND l.pid <> pg_backend_pid() AND n.nspname = ANY(%s) "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "ORDER BY a.pid",
        [list(schemas)],
    )
    return [Session(*row) for row in rows]


def terminate_sessions(where: Where, pids: Sequence[int]) -> None:
    for pid in pids:
        # Waits up to 5 s for each session to be gone (PostgreSQL 14+).
        _rows(where, "SELECT pg_terminate_backend(%s, 5000)", [pid])


# The name the calls on a cursor of the maintenance database use.


def advisory_lock_holders(where: Where) -> list[Session]:
    rows = _rows(
        where,
        f"SELECT {_SESSION_COLUMNS} FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s "
        "AND l.objsubid = 1 AND l.pid <> pg_backend_pid() "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        [ADVISORY_LOCK_KEY],
    )
    return [Session(*row) for row in rows]


def set_lock_timeout(where: Where, seconds: float) -> None:
    """Bound every lock wait of the current transaction, so a reset never hangs."""
    _run(where, lock_timeout_sql(seconds))


def acquire_reset_lock(where: Where, alias: str) -> None:
    """Take the per-database reset lock for the current transaction, or raise LockBusy.

    Waits at most the transaction's ``lock_timeout``.
    """
    try:
        with transaction.atomic(using=alias):
            _run(where, reset_lock_sql())
    except DatabaseError as exc:
        if not is_lock_timeout(exc):
            raise
        raise LockBusy(advisory_lock_holders(where)) from exc


def waiting_on(where: Where, pid: int, seconds: float) -> list[Session]:
    """The sessions that have waited more than ``seconds`` for a lock session ``pid``
    holds."""
    rows = _rows(
        where,
        f"SELECT DISTINCT {_SESSION_COLUMNS} FROM pg_stat_activity a "
        "JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted "
        "WHERE %s = ANY(pg_blocking_pids(a.pid)) "
        "AND clock_timestamp() - l.waitstart > make_interval(secs => %s) ORDER BY a.pid",
        [pid, seconds],
    )
    return [Session(*row) for row in rows]


def cancel_on(where: Where, pid: int) -> None:
    _rows(where, "SELECT pg_cancel_backend(%s)", [pid])


def terminate_idle_on(where: Where, pids: Sequence[int]) -> None:
    """End the sessions ``pids`` that are still idle: one that began a transaction since
    it was listed is left alone (and then blocks the swap)."""
    for pid in pids:
        _rows(
            where,
            "SELECT pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a "
            "WHERE a.pid = %s AND a.state = 'idle' AND NOT EXISTS "
            "(SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory')",
            [pid],
        )


def _database_name_key(name: str) -> int:
    return zlib.crc32(f"django_resetdb:{name}".encode()) & 0x7FFFFFFF


def lock_database_name(where: Where, name: str, seconds: float) -> None:
    """Session lock on the maintenance database for work on database ``name``: one
    snapshot or swap at a time per database. Waits at most ``seconds``."""
    _run(where, lock_timeout_sql(seconds, local=False))
    _rows(where, "SELECT pg_advisory_lock(%s)", [_database_name_key(name)])


@contextlib.contextmanager
def database_name_free(where: Where, name: str) -> Iterator[bool]:
    """Whether no snapshot or swap of database ``name`` is being made now: the lock of
    :func:`lock_database_name`, taken without waiting and held while inside."""
    key = _database_name_key(name)
    (free,) = _rows(where, "SELECT pg_try_advisory_lock(%s)", [key])[0]
    try:
        yield bool(free)
    finally:
        if free:
            _rows(where, "SELECT pg_advisory_unlock(%s)", [key])
