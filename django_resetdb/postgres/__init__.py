"""Every SQL statement django_resetdb sends to PostgreSQL lives in this module.

Identifiers are quoted with ``psycopg.sql.Identifier``, values go as parameters
(or ``sql.Literal`` where PostgreSQL's utility statements take no parameters).
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.conninfo
from django.core.management.color import no_style
from django.db import DatabaseError, transaction
from django.db.backends.base.base import NO_DB_ALIAS, BaseDatabaseWrapper
from django.db.models import Model
from psycopg import errors, sql

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


@dataclass(frozen=True)
class StoredSetting:
    """A value of a setting as ``ALTER DATABASE/ROLE ... SET`` stored it."""

    value: str
    database: str | None  # None: stored for every database
    role: str | None  # None: stored for every role

    def place(self) -> str:
        if self.database and self.role:
            return f"role {self.role!r} in the database"
        if self.role:
            return f"role {self.role!r}"
        if self.database:
            return "the database"
        return "all roles (ALTER ROLE ALL)"


# The stored values of the marker that apply to a session of the role(s) it runs as, on
# the database named by the parameter (NULL: the session's own).
_MARKERS = (
    "SELECT d.datname, r.rolname, c.entry "
    "FROM pg_db_role_setting s "
    "LEFT JOIN pg_database d ON d.oid = s.setdatabase "
    "LEFT JOIN pg_roles r ON r.oid = s.setrole "
    "CROSS JOIN LATERAL unnest(s.setconfig) AS c(entry) "
    "WHERE (s.setdatabase = 0 OR d.datname = COALESCE(%s::name, current_database())) "
    # The role that logged in too: SET SESSION AUTHORIZATION changes session_user.
    "AND (s.setrole = 0 OR r.rolname IN (session_user, current_user) OR r.oid = "
    "(SELECT a.usesysid FROM pg_stat_activity a WHERE a.pid = pg_backend_pid())) "
    "ORDER BY CASE WHEN s.setrole = 0 THEN 0 WHEN s.setdatabase = 0 THEN 1 ELSE 2 END, "
    "s.setdatabase = 0, r.rolname"
)


def _markers(rows: Sequence[Any]) -> list[StoredSetting]:
    markers = []
    for database, role, entry in rows:
        name, _, value = entry.partition("=")
        # Setting names are case-insensitive in PostgreSQL.
        if name.lower() == PROTECTED_SETTING:
            markers.append(StoredSetting(value=value, database=database, role=role))
    return markers


def protected_markers(connection: BaseDatabaseWrapper) -> list[StoredSetting]:
    """The ``django_resetdb.protected`` values stored for this database, for the roles the
    session logged in as and acts as, and for both together.

    Read from pg_db_role_setting, not current_setting(): the client chooses the session's
    value (``options=-c ...``, PGOPTIONS, SET) and would switch the DBA's marker off.
    """
    return _markers(_rows(connection, _MARKERS, [None]))


def protected_markers_for(cursor: Any, database: str) -> list[StoredSetting]:
    """The same, read on another database's session (the maintenance database's) for
    database ``database``: for one that does not exist yet, only those stored for the
    roles in every database (``ALTER ROLE ... SET``, ``ALTER ROLE ALL SET``) apply."""
    cursor.execute(_MARKERS, [database])
    return _markers(cursor.fetchall())


def existing_schemas(connection: BaseDatabaseWrapper, schemas: Sequence[str]) -> set[str]:
    rows = _rows(
        connection, "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", [list(schemas)]
    )
    return {name for (name,) in rows}


def count_tables(connection: BaseDatabaseWrapper, schemas: Sequence[str]) -> int:
    (count,) = _rows(
        connection,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p')",
        [list(schemas)],
    )[0]
    return int(count)


def count_rows(connection: BaseDatabaseWrapper, schemas: Sequence[str]) -> int:
    """Rows of every table of ``schemas`` (partitions counted, their parents not)."""
    tables = _rows(
        connection,
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind = 'r' ORDER BY 1, 2",
        [list(schemas)],
    )
    if not tables:
        return 0
    total = sql.SQL(" + ").join(
        sql.SQL("(SELECT count(*) FROM {}.{})").format(sql.Identifier(schema), sql.Identifier(name))
        for schema, name in tables
    )
    (count,) = _rows(connection, sql.SQL("SELECT {}").format(total))[0]
    return int(count)


def check_deferred_constraints(connection: BaseDatabaseWrapper) -> None:
    """Check the deferred constraints now rather than at commit, so that with several
    databases a violation shows before the first of them commits."""
    _run(connection, sql.SQL("SET CONSTRAINTS ALL IMMEDIATE"))


def end_of_migration(connection: BaseDatabaseWrapper) -> None:
    """Do in the reset's one transaction what the commit after each migration does for
    plain ``migrate``: fire the deferred checks the migration left pending (PostgreSQL
    refuses to ALTER a table with pending trigger events), then put every deferrable
    constraint back to its initial mode, as a new transaction would have it."""
    _run(connection, sql.SQL("SET CONSTRAINTS ALL IMMEDIATE"))
    restore_constraint_modes(connection)


def restore_constraint_modes(connection: BaseDatabaseWrapper) -> None:
    """Put every deferrable constraint back in the mode it was declared with, as a new
    transaction has it. Django's schema editor leaves some checked immediately for the
    rest of the transaction (a foreign key it adds to an existing table, and all of them
    once it fills in the empty values of a column it makes ``NOT NULL``)."""
    _run(connection, sql.SQL("SET CONSTRAINTS ALL DEFERRED"))
    immediate = _rows(
        connection,
        "SELECT DISTINCT n.nspname, c.conname FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE c.condeferrable AND NOT c.condeferred "
        # Only names this session can use: SET CONSTRAINTS needs the schema's USAGE, and
        # another session's temporary schema is not this session's to name.
        "AND has_schema_privilege(n.oid, 'USAGE') "
        "AND (n.nspname NOT LIKE 'pg\\_temp\\_%%' OR n.oid = pg_my_temp_schema()) "
        # SET CONSTRAINTS names every constraint of that name in the schema: where one
        # of them is initially deferred, deferred is the mode that refuses nothing early.
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint d WHERE d.connamespace = "
        "c.connamespace AND d.conname = c.conname AND d.condeferred) ORDER BY 1, 2",
    )
    if immediate:
        names = sql.SQL(", ").join(
            sql.Identifier(schema, name) for schema, name in dict.fromkeys(immediate)
        )
        _run(connection, sql.SQL("SET CONSTRAINTS {} IMMEDIATE").format(names))


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


def other_sessions(connection: BaseDatabaseWrapper) -> list[Session]:
    rows = _rows(
        connection,
        f"SELECT {_SESSION_COLUMNS} FROM pg_stat_activity a "
        "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() "
        # A role sees no backend_type for another role's sessions; they count.
        f"AND {_CLIENT_BACKEND} ORDER BY a.pid",
    )
    return [Session(*row) for row in rows]


def blocking_sessions(connection: BaseDatabaseWrapper, schemas: Sequence[str]) -> list[Session]:
    """Sessions holding a lock on a relation of ``schemas`` or on the schemas themselves."""
    rows = _rows(
        connection,
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


def terminate_sessions(connection: BaseDatabaseWrapper, pids: Sequence[int]) -> None:
    for pid in pids:
        # Waits up to 5 s for each session to be gone (PostgreSQL 14+).
        _rows(connection, "SELECT pg_terminate_backend(%s, 5000)", [pid])


def advisory_lock_holders(connection: BaseDatabaseWrapper) -> list[Session]:
    rows = _rows(
        connection,
        f"SELECT {_SESSION_COLUMNS} FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s "
        "AND l.objsubid = 1 AND l.pid <> pg_backend_pid() "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        [ADVISORY_LOCK_KEY],
    )
    return [Session(*row) for row in rows]


def _caused_by(exc: BaseException, error: type[psycopg.Error]) -> bool:
    """Whether ``exc`` is ``error``, or Django's wrapper of one (its cause)."""
    return isinstance(exc, error) or isinstance(exc.__cause__, error)


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (or the driver error Django wrapped in it) is a lock_timeout."""
    return _caused_by(exc, errors.LockNotAvailable)


class LockBusy(Exception):
    def __init__(self, holders: list[Session]) -> None:
        super().__init__(holders)
        self.holders = holders


def set_lock_timeout(connection: BaseDatabaseWrapper, seconds: float) -> None:
    """Bound every lock wait of the current transaction, so a reset never hangs."""
    _run(connection, lock_timeout_sql(seconds))


def acquire_reset_lock(connection: BaseDatabaseWrapper, alias: str) -> None:
    """Take the per-database reset lock for the current transaction, or raise LockBusy.

    Waits at most the transaction's ``lock_timeout``.
    """
    try:
        with transaction.atomic(using=alias):
            _run(connection, reset_lock_sql())
    except DatabaseError as exc:
        if not is_lock_timeout(exc):
            raise
        raise LockBusy(advisory_lock_holders(connection)) from exc


def _acl_items(connection: BaseDatabaseWrapper, catalog: str, oid: int) -> list[AclItem]:
    """The items of the ACL of row ``oid`` of ``catalog``, in the ACL's own order."""
    column = {"pg_namespace": "nspacl", "pg_default_acl": "defaclacl"}[catalog]
    rows = _rows(
        connection,
        sql.SQL(
            "SELECT pg_get_userbyid(a.grantor), "
            "CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, "
            "a.privilege_type, a.is_grantable "
            "FROM {} x, aclexplode(x.{}) WITH ORDINALITY "
            "AS a(grantor, grantee, privilege_type, is_grantable, position) "
            "WHERE x.oid = %s ORDER BY a.position"
        ).format(sql.Identifier(catalog), sql.Identifier(column)),
        [oid],
    )
    return [AclItem(*row) for row in rows]


def schema_states(connection: BaseDatabaseWrapper, schemas: Sequence[str]) -> list[SchemaState]:
    states = []
    for name in schemas:
        (oid, owner, acl, comment) = _rows(
            connection,
            "SELECT n.oid, pg_get_userbyid(n.nspowner), n.nspacl::text[], "
            "obj_description(n.oid, 'pg_namespace') FROM pg_namespace n WHERE n.nspname = %s",
            [name],
        )[0]
        acl_items = _acl_items(connection, "pg_namespace", oid)
        default_acls = []
        for role, objtype, defacl_oid in _rows(
            connection,
            "SELECT pg_get_userbyid(d.defaclrole), d.defaclobjtype::text, d.oid "
            "FROM pg_default_acl d WHERE d.defaclnamespace = %s ORDER BY 1, 2",
            [oid],
        ):
            items = _acl_items(connection, "pg_default_acl", defacl_oid)
            default_acls.append(DefaultAcl(role, objtype, tuple(items)))
        states.append(
            SchemaState(
                name=name,
                owner=owner,
                acl=None if acl is None else tuple(acl),
                acl_items=tuple(acl_items),
                comment=comment,
                default_acls=tuple(default_acls),
            )
        )
    return states


def extensions(connection: BaseDatabaseWrapper) -> list[Extension]:
    """All extensions of the database, in creation order (so prerequisites come first)."""
    rows = _rows(
        connection,
        "SELECT e.extname, e.extversion, n.nspname FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY e.oid",
    )
    return [Extension(*row) for row in rows]


def objects_outside(connection: BaseDatabaseWrapper, schemas: Sequence[str]) -> dict[str, int]:
    """Relations, columns and functions per schema outside ``schemas``.

    Compared before and after a reset to catch what ``CASCADE`` took from elsewhere.
    """
    rows = _rows(
        connection,
        "SELECT n.nspname, "
        "(SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid) "
        "+ (SELECT count(*) FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid "
        "   WHERE c.relnamespace = n.oid AND t.attnum > 0 AND NOT t.attisdropped) "
        "+ (SELECT count(*) FROM pg_proc p WHERE p.pronamespace = n.oid) "
        "FROM pg_namespace n WHERE NOT (n.nspname = ANY(%s)) "
        "AND n.nspname NOT LIKE 'pg\\_%%' ORDER BY 1",
        [list(schemas)],
    )
    return {name: int(count) for name, count in rows}


@dataclass(frozen=True)
class Privileges:
    superuser: bool
    can_create_schema: bool
    current_user: str


def privileges(connection: BaseDatabaseWrapper) -> Privileges:
    (superuser, can_create, user) = _rows(
        connection,
        "SELECT r.rolsuper, has_database_privilege(current_database(), 'CREATE'), current_user "
        "FROM pg_roles r WHERE r.rolname = current_user",
    )[0]
    return Privileges(bool(superuser), bool(can_create), user)


def roles_not_usable(connection: BaseDatabaseWrapper, roles: Sequence[str]) -> list[str]:
    """The roles among ``roles`` whose privileges the current user does not have."""
    rows = _rows(
        connection,
        "SELECT r FROM unnest(%s::text[]) r WHERE NOT pg_has_role(current_user, r, 'USAGE')",
        [sorted(set(roles))],
    )
    return [role for (role,) in rows]


def extensions_not_creatable(
    connection: BaseDatabaseWrapper, wanted: Sequence[Extension], *, require_trusted: bool
) -> list[Extension]:
    """The extensions of ``wanted`` that could not be created again in their version."""
    rows = _rows(
        connection,
        "SELECT w.name FROM unnest(%s::text[], %s::text[]) AS w(name, version) "
        "WHERE NOT EXISTS (SELECT 1 FROM pg_available_extension_versions v "
        "  WHERE v.name = w.name AND v.version = w.version AND (v.trusted OR NOT %s))",
        [[e.name for e in wanted], [e.version for e in wanted], require_trusted],
    )
    missing = {name for (name,) in rows}
    return [e for e in wanted if e.name in missing]


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


def lock_timeout_sql(seconds: float) -> sql.Composable:
    milliseconds = max(1, round(seconds * 1000))
    return sql.SQL("SELECT set_config('lock_timeout', {}, true)").format(
        sql.Literal(f"{milliseconds}ms")
    )


def reset_lock_sql() -> sql.Composable:
    return sql.SQL("SELECT pg_advisory_xact_lock({})").format(sql.Literal(ADVISORY_LOCK_KEY))


def drop_schema_sql(name: str) -> sql.Composable:
    return sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name))


def create_schema_sql(state: SchemaState, current_user: str) -> list[sql.Composable]:
    """The statements that create ``state.name`` again with its owner, ACL, comment and
    default privileges."""
    schema = sql.Identifier(state.name)
    statements: list[sql.Composable] = [sql.SQL("CREATE SCHEMA {}").format(schema)]
    if state.owner != current_user:
        statements.append(
            sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema, sql.Identifier(state.owner))
        )
    if state.acl is not None:
        # A new schema has the implicit default ACL; start from nothing, then grant
        # exactly what there was, each grant made by its original grantor.
        statements.append(
            sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(schema, sql.Identifier(state.owner))
        )
        by_grantor: dict[str, list[AclItem]] = {}
        for item in state.acl_items:
            by_grantor.setdefault(item.grantor, []).append(item)
        # The owner's grants first: other grantors hold their grant option from them.
        for grantor in sorted(by_grantor, key=lambda g: g != state.owner):
            on_schema = sql.SQL("SCHEMA {}").format(schema)
            if grantor != state.owner:
                statements.append(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(grantor)))
            statements += _grants(on_schema, by_grantor[grantor])
            if grantor != state.owner:
                statements.append(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(current_user)))
    if state.comment is not None:
        statements.append(
            sql.SQL("COMMENT ON SCHEMA {} IS {}").format(schema, sql.Literal(state.comment))
        )
    for default_acl in state.default_acls:
        statements += _grants(
            sql.SQL(DEFAULT_ACL_OBJECT_TYPES[default_acl.object_type]),
            default_acl.items,
            prefix=sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} ").format(
                sql.Identifier(default_acl.role), schema
            ),
        )
    return statements


def _privilege_list(privs: Sequence[str]) -> sql.Composable:
    for privilege in privs:
        if privilege not in PRIVILEGES:
            raise ValueError(f"unexpected privilege {privilege!r} in an ACL")
    return sql.SQL(", ").join(sql.SQL(p) for p in sorted(privs))


_NO_PREFIX = sql.SQL("")


def _grants(
    on_object: sql.Composable, items: Sequence[AclItem], prefix: sql.Composable = _NO_PREFIX
) -> list[sql.Composable]:
    """One GRANT per grantee and grant option, each with all its privileges."""
    groups: dict[tuple[str | None, bool], list[str]] = {}
    for item in items:
        groups.setdefault((item.grantee, item.grantable), []).append(item.privilege)
    return [
        sql.SQL("{prefix}GRANT {privs} ON {on} TO {grantee}{option}").format(
            prefix=prefix,
            privs=_privilege_list(privs),
            on=on_object,
            grantee=sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee),
            option=sql.SQL(" WITH GRANT OPTION" if grantable else ""),
        )
        for (grantee, grantable), privs in groups.items()
    ]


def create_extension_sql(extension: Extension) -> sql.Composable:
    return sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {} VERSION {}").format(
        sql.Identifier(extension.name),
        sql.Identifier(extension.schema),
        sql.Literal(extension.version),
    )


def reset_sequences(connection: BaseDatabaseWrapper, models: Sequence[type[Model]]) -> None:
    """Set the sequences of ``models`` past their largest key, with Django's own statements,
    as ``loaddata`` does after loading."""
    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), models):
            cursor.execute(statement)


def copy_rows(
    connection: BaseDatabaseWrapper, table: str, columns: Sequence[str], rows: Sequence[Any]
) -> None:
    """``COPY table (columns) FROM STDIN`` with ``rows`` of values ready for the database."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row(row)


# Databases ------------------------------------------------------------------
# Snapshots and swaps work on whole databases, from a session on the maintenance database
# (``postgres``): a database cannot be created from, renamed or dropped while anyone,
# this process included, is connected to it.


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

    def comparable(self) -> tuple[Any, ...]:
        acl = None if self.acl is None else sorted(self.acl)
        return (
            self.owner, self.encoding, self.collate, self.ctype, self.tablespace,
            self.connection_limit, self.locale_provider, self.icu_locale, acl, self.comment,
            self.settings,
        )  # fmt: skip


def database_properties(cursor: Any, name: str) -> DatabaseProperties:
    # The locale columns differ between versions (datlocprovider and daticulocale from
    # 15, datlocale from 17): read them from the row as JSON, where a missing one is null.
    cursor.execute(
        "SELECT d.oid, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), "
        "d.datcollate, d.datctype, t.spcname, d.datconnlimit, "
        "coalesce(to_jsonb(d) ->> 'datlocprovider', 'c'), "
        "coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale'), "
        "d.datacl::text[], shobj_description(d.oid, 'pg_database') "
        "FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace "
        "WHERE d.datname = %s",
        [name],
    )
    (oid, owner, encoding, collate, ctype, tablespace, limit, provider, icu, acl,
     comment) = cursor.fetchone()  # fmt: skip
    cursor.execute(
        "SELECT pg_get_userbyid(a.grantor), "
        "CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, "
        "a.privilege_type, a.is_grantable "
        "FROM pg_database d, aclexplode(d.datacl) WITH ORDINALITY "
        "AS a(grantor, grantee, privilege_type, is_grantable, position) "
        "WHERE d.oid = %s ORDER BY a.position",
        [oid],
    )
    items = tuple(AclItem(*row) for row in cursor.fetchall())
    cursor.execute(
        "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, "
        "s.setconfig FROM pg_db_role_setting s WHERE s.setdatabase = %s ORDER BY 1 NULLS FIRST",
        [oid],
    )
    settings = tuple((role, tuple(sorted(config))) for role, config in cursor.fetchall())
    return DatabaseProperties(
        owner, encoding, collate, ctype, tablespace, int(limit), provider, icu,
        None if acl is None else tuple(acl), items, comment, settings,
    )  # fmt: skip


# Settings whose values PostgreSQL stores as a list of quoted identifiers.
_QUOTED_LISTS = frozenset(
    {"search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries"}
)


def _list_items(value: str) -> list[str]:
    """The items of a stored list value (``"$user", public``), unquoted."""
    items: list[str] = []
    current, quoted, index = "", False, 0
    while index < len(value):
        char = value[index]
        if char == '"':
            if quoted and value[index + 1 : index + 2] == '"':
                current += '"'
                index += 1
            else:
                quoted = not quoted
        elif char == "," and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += char
        index += 1
    items.append(current.strip())
    return items


def database_setting_sql(database: str, role: str | None, config: str) -> sql.Composable:
    """The statement that stores ``config`` (``name=value``, as pg_db_role_setting holds
    it) for ``database`` (and ``role``) again."""
    name, _, value = config.partition("=")
    values: sql.Composable
    if name in _QUOTED_LISTS:
        values = sql.SQL(", ").join(sql.Literal(item) for item in _list_items(value))
    else:
        values = sql.Literal(value)
    target = sql.SQL("DATABASE {}").format(sql.Identifier(database))
    if role is not None:
        target = sql.SQL("ROLE {} IN DATABASE {}").format(
            sql.Identifier(role), sql.Identifier(database)
        )
    return sql.SQL("ALTER {} SET {} TO {}").format(target, sql.Identifier(name), values)


def database_properties_sql(
    database: str, wanted: DatabaseProperties, current_user: str
) -> list[sql.Composable]:
    """Give ``database`` (a copy just made, with the default ACL and no settings) the
    connection limit, grants, comment and settings of ``wanted``."""
    name = sql.Identifier(database)
    statements: list[sql.Composable] = []
    if wanted.connection_limit != -1:
        statements.append(
            sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
                name, sql.Literal(wanted.connection_limit)
            )
        )
    if wanted.acl is not None:
        on = sql.SQL("DATABASE {}").format(name)
        statements.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(name))
        statements.append(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(name, sql.Identifier(wanted.owner))
        )
        by_grantor: dict[str, list[AclItem]] = {}
        for item in wanted.acl_items:
            by_grantor.setdefault(item.grantor, []).append(item)
        for grantor in sorted(by_grantor, key=lambda g: g != wanted.owner):
            if grantor != current_user:
                statements.append(sql.SQL("SET ROLE {}").format(sql.Identifier(grantor)))
            statements += _grants(on, by_grantor[grantor])
            if grantor != current_user:
                statements.append(sql.SQL("RESET ROLE"))
    if wanted.comment is not None:
        statements.append(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(wanted.comment))
        )
    for role, configs in wanted.settings:
        statements += [database_setting_sql(database, role, config) for config in configs]
    return statements


def create_database_sql(name: str, template: str, owner: str) -> sql.Composable:
    # The server's default strategy: on 15+ WAL_LOG, which here copied a just-rebuilt
    # database as fast as FILE_COPY and, unlike it, forces no checkpoint on the server.
    return sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
        sql.Identifier(name), sql.Identifier(template), sql.Identifier(owner)
    )


def create_empty_database_sql(name: str, wanted: DatabaseProperties) -> sql.Composable:
    """An empty database (from ``template0``) with ``wanted``'s owner, encoding, locale
    and tablespace."""
    statement = sql.SQL(
        "CREATE DATABASE {} TEMPLATE template0 OWNER {} ENCODING {} LC_COLLATE {} "
        "LC_CTYPE {} TABLESPACE {}"
    ).format(
        sql.Identifier(name),
        sql.Identifier(wanted.owner),
        sql.Literal(wanted.encoding),
        sql.Literal(wanted.collate),
        sql.Literal(wanted.ctype),
        sql.Identifier(wanted.tablespace),
    )
    if wanted.locale_provider == "i":
        statement += sql.SQL(" LOCALE_PROVIDER icu ICU_LOCALE {}").format(
            sql.Literal(wanted.icu_locale or "")
        )
    return statement


def new_database_sql(name: str, owner: str, template: str, encoding: str | None) -> sql.Composable:
    """A database that does not exist yet, as ``createdb`` and Django's test database
    creation make it: a copy of ``template``, in its encoding unless ``encoding``."""
    statement = sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(owner), sql.Identifier(template)
    )
    if encoding:
        statement += sql.SQL(" ENCODING {}").format(sql.Literal(encoding))
    return statement


def create_schemas_sql(names: Sequence[str]) -> list[sql.Composable]:
    return [sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)) for name in names]


def grant_createdb_sql(role: str) -> sql.Composable:
    return sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(role))


def database_encoding(cursor: Any, name: str) -> str | None:
    """The encoding of database ``name``; None when there is no such database."""
    cursor.execute(
        "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = %s", [name]
    )
    row = cursor.fetchone()
    return None if row is None else str(row[0])


def database_exists(cursor: Any, name: str) -> bool:
    cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %s)", [name])
    (exists,) = cursor.fetchone()
    return bool(exists)


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


def creator(cursor: Any) -> Creator:
    cursor.execute(
        "SELECT current_user, r.rolsuper, r.rolcreatedb, current_database() "
        "FROM pg_roles r WHERE r.rolname = current_user"
    )
    (user, superuser, createdb, database) = cursor.fetchone()
    return Creator(user, bool(superuser), bool(createdb), database)


def cursor_target(cursor: Any, database: str) -> ConnectionTarget:
    """Where a cursor's connection really goes, as :func:`connection_target` says it,
    for database ``database`` on the same server."""
    info = cursor.connection.info
    return ConnectionTarget(
        host=info.host, port=info.port, database=database, user=info.user, address=info.hostaddr
    )


def lock_estimate(connection: BaseDatabaseWrapper, schemas: Sequence[str]) -> tuple[int, int]:
    """How many locks dropping ``schemas`` takes (one per object it removes: relations,
    their toast tables, types, constraints, triggers, defaults, functions), and how many
    the server's shared lock table is sized for."""
    (objects, capacity) = _rows(
        connection,
        "WITH s AS (SELECT oid FROM pg_namespace WHERE nspname = ANY(%s)), "
        "r AS (SELECT oid, reltoastrelid FROM pg_class WHERE relnamespace IN (SELECT oid FROM s)) "
        "SELECT (SELECT count(*) FROM r) "
        "+ 2 * (SELECT count(*) FROM r WHERE reltoastrelid <> 0) "
        "+ (SELECT count(*) FROM pg_type WHERE typnamespace IN (SELECT oid FROM s)) "
        "+ (SELECT count(*) FROM pg_constraint WHERE connamespace IN (SELECT oid FROM s)) "
        "+ (SELECT count(*) FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM r)) "
        "+ (SELECT count(*) FROM pg_attrdef WHERE adrelid IN (SELECT oid FROM r)) "
        "+ (SELECT count(*) FROM pg_proc WHERE pronamespace IN (SELECT oid FROM s)), "
        "current_setting('max_locks_per_transaction')::int "
        "* (current_setting('max_connections')::int "
        "   + current_setting('max_prepared_transactions')::int)",
        [list(schemas)],
    )[0]
    return int(objects), int(capacity)


def prepare_schemas_sql(
    present: set[str],
    states: Sequence[SchemaState],
    extensions: Sequence[Extension],
    present_extensions: set[str],
    current_user: str,
) -> list[sql.Composable]:
    """In a new database, the schemas of ``states`` as they are in the target (owner,
    grants, comment, default privileges), then its extensions."""
    statements: list[sql.Composable] = [
        sql.SQL("DROP SCHEMA {}").format(sql.Identifier(state.name))
        for state in states
        if state.name in present
    ]
    for state in states:
        statements += create_schema_sql(state, current_user)
    statements += [create_extension_sql(e) for e in extensions if e.name not in present_extensions]
    return statements


def rename_database_sql(name: str, new_name: str) -> sql.Composable:
    return sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
        sql.Identifier(name), sql.Identifier(new_name)
    )


def drop_database_sql(name: str, *, force: bool = True) -> sql.Composable:
    """``force`` ends the sessions connected to it (the tool's own copies, which nobody
    else should use); without it the drop fails while anyone is connected."""
    if not force:
        return sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))


def connection_parameters(connection: Any) -> dict[str, str]:
    """What the psycopg ``connection`` was opened with, its password included: for
    another process to open one to the same server, as the same role."""
    params = dict(connection.info.get_parameters())
    if connection.info.password:
        params["password"] = connection.info.password
    return params


def drop_database_over(params: dict[str, str], name: str, lock_seconds: float) -> None:
    """Drop database ``name`` over a connection of its own, opened with ``params``
    (see :func:`connection_parameters`), waiting at most ``lock_seconds`` for a lock."""
    # A server that does not answer must not keep the process waiting for good.
    conninfo = psycopg.conninfo.make_conninfo(**{"connect_timeout": "10", **params})
    with psycopg.connect(conninfo, autocommit=True) as conn:
        milliseconds = max(1, round(lock_seconds * 1000))
        conn.execute("SELECT set_config('lock_timeout', %s, false)", [f"{milliseconds}ms"])
        conn.execute(drop_database_sql(name).as_string(conn))


def comment_on_database_sql(name: str, comment: str) -> sql.Composable:
    return sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(name), sql.Literal(comment)
    )


def snapshot_marks_sql(name: str, comment: str) -> list[sql.Composable]:
    """Nobody connects to a snapshot; its comment says what it is."""
    return [
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)),
        comment_on_database_sql(name, comment),
    ]


def replaced_marks_sql(name: str, replaced: str) -> list[sql.Composable]:
    """A database a restore replaced: closed to connections until it is dropped (at
    once, in the background; by the next run if that fails)."""
    comment = f"django_resetdb: the earlier {replaced}, replaced by a restore or a swap"
    return [
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)),
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment)),
    ]


def run_on(cursor: Any, statements: Sequence[sql.Composable]) -> None:
    """Run ``statements`` on a cursor of the maintenance database."""
    for statement in statements:
        cursor.execute(statement.as_string(cursor.connection))


def databases_like(
    cursor: Any, prefix: str, *, sizes: bool = False, closed: bool = False
) -> list[tuple[str, str | None, int]]:
    """Name, comment and (with ``sizes``; it reads every file's size) size of the
    databases whose name starts with ``prefix``; with ``closed``, only those closed to
    connections (as the tool leaves its snapshots)."""
    cursor.execute(
        "SELECT datname, shobj_description(oid, 'pg_database'), "
        "CASE WHEN %s THEN pg_database_size(oid) ELSE 0 END "
        "FROM pg_database WHERE starts_with(datname, %s) AND (NOT %s OR NOT datallowconn) "
        "ORDER BY datname",
        [sizes, prefix, closed],
    )
    # NULL for a database dropped while the sizes were read (a background drop).
    return [(name, comment, int(size or 0)) for name, comment, size in cursor.fetchall()]


def waiting_on(cursor: Any, pid: int, seconds: float) -> list[Session]:
    """The sessions that have waited more than ``seconds`` for a lock session ``pid``
    holds."""
    cursor.execute(
        f"SELECT DISTINCT {_SESSION_COLUMNS} FROM pg_stat_activity a "
        "JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted "
        "WHERE %s = ANY(pg_blocking_pids(a.pid)) "
        "AND clock_timestamp() - l.waitstart > make_interval(secs => %s) ORDER BY a.pid",
        [pid, seconds],
    )
    return [Session(*row) for row in cursor.fetchall()]


def cancel_on(cursor: Any, pid: int) -> None:
    cursor.execute("SELECT pg_cancel_backend(%s)", [pid])


def backend_pid(connection: BaseDatabaseWrapper) -> int:
    return int(_rows(connection, "SELECT pg_backend_pid()")[0][0])


def database_sessions(cursor: Any, name: str) -> list[Session]:
    cursor.execute(
        f"SELECT {_SESSION_COLUMNS} FROM pg_stat_activity a "
        f"WHERE a.datname = %s AND a.pid <> pg_backend_pid() AND {_CLIENT_BACKEND} "
        "ORDER BY a.pid",
        [name],
    )
    return [Session(*row) for row in cursor.fetchall()]


def terminate_on(cursor: Any, pids: Sequence[int]) -> None:
    for pid in pids:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def terminate_idle_on(cursor: Any, pids: Sequence[int]) -> None:
    """End the sessions ``pids`` that are still idle: one that began a transaction since
    it was listed is left alone (and then blocks the swap)."""
    for pid in pids:
        cursor.execute(
            "SELECT pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a "
            "WHERE a.pid = %s AND a.state = 'idle' AND NOT EXISTS "
            "(SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory')",
            [pid],
        )


def swap_databases(cursor: Any, statements: Sequence[sql.Composable]) -> bool:
    """Run the renames of a swap in one transaction; False, with nothing changed, when a
    session connected to one of the databases meanwhile."""
    cursor.execute(BEGIN_SQL)
    try:
        run_on(cursor, statements)
        cursor.execute(COMMIT_SQL)
    except BaseException as exc:
        cursor.execute(ROLLBACK_SQL)
        if _caused_by(exc, errors.ObjectInUse):
            return False
        raise
    return True


def _database_name_key(name: str) -> int:
    return zlib.crc32(f"django_resetdb:{name}".encode()) & 0x7FFFFFFF


def lock_database_name(cursor: Any, name: str, seconds: float) -> None:
    """Session lock on the maintenance database for work on database ``name``: one
    snapshot or swap at a time per database. Waits at most ``seconds``."""
    milliseconds = max(1, round(seconds * 1000))
    cursor.execute("SELECT set_config('lock_timeout', %s, false)", [f"{milliseconds}ms"])
    cursor.execute("SELECT pg_advisory_lock(%s)", [_database_name_key(name)])


@contextlib.contextmanager
def database_name_free(cursor: Any, name: str) -> Iterator[bool]:
    """Whether no snapshot or swap of database ``name`` is being made now: the lock of
    :func:`lock_database_name`, taken without waiting and held while inside."""
    key = _database_name_key(name)
    cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
    (free,) = cursor.fetchone()
    try:
        yield bool(free)
    finally:
        if free:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


@dataclass(frozen=True)
class Capabilities:
    server_version: int
    current_user: str
    superuser: bool
    create_database: bool
    owns_database: bool


def capabilities(connection: BaseDatabaseWrapper) -> Capabilities:
    (version, user, superuser, createdb, owner) = _rows(
        connection,
        "SELECT current_setting('server_version_num')::int, current_user, r.rolsuper, "
        "r.rolcreatedb, pg_has_role(current_user, d.datdba, 'MEMBER') "
        "FROM pg_roles r, pg_database d "
        "WHERE r.rolname = current_user AND d.datname = current_database()",
    )[0]
    return Capabilities(int(version), user, bool(superuser), bool(createdb), bool(owner))


def whole_database_context(
    connection: BaseDatabaseWrapper, schemas: Sequence[str]
) -> tuple[list[str], list[Any]]:
    """What a copy of the whole database would bring back besides ``schemas``.

    Returns what would be lost (objects outside ``schemas`` that are not members of an
    extension, large objects, event triggers, publications, subscriptions) and what
    must be equal for two copies to be interchangeable (the other schemas, extensions,
    database-wide default privileges).
    """
    lost: list[str] = []
    outside = _rows(
        connection,
        "SELECT n.nspname, count(*) FROM pg_namespace n JOIN ("
        "  SELECT relnamespace AS ns, 'pg_class'::regclass AS cls, oid FROM pg_class"
        "  UNION ALL SELECT pronamespace, 'pg_proc'::regclass, oid FROM pg_proc"
        "  UNION ALL SELECT typnamespace, 'pg_type'::regclass, oid FROM pg_type"
        ") o ON o.ns = n.oid "
        "WHERE NOT (n.nspname = ANY(%s)) AND n.nspname NOT IN ('information_schema', 'pg_toast') "
        "AND n.nspname NOT LIKE 'pg\\_%%' "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = o.cls AND d.objid = o.oid "
        "  AND d.deptype = 'e') "
        "AND NOT EXISTS (SELECT 1 FROM pg_type t WHERE o.cls = 'pg_type'::regclass "
        "  AND t.oid = o.oid AND (t.typrelid <> 0 OR t.typelem <> 0)) "
        "GROUP BY n.nspname ORDER BY 1",
        [list(schemas)],
    )
    lost += [f"{count} object(s) in schema {name!r}" for name, count in outside]
    (large, triggers, publications, subscriptions) = _rows(
        connection,
        "SELECT (SELECT count(*) FROM pg_largeobject_metadata), "
        "(SELECT count(*) FROM pg_event_trigger), (SELECT count(*) FROM pg_publication), "
        "(SELECT count(*) FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
        " WHERE d.datname = current_database())",
    )[0]
    for count, what in (
        (large, "large object(s)"),
        (triggers, "event trigger(s)"),
        (publications, "publication(s)"),
        (subscriptions, "subscription(s)"),
    ):
        if count:
            lost.append(f"{count} {what}")
    context = _rows(
        connection,
        "SELECT 'schema', n.nspname, pg_get_userbyid(n.nspowner), n.nspacl::text "
        "FROM pg_namespace n WHERE NOT (n.nspname = ANY(%s)) "
        "AND n.nspname NOT IN ('information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg\\_%%' "
        "UNION ALL SELECT 'extension', e.extname, e.extversion, n.nspname FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace "
        "UNION ALL SELECT 'default acl', pg_get_userbyid(d.defaclrole), d.defaclobjtype::text, "
        "d.defaclacl::text FROM pg_default_acl d WHERE d.defaclnamespace = 0 "
        "ORDER BY 1, 2, 3",
        [list(schemas)],
    )
    return lost, [list(row) for row in context]


# For the other modules: what they would otherwise write as SQL themselves ----------


def current_user(cursor: Any) -> str:
    """The role the cursor's session acts as."""
    cursor.execute("SELECT current_user")
    (user,) = cursor.fetchone()
    return str(user)


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


def is_active_sql_transaction(exc: BaseException) -> bool:
    """Whether ``exc`` (or the driver error Django wrapped in it) is a statement refused
    inside a transaction block (CREATE INDEX CONCURRENTLY, VACUUM, ...)."""
    return _caused_by(exc, errors.ActiveSqlTransaction)


def runs_after_rows(statement: str) -> bool:
    """Whether a deferred statement of a schema editor can wait until the rows are
    loaded: a plain index or a foreign key. Unique indexes and constraints stay: loading
    must see the duplicates they refuse."""
    return statement.startswith("CREATE INDEX ") or (
        statement.startswith("ALTER TABLE ") and " FOREIGN KEY " in statement
    )


def creates_table(statement: str) -> bool:
    """Whether ``statement`` (indented or not) is a ``CREATE TABLE``."""
    return statement.lstrip().startswith("CREATE TABLE ")


_MISSING_KEY = re.compile(r"Key \((?P<column>[^)]+)\)=\((?P<value>.*)\) is not present in table")


@dataclass(frozen=True)
class MissingKey:
    """What a foreign-key violation names: the table of the row, its column, and the
    value no row of the referenced table has."""

    table: str
    column: str
    value: str


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


def insert_rows(model: type[Model], objs: Sequence[Any], *, using: str, **options: Any) -> Any:
    """Insert ``objs`` with Django's own ``INSERT`` (the manager's ``_insert``, as
    ``bulk_create`` and ``save_base`` do): ``options`` as it takes them (fields, raw,
    on_conflict, update_fields, unique_fields, returning_fields). Returns its rows."""
    return model._base_manager._insert(objs, using=using, **options)  # type: ignore[attr-defined]
