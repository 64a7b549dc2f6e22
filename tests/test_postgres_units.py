"""The postgres layer's pure pieces, without a database: the statement builders' text,
the parsers of what the catalogs store, the classifiers of SQL text. The error
classifiers read errors PostgreSQL itself raised, over one connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError
from psycopg import sql

from django_resetdb import postgres
from django_resetdb.postgres.catalog import _markers
from django_resetdb.postgres.statements import _grants, _list_items
from tests.conftest import connect

GRANTS = (
    postgres.AclItem("owner", "alice", "USAGE", False),
    postgres.AclItem("owner", None, "USAGE", False),
    postgres.AclItem("bob", "carol", "CREATE", True),
    postgres.AclItem("me", "dave", "USAGE", False),
    postgres.AclItem("bob", "carol", "USAGE", True),
)


def text(statements: sql.Composable | list[sql.Composable]) -> list[str]:
    if isinstance(statements, sql.Composable):
        statements = [statements]
    return [statement.as_string(None) for statement in statements]


def schema(**changes: Any) -> postgres.SchemaState:
    state = {
        "name": "app",
        "owner": "owner",
        "acl": ("owner=UC/owner",),
        "acl_items": GRANTS,
        "comment": "it's ours",
        "default_acls": (
            postgres.DefaultAcl(
                "owner",
                "r",
                (
                    postgres.AclItem("owner", "alice", "SELECT", False),
                    postgres.AclItem("owner", "alice", "INSERT", False),
                ),
            ),
        ),
    }
    return postgres.SchemaState(**{**state, **changes})


def properties(**changes: Any) -> postgres.DatabaseProperties:
    wanted = {
        "owner": "owner",
        "encoding": "UTF8",
        "collate": "en_US.UTF-8",
        "ctype": "en_US.UTF-8",
        "tablespace": "pg_default",
        "connection_limit": 5,
        "locale_provider": "c",
        "icu_locale": None,
        "acl": ("owner=CTc/owner",),
        "acl_items": GRANTS,
        "comment": "hi",
        "settings": (
            (None, ('search_path="$user", public, "my ""odd"" one"', "work_mem=4MB")),
            ("bob", ("statement_timeout=5s",)),
        ),
    }
    return postgres.DatabaseProperties(**{**wanted, **changes})


def test_create_schema_sql_grants_as_each_grantor_then_comments_and_default_privileges():
    assert text(postgres.create_schema_sql(schema(), "me")) == [
        'CREATE SCHEMA "app"',
        'ALTER SCHEMA "app" OWNER TO "owner"',
        'REVOKE ALL ON SCHEMA "app" FROM "owner"',
        'GRANT USAGE ON SCHEMA "app" TO "alice"',
        'GRANT USAGE ON SCHEMA "app" TO PUBLIC',
        'SET LOCAL ROLE "bob"',
        'GRANT CREATE, USAGE ON SCHEMA "app" TO "carol" WITH GRANT OPTION',
        'SET LOCAL ROLE "me"',
        'SET LOCAL ROLE "me"',
        'GRANT USAGE ON SCHEMA "app" TO "dave"',
        'SET LOCAL ROLE "me"',
        "COMMENT ON SCHEMA \"app\" IS 'it''s ours'",
        'ALTER DEFAULT PRIVILEGES FOR ROLE "owner" IN SCHEMA "app" '
        'GRANT INSERT, SELECT ON TABLES TO "alice"',
    ]


def test_create_schema_sql_for_its_owner_with_the_default_acl_and_nothing_else():
    state = schema(acl=None, acl_items=(), comment=None, default_acls=())

    assert text(postgres.create_schema_sql(state, "owner")) == ['CREATE SCHEMA "app"']


def test_database_properties_sql_switches_roles_only_for_other_grantors():
    assert text(postgres.database_properties_sql("db", properties(), "me")) == [
        'ALTER DATABASE "db" CONNECTION LIMIT 5',
        'REVOKE ALL ON DATABASE "db" FROM PUBLIC',
        'REVOKE ALL ON DATABASE "db" FROM "owner"',
        'SET ROLE "owner"',
        'GRANT USAGE ON DATABASE "db" TO "alice"',
        'GRANT USAGE ON DATABASE "db" TO PUBLIC',
        "RESET ROLE",
        'SET ROLE "bob"',
        'GRANT CREATE, USAGE ON DATABASE "db" TO "carol" WITH GRANT OPTION',
        "RESET ROLE",
        'GRANT USAGE ON DATABASE "db" TO "dave"',
        "COMMENT ON DATABASE \"db\" IS 'hi'",
        "ALTER DATABASE \"db\" SET \"search_path\" TO '$user', 'public', 'my \"odd\" one'",
        'ALTER DATABASE "db" SET "work_mem" TO \'4MB\'',
        'ALTER ROLE "bob" IN DATABASE "db" SET "statement_timeout" TO \'5s\'',
    ]


def test_database_properties_sql_leaves_what_a_new_copy_has_already():
    wanted = properties(connection_limit=-1, acl=None, acl_items=(), comment=None, settings=())

    assert text(postgres.database_properties_sql("db", wanted, "me")) == []


def test_grants_group_privileges_by_grantee_and_grant_option():
    on = sql.SQL("TABLES")
    prefix = sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} ").format(sql.Identifier("s"))

    assert text(_grants(on, GRANTS[:3], prefix)) == [
        'ALTER DEFAULT PRIVILEGES IN SCHEMA "s" GRANT USAGE ON TABLES TO "alice"',
        'ALTER DEFAULT PRIVILEGES IN SCHEMA "s" GRANT USAGE ON TABLES TO PUBLIC',
        'ALTER DEFAULT PRIVILEGES IN SCHEMA "s" GRANT CREATE ON TABLES TO "carol" '
        "WITH GRANT OPTION",
    ]


def test_grants_refuse_a_privilege_postgresql_does_not_have():
    odd = [postgres.AclItem("owner", "alice", "USAGE; DROP TABLE x", False)]

    with pytest.raises(ValueError, match="unexpected privilege 'USAGE; DROP TABLE x' in an ACL"):
        _grants(sql.SQL("SCHEMA s"), odd)


def test_database_setting_sql_quotes_list_items_and_plain_values():
    assert text(
        [
            postgres.database_setting_sql("db", None, 'search_path="$user",public'),
            postgres.database_setting_sql("db", "r", "temp_tablespaces="),
            postgres.database_setting_sql("db", None, "DateStyle=ISO, MDY"),
        ]
    ) == [
        "ALTER DATABASE \"db\" SET \"search_path\" TO '$user', 'public'",
        'ALTER ROLE "r" IN DATABASE "db" SET "temp_tablespaces" TO \'\'',
        'ALTER DATABASE "db" SET "DateStyle" TO \'ISO, MDY\'',
    ]


def test_list_items_unquote_and_keep_commas_inside_quotes():
    assert _list_items('"$user", public') == ["$user", "public"]
    assert _list_items('"a, b",c') == ["a, b", "c"]
    assert _list_items('"say ""hi"""') == ['say "hi"']
    assert _list_items("") == [""]


def test_markers_keep_only_the_protected_setting_whatever_its_case():
    rows = [
        (None, None, "django_resetdb.protected=yes"),
        ("db", "r", "DJANGO_RESETDB.Protected=a=b"),
        ("db", None, "work_mem=4MB"),
    ]

    assert _markers(rows) == [
        postgres.StoredSetting(value="yes", database=None, role=None),
        postgres.StoredSetting(
            value="a=b", database="db", role="r", name="DJANGO_RESETDB.Protected"
        ),
    ]
    # RESET must spell a name that is not in lower case as it was stored, quoted.
    assert _markers(rows)[1].reset_name() == '"DJANGO_RESETDB.Protected"'
    assert _markers(rows)[0].reset_name() == "django_resetdb.protected"


def test_database_statements():
    wanted = properties(locale_provider="i", icu_locale="und-x-icu")

    assert text(
        [
            postgres.create_database_sql("copy", "tmpl", "owner"),
            postgres.create_empty_database_sql("new", wanted),
            postgres.create_empty_database_sql("new", properties()),
            postgres.new_database_sql("new", "owner", "template1", "LATIN1"),
            postgres.new_database_sql("new", "owner", "template1", None),
            postgres.rename_database_sql("a", "b"),
            postgres.drop_database_sql("a"),
            postgres.drop_database_sql("a", force=False),
            postgres.comment_on_database_sql("a", "it's"),
            postgres.grant_createdb_sql("r"),
        ]
    ) == [
        'CREATE DATABASE "copy" TEMPLATE "tmpl" OWNER "owner"',
        'CREATE DATABASE "new" TEMPLATE template0 OWNER "owner" ENCODING \'UTF8\' '
        "LC_COLLATE 'en_US.UTF-8' LC_CTYPE 'en_US.UTF-8' "
        "LOCALE_PROVIDER icu ICU_LOCALE 'und-x-icu'",
        'CREATE DATABASE "new" TEMPLATE template0 OWNER "owner" ENCODING \'UTF8\' '
        "LC_COLLATE 'en_US.UTF-8' LC_CTYPE 'en_US.UTF-8'",
        'CREATE DATABASE "new" OWNER "owner" TEMPLATE "template1" ENCODING \'LATIN1\'',
        'CREATE DATABASE "new" OWNER "owner" TEMPLATE "template1"',
        'ALTER DATABASE "a" RENAME TO "b"',
        'DROP DATABASE IF EXISTS "a" WITH (FORCE)',
        'DROP DATABASE IF EXISTS "a"',
        "COMMENT ON DATABASE \"a\" IS 'it''s'",
        'ALTER ROLE "r" CREATEDB',
    ]


def test_marks_and_swap_close_the_databases_to_connections():
    assert text(postgres.snapshot_marks_sql("snap", '{"a": 1}')) == [
        'ALTER DATABASE "snap" WITH ALLOW_CONNECTIONS false',
        'COMMENT ON DATABASE "snap" IS \'{"a": 1}\'',
    ]
    assert text(postgres.swap_sql("target", "new", "old")) == [
        'ALTER DATABASE "target" RENAME TO "old"',
        'ALTER DATABASE "new" RENAME TO "target"',
        'ALTER DATABASE "old" WITH ALLOW_CONNECTIONS false',
        'COMMENT ON DATABASE "old" IS \'django_resetdb: the earlier target, replaced by a '
        "restore or a swap'",
        'ALTER DATABASE "old" WITH IS_TEMPLATE false',
    ]


def test_schema_and_extension_statements():
    extension = postgres.Extension("hstore", "1.8", "public")

    assert text(
        [
            postgres.drop_schema_sql("a b"),
            *postgres.create_schemas_sql(["x", "y"]),
            postgres.create_extension_sql(extension),
            *postgres.prepare_schemas_sql(
                {"public"},
                [schema(name="public", owner="me", acl=None, comment=None, default_acls=())],
                [extension, postgres.Extension("plpgsql", "1.0", "pg_catalog")],
                {"plpgsql"},
                "me",
            ),
        ]
    ) == [
        'DROP SCHEMA "a b" CASCADE',
        'CREATE SCHEMA "x"',
        'CREATE SCHEMA "y"',
        'CREATE EXTENSION IF NOT EXISTS "hstore" WITH SCHEMA "public" VERSION \'1.8\'',
        'DROP SCHEMA "public"',
        'CREATE SCHEMA "public"',
        'CREATE EXTENSION IF NOT EXISTS "hstore" WITH SCHEMA "public" VERSION \'1.8\'',
    ]


def test_lock_statements():
    assert text([postgres.lock_timeout_sql(1.5), postgres.lock_timeout_sql(0, local=False)]) == [
        "SELECT set_config('lock_timeout', '1500ms', true)",
        "SELECT set_config('lock_timeout', '1ms', false)",
    ]
    assert text(postgres.reset_lock_sql()) == [
        f"SELECT pg_advisory_xact_lock({postgres.ADVISORY_LOCK_KEY})"
    ]


def test_deferred_statements_that_wait_for_the_rows():
    assert postgres.runs_after_rows('CREATE INDEX "a_b" ON "a" ("b")')
    assert postgres.runs_after_rows(
        'ALTER TABLE "a" ADD CONSTRAINT "a_b_fk" FOREIGN KEY ("b") REFERENCES "b" ("id")'
    )
    assert not postgres.runs_after_rows('CREATE UNIQUE INDEX "a_b" ON "a" ("b")')
    assert not postgres.runs_after_rows('ALTER TABLE "a" ADD CONSTRAINT "u" UNIQUE ("b")')
    assert postgres.creates_table('    CREATE TABLE "a" ("id" integer)')
    assert not postgres.creates_table('CREATE TABLESPACE "a"')


def test_transaction_statements_are_what_a_client_sends():
    assert (postgres.BEGIN_SQL, postgres.COMMIT_SQL, postgres.ROLLBACK_SQL) == (
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
    )


# The classifiers, on errors the server raised -------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[psycopg.Connection[Any]]:
    with connect("postgres") as connection:
        yield connection


def raised(server: psycopg.Connection[Any], state: str, hint: str = "") -> psycopg.Error:
    """The error PostgreSQL raises with SQLSTATE ``state``, as Django wraps it."""
    statement = sql.SQL(
        "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = {}, MESSAGE = 'raised', HINT = {}; END $$"
    ).format(sql.Literal(state), sql.Literal(hint))
    with pytest.raises(psycopg.Error) as caught:
        server.execute(statement)
    return caught.value


def wrapped(error: Exception, wrapper: type[Exception] = DatabaseError) -> Exception:
    try:
        raise wrapper(str(error)) from error
    except Exception as exc:
        return exc


def test_out_of_locks_is_out_of_shared_memory_hinting_at_the_lock_table(server):
    hint = "You might need to increase max_locks_per_transaction."
    out_of_locks = raised(server, "53200", hint)
    other_shortage = raised(server, "53200")

    assert postgres.is_out_of_locks(out_of_locks)
    assert postgres.is_out_of_locks(wrapped(out_of_locks))
    assert postgres.is_out_of_locks(wrapped(wrapped(out_of_locks), RuntimeError))
    assert not postgres.is_out_of_locks(other_shortage)
    assert not postgres.is_out_of_locks(RuntimeError(hint))


def test_error_classes_directly_or_behind_djangos_wrapper(server):
    lock_timeout = raised(server, "55P03")
    duplicate = raised(server, "42P04")
    in_transaction = raised(server, "25001")

    assert postgres.is_lock_timeout(lock_timeout)
    assert postgres.is_lock_timeout(wrapped(lock_timeout))
    assert postgres.is_duplicate_database(wrapped(duplicate))
    assert postgres.is_active_sql_transaction(wrapped(in_transaction))
    assert not postgres.is_lock_timeout(wrapped(duplicate))
    assert not postgres.is_duplicate_database(wrapped(in_transaction))
    assert not postgres.is_active_sql_transaction(wrapped(lock_timeout))
    assert not postgres.is_lock_timeout(DatabaseError("lock timeout"))


def test_missing_key_of_a_foreign_key_violation(server):
    with server.transaction(force_rollback=True):
        server.execute("CREATE TEMPORARY TABLE parent (id int PRIMARY KEY)")
        server.execute(
            "CREATE TEMPORARY TABLE child (id int, parent_id int REFERENCES parent (id))"
        )
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught, server.transaction():
            server.execute("INSERT INTO child VALUES (1, 42)")

    assert postgres.missing_key(wrapped(caught.value, IntegrityError)) == postgres.MissingKey(
        table="child", column="parent_id", value="42"
    )
    assert postgres.missing_key(wrapped(raised(server, "23503"), IntegrityError)) is None
    assert postgres.missing_key(IntegrityError("no cause")) is None
