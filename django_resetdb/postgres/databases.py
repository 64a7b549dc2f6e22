"""Swaps and drops of whole databases.

They run on a session on the maintenance database (``postgres``): a database cannot be
created from, renamed or dropped while anyone, this process included, is connected to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import psycopg.conninfo
from psycopg import errors, sql

from django_resetdb.postgres.connections import execute
from django_resetdb.postgres.failures import _caused_by
from django_resetdb.postgres.statements import (
    comment_on_database_sql,
    drop_database_sql,
    lock_timeout_sql,
    rename_database_sql,
)
from django_resetdb.postgres.values import BEGIN_SQL, COMMIT_SQL, ROLLBACK_SQL


def drop_database_over(params: dict[str, str], name: str, lock_seconds: float) -> None:
    """Drop database ``name`` over a connection of its own, opened with ``params``
    (see :func:`connection_parameters`), waiting at most ``lock_seconds`` for a lock."""
    # A server that does not answer must not keep the process waiting for good.
    conninfo = psycopg.conninfo.make_conninfo(**{"connect_timeout": "10", **params})
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(lock_timeout_sql(lock_seconds, local=False).as_string(conn))
        conn.execute(drop_database_sql(name).as_string(conn))


def swap_databases(cursor: Any, statements: Sequence[sql.Composable]) -> bool:
    """Run the renames of a swap in one transaction; False, with nothing changed, when a
    session connected to one of the databases meanwhile."""
    cursor.execute(BEGIN_SQL)
    try:
        execute(cursor, statements)
        cursor.execute(COMMIT_SQL)
    except BaseException as exc:
        cursor.execute(ROLLBACK_SQL)
        if _caused_by(exc, errors.ObjectInUse):
            return False
        raise
    return True


def rename_stamped(cursor: Any, name: str, new_name: str, comment: Callable[[str], str]) -> str:
    """Rename database ``name`` to ``new_name`` and comment on it, in one transaction;
    ``comment`` gets the version its ``pg_database`` row has after the rename (see
    ``row_versions``), which is returned."""
    cursor.execute(BEGIN_SQL)
    try:
        execute(cursor, [rename_database_sql(name, new_name)])
        cursor.execute("SELECT xmin::text FROM pg_database WHERE datname = %s", [new_name])
        (version,) = cursor.fetchone()
        execute(cursor, [comment_on_database_sql(new_name, comment(version))])
        cursor.execute(COMMIT_SQL)
    except BaseException:
        cursor.execute(ROLLBACK_SQL)
        raise
    return str(version)
