"""Reads of the system catalogs (pg_catalog) and of a database's contents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from django_resetdb.postgres.connections import Where, _rows
from django_resetdb.postgres.values import (
    PROTECTED_SETTING,
    AclItem,
    Capabilities,
    Creator,
    DatabaseProperties,
    DefaultAcl,
    Extension,
    Privileges,
    SchemaState,
    StoredSetting,
)

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
            markers.append(StoredSetting(value=value, database=database, role=role, name=name))
    return markers


def protected_markers(where: Where, database: str | None = None) -> list[StoredSetting]:
    """The ``django_resetdb.protected`` values stored for the session's database, for the
    roles the session logged in as and acts as, and for both together.

    Read from pg_db_role_setting, not current_setting(): the client chooses the session's
    value (``options=-c ...``, PGOPTIONS, SET) and would switch the DBA's marker off.
    With ``database``, read on another database's session (the maintenance database's)
    for database ``database``: for one that does not exist yet, only those stored for the
    roles in every database (``ALTER ROLE ... SET``, ``ALTER ROLE ALL SET``) apply.
    """
    return _markers(_rows(where, _MARKERS, [database]))


# The name the calls on a cursor of the maintenance database use, naming the database.


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


def _acl_items(where: Where, catalog: str, oid: int) -> list[AclItem]:
    """The items of the ACL of row ``oid`` of ``catalog``, in the ACL's own order."""
    column = {"pg_namespace": "nspacl", "pg_default_acl": "defaclacl", "pg_database": "datacl"}
    rows = _rows(
        where,
        sql.SQL(
            "SELECT pg_get_userbyid(a.grantor), "
            "CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, "
            "a.privilege_type, a.is_grantable "
            "FROM {} x, aclexplode(x.{}) WITH ORDINALITY "
            "AS a(grantor, grantee, privilege_type, is_grantable, position) "
            "WHERE x.oid = %s ORDER BY a.position"
        ).format(sql.Identifier(catalog), sql.Identifier(column[catalog])),
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


# Every object DROP SCHEMA ... CASCADE would take: what depends on the schemas, and on
# what depends on them, as pg_depend records it (normal, automatic, internal and extension
# dependencies; on a column, only what depends on that column). Then the schema each one
# belongs to: a default, trigger, policy, rule or constraint belongs to its table's, an
# operator family's member to the family's, default privileges to their schema (the
# triggers a foreign key makes for itself go with its constraint, named instead).
_DEPENDENTS = """
WITH RECURSIVE dropped(classid, objid, objsubid) AS (
    SELECT 'pg_namespace'::regclass::oid, n.oid, 0 FROM pg_namespace n
    WHERE n.nspname = ANY(%s)
  UNION
    SELECT d.classid, d.objid, d.objsubid FROM pg_depend d
    JOIN dropped p ON d.refclassid = p.classid AND d.refobjid = p.objid
        AND (d.refobjsubid = p.objsubid OR p.objsubid = 0)
    WHERE d.deptype IN ('n', 'a', 'i', 'e')
)
SELECT DISTINCT pg_describe_object(x.classid, x.objid, x.objsubid)
FROM dropped x
CROSS JOIN LATERAL pg_identify_object(x.classid, x.objid, x.objsubid) o
CROSS JOIN LATERAL (SELECT coalesce(
    (SELECT c.relnamespace FROM pg_attrdef a JOIN pg_class c ON c.oid = a.adrelid
     WHERE x.classid = 'pg_attrdef'::regclass AND a.oid = x.objid),
    (SELECT c.relnamespace FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE x.classid = 'pg_trigger'::regclass AND t.oid = x.objid),
    (SELECT c.relnamespace FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
     WHERE x.classid = 'pg_policy'::regclass AND p.oid = x.objid),
    (SELECT c.relnamespace FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
     WHERE x.classid = 'pg_rewrite'::regclass AND r.oid = x.objid),
    (SELECT f.opfnamespace FROM pg_amproc a JOIN pg_opfamily f ON f.oid = a.amprocfamily
     WHERE x.classid = 'pg_amproc'::regclass AND a.oid = x.objid),
    (SELECT f.opfnamespace FROM pg_amop a JOIN pg_opfamily f ON f.oid = a.amopfamily
     WHERE x.classid = 'pg_amop'::regclass AND a.oid = x.objid),
    (SELECT d.defaclnamespace FROM pg_default_acl d
     WHERE x.classid = 'pg_default_acl'::regclass AND d.oid = x.objid),
    (SELECT coalesce(c.relnamespace, k.connamespace) FROM pg_constraint k
     LEFT JOIN pg_class c ON c.oid = k.conrelid
     WHERE x.classid = 'pg_constraint'::regclass AND k.oid = x.objid),
    (SELECT c.relnamespace FROM pg_class c
     WHERE x.classid = 'pg_class'::regclass AND c.oid = x.objid),
    (SELECT y.typnamespace FROM pg_type y
     WHERE x.classid = 'pg_type'::regclass AND y.oid = x.objid),
    (SELECT f.pronamespace FROM pg_proc f
     WHERE x.classid = 'pg_proc'::regclass AND f.oid = x.objid),
    to_regnamespace(o.schema)  -- quoted as needed by pg_identify_object
) AS namespace) owner
WHERE x.classid NOT IN ('pg_namespace'::regclass, 'pg_extension'::regclass)
  AND o.schema IS DISTINCT FROM 'pg_toast'
  AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE x.classid = 'pg_trigger'::regclass
                  AND t.oid = x.objid AND t.tgisinternal)
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = x.classid
                  AND e.objid = x.objid AND e.deptype = 'e')
  AND (owner.namespace IS NULL OR owner.namespace NOT IN (
      SELECT n.oid FROM pg_namespace n WHERE n.nspname = ANY(%s)))
ORDER BY 1
"""


def dependents_outside(connection: BaseDatabaseWrapper, schemas: Sequence[str]) -> list[str]:
    """What dropping ``schemas`` with CASCADE would also drop or change elsewhere: objects
    of other schemas (a column default, trigger or policy calling a function of theirs, a
    foreign key into a table of theirs, ...) and objects of no schema (an event trigger,
    a publication's table), each described as PostgreSQL describes it. Extensions and
    their members (a cast of citext, say) are left out: the reset creates them again."""
    rows = _rows(connection, _DEPENDENTS, [list(schemas), list(schemas)])
    return [description for (description,) in rows]


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


def database_properties(where: Where, name: str) -> DatabaseProperties:
    # The locale columns differ between versions (datlocprovider and daticulocale from
    # 15, datlocale from 17): read them from the row as JSON, where a missing one is null.
    (oid, owner, encoding, collate, ctype, tablespace, limit, provider, icu, acl,
     comment, template) = _rows(
        where,
        "SELECT d.oid, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), "
        "d.datcollate, d.datctype, t.spcname, d.datconnlimit, "
        "coalesce(to_jsonb(d) ->> 'datlocprovider', 'c'), "
        "coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale'), "
        "d.datacl::text[], shobj_description(d.oid, 'pg_database'), d.datistemplate "
        "FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace "
        "WHERE d.datname = %s",
        [name],
    )[0]  # fmt: skip
    items = tuple(_acl_items(where, "pg_database", oid))
    rows = _rows(
        where,
        "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, "
        "s.setconfig FROM pg_db_role_setting s WHERE s.setdatabase = %s ORDER BY 1 NULLS FIRST",
        [oid],
    )
    settings = tuple((role, tuple(sorted(config))) for role, config in rows)
    return DatabaseProperties(
        owner, encoding, collate, ctype, tablespace, int(limit), provider, icu,
        None if acl is None else tuple(acl), items, comment, settings, bool(template),
    )  # fmt: skip


def database_encoding(where: Where, name: str) -> str | None:
    """The encoding of database ``name``; None when there is no such database."""
    rows = _rows(
        where, "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = %s", [name]
    )
    return str(rows[0][0]) if rows else None


def database_exists(where: Where, name: str) -> bool:
    rows = _rows(where, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %s)", [name])
    return bool(rows[0][0])


def creator(where: Where) -> Creator:
    (user, superuser, createdb, database) = _rows(
        where,
        "SELECT current_user, r.rolsuper, r.rolcreatedb, current_database() "
        "FROM pg_roles r WHERE r.rolname = current_user",
    )[0]
    return Creator(user, bool(superuser), bool(createdb), database)


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


def databases_like(
    where: Where, prefix: str, *, sizes: bool = False, closed: bool = False
) -> list[tuple[str, str | None, int]]:
    """Name, comment and (with ``sizes``; it reads every file's size) size of the
    databases whose name starts with ``prefix``; with ``closed``, only those closed to
    connections (as the tool leaves its snapshots)."""
    rows = _rows(
        where,
        "SELECT datname, shobj_description(oid, 'pg_database'), "
        "CASE WHEN %s THEN pg_database_size(oid) ELSE 0 END "
        "FROM pg_database WHERE starts_with(datname, %s) AND (NOT %s OR NOT datallowconn) "
        "ORDER BY datname",
        [sizes, prefix, closed],
    )
    # NULL for a database dropped while the sizes were read (a background drop).
    return [(name, comment, int(size or 0)) for name, comment, size in rows]


def row_versions(where: Where, prefix: str) -> dict[str, str]:
    """The version (``xmin``) of the ``pg_database`` row of each database whose name
    starts with ``prefix``: any ``ALTER DATABASE`` that changes the row (opening it to
    connections, closing it again, a rename, a new owner or grant) gives it a new one."""
    rows = _rows(
        where,
        "SELECT datname, xmin::text FROM pg_database WHERE starts_with(datname, %s)",
        [prefix],
    )
    return {name: version for name, version in rows}


def capabilities(connection: BaseDatabaseWrapper) -> Capabilities:
    (version, user, superuser, createdb, owner) = _rows(
        connection,
        "SELECT current_setting('server_version_num')::int, current_user, r.rolsuper, "
        "r.rolcreatedb, pg_has_role(current_user, d.datdba, 'MEMBER') "
        "FROM pg_roles r, pg_database d "
        "WHERE r.rolname = current_user AND d.datname = current_database()",
    )[0]
    return Capabilities(int(version), user, bool(superuser), bool(createdb), bool(owner))


# Objects of the database that belong to no schema, made by its users (not by initdb,
# whose objects have OIDs below FirstNormalObjectId, nor by an extension): a copy of the
# whole database brings them back as they were when it was kept, a new database has
# none of them.
_DATABASE_WIDE = """
SELECT o.what, count(*) FROM (
    SELECT 'pg_cast'::regclass AS cls, oid, 'cast(s)' AS what FROM pg_cast WHERE oid >= 16384
  UNION ALL
    SELECT 'pg_foreign_data_wrapper'::regclass, oid, 'foreign-data wrapper(s)'
    FROM pg_foreign_data_wrapper
  UNION ALL
    SELECT 'pg_foreign_server'::regclass, oid, 'foreign server(s)' FROM pg_foreign_server
  UNION ALL
    SELECT 'pg_user_mapping'::regclass, umid, 'user mapping(s)' FROM pg_user_mappings
  UNION ALL
    SELECT 'pg_am'::regclass, oid, 'access method(s)' FROM pg_am WHERE oid >= 16384
  UNION ALL
    SELECT 'pg_language'::regclass, oid, 'procedural language(s)' FROM pg_language
    WHERE oid >= 16384
  UNION ALL
    SELECT 'pg_transform'::regclass, oid, 'transform(s)' FROM pg_transform
) o
WHERE NOT EXISTS (
    SELECT 1 FROM pg_depend d WHERE d.classid = o.cls AND d.objid = o.oid AND d.deptype = 'e'
)
GROUP BY o.what ORDER BY o.what
"""


# Privileges granted or revoked on what initdb made in pg_catalog (REVOKE EXECUTE ON
# FUNCTION now() FROM PUBLIC): pg_init_privs holds what initdb gave them.
_BUILT_IN_PRIVILEGES = """
SELECT count(*) FROM (
    SELECT 'pg_proc'::regclass AS cls, oid, proacl AS acl FROM pg_proc
    WHERE oid < 16384 AND pronamespace = 'pg_catalog'::regnamespace
  UNION ALL
    SELECT 'pg_class'::regclass, oid, relacl FROM pg_class
    WHERE oid < 16384 AND relnamespace = 'pg_catalog'::regnamespace
  UNION ALL
    SELECT 'pg_type'::regclass, oid, typacl FROM pg_type
    WHERE oid < 16384 AND typnamespace = 'pg_catalog'::regnamespace
  UNION ALL
    SELECT 'pg_namespace'::regclass, oid, nspacl FROM pg_namespace WHERE nspname = 'pg_catalog'
  UNION ALL
    SELECT 'pg_language'::regclass, oid, lanacl FROM pg_language WHERE oid < 16384
) o
LEFT JOIN pg_init_privs i ON i.classoid = o.cls AND i.objoid = o.oid AND i.objsubid = 0
WHERE o.acl IS DISTINCT FROM i.initprivs
"""


def whole_database_context(
    connection: BaseDatabaseWrapper, schemas: Sequence[str]
) -> tuple[list[str], list[Any]]:
    """What a copy of the whole database would bring back besides ``schemas``.

    Returns what would be lost (objects outside ``schemas`` that are not members of an
    extension, large objects, event triggers, publications, subscriptions, and casts,
    foreign-data wrappers, servers, user mappings, access methods, languages and
    transforms users made) and what
    must be equal for two copies to be interchangeable (the other schemas, extensions,
    database-wide default privileges, the settings stored for the database and the role).
    """
    lost: list[str] = []
    outside = _rows(
        connection,
        "SELECT n.nspname, count(*) FROM pg_namespace n JOIN ("
        "  SELECT relnamespace AS ns, 'pg_class'::regclass AS cls, oid FROM pg_class"
        "  UNION ALL SELECT pronamespace, 'pg_proc'::regclass, oid FROM pg_proc"
        "  UNION ALL SELECT typnamespace, 'pg_type'::regclass, oid FROM pg_type"
        "  UNION ALL SELECT collnamespace, 'pg_collation'::regclass, oid FROM pg_collation"
        "  UNION ALL SELECT connamespace, 'pg_conversion'::regclass, oid FROM pg_conversion"
        "  UNION ALL SELECT oprnamespace, 'pg_operator'::regclass, oid FROM pg_operator"
        "  UNION ALL SELECT opcnamespace, 'pg_opclass'::regclass, oid FROM pg_opclass"
        "  UNION ALL SELECT opfnamespace, 'pg_opfamily'::regclass, oid FROM pg_opfamily"
        "  UNION ALL SELECT cfgnamespace, 'pg_ts_config'::regclass, oid FROM pg_ts_config"
        "  UNION ALL SELECT dictnamespace, 'pg_ts_dict'::regclass, oid FROM pg_ts_dict"
        "  UNION ALL SELECT prsnamespace, 'pg_ts_parser'::regclass, oid FROM pg_ts_parser"
        "  UNION ALL SELECT tmplnamespace, 'pg_ts_template'::regclass, oid FROM pg_ts_template"
        "  UNION ALL SELECT stxnamespace, 'pg_statistic_ext'::regclass, oid FROM pg_statistic_ext"
        ") o ON o.ns = n.oid "
        # Every schema but the reset ones, pg_catalog included: what initdb made has OIDs
        # below FirstNormalObjectId, what users made (a function in pg_catalog) above.
        "WHERE NOT (n.nspname = ANY(%s)) AND o.oid >= 16384 AND n.nspname <> 'pg_toast' "
        "AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' "
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
    lost += [f"{count} {what}" for what, count in _rows(connection, _DATABASE_WIDE)]
    ((changed,),) = _rows(connection, _BUILT_IN_PRIVILEGES)
    if changed:
        lost.append(f"changed privileges on {changed} object(s) of pg_catalog")
    context = _rows(
        connection,
        "SELECT 'schema', n.nspname, pg_get_userbyid(n.nspowner), n.nspacl::text "
        "FROM pg_namespace n WHERE NOT (n.nspname = ANY(%s)) "
        "AND n.nspname NOT IN ('information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg\\_%%' "
        "UNION ALL SELECT 'extension', e.extname, e.extversion, n.nspname FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace "
        "UNION ALL SELECT 'default acl', pg_get_userbyid(d.defaclrole), d.defaclobjtype::text, "
        "d.defaclacl::text FROM pg_default_acl d WHERE d.defaclnamespace = 0 "
        # Settings stored for the database and for the role (ALTER DATABASE/ROLE ... SET):
        # what a migration or a seed computes may follow them (default_text_search_config
        # and to_tsvector, say).
        "UNION ALL SELECT 'stored setting', coalesce(pg_get_userbyid(nullif(s.setrole, 0)), ''), "
        "(s.setdatabase <> 0)::text, array_to_string(s.setconfig, ',') "
        "FROM pg_db_role_setting s WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database "
        "  WHERE datname = current_database())) "
        "AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = session_user), "
        "  (SELECT oid FROM pg_roles WHERE rolname = current_user)) "
        "ORDER BY 1, 2, 3",
        [list(schemas)],
    )
    return lost, [list(row) for row in context]


def templates_among(where: Where, names: Sequence[str]) -> list[str]:
    """Those of the databases ``names`` marked ``IS_TEMPLATE``."""
    rows = _rows(
        where,
        "SELECT datname FROM pg_database WHERE datistemplate AND datname = ANY(%s) ORDER BY 1",
        [list(names)],
    )
    return [name for (name,) in rows]


def transaction_id(where: Where) -> str:
    """The id of the session's transaction (given it one if it had none)."""
    return str(_rows(where, "SELECT pg_current_xact_id()::text")[0][0])


def transaction_ended(where: Where, transaction: str) -> str:
    """ "" while ``transaction`` is still the session's, else what became of it
    (``committed``, ``aborted``): code run inside it ended it itself."""
    ((now, status),) = _rows(
        where,
        "SELECT pg_current_xact_id_if_assigned()::text, pg_xact_status(%s::xid8)",
        [transaction],
    )
    return "" if now == transaction else str(status)


def committed(where: Where, transaction: str) -> bool:
    """Whether ``transaction`` has committed; False when it cannot be told."""
    try:
        rows = _rows(where, "SELECT pg_xact_status(%s::xid8)", [transaction])
    except Exception:  # the connection is gone (a seed closed it, say)
        return False
    return bool(rows[0][0] == "committed")


def database_identity(where: Where) -> str:
    """The database a session is on, whatever name or address reached it: the server's
    start (a server's own, to the microsecond) and the database's oid."""
    return str(
        _rows(
            where,
            "SELECT pg_postmaster_start_time()::text || ' ' || d.oid::text FROM pg_database d "
            "WHERE d.datname = current_database()",
        )[0][0]
    )


def server_identity(where: Where) -> str:
    """The server a connection reached, whatever name or address reached it: its start
    (to the microsecond) and its port."""
    return str(
        _rows(where, "SELECT pg_postmaster_start_time()::text || ' ' || current_setting('port')")[
            0
        ][0]
    )


def current_user(where: Where) -> str:
    """The role the session acts as."""
    return str(_rows(where, "SELECT current_user")[0][0])
