"""Connections and cursors: where they go, the maintenance database, sending statements."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, TypeAlias

from django.db.backends.base.base import NO_DB_ALIAS, BaseDatabaseWrapper
from psycopg import sql

from django_resetdb.postgres.values import ConnectionTarget

# Where the layer's reads and statements go: a Django connection (a cursor of its own is
# opened) or a cursor already open (Django's, on the maintenance database say).
Where: TypeAlias = BaseDatabaseWrapper | Any


@contextlib.contextmanager
def _cursor(where: Where) -> Iterator[Any]:
    if isinstance(where, BaseDatabaseWrapper):
        with where.cursor() as cursor:
            yield cursor
    else:
        yield where


def _raw(where: Where) -> Any:
    """The psycopg connection of ``where``, connecting a Django connection first."""
    if isinstance(where, BaseDatabaseWrapper):
        where.ensure_connection()
        raw = where.connection
        assert raw is not None
        return raw
    return where.connection


def execute(where: Where, statements: Sequence[sql.Composable]) -> None:
    """Run ``statements``, one after the other, on a Django connection or a cursor."""
    with _cursor(where) as cursor:
        for statement in statements:
            cursor.execute(statement.as_string(cursor.connection))


# The name the calls on a cursor of the maintenance database use.


def _run(where: Where, statement: sql.Composable) -> None:
    execute(where, [statement])


def _rows(where: Where, query: str | sql.Composable, params: Sequence[Any] = ()) -> list[Any]:
    with _cursor(where) as cursor:
        if isinstance(query, sql.Composable):
            query = query.as_string(cursor.connection)
        cursor.execute(query, params)
        return list(cursor.fetchall())


def connection_target(where: Where, database: str | None = None) -> ConnectionTarget:
    """Where a connection, or a cursor's, really goes (after service files, PGHOST and the
    like); for ``database`` on the same server when given, else for its own database."""
    raw = _raw(where)
    info = raw.info
    options = _options(raw)
    return ConnectionTarget(
        host=info.host,
        port=info.port,
        database=info.dbname if database is None else database,
        user=info.user,
        # The address libpq really reached, whatever the name said (hostaddr,
        # PGHOSTADDR, a service file); "" over a Unix socket.
        address=info.hostaddr,
        hosts=_listed(options.get("host", "")),
        addresses=_listed(options.get("hostaddr", "")),
    )


def _options(raw: Any) -> dict[str, str]:
    """The options libpq opened ``raw`` with, after the environment and the service
    file: a multi-host list as it was given, not only the host reached."""
    return {
        option.keyword.decode(): option.val.decode()
        for option in raw.pgconn.info
        if option.val is not None
    }


def _listed(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def pin(connection: BaseDatabaseWrapper, where: ConnectionTarget) -> None:
    """Point every later connection of ``connection``'s alias at the server ``where``
    reached: the host, port and address libpq went to, whatever list of hosts, service
    file or load balancing the settings name. The gates checked that server; the run's
    other connections (the maintenance database, a new database, a snapshot) must not
    land on another. Explicit values win over the service file's and the environment's,
    so the service's other options (user, sslmode, ...) still apply."""
    settings = connection.settings_dict
    options = dict(settings.get("OPTIONS") or {})
    options.pop("host", None)
    options.pop("port", None)
    # An empty address, for a socket, is an explicit one too: libpq would otherwise take
    # PGHOSTADDR, or a service file's hostaddr, set after the gate (by a seed, say).
    options["hostaddr"] = where.address or ""
    settings["HOST"] = where.host
    settings["PORT"] = str(where.port)
    settings["OPTIONS"] = options


# The name the calls on a cursor of the maintenance database use, naming the database.


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
        return connection_target(cursor, str(connection.settings_dict["NAME"]))


def render(where: Where, statement: sql.Composable) -> str:
    """``statement`` as the text PostgreSQL would receive (for ``--dry-run``)."""
    return statement.as_string(_raw(where))


# Statements sent to PostgreSQL in one round trip each.
BATCH = 500


def execute_batches(connection: BaseDatabaseWrapper, statements: Sequence[str]) -> None:
    """Run SQL that Django's schema editor wrote, ``BATCH`` statements a round trip."""
    with connection.cursor() as cursor:
        for start in range(0, len(statements), BATCH):
            cursor.execute("\n".join(s if s.endswith(";") else f"{s};" for s in
                                      statements[start : start + BATCH]))  # fmt: skip


def connection_parameters(connection: Any) -> dict[str, str]:
    """What the psycopg ``connection`` was opened with, its password included: for
    another process to open one to the same server, as the same role."""
    params = dict(connection.info.get_parameters())
    if connection.info.password:
        params["password"] = connection.info.password
    # The server it reached, not the list it was given (see :func:`pin`).
    params["host"] = connection.info.host
    params["port"] = str(connection.info.port)
    # Empty for a socket, and still given: see pin().
    params["hostaddr"] = connection.info.hostaddr or ""
    return params


def backend_pid(where: Where) -> int:
    return int(_rows(where, "SELECT pg_backend_pid()")[0][0])


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
