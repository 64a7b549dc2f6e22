"""Builders of statements: pure functions returning ``sql.Composable``, no connection.

Identifiers are quoted with ``psycopg.sql.Identifier``, values are ``sql.Literal``
(PostgreSQL's utility statements take no parameters).
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from django_resetdb.postgres.values import (
    ADVISORY_LOCK_KEY,
    DEFAULT_ACL_OBJECT_TYPES,
    PRIVILEGES,
    AclItem,
    DatabaseProperties,
    Extension,
    SchemaState,
)


def lock_timeout_sql(seconds: float, *, local: bool = True) -> sql.Composable:
    """Bound every lock wait to ``seconds``: of the current transaction when ``local``,
    else of the session."""
    milliseconds = max(1, round(seconds * 1000))
    return sql.SQL("SELECT set_config('lock_timeout', {}, {})").format(
        sql.Literal(f"{milliseconds}ms"), sql.SQL("true" if local else "false")
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
        statements += _grants_by_grantor(
            sql.SQL("SCHEMA {}").format(schema),
            state.acl_items,
            owner=state.owner,
            acting=state.owner,
            become=sql.SQL("SET LOCAL ROLE {}"),
            back=sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(current_user)),
        )
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


def _grants_by_grantor(
    on_object: sql.Composable,
    items: Sequence[AclItem],
    *,
    owner: str,
    acting: str,
    become: sql.SQL,
    back: sql.Composable,
) -> list[sql.Composable]:
    """The grants of ``items``, each made by its original grantor: the owner's first
    (other grantors hold their grant option from them), each other grantor's between
    ``become`` (a ``SET ROLE``, formatted with the grantor) and ``back``. The grants of
    ``acting`` (the role the statements run as, or one it acts for) need no switch."""
    by_grantor: dict[str, list[AclItem]] = {}
    for item in items:
        by_grantor.setdefault(item.grantor, []).append(item)
    statements: list[sql.Composable] = []
    for grantor in sorted(by_grantor, key=lambda g: g != owner):
        if grantor != acting:
            statements.append(become.format(sql.Identifier(grantor)))
        statements += _grants(on_object, by_grantor[grantor])
        if grantor != acting:
            statements.append(back)
    return statements


def create_extension_sql(extension: Extension) -> sql.Composable:
    return sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {} VERSION {}").format(
        sql.Identifier(extension.name),
        sql.Identifier(extension.schema),
        sql.Literal(extension.version),
    )


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
        statements += _grants_by_grantor(
            on,
            wanted.acl_items,
            owner=wanted.owner,
            acting=current_user,
            become=sql.SQL("SET ROLE {}"),
            back=sql.SQL("RESET ROLE"),
        )
    if wanted.comment is not None:
        statements.append(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(wanted.comment))
        )
    for role, configs in wanted.settings:
        statements += [database_setting_sql(database, role, config) for config in configs]
    if wanted.is_template:
        statements.append(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true").format(name))
    return statements


def create_database_sql(name: str, template: str, owner: str) -> sql.Composable:
    # The server's default strategy: on 15+ WAL_LOG, which here copied a just-rebuilt
    # database as fast as FILE_COPY and, unlike it, forces no checkpoint on the server.
    return sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
        sql.Identifier(name), sql.Identifier(template), sql.Identifier(owner)
    )


def create_empty_database_sql(name: str, wanted: DatabaseProperties) -> sql.Composable:
    """An empty database (from ``template0``) with ``wanted``'s owner, encoding, locale
    and tablespace. ``pg_default`` (template0's) is not named: naming a tablespace needs
    the CREATE privilege on it, which a role that may create databases lacks there."""
    statement = sql.SQL(
        "CREATE DATABASE {} TEMPLATE template0 OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}"
    ).format(
        sql.Identifier(name),
        sql.Identifier(wanted.owner),
        sql.Literal(wanted.encoding),
        sql.Literal(wanted.collate),
        sql.Literal(wanted.ctype),
    )
    if wanted.tablespace != "pg_default":
        statement += sql.SQL(" TABLESPACE {}").format(sql.Identifier(wanted.tablespace))
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


def comment_on_database_sql(name: str, comment: str) -> sql.Composable:
    return sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(name), sql.Literal(comment)
    )


def snapshot_marks_sql(name: str, comment: str) -> list[sql.Composable]:
    """Nobody connects to a snapshot; its comment says what it is."""
    return _closed_sql(name, comment)


def _closed_sql(name: str, comment: str) -> list[sql.Composable]:
    return [
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)),
        comment_on_database_sql(name, comment),
    ]


def replaced_marks_sql(name: str, replaced: str) -> list[sql.Composable]:
    """A database a restore replaced: closed to connections until it is dropped (at
    once, in the background; by the next run if that fails)."""
    comment = f"django_resetdb: the earlier {replaced}, replaced by a restore or a swap"
    # A template cannot be dropped: the new database is the template now.
    return [*_closed_sql(name, comment), not_template_sql(name)]


def not_template_sql(name: str) -> sql.Composable:
    return sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name))


def swap_sql(target: str, new: str, old: str) -> list[sql.Composable]:
    """The renames that swap database ``new`` in for ``target``, which becomes ``old``,
    marked as replaced (run them in one transaction: see ``swap_databases``)."""
    return [
        rename_database_sql(target, old),
        rename_database_sql(new, target),
        *replaced_marks_sql(old, target),
    ]


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


def drop_tables_sql(tables: Sequence[str]) -> list[sql.Composable]:
    """Drop ``tables`` (found on the search path) in one statement, without CASCADE:
    an object outside them that depends on them makes it fail."""
    if not tables:
        return []
    names = sql.SQL(", ").join(sql.Identifier(table) for table in tables)
    return [sql.SQL("DROP TABLE {}").format(names)]


def forget_migrations_sql(apps: Sequence[str]) -> list[sql.Composable]:
    """Forget that the migrations of ``apps`` were applied (``django_migrations``)."""
    if not apps:
        return []
    labels = sql.SQL(", ").join(sql.Literal(label) for label in apps)
    return [sql.SQL("DELETE FROM django_migrations WHERE app IN ({})").format(labels)]
