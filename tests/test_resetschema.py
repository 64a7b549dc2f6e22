"""``resetschema`` end to end: real server, a scratch database per test, checked through
the catalogs over a separate connection."""

from __future__ import annotations

import signal
import time

import pytest
from psycopg import sql

from django_resetdb import postgres
from tests.conftest import (
    PATIENCE,
    ScratchDatabase,
    available_extensions,
    last_line,
    relations,
    schema_snapshot,
)

EXTENSIONS = available_extensions()


def populate(db: ScratchDatabase, role: str, extensions: list[str]) -> None:
    """A public schema with what a bare DROP/CREATE would lose, and some tables."""
    with db.connect() as conn:
        for name in extensions:
            conn.execute(sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        conn.execute("COMMENT ON SCHEMA public IS 'the site''s data'")
        conn.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}"
            ).format(sql.Identifier(role))
        )
        conn.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO {} "
                "WITH GRANT OPTION"
            ).format(sql.Identifier(role))
        )
        conn.execute("CREATE TABLE artifact (id serial PRIMARY KEY, name text)")
        conn.execute("CREATE TABLE visit (id int REFERENCES artifact, at timestamptz)")
        conn.execute("INSERT INTO artifact (name) VALUES ('jug'), ('quilt')")


def test_round_trip_keeps_owner_acl_comment_default_privileges_and_extensions(
    scratch_db, scratch_role, command
):
    wanted = sorted({"hstore", "citext", "vector"} & EXTENSIONS)
    assert wanted, "the server offers none of hstore, citext, vector"
    populate(scratch_db, scratch_role, wanted)
    before = schema_snapshot(scratch_db)
    assert before["schema"][0][1] == "pg_database_owner"
    assert {name for name, _, _ in before["extensions"]} >= set(wanted)

    result = command("resetschema", "--no-input", db=scratch_db)

    assert result.returncode == 0, result.stderr
    assert schema_snapshot(scratch_db) == before
    assert relations(scratch_db) == [], "tables survived the reset"
    assert last_line(result.stdout).startswith(
        f"Reset schema(s) public of database {scratch_db.name!r} (alias 'default'): "
        f"dropped 2 table(s), restored extension(s) {', '.join(wanted)} in "
    )


@pytest.mark.skipif(
    not {"hstore", "citext"} <= EXTENSIONS, reason="hstore and citext are not on this server"
)
def test_round_trip_with_hstore_and_citext(scratch_db, scratch_role, command):
    populate(scratch_db, scratch_role, ["hstore", "citext"])
    before = schema_snapshot(scratch_db)

    result = command("resetschema", "--no-input", db=scratch_db)

    assert result.returncode == 0, result.stderr
    after = schema_snapshot(scratch_db)
    assert after == before
    assert ("citext", "public") in [(name, schema) for name, _, schema in after["extensions"]]
    assert ("hstore", "public") in [(name, schema) for name, _, schema in after["extensions"]]
    assert relations(scratch_db) == []


def test_other_schema_with_own_owner_acl_and_several_grantors(
    scratch_db, scratch_role, other_role, command
):
    owner, grantor = sql.Identifier(scratch_role), sql.Identifier(other_role)
    with scratch_db.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA reporting AUTHORIZATION {}").format(owner))
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA reporting FROM {}").format(owner))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA reporting TO {}").format(owner))
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA reporting TO {} WITH GRANT OPTION").format(grantor)
        )
        conn.execute(sql.SQL("SET ROLE {}").format(grantor))
        conn.execute("GRANT USAGE ON SCHEMA reporting TO PUBLIC")
        conn.execute("RESET ROLE")
        conn.execute("CREATE TABLE reporting.totals (n int)")
        conn.execute("CREATE TABLE public.kept (n int)")
    before = schema_snapshot(scratch_db, "reporting")
    assert before["schema"][0][2] == [
        f"{scratch_role}=U/{scratch_role}",
        f"{other_role}=U*/{scratch_role}",
        f"=U/{other_role}",
    ]
    public_before = schema_snapshot(scratch_db, "public")

    result = command("resetschema", "--schema", "reporting", "--no-input", db=scratch_db)

    assert result.returncode == 0, result.stderr
    assert schema_snapshot(scratch_db, "reporting") == before
    assert schema_snapshot(scratch_db, "public") == public_before
    assert relations(scratch_db) == [("public", "kept", "r")]


def test_a_blocking_session_makes_it_fail_fast_naming_the_session(scratch_db, manage):
    populate(scratch_db, "postgres", [])
    before = relations(scratch_db)
    with scratch_db.connect(application_name="slow report") as blocker:
        blocker.autocommit = False
        blocker.execute("SELECT count(*) FROM artifact").fetchone()
        pid = blocker.info.backend_pid

        # Default settings (LOCK_TIMEOUT 5 s): the message says it gave up after 5 s; a
        # reset that hung would run into the subprocess's outer bound.
        result = manage("resetschema", "--no-input", db=scratch_db)

        assert result.returncode == 1
        message = last_line(result.stderr)
        assert message.startswith("CommandError: Gave up after 5 s waiting for locks on schema")
        assert f"pid {pid}, user 'postgres', application 'slow report', " in message
        assert "state 'idle in transaction', query 'SELECT count(*) FROM artifact'" in message
        assert "Nothing was dropped" in message
        blocker.rollback()
    assert relations(scratch_db) == before


def test_ctrl_c_while_waiting_rolls_back(scratch_db, manage):
    populate(scratch_db, "postgres", [])
    before = relations(scratch_db)
    with scratch_db.connect() as blocker:
        blocker.autocommit = False
        blocker.execute("SELECT count(*) FROM artifact").fetchone()
        process = manage.start(
            "resetschema", "--no-input", db=scratch_db, resetdb_settings={"LOCK_TIMEOUT": 30}
        )
        try:
            waiting = (
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            deadline = time.monotonic() + PATIENCE
            while scratch_db.query(waiting) == [(0,)] and time.monotonic() < deadline:
                time.sleep(0.05)  # polling for the reset to wait on the lock, not a fixed delay
            assert scratch_db.query(waiting) == [(1,)], "the reset never waited for the lock"

            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=PATIENCE)
        finally:
            process.kill()
            blocker.rollback()

    assert process.returncode == 130
    assert last_line(stderr) == (
        "CommandError: Interrupted; the transaction was rolled back, nothing was changed."
    )
    assert relations(scratch_db) == before
    assert scratch_db.query("SELECT count(*) FROM artifact") == [(2,)]


def test_terminate_blockers_ends_the_blocking_session_and_resets(scratch_db, manage):
    populate(scratch_db, "postgres", [])
    blocker = scratch_db.connect()
    blocker.autocommit = False
    blocker.execute("SELECT count(*) FROM artifact").fetchone()
    pid = blocker.info.backend_pid

    result = manage(
        "resetschema", "--no-input", "--terminate-blockers", db=scratch_db,
        resetdb_settings={"LOCK_TIMEOUT": 1},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert f"terminating blocking sessions: {pid}" in result.stdout
    assert relations(scratch_db) == []
    alive = scratch_db.query("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
    assert alive == [(0,)]
    blocker.close()


def test_another_reset_in_progress_is_named(scratch_db, manage):
    populate(scratch_db, "postgres", [])
    before = relations(scratch_db)
    with scratch_db.connect(application_name="other reset") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [postgres.ADVISORY_LOCK_KEY])

        result = manage(
            "resetschema", "--no-input", db=scratch_db,
            resetdb_settings={"LOCK_TIMEOUT": 1},
        )  # fmt: skip

        assert result.returncode == 1
        message = last_line(result.stderr)
        assert message.startswith("CommandError: Another reset of this database is running (pid")
        assert f"pid {holder.info.backend_pid}, user 'postgres', application 'other reset'" in (
            message
        )
    assert relations(scratch_db) == before


def test_a_role_that_does_not_own_the_schema_gets_a_clear_error(scratch_db, scratch_role, command):
    populate(scratch_db, scratch_role, [])
    with scratch_db.connect() as conn:
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(scratch_db.name), sql.Identifier(scratch_role)
        ))  # fmt: skip
    before = relations(scratch_db)
    snapshot = schema_snapshot(scratch_db)

    [(owner,)] = scratch_db.query(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
    )

    result = command("resetschema", "--no-input", url=scratch_db.url(user=scratch_role))

    assert result.returncode == 1
    assert last_line(result.stderr) == (
        f"CommandError: Role {scratch_role!r} cannot drop schema 'public': it is owned by "
        f"'pg_database_owner', that is by the owner of database {scratch_db.name!r}, "
        f"{owner!r}. Connect as that owner (or a member of it) or as a superuser; nothing "
        "was dropped."
    )
    assert relations(scratch_db) == before
    assert schema_snapshot(scratch_db) == snapshot


def test_an_owner_that_is_not_superuser_can_reset_its_schema(scratch_db, scratch_role, command):
    with scratch_db.connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(scratch_db.name), sql.Identifier(scratch_role)
        ))  # fmt: skip
    with scratch_db.connect(user=scratch_role) as conn:
        conn.execute("CREATE TABLE mine (n int)")
    before = schema_snapshot(scratch_db)

    result = command("resetschema", "--no-input", url=scratch_db.url(user=scratch_role))

    assert result.returncode == 0, result.stderr
    assert schema_snapshot(scratch_db) == before
    assert relations(scratch_db) == []


@pytest.mark.parametrize(
    "name",
    [
        'public"; DROP SCHEMA keep CASCADE; --',
        "public; DROP SCHEMA keep CASCADE",
        "Public",
    ],
)
def test_injection_shaped_names_are_quoted_not_run(scratch_db, command, name):
    with scratch_db.connect() as conn:
        conn.execute("CREATE SCHEMA keep")
        conn.execute("CREATE TABLE keep.precious (n int)")
        conn.execute("CREATE TABLE public.t (n int)")
    before = relations(scratch_db)

    result = command("resetschema", "--schema", name, "--no-input", db=scratch_db)

    assert result.returncode == 1
    assert last_line(result.stderr) == (
        f"CommandError: Schema {name!r} does not exist in database {scratch_db.name!r}; "
        "nothing was dropped."
    )
    assert relations(scratch_db) == before


def test_a_schema_with_a_strange_name_is_reset_exactly(scratch_db, command):
    name = 'we"ird; DROP SCHEMA keep CASCADE; --'
    with scratch_db.connect() as conn:
        conn.execute("CREATE SCHEMA keep")
        conn.execute("CREATE TABLE keep.precious (n int)")
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE TABLE {}.t (n int)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS 'it''s odd'").format(sql.Identifier(name)))
    before = schema_snapshot(scratch_db, name)

    result = command("resetschema", "--schema", name, "--no-input", db=scratch_db)

    assert result.returncode == 0, result.stderr
    assert schema_snapshot(scratch_db, name) == before
    assert relations(scratch_db) == [("keep", "precious", "r")]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a" * 64, "CommandError: Invalid schema: schema name 'aaaaaaaaaaaaaaaaaaaa...' is 64 "
                   "bytes long; PostgreSQL names are at most 63 bytes."),
        ("é" * 32, "CommandError: Invalid schema: schema name 'éééééééééééééééééééé...' is 64 "
                   "bytes long; PostgreSQL names are at most 63 bytes."),
        ("pg_catalog", "CommandError: Invalid schema: schema 'pg_catalog' is a PostgreSQL "
                       "system schema."),
        ("information_schema", "CommandError: Invalid schema: schema 'information_schema' is "
                               "a PostgreSQL system schema."),
        ("", "CommandError: Invalid schema: schema names must not be empty."),
    ],
)  # fmt: skip
def test_invalid_names_are_rejected_before_connecting(scratch_db, command, name, message):
    with scratch_db.connect() as conn:
        conn.execute("CREATE TABLE t (n int)")
    before = relations(scratch_db)

    result = command("resetschema", "--schema", name, "--no-input", db=scratch_db)

    assert result.returncode == 1
    assert last_line(result.stderr) == message
    assert relations(scratch_db) == before


def add_view_in_other_schema(db: ScratchDatabase) -> None:
    """A view in ``reporting`` over a table of ``public``: dropping public would take it."""
    with db.connect() as conn:
        conn.execute("CREATE TABLE public.artifact (id int PRIMARY KEY)")
        conn.execute("CREATE SCHEMA reporting")
        conn.execute("CREATE VIEW reporting.artifacts AS SELECT id FROM public.artifact")


def test_objects_of_other_schemas_that_depend_on_the_schema_are_not_dropped(scratch_db, command):
    add_view_in_other_schema(scratch_db)
    before = relations(scratch_db)

    result = command("resetschema", "--no-input", db=scratch_db)

    assert result.returncode == 3
    assert last_line(result.stderr) == (
        "CommandError: Reset refused: dropping schema 'public' would also drop objects "
        "outside it that depend on it: rule _RETURN on view reporting.artifacts; drop or "
        "change those first, or add their schemas with --schema (or "
        "DJANGO_RESETDB['SCHEMAS']) to reset them too. Nothing was dropped."
    )
    assert relations(scratch_db) == before


def test_several_schemas_in_one_transaction(scratch_db, command):
    add_view_in_other_schema(scratch_db)

    result = command(
        "resetschema", "--schema", "public", "--schema", "reporting", "--no-input", db=scratch_db
    )

    assert result.returncode == 0, result.stderr
    assert relations(scratch_db) == []
    assert scratch_db.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'reporting'") == [
        (1,)
    ]


def test_missing_schema_is_an_error(scratch_db, command):
    result = command("resetschema", "--schema", "nope", "--no-input", db=scratch_db)

    assert result.returncode == 1
    assert last_line(result.stderr) == (
        f"CommandError: Schema 'nope' does not exist in database {scratch_db.name!r}; "
        "nothing was dropped."
    )
    assert scratch_db.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'nope'") == [(0,)]


def test_schemas_setting_is_the_default(scratch_db, command):
    with scratch_db.connect() as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE TABLE app.t (n int)")
        conn.execute("CREATE TABLE public.kept (n int)")

    result = command(
        "resetschema", "--no-input", db=scratch_db, resetdb_settings={"SCHEMAS": ["app"]}
    )

    assert result.returncode == 0, result.stderr
    assert relations(scratch_db) == [("public", "kept", "r")]


def test_verbosity_zero_prints_nothing(scratch_db, command):
    result = command("resetschema", "--no-input", "-v", "0", db=scratch_db)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_a_schema_that_comes_back_different_is_rolled_back(scratch_db, scratch_role, command):
    # An event trigger that grants more on every new schema: the restored ACL then
    # differs from the original, and the reset must roll back.
    with scratch_db.connect() as conn:
        conn.execute("CREATE SCHEMA ops")
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION ops.grant_more() RETURNS event_trigger LANGUAGE plpgsql AS "
                "$$ BEGIN GRANT USAGE ON SCHEMA public TO {}; END $$"
            ).format(sql.Identifier(scratch_role))
        )
        conn.execute(
            "CREATE EVENT TRIGGER grant_more ON ddl_command_end "
            "WHEN TAG IN ('CREATE SCHEMA') EXECUTE FUNCTION ops.grant_more()"
        )
        conn.execute("CREATE TABLE public.precious (n int)")
        conn.execute("INSERT INTO public.precious VALUES (1)")
    before = relations(scratch_db)
    snapshot = schema_snapshot(scratch_db)

    result = command("resetschema", "--no-input", db=scratch_db)

    assert result.returncode == 1
    message = last_line(result.stderr)
    assert message.startswith(
        "CommandError: Schema 'public' could not be recreated identically (before: "
    )
    assert message.endswith("; rolled back.")
    assert relations(scratch_db) == before
    assert schema_snapshot(scratch_db) == snapshot
    assert scratch_db.query("SELECT n FROM public.precious") == [(1,)]
    with scratch_db.connect() as conn:
        conn.execute("DROP EVENT TRIGGER grant_more")


# Objects of another schema, or of none, that DROP SCHEMA public CASCADE would drop or
# change, and how each is described in the refusal. Each is made after a table and a
# function in public it can use.
DEPENDENT_KINDS = {
    "column default": (
        "CREATE TABLE reporting.a (id int DEFAULT public.answer())",
        "default value for column id of table reporting.a",
    ),
    "trigger": (
        "CREATE TABLE reporting.a (id int); CREATE TRIGGER stamp BEFORE INSERT ON reporting.a "
        "FOR EACH ROW EXECUTE FUNCTION public.stamp()",
        "trigger stamp on table reporting.a",
    ),
    "row-level security policy": (
        "CREATE TABLE reporting.a (id int); ALTER TABLE reporting.a ENABLE ROW LEVEL "
        "SECURITY; CREATE POLICY mine ON reporting.a USING (public.allowed())",
        "policy mine on table reporting.a",
    ),
    "foreign key": (
        "CREATE TABLE reporting.a (artifact_id int REFERENCES public.artifact (id))",
        "constraint a_artifact_id_fkey on table reporting.a",
    ),
    "event trigger": (
        "CREATE EVENT TRIGGER resetdb_test_ddl ON ddl_command_start "
        "EXECUTE FUNCTION public.on_ddl()",
        "event trigger resetdb_test_ddl",
    ),
    "publication": (
        "CREATE PUBLICATION resetdb_test_pub FOR TABLE public.artifact",
        "publication of table artifact in publication resetdb_test_pub",
    ),
}

PUBLIC_OBJECTS = """
CREATE TABLE public.artifact (id int PRIMARY KEY);
CREATE FUNCTION public.answer() RETURNS int LANGUAGE sql AS 'SELECT 42';
CREATE FUNCTION public.allowed() RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE FUNCTION public.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END';
CREATE SCHEMA reporting;
"""

# A second channel: every object of every kind that could have gone, by name.
SURVIVORS = """
SELECT (SELECT count(*) FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
        WHERE c.relname = 'a'),
       (SELECT count(*) FROM pg_trigger WHERE tgname = 'stamp'),
       (SELECT count(*) FROM pg_policy WHERE polname = 'mine'),
       (SELECT count(*) FROM pg_constraint WHERE conname = 'a_artifact_id_fkey'),
       (SELECT count(*) FROM pg_event_trigger WHERE evtname = 'resetdb_test_ddl'),
       (SELECT count(*) FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
        WHERE p.pubname = 'resetdb_test_pub'),
       (SELECT count(*) FROM pg_proc WHERE proname IN ('answer', 'allowed', 'stamp', 'on_ddl'))
"""


@pytest.mark.parametrize("kind", DEPENDENT_KINDS)
def test_each_kind_of_object_outside_that_depends_on_the_schema_refuses(scratch_db, manage, kind):
    made, described = DEPENDENT_KINDS[kind]
    with scratch_db.connect() as conn:
        conn.execute(PUBLIC_OBJECTS)
        conn.execute(made)
    before = relations(scratch_db), scratch_db.query(SURVIVORS)

    result = manage("resetschema", "--no-input", db=scratch_db)

    assert result.returncode == 3, result.stdout + result.stderr
    assert last_line(result.stderr) == (
        "CommandError: Reset refused: dropping schema 'public' would also drop objects "
        f"outside it that depend on it: {described}; drop or change those first, or add "
        "their schemas with --schema (or DJANGO_RESETDB['SCHEMAS']) to reset them too. "
        "Nothing was dropped."
    )
    assert (relations(scratch_db), scratch_db.query(SURVIVORS)) == before


def test_objects_inside_the_schema_and_extension_members_do_not_refuse(scratch_db, manage):
    # Its own foreign keys, triggers and policies, and the casts and operator families of
    # an extension, go with the schema or come back with the extension.
    with scratch_db.connect() as conn:
        conn.execute(PUBLIC_OBJECTS)
        conn.execute(
            "CREATE EXTENSION IF NOT EXISTS citext SCHEMA public; "
            "CREATE TABLE public.b (artifact_id int REFERENCES public.artifact (id), "
            "n int DEFAULT public.answer(), name public.citext); "
            "CREATE TRIGGER stamp BEFORE INSERT ON public.b FOR EACH ROW "
            "EXECUTE FUNCTION public.stamp()"
        )

    result = manage("resetschema", "--no-input", db=scratch_db)

    assert result.returncode == 0, result.stderr
    assert scratch_db.query("SELECT extname FROM pg_extension WHERE extname = 'citext'") == [
        ("citext",)
    ]
    assert scratch_db.query("SELECT count(*) FROM pg_class WHERE relname = 'artifact'") == [(0,)]
