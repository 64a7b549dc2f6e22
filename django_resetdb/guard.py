"""The safety guard every destructive command goes through.

Gates, in order: ``ENABLED``, then ``HOSTS``, then the database-side marker
``django_resetdb.protected``; before them, a refusal of any alias that is not
PostgreSQL. Then, unless ``--no-input``, a prompt that shows the
target and asks for the database name. ``--no-input`` skips only the prompt.
"""

from __future__ import annotations

import fnmatch
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from django_resetdb import postgres
from django_resetdb.conf import SETTING_NAME, enabled_value, get_settings, user_settings
from django_resetdb.exceptions import Refused, ResetError
from django_resetdb.output import one_line

# (word, meaning, fewest letters of it that count): "o" alone is neither on nor off.
BOOL_WORDS = (
    ("true", True, 1),
    ("yes", True, 1),
    ("on", True, 2),
    ("false", False, 1),
    ("no", False, 1),
    ("off", False, 2),
)


@dataclass(frozen=True)
class Target:
    alias: str
    host: str
    port: int
    database: str
    user: str
    schemas: tuple[str, ...]
    tables: int
    sessions: tuple[postgres.Session, ...]
    address: str = ""  # the address reached; "" over a Unix socket
    exists: bool = True  # False: the database does not exist yet, resetdb creates it
    # The same for the same database, whatever host name or address reached it.
    identity: str = ""

    def host_shown(self) -> str:
        host = self.host or "(default socket)"
        # The name alone can hide where the connection went (hostaddr, PGHOSTADDR).
        if self.address and self.address != self.host:
            return f"{host} ({self.address})"
        return host

    def one_line(self) -> str:
        where = f"{self.host_shown()}:{self.port}"
        contents = (
            f"{self.tables} table(s), {len(self.sessions)} other session(s)"
            if self.exists
            else "the database does not exist yet"
        )
        return (
            f"Target: database {self.database!r} (alias {self.alias!r}) on {where} as "
            f"{self.user!r}, schema(s) {', '.join(self.schemas)}: {contents}."
        )

    def lines(self) -> list[str]:
        sessions = f"{len(self.sessions)} other session(s) connected"
        tables = str(self.tables)
        if not self.exists:
            tables, sessions = "none: the database does not exist yet", "none"
        rows = [
            ("alias", self.alias),
            ("host", self.host_shown()),
            ("port", str(self.port)),
            ("database", self.database),
            ("user", self.user),
            ("schemas", ", ".join(self.schemas)),
            ("tables", tables),
            ("sessions", sessions),
        ]
        lines = [f"  {key:<9} {value}" for key, value in rows]
        lines += [f"            {session.describe()}" for session in self.sessions]
        return lines


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    return any(
        pattern == "*" or host == pattern or fnmatch.fnmatchcase(host, pattern)
        for pattern in patterns
    )


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")] if value else []


def configured_hosts(connection: BaseDatabaseWrapper) -> tuple[list[str], list[str]]:
    """Every host name and address the settings (or PGHOST / PGHOSTADDR) let a connection
    go to: with several hosts, the next connection may reach another one than this one."""
    params = connection.get_connection_params()
    hosts = str(params.get("host") or os.environ.get("PGHOST", ""))
    addresses = str(params.get("hostaddr") or os.environ.get("PGHOSTADDR", ""))
    return _listed(hosts), _listed(addresses)


def _addresses_of(host: str) -> set[str]:
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {str(sockaddr[0]) for *_, sockaddr in found}


def check_hosts(
    connection: BaseDatabaseWrapper,
    where: postgres.ConnectionTarget,
    alias: str,
    command: str,
    patterns: Sequence[str],
) -> None:
    """The second gate: every host name, and every address, against ``HOSTS``.

    An address passes when it is listed itself, or when a listed host name resolves to
    it: ``hostaddr`` and PGHOSTADDR send a connection to an address whatever the host
    name says, so the name alone proves nothing.
    """
    if "*" in patterns:
        return
    names, addresses = configured_hosts(connection)
    # And what libpq itself read, a service file's host list included.
    names = list(dict.fromkeys([*names, *where.hosts]))
    addresses = list(dict.fromkeys([*addresses, *where.addresses]))
    # No host named anywhere, and libpq went to its default Unix socket: that is what
    # "" in HOSTS stands for, whatever directory this libpq was built with.
    default_socket = not names and where.host.startswith("/") and not where.address
    for name in [where.host, *names]:
        if default_socket and host_allowed("", patterns):
            continue
        if not host_allowed(name, patterns):
            raise Refused(
                f"{command} refused: host {name!r} of database alias {alias!r} is not in "
                f"{SETTING_NAME}['HOSTS']; add it there to allow resets on that server."
            )
    # Over a Unix socket libpq reports no address; with a hostaddr (from the settings,
    # PGHOSTADDR or a service file) it went over TCP to it, whatever the host says.
    reached = [where.address] if where.address else []
    resolved: set[str] | None = None
    for address in [*reached, *addresses]:
        if host_allowed(address, patterns):
            continue
        if resolved is None:
            resolved = set().union(*(_addresses_of(name) for name in {where.host, *names} if name))
        if address not in resolved:
            raise Refused(
                f"{command} refused: address {address!r} (host {where.host!r}) of database "
                f"alias {alias!r} is not in {SETTING_NAME}['HOSTS'], nor an address of a "
                f"host name listed there; add it there to allow resets on that server."
            )


def check_enabled(command: str) -> None:
    """The first gate, and the only one for commands that touch no database. Read from
    the settings as they are now (a process may change them without Django's
    setting_changed signal), the raw value kept for the message."""
    get_settings()  # a shape of the settings the gates could misread refuses first
    raw = user_settings()
    enabled = raw.get("ENABLED") if isinstance(raw, Mapping) else None
    if enabled_value(enabled):
        return
    debug = settings.DEBUG
    if enabled is None and debug is not False:
        raise Refused(
            f"{command} refused: {SETTING_NAME}['ENABLED'] defaults to DEBUG, which is "
            f"{debug!r}, not True; set ENABLED to True in a development or CI settings "
            f"module to allow resets."
        )
    if enabled is not None and enabled is not False:
        raise Refused(
            f"{command} refused: {SETTING_NAME}['ENABLED'] is {enabled!r}, not the bool "
            f"True; set it to True in a development or CI settings module to allow resets."
        )
    raise Refused(
        f"{command} refused: {SETTING_NAME}['ENABLED'] is False for this project "
        f"(it defaults to DEBUG); set it to True in a development or CI settings "
        f"module to allow resets."
    )


def parse_bool(value: str) -> bool | None:
    """``value`` read as PostgreSQL reads a boolean setting (its ``parse_bool``): any
    prefix of true, yes, false or no, at least two letters of on or off, 1 or 0, in any
    case, surrounding spaces ignored; ``None`` when it is neither true nor false."""
    word = value.strip().lower()
    if word in ("1", "0"):
        return word == "1"
    for spelling, meaning, shortest in BOOL_WORDS:
        if len(word) >= shortest and spelling.startswith(word):
            return meaning
    return None


def check_protected(connection: BaseDatabaseWrapper, database: str, command: str) -> None:
    """The third gate: the marker a DBA stored; a value that is neither true nor false
    protects too, since it says someone meant something."""
    refuse_marked(postgres.protected_markers(connection), database, command)


def refuse_marked(markers: Sequence[postgres.StoredSetting], database: str, command: str) -> None:
    for marker in markers:
        meaning = parse_bool(marker.value)
        if meaning is False:
            continue
        if meaning is True:
            raise Refused(
                f"{command} refused: database {database!r} is protected by the PostgreSQL "
                f"setting {postgres.PROTECTED_SETTING} = {marker.value!r} stored for "
                f"{marker.place()}; only its removal (ALTER DATABASE/ROLE ... RESET "
                f"{marker.reset_name()}) allows resets."
            )
        raise Refused(
            f"{command} refused: database {database!r} has the PostgreSQL setting "
            f"{postgres.PROTECTED_SETTING} = {marker.value!r} stored for {marker.place()}, "
            f"which is neither on nor off, so it counts as protected; set it to off or "
            f"remove it (ALTER DATABASE/ROLE ... RESET {marker.reset_name()}) to "
            f"allow resets."
        )


def check_postgresql(alias: str, command: str) -> None:
    """Before any gate: no setting makes a reset of another database possible, so the
    refusal says so rather than pointing at a setting that would not help."""
    vendor = connections[alias].vendor
    if vendor != "postgresql":
        raise Refused(
            f"{command} refused: alias {alias!r} uses {vendor}; django_resetdb resets only "
            f"PostgreSQL databases."
        )


def check_server(alias: str, command: str) -> postgres.ConnectionTarget:
    """The gate of what touches only the tool's own copies (the snapshots and what
    swaps left): ``HOSTS`` alone. Neither ``ENABLED`` nor the marker, which protect a
    project's database, say anything about those. Raise :class:`Refused` or return
    where the connection went."""
    check_postgresql(alias, command)
    connection = connections[alias]
    try:
        # Not the database itself: its snapshots outlive it.
        where = postgres.server_target(connection)
    except Exception as exc:
        raise ResetError(connection_failure(alias, exc)) from exc
    check_hosts(connection, where, alias, command, get_settings().hosts)
    # The snapshots' connections go to the server just checked (see check()).
    postgres.pin(connection, where)
    return where


# What libpq says when a connection fails, and the keys of the alias's DATABASES entry
# that decide it; the first that matches the message is named.
_CONNECTION_KEYS = (
    (("authentication failed", "role ", "no password supplied", "password"), "USER and PASSWORD"),
    (("database ",), "NAME"),
    (("ssl", "certificate"), "OPTIONS (sslmode and the certificates)"),
    (
        (
            "refused",
            "no such file",
            "timeout",
            "timed out",
            "resolve host",
            "translate host",
            "unreachable",
        ),
        "HOST and PORT, and that the server is running there",
    ),
)


def connection_failure(alias: str, exc: BaseException) -> str:
    """One sentence for a connection of ``alias`` that failed: libpq's reason, where the
    settings point, and which keys of ``DATABASES`` to check."""
    settings = connections[alias].settings_dict
    problem = one_line(exc)  # psycopg's connection errors span several lines
    lowered = problem.lower()
    keys = next(
        (keys for words, keys in _CONNECTION_KEYS if any(word in lowered for word in words)),
        "HOST, PORT, USER, PASSWORD, NAME and OPTIONS",
    )
    host = settings.get("HOST") or "libpq's default host"
    port = settings.get("PORT") or "the default port"
    user = settings.get("USER") or "the default user"
    return (
        f"Cannot connect to database alias {alias!r} (HOST {host!s}, PORT {port!s}, USER "
        f"{user!s}): {problem.rstrip('.')}; check DATABASES[{alias!r}] {keys}."
    )


def check(
    alias: str, command: str, schemas: Sequence[str] = (), *, creatable: bool = False
) -> Target:
    """Run the gates for ``alias``; raise :class:`Refused` or return what will be reset.

    With ``creatable``, a database that does not exist yet is no error: the gates run on
    the server, and the target says it does not exist (``exists`` false)."""
    check_postgresql(alias, command)
    check_enabled(command)
    conf = get_settings()
    connection = connections[alias]
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            where = postgres.connection_target(connection)
            break
        except Exception as exc:
            found = _look_up(connection, creatable=creatable)
            if isinstance(found, _Missing):
                # The gates apply to the server; the marker, to the roles in every database.
                check_hosts(connection, found.where, alias, command, conf.hosts)
                refuse_marked(found.markers, found.where.database, command)
                postgres.pin(connection, found.where)
                return _target(alias, found.where, schemas, exists=False)
            if attempt == CONNECT_ATTEMPTS or not found:
                raise ResetError(connection_failure(alias, exc)) from exc
            # Swapped in, or created, by another run as this one connected.
            connection.close()
            time.sleep(0.05 * attempt)
    check_hosts(connection, where, alias, command, conf.hosts)
    check_protected(connection, where.database, command)
    # Every later connection of the run, to this database or another of the server,
    # goes where this one went: the server the gates just checked.
    postgres.pin(connection, where)
    return _target(
        alias,
        where,
        schemas,
        tables=postgres.count_tables(connection, schemas),
        sessions=tuple(postgres.other_sessions(connection)),
        identity=postgres.database_identity(connection),
    )


def _target(
    alias: str,
    where: postgres.ConnectionTarget,
    schemas: Sequence[str],
    *,
    tables: int = 0,
    sessions: tuple[postgres.Session, ...] = (),
    exists: bool = True,
    identity: str = "",
) -> Target:
    return Target(
        alias=alias,
        host=where.host,
        port=where.port,
        database=where.database,
        user=where.user,
        schemas=tuple(schemas),
        tables=tables,
        sessions=sessions,
        address=where.address,
        exists=exists,
        identity=identity,
    )


def check_seed(alias: str) -> str:
    """The gates of ``seed`` for ``alias``; return the name of the database seeded.

    A PostgreSQL database goes through every gate, as for a reset. An SQLite database is
    a local file: no host to check, no place for a DBA's marker, so ``ENABLED`` alone
    applies. Any other database has a server that cannot be checked here as a
    PostgreSQL one is (the address reached), so only ``HOSTS = ["*"]`` lets it through.
    """
    connection = connections[alias]
    vendor = connection.vendor
    if vendor == "postgresql":
        return check(alias, "seed").database
    check_enabled("seed")
    if vendor != "sqlite" and "*" not in get_settings().hosts:
        raise Refused(
            f"seed refused: alias {alias!r} uses {vendor}, whose server django_resetdb "
            f"cannot check against {SETTING_NAME}['HOSTS']; add '*' there to allow seeding "
            f"it."
        )
    return str(connection.settings_dict["NAME"])


# A session that starts while another run swaps a new database in under the name, or
# creates it, fails as if there were none ("does not exist"); it is tried this many
# times in all while the server's catalog shows the database.
CONNECT_ATTEMPTS = 3


@dataclass(frozen=True)
class _Missing:
    """A database the server's catalog does not list: where a connection to it would
    go, and the markers stored for its roles."""

    where: postgres.ConnectionTarget
    markers: list[postgres.StoredSetting]


def _look_up(connection: BaseDatabaseWrapper, *, creatable: bool) -> bool | _Missing:
    """After a failed connection, what the catalog of the server's maintenance database
    says of its database (not the error's words, which follow the server's language):
    True when it lists it, :class:`_Missing` when it does not and ``creatable``, False
    otherwise or when the server cannot be reached (the first error says why)."""
    name = connection.get_connection_params().get("dbname")
    if not name:
        return False
    try:
        with warnings.catch_warnings():
            # Django's fallback to another database when it cannot reach "postgres".
            warnings.simplefilter("ignore", RuntimeWarning)
            with postgres.maintenance_cursor(connection) as cursor:
                if postgres.database_exists(cursor, str(name)):
                    return True
                if not creatable:
                    return False
                where = postgres.connection_target(cursor, str(name))
                return _Missing(where, postgres.protected_markers(cursor, str(name)))
    except Exception:
        return False


def confirm(
    target: Target,
    command: str,
    *,
    write: Callable[[str], None],
    ask: Callable[[str], str] = input,
    plan: Sequence[str] = (),
) -> None:
    """Show the target (and the ``plan`` lines) and ask for the database name; raise
    :class:`Refused` otherwise."""
    if target.exists:
        write(f"{command} will drop everything in these schemas:")
    else:
        write(f"{command} will create this database and build it:")
    for line in [*target.lines(), *plan]:
        write(line)
    try:
        answer = ask(f"Type the database name ({target.database!r}) to continue: ")
    except (EOFError, KeyboardInterrupt):
        raise Refused(
            f"{command} refused: no answer to the confirmation prompt; type the database "
            f"name when asked, or pass --no-input to skip the prompt."
        ) from None
    if answer.strip() != target.database:
        raise Refused(
            f"{command} refused: the answer {answer.strip()!r} is not the database name "
            f"{target.database!r}; type the name exactly, or pass --no-input to skip the prompt."
        )
