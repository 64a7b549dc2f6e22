"""Other aliases of the same database: a read replica alias whose settings name the very
database being reset (same server, same name, however the host is spelled).

While a reset or a seed runs, code of the project (a data migration, a receiver, a
router sending reads elsewhere) may read through such an alias. On its own connection it
would read the database the reset is replacing, or wait on the reset's own transaction
for as long as the transaction lasts. So during the run the alias is given the reset
alias's connection: it reads what the reset is writing, in the same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from django.db import connections

from django_resetdb import guard, postgres
from django_resetdb.conf import get_settings


def _server(alias: str) -> str | None:
    """The server ``alias``'s connections reach, or None when it cannot be reached."""
    try:
        with postgres.maintenance_cursor(connections[alias]) as cursor:
            return postgres.server_identity(cursor)
    except Exception:
        return None


def _name(settings: Mapping[str, Any]) -> str:
    return str(settings.get("NAME") or "")


# What a session is besides where it goes: an alias that differs in these (another
# role, another search_path or time zone) is not given the reset's connection.
_SESSION_KEYS = ("USER", "TIME_ZONE", "AUTOCOMMIT", "ATOMIC_REQUESTS")
# Options that only say where to connect, which may be spelled differently.
_WHERE_OPTIONS = frozenset({"host", "hostaddr", "port", "service", "connect_timeout"})


def _session(settings: Mapping[str, Any]) -> tuple[Any, ...]:
    options = dict(settings.get("OPTIONS") or {})
    kept = sorted((k, repr(v)) for k, v in options.items() if k not in _WHERE_OPTIONS)
    return (*(repr(settings.get(key)) for key in _SESSION_KEYS), kept)


def same_database(alias: str, database: str, others: Collection[str] = ()) -> list[str]:
    """The aliases, besides ``alias`` and ``others``, whose settings reach ``database`` on
    ``alias``'s server as the same kind of session. Only aliases of PostgreSQL naming
    the same database, as the same role with the same options, on a host ``HOSTS``
    allows, are connected to (their server's maintenance database, briefly); one that
    cannot be reached is not the same."""
    found: list[str] = []
    server: str | None = None
    mine = connections.settings[alias]
    hosts = get_settings().hosts
    for other in connections.settings:
        if other == alias or other in others:
            continue
        settings = connections.settings[other]
        if (
            "postgresql" not in str(settings.get("ENGINE", ""))
            or _name(settings) != database
            or _session(settings) != _session(mine)
            or not all(guard.host_allowed(host, hosts) for host in _hosts(other))
        ):
            continue
        if server is None:
            server = _server(alias) or ""
        if server and _server(other) == server:
            found.append(other)
    return found


def _hosts(alias: str) -> list[str]:
    """The hosts and addresses ``alias``'s settings may connect to."""
    try:
        names, addresses = guard.configured_hosts(connections[alias])
    except Exception:  # settings a connection cannot be made from: not the same
        return ["(unknown)"]
    return [*names, *addresses] or [""]


@contextlib.contextmanager
def sharing(twins: Mapping[str, str]) -> Iterator[None]:
    """Give each alias of ``twins`` (alias -> the alias being reset) the connection of the
    alias being reset while inside; its own connection is closed first and is back after."""
    originals: dict[str, Any] = {}
    try:
        for twin, alias in twins.items():
            own = connections[twin]
            if own is connections[alias]:
                continue  # already shared (a seed inside a reset)
            own.close()
            originals[twin] = own
            connections[twin] = connections[alias]
        yield
    finally:
        for twin, own in originals.items():
            connections[twin] = own


def twin_line(twin: str, alias: str) -> str:
    return (
        f"database    alias {twin!r} names the same database: it uses {alias!r}'s "
        "connection during the reset"
    )
