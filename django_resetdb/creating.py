"""A database that does not exist yet: ``resetdb`` creates it, then builds it as usual.

It is made as ``createdb`` and Django's test database creation make one: a copy of
``template1`` (or ``DATABASES[alias]["TEST"]["TEMPLATE"]``), in the template's encoding
(or ``TEST["CHARSET"]``), owned by the role the connection acts as. The creation runs on
the maintenance database under the lock that snapshots and swaps of the same database
name take, so that two runs do not both create it: the second finds it made and goes on
as if it had existed.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from django.db import DatabaseError, connections

from django_resetdb import guard, postgres, snapshots
from django_resetdb.conf import get_settings
from django_resetdb.exceptions import ResetError

DEFAULT_TEMPLATE = "template1"


@dataclass(frozen=True)
class NewDatabase:
    alias: str
    name: str
    owner: str
    template: str
    encoding: str  # as asked (TEST["CHARSET"]), else the template's
    asked_encoding: bool  # TEST["CHARSET"] is set: CREATE DATABASE names it

    @property
    def asked(self) -> str | None:
        """The encoding CREATE DATABASE names: only the one the settings ask for."""
        return self.encoding if self.asked_encoding else None

    def planned_line(self) -> str:
        return (
            f"  database    create {self.name!r} (owner {self.owner!r}, encoding "
            f"{self.encoding}, template {self.template})"
        )


def _test_settings(alias: str) -> tuple[str, str | None]:
    """The template and the encoding Django's test database creation would use."""
    test = connections[alias].settings_dict.get("TEST") or {}
    template = test.get("TEMPLATE") or DEFAULT_TEMPLATE
    return str(template), (str(test["CHARSET"]) if test.get("CHARSET") else None)


def plan_creation(target: guard.Target) -> NewDatabase:
    """How ``target``, which does not exist yet, would be created; raise
    :class:`ResetError` when the role may not create it or the template is missing."""
    template, charset = _test_settings(target.alias)
    with snapshots.maintenance_cursor(target.alias) as cursor:
        role = postgres.creator(cursor)
        if not role.can_create:
            createdb = ["createdb", "-O", role.current_user]
            if template != DEFAULT_TEMPLATE:
                createdb += ["-T", template]
            if charset:
                createdb += ["-E", charset]
            command = shlex.join([*createdb, target.database])
            grant = postgres.grant_createdb_sql(role.current_user).as_string(cursor.connection)
            raise ResetError(
                f"Database {target.database!r} does not exist and role {role.current_user!r} "
                f"may not create it (it has no CREATEDB); create it as a superuser with "
                f"'{command}', or let the role create databases with '{grant}', then run "
                f"resetdb again."
            )
        found = postgres.database_encoding(cursor, template)
    if found is None:
        raise ResetError(
            f"Database {target.database!r} does not exist and its template {template!r} "
            f"(DATABASES[{target.alias!r}]['TEST']['TEMPLATE']) does not exist either; "
            "nothing was changed."
        )
    return NewDatabase(
        target.alias, target.database, role.current_user, template, charset or found, bool(charset)
    )


def create(
    new: NewDatabase, schemas: Sequence[str], created: list[NewDatabase]
) -> tuple[str, bool]:
    """Create ``new`` and the ``schemas`` its template lacks; return the line that says
    so, and whether it was made: when another session created it meanwhile, nothing is
    made and the line says so. ``new`` joins ``created`` as soon as it exists, so that a
    failure after that drops it."""
    started = time.monotonic()
    timeout = get_settings().lock_timeout
    with snapshots.maintenance_cursor(new.alias) as cursor:
        try:
            postgres.lock_database_name(cursor, new.name, timeout)
        except DatabaseError as exc:
            if not postgres.is_lock_timeout(exc):
                raise
            raise ResetError(
                f"Another run is working on database {new.name!r} (creating it, or keeping "
                f"or restoring its snapshot); gave up after {timeout:g} s. Try again when it "
                "has finished."
            ) from exc
        made = not postgres.database_exists(cursor, new.name)
        if made:
            statement = postgres.new_database_sql(new.name, new.owner, new.template, new.asked)
            try:
                postgres.execute(cursor, [statement])
                created.append(new)
            except DatabaseError as exc:
                if not postgres.is_duplicate_database(exc):
                    raise ResetError(
                        f"Cannot create database {new.name!r}: {' '.join(str(exc).split())}; "
                        "nothing was changed."
                    ) from exc
                made = False  # made by someone who does not take our lock
        properties = postgres.database_properties(cursor, new.name)
    connection = connections[new.alias]
    connection.close()  # its last attempt found no database
    if not made:
        return (
            f"  database    {new.name!r} was created by another session meanwhile; "
            "building it as it is"
        ), False
    present = postgres.existing_schemas(connection, schemas)
    missing = [name for name in schemas if name not in present]
    postgres.execute(connection, postgres.create_schemas_sql(missing))
    seconds = time.monotonic() - started
    also = f", with schema(s) {', '.join(missing)}" if missing else ""
    return (
        f"  database    created {new.name!r} (owner {properties.owner!r}, encoding "
        f"{properties.encoding}, template {new.template}){also} in {seconds:.2f} s"
    ), True


def drop(created: Sequence[NewDatabase]) -> str:
    """Drop the databases this run created, after a failure: what is said of them.

    Not by force: a session of someone else's that connected meanwhile may have written
    there, and its database is left as it is (the message says it could not be dropped)."""
    dropped, failed = [], []
    for new in created:
        connections[new.alias].close()
        try:
            with snapshots.maintenance_cursor(new.alias) as cursor:
                postgres.execute(cursor, [postgres.drop_database_sql(new.name, force=False)])
            dropped.append(repr(new.name))
        except Exception as exc:
            failed.append(f"{new.name!r} ({' '.join(str(exc).split())})")
    said = []
    if dropped:
        said.append(f"database {', '.join(dropped)}, created for this reset, was dropped again")
    if failed:
        said.append(f"database {', '.join(failed)}, created for this reset, could not be dropped")
    return "; ".join(said)


def planned_statements(new: NewDatabase) -> tuple[list[str], list[str]]:
    """For ``--dry-run``: the statement that creates ``new``, and those that open its
    reset's transaction, as text."""
    with snapshots.maintenance_cursor(new.alias) as cursor:
        render = cursor.connection
        statement = postgres.new_database_sql(new.name, new.owner, new.template, new.asked)
        lock = [postgres.lock_timeout_sql(get_settings().lock_timeout), postgres.reset_lock_sql()]
        return [statement.as_string(render)], [s.as_string(render) for s in lock]


@contextlib.contextmanager
def rendering_on_maintenance(alias: str) -> Iterator[None]:
    """Point ``alias``'s connection at the maintenance database while a dry run renders
    the migrations' SQL for a database that does not exist yet: it is read, never
    written, and holds none of the project's tables."""
    with snapshots.maintenance_cursor(alias) as cursor:
        maintenance = postgres.creator(cursor).maintenance_database
    with snapshots.connected_to(alias, maintenance):
        yield
