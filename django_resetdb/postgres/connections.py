"""Connections and cursors: where they go, the maintenance database, sending statements."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from django.db.backends.base.base import NO_DB_ALIAS, BaseDatabaseWrapper
from psycopg import sql

from django_resetdb.postgres.values import ConnectionTarget


def _run(connection: BaseDatabaseWrapper, statement: sql.Composable) -> None:
    raw = connection.connection
    assert raw is not None
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(raw))


def _rows(
    connection: BaseDatabaseWrapper, query: str | sql.Composable, params: Sequence[Any] = ()
) -> list[Any]:
    if isinstance(query, sql.Composable):
        query = render(connection, query)
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return list(cursor.fetchall())


def connection_target(connection: BaseDatabaseWrapper) -> ConnectionTarget:
    """Where the connection really goes (after service files, PGHOST and the like)."""
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    info = raw.info
    return ConnectionTarget(
        host=info.host,
        port=info.port,
        database=info.dbname,
        user=info.user,
        # The address libpq really reached, whatever the name said (hostaddr,
        # PGHOSTADDR, a service file); "" over a Unix socket.
        address=info.hostaddr,
    )


@contextlib.contextmanager
def maintenance_cursor(connection: BaseDatabaseWrapper) -> Iterator[Any]:
    """A cursor on the maintenance database of ``connection``'s server, in autocommit,
    as Django opens one to create test databases.

    Not Django's own ``_nodb_cursor()`` when the settings name a service: for that
    connection Django removes ``OPTIONS["service"]`` (from the alias's own OPTIONS too,
    which it shares), so it and every later connection of the alias would go wherever
    libpq's defaults point, another server perhaps. Here the service is kept and only
    the database named."""
    options = connection.settings_dict.get("OPTIONS") or {}
    if not options.get("service"):
        with connection._nodb_cursor() as cursor:
            yield cursor
        return
    settings = {**connection.settings_dict, "NAME": "postgres", "OPTIONS": dict(options)}
    nodb = type(connection)(settings, alias=NO_DB_ALIAS)
    try:
        with nodb.cursor() as cursor:
            yield cursor
    finally:
        nodb.close()


def server_target(connection: BaseDatabaseWrapper) -> ConnectionTarget:
    """Where a connection to the server's maintenance database really goes: the server
    of ``connection``, reached whether or not its database exists. ``database`` is the
    name in the settings."""
    with maintenance_cursor(connection) as cursor:
        return cursor_target(cursor, str(connection.settings_dict["NAME"]))


def render(connection: BaseDatabaseWrapper, statement: sql.Composable) -> str:
    """``statement`` as the text PostgreSQL would receive (for ``--dry-run``)."""
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    return statement.as_string(raw)


def execute(connection: BaseDatabaseWrapper, statements: Sequence[sql.Composable]) -> None:
    for statement in statements:
        _run(connection, statement)


# Statements sent to PostgreSQL in one round trip each.
BATCH = 500


def execute_batches(connection: BaseDatabaseWrapper, statements: Sequence[str]) -> None:
    """Run SQL that Django's schema editor wrote, ``BATCH`` statements a round trip."""
    with connection.cursor() as cursor:
        for start in range(0, len(statements), BATCH):
            cursor.execute("\n".join(s if s.endswith(";") else f"{s};" for s in
                                      statements[start : start + BATCH]))  # fmt: skip


def cursor_target(cursor: Any, database: str) -> ConnectionTarget:
    """Where a cursor's connection really goes, as :func:`connection_target` says it,
    for database ``database`` on the same server."""
    info = cursor.connection.info
    return ConnectionTarget(
        host=info.host, port=info.port, database=database, user=info.user, address=info.hostaddr
    )


def connection_parameters(connection: Any) -> dict[str, str]:
    """What the psycopg ``connection`` was opened with, its password included: for
    another process to open one to the same server, as the same role."""
    params = dict(connection.info.get_parameters())
    if connection.info.password:
        params["password"] = connection.info.password
    return params


def run_on(cursor: Any, statements: Sequence[sql.Composable]) -> None:
    """Run ``statements`` on a cursor of the maintenance database."""
    for statement in statements:
        cursor.execute(statement.as_string(cursor.connection))


def backend_pid(connection: BaseDatabaseWrapper) -> int:
    return int(_rows(connection, "SELECT pg_backend_pid()")[0][0])


@contextlib.contextmanager
def pointed_at(connection: BaseDatabaseWrapper, database: str) -> Iterator[None]:
    """``connection`` pointed at ``database`` while inside, then back."""
    # As Django's test runner points a connection at the test database.
    connection.close()
    original = connection.settings_dict["NAME"]
    connection.settings_dict["NAME"] = database
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original
