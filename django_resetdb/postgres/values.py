"""What the postgres layer reads and returns: the constants and plain values (no SQL)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

# One reset at a time per database: advisory locks are scoped to the current
# database by PostgreSQL, so a constant key is enough.
ADVISORY_LOCK_KEY = zlib.crc32(b"django_resetdb") & 0x7FFFFFFF


PROTECTED_SETTING = "django_resetdb.protected"


# A transaction as a client writes it out: the swaps send these, --dry-run shows them.
BEGIN_SQL = "BEGIN"


COMMIT_SQL = "COMMIT"


ROLLBACK_SQL = "ROLLBACK"


# pg_default_acl.defaclobjtype -> the keyword ALTER DEFAULT PRIVILEGES takes.
DEFAULT_ACL_OBJECT_TYPES = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES"}


PRIVILEGES = frozenset(
    {
        "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER",
        "EXECUTE", "USAGE", "CREATE", "MAINTAIN", "CONNECT", "TEMPORARY",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Session:
    pid: int
    user: str | None
    application: str
    state: str | None
    query: str
    client: str = ""  # the client's address; "" over a Unix socket
    # A client backend the current role may end (its own role's, or any but a
    # superuser's with pg_signal_backend, or any for a superuser).
    endable: bool = False
    advisory: bool = False  # holds an advisory lock

    @property
    def idle(self) -> bool:
        """Waiting for its next command, outside any transaction and holding no lock:
        ending it loses the connection (which a client such as Django opens again) and
        its session state, which a rebuilt database would not match anyway."""
        return self.state == "idle" and not self.advisory

    def label(self) -> str:
        client = f"client {self.client}" if self.client else "local socket"
        return f"pid {self.pid}, user {self.user!r}, application {self.application!r}, {client}"

    def describe(self) -> str:
        query = " ".join(self.query.split())
        if len(query) > 80:
            query = query[:77] + "..."
        # Commas, not parentheses: the lines that name several put them in parentheses.
        return (
            f"pid {self.pid}, user {self.user!r}, application {self.application!r}, "
            f"state {self.state!r}, query {query!r}"
        )


@dataclass(frozen=True)
class ConnectionTarget:
    host: str
    port: int
    database: str
    user: str
    address: str = ""
    # Every host name and address the connection's options let libpq go to, as libpq
    # read them from the settings, the environment and a service file: with several,
    # another connection opened from the same settings may reach another server.
    hosts: tuple[str, ...] = field(default=(), compare=False)
    addresses: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class AclItem:
    grantor: str
    grantee: str | None  # None is PUBLIC
    privilege: str
    grantable: bool


@dataclass(frozen=True)
class DefaultAcl:
    role: str
    object_type: str
    items: tuple[AclItem, ...]


@dataclass(frozen=True)
class Extension:
    name: str
    version: str
    schema: str


@dataclass(frozen=True)
class SchemaState:
    """What ``DROP SCHEMA ... CASCADE; CREATE SCHEMA ...`` would lose."""

    name: str
    owner: str
    acl: tuple[str, ...] | None  # aclitems as text, in order; None is the default ACL
    acl_items: tuple[AclItem, ...]
    comment: str | None
    default_acls: tuple[DefaultAcl, ...]

    def comparable(self) -> tuple[Any, ...]:
        # ACL order carries no meaning; compare them as sets.
        acl = None if self.acl is None else sorted(self.acl)
        default_acls = sorted(
            (d.role, d.object_type, sorted(d.items, key=repr)) for d in self.default_acls
        )
        return (self.name, self.owner, acl, self.comment, default_acls)


@dataclass(frozen=True)
class StoredSetting:
    """A value of a setting as ``ALTER DATABASE/ROLE ... SET`` stored it."""

    value: str
    database: str | None  # None: stored for every database
    role: str | None  # None: stored for every role
    name: str = "django_resetdb.protected"  # as stored: "DJANGO_RESETDB.PROTECTED" too

    def reset_name(self) -> str:
        """The name as ``RESET`` must spell it to remove this value: as stored, quoted when
        it is not in lower case (PostgreSQL stores a quoted name as it was written)."""
        if self.name == self.name.lower():
            return self.name
        return '"' + self.name.replace('"', '""') + '"'

    def place(self) -> str:
        if self.database and self.role:
            return f"role {self.role!r} in the database"
        if self.role:
            return f"role {self.role!r}"
        if self.database:
            return "the database"
        return "all roles (ALTER ROLE ALL)"


class LockBusy(Exception):
    def __init__(self, holders: list[Session]) -> None:
        super().__init__(holders)
        self.holders = holders


@dataclass(frozen=True)
class Privileges:
    superuser: bool
    can_create_schema: bool
    current_user: str


@dataclass(frozen=True)
class DatabaseProperties:
    """What belongs to a database itself rather than to its contents: a copy made with
    ``CREATE DATABASE ... TEMPLATE`` has the contents, these must be carried over."""

    owner: str
    encoding: str
    collate: str
    ctype: str
    tablespace: str
    connection_limit: int
    locale_provider: str  # "c" (libc), "i" (ICU), "b" (builtin)
    icu_locale: str | None
    acl: tuple[str, ...] | None  # None is the default ACL
    acl_items: tuple[AclItem, ...]
    comment: str | None
    settings: tuple[tuple[str | None, tuple[str, ...]], ...]  # (role or None, "name=value"s)
    is_template: bool = False  # IS_TEMPLATE: others may copy it with CREATE DATABASE

    def comparable(self) -> tuple[Any, ...]:
        acl = None if self.acl is None else sorted(self.acl)
        return (
            self.owner, self.encoding, self.collate, self.ctype, self.tablespace,
            self.connection_limit, self.locale_provider, self.icu_locale, acl, self.comment,
            self.settings, self.is_template,
        )  # fmt: skip


@dataclass(frozen=True)
class Creator:
    """The role a session on the maintenance database acts as, and whether it may
    create databases."""

    current_user: str
    superuser: bool
    create_database: bool
    maintenance_database: str

    @property
    def can_create(self) -> bool:
        return self.superuser or self.create_database


@dataclass(frozen=True)
class Capabilities:
    server_version: int
    current_user: str
    superuser: bool
    create_database: bool
    owns_database: bool


@dataclass(frozen=True)
class MissingKey:
    """What a foreign-key violation names: the table of the row, its column, and the
    value no row of the referenced table has."""

    table: str
    column: str
    value: str
