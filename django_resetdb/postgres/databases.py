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


def drop_databases_over(
    params: dict[str, str], names: Sequence[tuple[str, str]], lock_seconds: float
) -> list[str]:
    """Drop each database of ``names`` (a name, and the version its ``pg_database`` row
    had when it was picked, or "" for any) over a connection of its own, opened with
    ``params`` (see :func:`connection_parameters`), waiting at most ``lock_seconds`` for
    each lock. One whose row changed since it was picked (opened to connections, say) is
    left as it is. Returns those that could not be dropped, with why, one line each."""
    # A server that does not answer must not keep the process waiting for good.
    conninfo = psycopg.conninfo.make_conninfo(**{"connect_timeout": "10", **params})
    failed = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(lock_timeout_sql(lock_seconds, local=False).as_string(conn))
        for name, version in names:
            try:
                if version:
                    row = conn.execute(
                        "SELECT xmin::text FROM pg_database WHERE datname = %s", [name]
                    ).fetchone()
                    if row is not None and row[0] != version:
                        failed.append(f"{name}: changed since it was picked, left as it is")
                        continue
                conn.execute(drop_database_sql(name).as_string(conn))
            except psycopg.Error as exc:
                failed.append(f"{name}: {str(exc).strip().splitlines()[0]}")
    return failed


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
