"""Every gate of the guard refuses with exit status 3, one sentence, and nothing dropped,
whether or not ``--no-input`` is given; the prompt wants the database name."""

from __future__ import annotations

import json
import os
import socket
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from psycopg import sql

from tests.conftest import (
    connect,
    relations,
    target_host,
    target_port,
    target_user,
    wait_for_replaced_dropped,
)

COMMANDS = ["resetschema", "resetdb"]
INPUT_FLAGS = [[], ["--no-input"]]


@pytest.fixture
def db(scratch_db):
    with scratch_db.connect() as conn:
        conn.execute("CREATE TABLE precious (id int PRIMARY KEY)")
        conn.execute("INSERT INTO precious VALUES (1), (2)")
    return scratch_db


def assert_untouched(db, before):
    assert relations(db) == before
    assert db.query("SELECT count(*) FROM precious") == [(2,)]


@pytest.mark.parametrize("flags", INPUT_FLAGS, ids=["prompt", "no-input"])
@pytest.mark.parametrize("command", COMMANDS)
def test_enabled_false_refuses(db, manage, command, flags):
    before = relations(db)

    result = manage(command, *flags, db=db, resetdb_settings={"ENABLED": False}, input=db.name)

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: {command} refused: DJANGO_RESETDB['ENABLED'] is False for this "
        "project (it defaults to DEBUG); set it to True in a development or CI settings "
        "module to allow resets.\n"
    )
    assert_untouched(db, before)


@pytest.mark.parametrize("command", COMMANDS)
def test_enabled_defaults_to_debug(db, manage, command):
    before = relations(db)

    result = manage(command, "--no-input", db=db, extra_settings="DEBUG = False\n")

    assert result.returncode == 3
    assert "DJANGO_RESETDB['ENABLED'] is False" in result.stderr
    assert_untouched(db, before)


@pytest.mark.parametrize("flags", INPUT_FLAGS, ids=["prompt", "no-input"])
@pytest.mark.parametrize("command", COMMANDS)
def test_host_outside_hosts_refuses(db, manage, command, flags):
    before = relations(db)
    host = target_host()

    result = manage(
        command, *flags, db=db, resetdb_settings={"HOSTS": ["db.example.org"]}, input=db.name
    )

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: {command} refused: host {host!r} of database alias 'default' is not "
        "in DJANGO_RESETDB['HOSTS']; add it there to allow resets on that server.\n"
    )
    assert_untouched(db, before)


def test_hosts_star_allows_any_host(db, command):
    result = command("resetschema", "--no-input", db=db, resetdb_settings={"HOSTS": ["*"]})

    assert result.returncode == 0, result.stderr
    assert relations(db) == []


@pytest.mark.parametrize("flags", INPUT_FLAGS, ids=["prompt", "no-input"])
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("scope", ["database", "role"])
def test_protected_marker_refuses_whatever_the_settings(db, manage, command, flags, scope):
    with db.connect() as conn:
        if scope == "database":
            statement = "ALTER DATABASE {} SET django_resetdb.protected = on"
        else:
            statement = "ALTER ROLE CURRENT_USER IN DATABASE {} SET django_resetdb.protected = on"
        conn.execute(sql.SQL(statement).format(sql.Identifier(db.name)))
    before = relations(db)
    place = "the database" if scope == "database" else f"role {target_user()!r} in the database"

    result = manage(
        command, *flags, db=db,
        resetdb_settings={"ENABLED": True, "HOSTS": ["*"]}, input=db.name,
    )  # fmt: skip

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: {command} refused: database {db.name!r} is protected by the "
        f"PostgreSQL setting django_resetdb.protected = 'on' stored for {place}; only its "
        "removal (ALTER DATABASE/ROLE ... RESET django_resetdb.protected) allows resets.\n"
    )
    assert_untouched(db, before)


def test_protected_marker_off_allows(db, command):
    with db.connect() as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET django_resetdb.protected = off").format(
                sql.Identifier(db.name)
            )
        )

    result = command("resetschema", "--no-input", db=db)

    assert result.returncode == 0, result.stderr
    assert relations(db) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_prompt_answered_wrong_refuses(db, manage, command):
    before = relations(db)

    result = manage(command, db=db, input="production\n")

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: {command} refused: the answer 'production' is not the database name "
        f"{db.name!r}; type the name exactly, or pass --no-input to skip the prompt.\n"
    )
    assert_untouched(db, before)


def test_prompt_without_any_answer_refuses(db, manage):
    before = relations(db)

    result = manage("resetschema", db=db, input="")

    assert result.returncode == 3
    assert result.stderr == (
        "CommandError: resetschema refused: no answer to the confirmation prompt; type the "
        "database name when asked, or pass --no-input to skip the prompt.\n"
    )
    assert_untouched(db, before)


def test_prompt_shows_the_target_and_accepts_the_database_name(db, manage):
    host, port, user = target_host(), target_port(), target_user()
    with db.connect(application_name="psql") as other:
        other_pid = other.info.backend_pid

        result = manage("resetschema", db=db, input=f"{db.name}\n")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:9] == [
        "resetschema will drop everything in these schemas:",
        "  alias     default",
        f"  host      {host}",
        f"  port      {port}",
        f"  database  {db.name}",
        f"  user      {user}",
        "  schemas   public",
        "  tables    1",
        "  sessions  1 other session(s) connected",
    ]
    assert lines[9].startswith(f"            pid {other_pid}, user {user!r}, application 'psql'")
    assert lines[10].startswith(f"Type the database name ({db.name!r}) to continue: Reset ")
    assert relations(db) == []


# --- HOSTS is matched against the address reached, not only the name ---------------------


@dataclass
class Forwarder:
    """A TCP forwarder on ``host``: a "server elsewhere" that is really the tests' server."""

    host: str
    port: int = 0
    connections: int = 0
    _sockets: list[socket.socket] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def serve(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set() and self.connections < 50:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            upstream = _upstream()
            for sock in (client, upstream):
                sock.settimeout(30)
                self._sockets.append(sock)
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=_pump, args=(source, sink), daemon=True)
                thread.start()
                self._threads.append(thread)


def _upstream() -> socket.socket:
    """A connection to the tests' server: over TCP, or over its Unix socket (the
    embedded PostgreSQL listens only there)."""
    host, port = target_host(), int(target_port())
    if host.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
        return sock
    return socket.create_connection((host, port), timeout=10)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def forwarder(host: str) -> Iterator[Forwarder]:
    listener = socket.create_server((host, 0))
    listener.settimeout(0.1)
    forward = Forwarder(host, listener.getsockname()[1])
    stop = threading.Event()
    acceptor = threading.Thread(target=forward.serve, args=(listener, stop), daemon=True)
    acceptor.start()
    try:
        yield forward
    finally:
        stop.set()
        acceptor.join(5)
        listener.close()
        for sock in forward._sockets:
            sock.close()
        for thread in forward._threads:
            thread.join(5)


def database_entry(host: str, port: str, options: dict[str, str] | None = None) -> str:
    # A forwarder that cannot reach the server must make the connection fail, not wait.
    entry = {"HOST": host, "PORT": port, "OPTIONS": {"connect_timeout": "10", **(options or {})}}
    return f'DATABASES["default"] = {{**DATABASES["default"], **{entry!r}}}\n'


@pytest.fixture
def elsewhere() -> Iterator[Forwarder]:
    with forwarder("127.0.0.5") as forward:
        yield forward


@pytest.fixture
def here() -> Iterator[Forwarder]:
    """The tests' server on 127.0.0.1 over TCP, whatever it listens on (the embedded
    PostgreSQL listens on its Unix socket only)."""
    with forwarder("127.0.0.1") as forward:
        yield forward


ADDRESS_REFUSED = (
    "CommandError: {command} refused: address '127.0.0.5' (host 'localhost') of database "
    "alias 'default' is not in DJANGO_RESETDB['HOSTS'], nor an address of a host name listed "
    "there; add it there to allow resets on that server.\n"
)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("how", ["hostaddr", "PGHOSTADDR"])
def test_hostaddr_outside_hosts_refuses_under_a_listed_name(db, manage, elsewhere, command, how):
    options = {"hostaddr": "127.0.0.5"} if how == "hostaddr" else {}
    env = {"PGHOSTADDR": "127.0.0.5"} if how == "PGHOSTADDR" else {}
    before = relations(db)

    result = manage(
        command, "--no-input", db=db, env=env,
        extra_settings=database_entry("localhost", str(elsewhere.port), options),
    )  # fmt: skip

    assert elsewhere.connections >= 1
    assert result.returncode == 3
    assert result.stderr == ADDRESS_REFUSED.format(command=command)
    assert_untouched(db, before)


@pytest.mark.parametrize("command", COMMANDS)
def test_any_of_several_hosts_outside_hosts_refuses(db, manage, here, elsewhere, command):
    # The first host answers, but the next connection may go to the second one.
    before = relations(db)

    result = manage(
        command, "--no-input", db=db,
        extra_settings=database_entry(
            "localhost,127.0.0.5", f"{here.port},{elsewhere.port}"
        ),
    )  # fmt: skip

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: {command} refused: host '127.0.0.5' of database alias 'default' is "
        "not in DJANGO_RESETDB['HOSTS']; add it there to allow resets on that server.\n"
    )
    assert_untouched(db, before)


def service_settings(tmp_path, **params: str) -> tuple[str, dict[str, str]]:
    """Settings naming service ``svc`` only, and the environment that finds its file."""
    lines = "".join(f"{key}={value}\n" for key, value in params.items())
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[svc]\n{lines}")
    entry = {"HOST": "", "PORT": "", "OPTIONS": {"service": "svc", "connect_timeout": "10"}}
    extra = f'DATABASES["default"] = {{**DATABASES["default"], **{entry!r}}}\n'
    return extra, {"PGSERVICEFILE": str(services)}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_service_hostaddr_behind_a_socket_host_refuses(db, manage, elsewhere, tmp_path, command):
    # libpq goes over TCP to the hostaddr, whatever the socket directory named as host.
    extra, env = service_settings(
        tmp_path, host="/no-such-socket-directory", hostaddr="127.0.0.5", port=str(elsewhere.port)
    )
    before = relations(db)

    result = manage(command, "--no-input", db=db, env=env, extra_settings=extra)

    assert elsewhere.connections >= 1
    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: {command} refused: address '127.0.0.5' (host "
        "'/no-such-socket-directory') of database alias 'default' is not in "
        "DJANGO_RESETDB['HOSTS'], nor an address of a host name listed there; add it there "
        "to allow resets on that server.\n"
    )
    assert_untouched(db, before)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_service_file_listing_a_host_outside_hosts_refuses(db, manage, here, elsewhere,
                                                             tmp_path, command):  # fmt: skip
    # The first host answers the gate (load balancing off: deterministic), but a later
    # connection of the run, opened from the same service, could reach the second one.
    extra, env = service_settings(
        tmp_path, host="127.0.0.1,127.0.0.5", port=f"{here.port},{elsewhere.port}",
        dbname=db.name, load_balance_hosts="disable",
    )  # fmt: skip
    before = relations(db)

    result = manage(command, "--no-input", db=db, env=env, extra_settings=extra)

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: {command} refused: host '127.0.0.5' of database alias 'default' is "
        "not in DJANGO_RESETDB['HOSTS']; add it there to allow resets on that server.\n"
    )
    assert elsewhere.connections == 0  # nothing reached the server outside HOSTS
    assert_untouched(db, before)


def test_every_connection_of_a_run_goes_to_the_server_the_gates_checked(
    db, manage, here, elsewhere, tmp_path
):
    # Two "servers" allowed, chosen at random by libpq for each new connection: the run
    # (gate, maintenance, new database, swap, snapshot, background drop) must stay on the
    # one the gated connection reached. Each forwarder counts what reached it.
    extra, env = service_settings(
        tmp_path, host="127.0.0.1,127.0.0.5", port=f"{here.port},{elsewhere.port}",
        dbname=db.name, load_balance_hosts="random",
    )  # fmt: skip
    extra += 'DJANGO_RESETDB["STRATEGY"] = "new-database"\n'

    result = manage(
        "resetdb", "--no-input", "--keep-migrations", db=db, env=env, extra_settings=extra,
        resetdb_settings={"HOSTS": ["127.0.0.1", "127.0.0.5"]},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    wait_for_replaced_dropped(db.name)

    # A dozen connections: at random, both forwarders would see some (all on one by
    # chance: about 1 run in 2,000). Pinned, one saw them all.
    counts = sorted([here.connections, elsewhere.connections])
    assert counts[0] == 0, counts
    assert counts[1] >= 6, counts
    assert ("public", "account_user", "r") in relations(db)


PINNED = """
import json, django
django.setup()
from django.db import connection
from django_resetdb import guard, postgres

target = guard.check("default", "resetdb")
reached = postgres.connection_target(connection)
print(json.dumps({
    "reached": [reached.host, str(reached.port), reached.address],
    "params": {key: str(value) for key, value in connection.get_connection_params().items()},
    "background": postgres.connection_parameters(connection.connection),
    "database": target.database,
}))
"""


def test_the_gate_pins_the_alias_to_the_server_it_reached(db, manage, here, elsewhere, tmp_path):
    extra, env = service_settings(
        tmp_path, host="127.0.0.1,127.0.0.5", port=f"{here.port},{elsewhere.port}",
        dbname=db.name, load_balance_hosts="random",
    )  # fmt: skip
    script = tmp_path / "pinned.py"
    script.write_text(PINNED)

    result = manage.python(
        str(script), db=db, env=env, extra_settings=extra,
        resetdb_settings={"HOSTS": ["127.0.0.1", "127.0.0.5"]},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    host, port, address = got["reached"]
    assert (host, port) in {("127.0.0.1", str(here.port)), ("127.0.0.5", str(elsewhere.port))}
    # Later connections of the alias, and the background process's, go there only.
    params = got["params"]
    assert (params["host"], str(params["port"]), params["hostaddr"]) == (host, port, address)
    assert params["service"] == "svc"  # the service's other options still apply
    background = got["background"]
    assert (background["host"], background["port"]) == (host, port)
    assert got["database"] == db.name


PINNED_SOCKET = """
import json, os, django
django.setup()
import psycopg
from django.db import connection
from django_resetdb import guard, postgres

guard.check("default", "resetdb")
# Set later in the run (by a seed, say): libpq reads PGHOSTADDR for every connection
# that names no address of its own.
os.environ["PGHOSTADDR"] = "127.0.0.5"
connection.close()
with connection.cursor() as cursor:
    cursor.execute("SELECT inet_server_addr()::text")
    alias = cursor.fetchone()[0]
params = postgres.connection_parameters(connection.connection)
with psycopg.connect(**{**params, "connect_timeout": "5"}) as other:
    background = other.execute("SELECT inet_server_addr()::text").fetchone()[0]
print(json.dumps({"alias": alias, "background": background, "hostaddr": params["hostaddr"]}))
"""


def _socket_directory() -> str | None:
    if target_host().startswith("/"):
        return target_host()
    machine = "/var/run/postgresql"
    if os.path.exists(f"{machine}/.s.PGSQL.{target_port()}"):
        return machine
    return None


@pytest.mark.skipif(_socket_directory() is None, reason="the tests' server has no socket here")
def test_a_pin_to_a_socket_holds_when_the_environment_names_an_address_later(db, manage, tmp_path):
    socket_directory = _socket_directory()
    assert socket_directory is not None
    script = tmp_path / "pinned_socket.py"
    script.write_text(PINNED_SOCKET)

    result = manage.python(
        str(script), db=db, extra_settings=database_entry(socket_directory, target_port()),
    )  # fmt: skip

    # Both the alias's later connections and the background process's stay on the
    # socket the gate checked (no address: not TCP), PGHOSTADDR notwithstanding.
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"alias": None, "background": None, "hostaddr": ""}


def test_the_maintenance_connection_keeps_the_service(db, manage, here, tmp_path):
    # Django's own connection without a database drops OPTIONS["service"] (from the alias
    # too): it would then go where PGHOST points, here nowhere.
    extra, env = service_settings(tmp_path, host="127.0.0.1", port=str(here.port))
    env["PGHOST"] = "/no-such-socket-directory"

    listed = manage("resetdb", "--list-snapshots", db=db, env=env, extra_settings=extra)
    reset = manage("resetschema", "--no-input", db=db, env=env, extra_settings=extra)

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.endswith(
        f"0 snapshot(s) of database {db.name!r} (alias 'default'), 0 MB in all.\n"
    )
    assert reset.returncode == 0, reset.stderr
    assert f"on 127.0.0.1:{here.port} as " in reset.stdout
    assert relations(db) == []


def test_hostaddr_of_a_listed_address_allows(db, manage, here):
    result = manage(
        "resetschema", "--no-input", db=db,
        extra_settings=database_entry("localhost", str(here.port), {"hostaddr": "127.0.0.1"}),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert here.connections >= 1
    assert "on localhost (127.0.0.1):" in result.stdout
    assert relations(db) == []


def test_an_address_listed_in_hosts_allows(db, manage, elsewhere):
    result = manage(
        "resetschema", "--no-input", db=db,
        resetdb_settings={"HOSTS": ["localhost", "127.0.0.5"]},
        extra_settings=database_entry(
            "localhost", str(elsewhere.port), {"hostaddr": "127.0.0.5"}
        ),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert elsewhere.connections >= 1
    assert f"on localhost (127.0.0.5):{elsewhere.port}" in result.stdout
    assert relations(db) == []


# --- The marker is what the DBA stored, not what the session says ------------------------

PROTECT = "SET django_resetdb.protected = {}"
STORE = {
    "database": "ALTER DATABASE {database} " + PROTECT,
    "role": "ALTER ROLE {role} " + PROTECT,
    "role in database": "ALTER ROLE {role} IN DATABASE {database} " + PROTECT,
}
OVERRIDES = {
    "options": ({"options": "-c django_resetdb.protected=off"}, {}),
    "PGOPTIONS": ({}, {"PGOPTIONS": "-c django_resetdb.protected=off"}),
}


def store_marker(db, place: str, value: str, role: str) -> None:
    statement = sql.SQL(STORE[place]).format(
        sql.Literal(value), database=sql.Identifier(db.name), role=sql.Identifier(role)
    )
    with db.connect() as conn:
        conn.execute(statement)


def marker_place(place: str, role: str) -> str:
    return {
        "database": "the database",
        "role": f"role {role!r}",
        "role in database": f"role {role!r} in the database",
    }[place]


@pytest.mark.parametrize("override", OVERRIDES)
@pytest.mark.parametrize("place", STORE)
def test_client_cannot_switch_the_stored_marker_off(db, manage, scratch_role, place, override):
    # A role of its own: a marker on the tests' role would protect every other test's
    # database on this server.
    store_marker(db, place, "on", scratch_role)
    options, env = OVERRIDES[override]
    before = relations(db)

    result = manage(
        "resetschema", "--no-input", url=db.url(user=scratch_role), env=env,
        resetdb_settings={"ENABLED": True, "HOSTS": ["*"]},
        extra_settings=f'DATABASES["default"]["OPTIONS"] = {options!r}\n',
    )  # fmt: skip

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: resetschema refused: database {db.name!r} is protected by the "
        "PostgreSQL setting django_resetdb.protected = 'on' stored for "
        f"{marker_place(place, scratch_role)}; only its removal (ALTER DATABASE/ROLE ... "
        "RESET django_resetdb.protected) allows resets.\n"
    )
    assert_untouched(db, before)


BECOME = """
from django.db.backends.signals import connection_created


def _become(sender, connection, **kwargs):
    with connection.cursor() as cursor:
        cursor.execute('SET SESSION AUTHORIZATION "{role}"')


connection_created.connect(_become, weak=False)
"""


def test_a_role_marker_holds_after_set_session_authorization(db, manage, scratch_role, other_role):
    # The marker is on the role that logs in; the session then acts as another role,
    # which changes session_user and current_user but not who logged in.
    with connect("postgres") as admin:
        admin.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(scratch_role)))
    store_marker(db, "role", "on", scratch_role)
    before = relations(db)

    result = manage(
        "resetschema", "--no-input", url=db.url(user=scratch_role),
        resetdb_settings={"ENABLED": True, "HOSTS": ["*"]},
        extra_settings=BECOME.format(role=other_role),
    )  # fmt: skip

    assert result.returncode == 3, result.stderr
    assert (
        "is protected by the PostgreSQL setting django_resetdb.protected = 'on' stored for "
        f"role {scratch_role!r};"
    ) in result.stderr
    assert_untouched(db, before)


@pytest.mark.parametrize("value", ["ON", " true ", "Yes", "1", "t", "tru", "y"])
def test_every_true_spelling_protects(db, command, value):
    store_marker(db, "database", value, "unused")
    before = relations(db)

    result = command("resetschema", "--no-input", db=db)

    assert result.returncode == 3
    assert f"protected = {value!r} stored for the database;" in result.stderr
    assert_untouched(db, before)


@pytest.mark.parametrize("value", ["maybe", "o", ""])
def test_a_value_neither_on_nor_off_protects(db, command, value):
    store_marker(db, "database", value, "unused")
    before = relations(db)

    result = command("resetschema", "--no-input", db=db)

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: resetschema refused: database {db.name!r} has the PostgreSQL setting "
        f"django_resetdb.protected = {value!r} stored for the database, which is neither on "
        "nor off, so it counts as protected; set it to off or remove it (ALTER DATABASE/ROLE "
        "... RESET django_resetdb.protected) to allow resets.\n"
    )
    assert_untouched(db, before)


def test_a_marker_stored_under_a_quoted_name_is_named_as_reset_removes_it(db, command):
    # A quoted name is stored as written: RESET must spell it the same way.
    quoted = sql.Identifier("DJANGO_RESETDB.PROTECTED")
    with db.connect() as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET {} = 'on'").format(sql.Identifier(db.name), quoted)
        )

    result = command("resetschema", "--no-input", db=db)

    assert result.returncode == 3
    assert 'RESET "DJANGO_RESETDB.PROTECTED") allows resets.' in result.stderr
    # What the message says removes it does.
    with db.connect() as conn:
        conn.execute(
            sql.SQL('ALTER DATABASE {} RESET "DJANGO_RESETDB.PROTECTED"').format(
                sql.Identifier(db.name)
            )
        )
    assert command("resetschema", "--no-input", db=db).returncode == 0


@pytest.mark.parametrize("value", ["OFF", "of", " no ", "0", "f"])
def test_every_false_spelling_allows(db, command, value):
    store_marker(db, "database", value, "unused")

    result = command("resetschema", "--no-input", db=db)

    assert result.returncode == 0, result.stderr
    assert relations(db) == []


# --- ENABLED counts only as a real True ---------------------------------------------------

NOT_TRUE = ["false", "true", 1, "yes"]


@pytest.mark.parametrize("debug", [False, True], ids=["DEBUG-False", "DEBUG-True"])
@pytest.mark.parametrize("enabled", NOT_TRUE)
def test_enabled_not_a_bool_refuses_without_the_checks(db, command, enabled, debug):
    before = relations(db)

    result = command(
        "resetschema", "--no-input", "--skip-checks", db=db,
        resetdb_settings={"ENABLED": enabled}, debug=debug,
    )  # fmt: skip

    assert result.returncode == 3
    assert result.stderr == (
        f"CommandError: resetschema refused: DJANGO_RESETDB['ENABLED'] is {enabled!r}, not "
        "the bool True; set it to True in a development or CI settings module to allow "
        "resets.\n"
    )
    assert_untouched(db, before)


def test_debug_not_a_bool_does_not_enable(db, command):
    before = relations(db)

    result = command(
        "resetschema", "--no-input", "--skip-checks", db=db,
        resetdb_settings={}, debug="False",
    )  # fmt: skip

    assert result.returncode == 3
    assert result.stderr == (
        "CommandError: resetschema refused: DJANGO_RESETDB['ENABLED'] defaults to DEBUG, which "
        "is 'False', not True; set ENABLED to True in a development or CI settings module to "
        "allow resets.\n"
    )
    assert_untouched(db, before)


# Each case changes the settings in one process, as override_settings in a user's script
# or test would; call_command and reset() run no system checks.
PYTHON_CASES = [*((enabled, debug) for enabled in NOT_TRUE for debug in (False, True))]
SCRIPT = """
import json, django
django.setup()
from django.core.management import call_command
from django.test.utils import override_settings
import django_resetdb

results = []
for enabled, debug in {cases!r}:
    with override_settings(DJANGO_RESETDB={{"ENABLED": enabled}}, DEBUG=debug):
        try:
            if {channel!r} == "call_command":
                call_command("resetschema", "--no-input", verbosity=0)
            else:
                django_resetdb.reset(keep_migrations=True, seed=False, snapshot=False)
            results.append("reset")
        except Exception as exc:
            results.append([type(exc).__name__, getattr(exc, "returncode", None), str(exc)])
print(json.dumps(results))
"""


@pytest.mark.parametrize("channel", ["call_command", "reset"])
def test_enabled_not_a_bool_refuses_from_python(db, manage, tmp_path, channel):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(cases=PYTHON_CASES, channel=channel)))
    before = relations(db)

    result = manage.python(str(script), db=db, resetdb_settings={})

    assert result.returncode == 0, result.stderr
    command = "resetschema" if channel == "call_command" else "resetdb"
    kind = "CommandError" if channel == "call_command" else "Refused"
    assert json.loads(result.stdout) == [
        [
            kind, 3,
            f"{command} refused: DJANGO_RESETDB['ENABLED'] is {enabled!r}, not the bool True; "
            "set it to True in a development or CI settings module to allow resets.",
        ]
        for enabled, _ in PYTHON_CASES
    ]  # fmt: skip
    assert_untouched(db, before)


MUTATED = """
import django
django.setup()
from django.conf import settings
import django_resetdb
from django_resetdb.conf import get_settings

assert get_settings().enabled  # worked out, and cached, while ENABLED was True
settings.DJANGO_RESETDB["ENABLED"] = "false"  # changed in place: no setting_changed
try:
    django_resetdb.reset(keep_migrations=True, seed=False, snapshot=False)
    print("reset")
except Exception as exc:
    print(type(exc).__name__, getattr(exc, "returncode", None))
"""


def test_enabled_changed_in_place_is_read_at_run_time(db, manage, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(MUTATED)
    before = relations(db)

    result = manage.python(str(script), db=db, resetdb_settings={"ENABLED": True})

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Refused", "3"]
    assert_untouched(db, before)


@pytest.mark.parametrize(
    ("enabled", "debug"), [(True, False), (None, True)], ids=["True", "None-DEBUG-True"]
)
def test_enabled_true_or_debug_allows_from_python(db, manage, tmp_path, enabled, debug):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(cases=[(enabled, debug)], channel="call_command"))

    result = manage.python(str(script), db=db, resetdb_settings={})

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["reset"]
    assert relations(db) == []


def free_port() -> int:
    """A port of this machine where nothing listens: the kernel's pick, let go at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("command", ["resetdb", "resetschema", "seed"])
def test_a_wrong_port_names_the_settings_to_check(db, manage, command):
    before = relations(db)
    port = free_port()
    url = f"postgres://resetdb_someone@127.0.0.1:{port}/{db.name}"

    result = manage(command, *(["--no-input"] if command != "seed" else []), url=url)

    assert result.returncode == 1
    assert result.stderr == (
        f"CommandError: Cannot connect to database alias 'default' (HOST 127.0.0.1, PORT "
        f'{port}, USER resetdb_someone): connection failed: connection to server at "127.0.0.1", '
        f"port {port} failed: Connection refused Is the server running on that host and "
        "accepting TCP/IP connections?; check DATABASES['default'] HOST and PORT, and that "
        "the server is running there.\n"
    )
    assert_untouched(db, before)


@pytest.mark.parametrize("command", ["resetdb", "resetschema"])
def test_an_unknown_role_names_the_settings_to_check(db, manage, command):
    before = relations(db)
    result = manage(command, "--no-input", url=db.url(user="resetdb_nobody"))

    assert result.returncode == 1
    # The port as the settings give it (none for a socket: libpq's default).
    port = settings.DATABASES["default"]["PORT"] or "the default port"
    assert result.stderr.startswith(
        f"CommandError: Cannot connect to database alias 'default' (HOST {target_host()}, "
        f"PORT {port}, USER resetdb_nobody): "
    )
    assert result.stderr.endswith(
        "FATAL: role \"resetdb_nobody\" does not exist; check DATABASES['default'] USER and "
        "PASSWORD.\n"
    )
    assert_untouched(db, before)


@pytest.mark.skipif(
    target_host() not in ("127.0.0.1", "localhost", "/var/run/postgresql")
    or not os.path.exists(f"/var/run/postgresql/.s.PGSQL.{target_port()}"),
    reason="the tests' server is not the one at libpq's default socket",
)
def test_an_empty_host_in_hosts_allows_the_default_socket(db, manage):
    # HOST "" and nothing in the environment: libpq goes to its default socket, which it
    # reports by its directory; "" in HOSTS is documented to stand for it.
    result = manage(
        "resetschema", "--no-input", db=db, resetdb_settings={"HOSTS": [""]},
        extra_settings=database_entry("", target_port()), env={"PGHOST": "", "PGHOSTADDR": ""},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert relations(db) == []


def test_an_empty_host_in_hosts_does_not_allow_a_named_host(db, manage, here):
    before = relations(db)

    result = manage(
        "resetschema", "--no-input", db=db, resetdb_settings={"HOSTS": [""]},
        extra_settings=database_entry("127.0.0.1", str(here.port)),
    )  # fmt: skip

    assert result.returncode == 3
    assert "host '127.0.0.1' of database alias 'default' is not in" in result.stderr
    assert_untouched(db, before)
