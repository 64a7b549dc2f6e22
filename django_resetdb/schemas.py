"""Drop and recreate PostgreSQL schemas, keeping what a bare DROP/CREATE loses."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from django_resetdb import faults, postgres
from django_resetdb.conf import SETTING_NAME, get_settings
from django_resetdb.exceptions import Refused, ResetError, refuse_string
from django_resetdb.identifiers import schema_name_problem
from django_resetdb.output import Log, quiet


@dataclass
class SchemaResetResult:
    alias: str
    database: str
    schemas: tuple[str, ...]
    tables_dropped: int
    extensions_restored: tuple[str, ...]
    terminated: tuple[int, ...] = ()
    seconds: float = 0.0

    def summary(self) -> str:
        restored = (
            f", restored extension(s) {', '.join(self.extensions_restored)}"
            if self.extensions_restored
            else ""
        )
        return (
            f"Reset schema(s) {', '.join(self.schemas)} of database {self.database!r} "
            f"(alias {self.alias!r}): dropped {self.tables_dropped} table(s){restored} "
            f"in {self.seconds:.2f} s."
        )


def validate_schema_names(schemas: Sequence[str]) -> tuple[str, ...]:
    for name in schemas:
        problem = schema_name_problem(name)
        if problem:
            raise ResetError(f"Invalid schema: {problem}.")
    # Keep the order given, without repeats.
    return tuple(dict.fromkeys(schemas))


def _names(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


def reset_schemas(
    alias: str = "default",
    schemas: Sequence[str] | None = None,
    *,
    terminate_blockers: bool = False,
    lock_timeout: float | None = None,
    log: Log = quiet,
) -> SchemaResetResult:
    """Drop and recreate ``schemas`` of database ``alias`` in one transaction.

    Owner, ACL, comment, default privileges and the extensions the drop takes
    with it are put back and verified; on any failure nothing has changed.
    Does not run the guard: callers do that first (see ``django_resetdb.guard``).
    """
    refuse_string(schemas, "the schemas")
    conf = get_settings()
    names = validate_schema_names(conf.schemas if schemas is None else schemas)
    if not names:
        raise ResetError("No schema to reset.")
    timeout = conf.lock_timeout if lock_timeout is None else lock_timeout
    connection = connections[alias]
    started = time.monotonic()
    with transaction.atomic(using=alias):
        take_reset_lock(alias, timeout)
        database = _refuse_missing(connection, names)
        states = postgres.schema_states(connection, names)
        extensions_before = postgres.extensions(connection)
        _check_privileges(connection, states, extensions_before)
        _refuse_dependents(connection, names)
        outside_before = postgres.objects_outside(connection, names)
        tables = postgres.count_tables(connection, names)

        terminated = _drop(connection, alias, names, timeout, terminate_blockers, log)

        faults.reached("schema")
        current_user = postgres.privileges(connection).current_user
        for state in states:
            postgres.execute(connection, postgres.create_schema_sql(state, current_user))
        present = {e.name for e in postgres.extensions(connection)}
        restored = [e for e in extensions_before if e.name not in present]
        for extension in restored:
            log(f"  restoring extension {extension.name} {extension.version}", 2)
            postgres.execute(connection, [postgres.create_extension_sql(extension)])

        _verify(connection, names, states, extensions_before, outside_before)
    return SchemaResetResult(
        alias=alias,
        database=database,
        schemas=names,
        tables_dropped=tables,
        extensions_restored=tuple(e.name for e in restored),
        terminated=tuple(terminated),
        seconds=time.monotonic() - started,
    )


def _refuse_dependents(connection: BaseDatabaseWrapper, names: Sequence[str]) -> None:
    """Refuse, before anything is dropped, when the drop would take objects of other
    schemas (or of none) with it: CASCADE drops them silently."""
    found = postgres.dependents_outside(connection, names)
    if found:
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        raise Refused(
            f"Reset refused: dropping schema {_names(names)} would also drop objects outside "
            f"it that depend on it: {shown}; drop or change those first, or add their "
            f"schemas with --schema (or {SETTING_NAME}['SCHEMAS']) to reset them too. Nothing "
            "was dropped."
        )


def take_reset_lock(alias: str, timeout: float) -> None:
    """Bound the lock waits of the current transaction by ``timeout``, then take the
    database's reset lock until the transaction ends, or fail naming who holds it."""
    connection = connections[alias]
    postgres.set_lock_timeout(connection, timeout)
    try:
        postgres.acquire_reset_lock(connection, alias)
    except postgres.LockBusy as exc:
        holders = "; ".join(s.describe() for s in exc.holders) or "a session that just ended"
        raise ResetError(
            f"Another reset of this database is running ({holders}); "
            f"gave up after {timeout:g} s. Try again when it has finished."
        ) from exc


def _refuse_missing(connection: BaseDatabaseWrapper, names: Sequence[str]) -> str:
    """The database's name, once every schema of ``names`` is known to exist."""
    database = postgres.connection_target(connection).database
    existing = postgres.existing_schemas(connection, names)
    missing = [n for n in names if n not in existing]
    if missing:
        raise ResetError(
            f"Schema {_names(missing)} does not exist in database {database!r}; "
            "nothing was dropped."
        )
    return database


def planned_statements(
    alias: str, schemas: Sequence[str], *, lock_timeout: float | None = None
) -> list[str]:
    """The statements :func:`reset_schemas` would send, as text, without sending them.

    The extensions listed are those living in the schemas; one elsewhere that depends on
    them would be restored too.
    """
    conf = get_settings()
    names = validate_schema_names(schemas)
    connection = connections[alias]
    _refuse_missing(connection, names)
    states = postgres.schema_states(connection, names)
    current_user = postgres.privileges(connection).current_user
    statements = [
        postgres.lock_timeout_sql(conf.lock_timeout if lock_timeout is None else lock_timeout),
        postgres.reset_lock_sql(),
        *(postgres.drop_schema_sql(state.name) for state in states),
    ]
    for state in states:
        statements += postgres.create_schema_sql(state, current_user)
    statements += [
        postgres.create_extension_sql(extension)
        for extension in postgres.extensions(connection)
        if extension.schema in names
    ]
    return [postgres.render(connection, statement) for statement in statements]


def _owner(connection: BaseDatabaseWrapper, owner: str) -> str:
    """``owner`` as a user can act on it: ``pg_database_owner`` is a pseudo-role (the
    owner of ``public`` from PostgreSQL 15 on) that stands for the database's owner."""
    if owner != "pg_database_owner":
        return repr(owner)
    database = str(connection.settings_dict["NAME"])
    real = postgres.database_properties(connection, database).owner
    return f"'pg_database_owner', that is by the owner of database {database!r}, {real!r}"


def _check_privileges(
    connection: BaseDatabaseWrapper,
    states: Sequence[postgres.SchemaState],
    extensions: Sequence[postgres.Extension],
) -> None:
    """Fail before dropping anything when we could not put everything back."""
    names = {s.name for s in states}
    ours = [e for e in extensions if e.schema in names]
    privileges = postgres.privileges(connection)
    if not privileges.superuser:
        for state in states:
            if postgres.roles_not_usable(connection, [state.owner]):
                raise ResetError(
                    f"Role {privileges.current_user!r} cannot drop schema {state.name!r}: it "
                    f"is owned by {_owner(connection, state.owner)}. Connect as that owner "
                    "(or a member of it) or as a superuser; nothing was dropped."
                )
        if not privileges.can_create_schema:
            raise ResetError(
                f"Role {privileges.current_user!r} lacks CREATE on the database and could "
                "not create the schemas again; nothing was dropped."
            )
        roles = [i.grantor for s in states for i in s.acl_items]
        roles += [d.role for s in states for d in s.default_acls]
        lacking = postgres.roles_not_usable(connection, roles)
        if lacking:
            raise ResetError(
                f"Role {privileges.current_user!r} could not restore privileges granted by "
                f"{_names(lacking)}; run as a superuser. Nothing was dropped."
            )
    blocked = postgres.extensions_not_creatable(
        connection, ours, require_trusted=not privileges.superuser
    )
    if blocked:
        listed = ", ".join(f"{e.name} {e.version}" for e in blocked)
        raise ResetError(
            f"Role {privileges.current_user!r} could not create extension(s) {listed} again "
            "(not installed in that version on the server, or not trusted and the role is "
            "not a superuser); nothing was dropped."
        )


def _drop(
    connection: BaseDatabaseWrapper,
    alias: str,
    names: Sequence[str],
    timeout: float,
    terminate_blockers: bool,
    log: Log,
) -> list[int]:
    terminated: list[int] = []
    while True:
        try:
            with transaction.atomic(using=alias):
                for name in names:
                    log(f"  dropping schema {name}", 2)
                    postgres.execute(connection, [postgres.drop_schema_sql(name)])
            return terminated
        except DatabaseError as exc:
            if not postgres.is_lock_timeout(exc):
                raise
            blockers = postgres.blocking_sessions(connection, names)
            if terminate_blockers and blockers and not terminated:
                pids = [s.pid for s in blockers]
                log(f"  terminating blocking sessions: {', '.join(map(str, pids))}", 1)
                postgres.terminate_sessions(connection, pids)
                terminated = pids
                continue
            listed = "; ".join(s.describe() for s in blockers) or "(not found in pg_locks)"
            raise ResetError(
                f"Gave up after {timeout:g} s waiting for locks on schema {_names(names)} held "
                f"by other sessions: {listed}. Nothing was dropped; end those sessions or pass "
                "--terminate-blockers."
            ) from exc


def _verify(
    connection: BaseDatabaseWrapper,
    names: Sequence[str],
    states: Sequence[postgres.SchemaState],
    extensions_before: Sequence[postgres.Extension],
    outside_before: dict[str, int],
) -> None:
    """Compare the catalogs with what was there before; raising rolls everything back."""
    after = postgres.schema_states(connection, names)
    for old, new in zip(states, after, strict=True):
        if old.comparable() != new.comparable():
            raise ResetError(
                f"Schema {old.name!r} could not be recreated identically "
                f"(before: {old.comparable()!r}, after: {new.comparable()!r}); rolled back."
            )
    extensions_after = postgres.extensions(connection)
    if set(extensions_after) != set(extensions_before):
        raise ResetError(
            f"Extensions could not be restored identically (before: {extensions_before!r}, "
            f"after: {extensions_after!r}); rolled back."
        )
    outside_after = postgres.objects_outside(connection, names)
    changed = sorted(n for n in outside_before if outside_before[n] != outside_after.get(n))
    if changed:
        raise Refused(
            f"Reset refused: dropping schema {_names(names)} would also drop objects in "
            f"schema {_names(changed)} that depend on it; add those schemas with --schema "
            f"(or {SETTING_NAME}['SCHEMAS']) to reset them too. Nothing was dropped."
        )
