"""What a PostgreSQL error means: classifiers of the errors the other modules handle."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import psycopg.conninfo
from psycopg import errors

from django_resetdb.postgres.values import MissingKey


def _caused_by(exc: BaseException, error: type[psycopg.Error]) -> bool:
    """Whether ``exc`` is ``error``, or Django's wrapper of one (its cause)."""
    return isinstance(exc, error) or isinstance(exc.__cause__, error)


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (or the driver error Django wrapped in it) is a lock_timeout."""
    return _caused_by(exc, errors.LockNotAvailable)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or while handling, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_out_of_locks(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised from, PostgreSQL running out of its shared lock
    table: "out of shared memory" (SQLSTATE 53200), hinting at
    max_locks_per_transaction, which other shortages of shared memory do not."""
    return any(
        isinstance(error, errors.OutOfMemory)
        and "max_locks_per_transaction" in (error.diag.message_hint or "")
        for error in _chain(exc)
    )


def is_duplicate_database(exc: BaseException) -> bool:
    """Whether ``exc`` (or the driver error Django wrapped in it) says a database of that
    name exists already."""
    return _caused_by(exc, errors.DuplicateDatabase)


def is_insufficient_privilege(exc: BaseException) -> bool:
    """Whether ``exc`` (or the driver error Django wrapped in it) is a permission denied
    (a role that may not set a placeholder parameter such as the marker, say)."""
    return _caused_by(exc, errors.InsufficientPrivilege)


def is_active_sql_transaction(exc: BaseException) -> bool:
    """Whether ``exc`` (or the driver error Django wrapped in it) is a statement refused
    inside a transaction block (CREATE INDEX CONCURRENTLY, VACUUM, ...)."""
    return _caused_by(exc, errors.ActiveSqlTransaction)


_MISSING_KEY = re.compile(r"Key \((?P<column>[^)]+)\)=\((?P<value>.*)\) is not present in table")


def missing_key(exc: BaseException) -> MissingKey | None:
    """The missing key of a foreign-key violation (Django's ``IntegrityError`` over
    psycopg's); None for other errors. The table comes from the error's fields; the
    column and value only from its detail, which PostgreSQL has no field for."""
    diag = getattr(exc.__cause__, "diag", None)
    table = getattr(diag, "table_name", None)
    match = _MISSING_KEY.search(getattr(diag, "message_detail", None) or "")
    if table is None or match is None:
        return None
    return MissingKey(table, match["column"], match["value"])
