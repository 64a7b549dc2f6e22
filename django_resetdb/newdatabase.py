"""Building in a new database and swapping it in for the target."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections

from django_resetdb import (
    faults,
    guard,
    postgres,
)
from django_resetdb.conf import SETTING_NAME, get_settings
from django_resetdb.exceptions import ResetError
from django_resetdb.output import one_line
from django_resetdb.snapshots.store import (
    NotRestorable,
    Snapshot,
    _role_problem,
    refuse_changed,
)
from django_resetdb.snapshots.swap import _planned_swap, swap_in

# Lock-table entries one model's table, indexes and constraints take when created.
LOCKS_PER_MODEL = 6
# And one migration operation, on top: in one transaction every object a history creates,
# alters or drops on the way (an index made, then dropped two migrations later; a
# table rewritten) keeps its lock until the commit. Checked against what a long
# generated history really holds (tests/test_long_history.py).
LOCKS_PER_OPERATION = 3


def locks_needed(target: guard.Target, *, models: int, operations: int) -> tuple[int, int]:
    """About how many lock-table entries a reset of ``target`` in place takes: dropping
    what its schemas hold, creating ``models`` tables, running ``operations`` migration
    operations; and how many the server's lock table holds."""
    objects, capacity = postgres.lock_estimate(connections[target.alias], target.schemas)
    return objects + LOCKS_PER_MODEL * models + LOCKS_PER_OPERATION * operations, capacity


@dataclass
class SwapPlan:
    alias: str
    target: str
    reason: str  # why the reset builds in a new database
    states: list[postgres.SchemaState]
    extensions: list[postgres.Extension]
    context: list[Any]  # the database around the schemas, as the new one must have it


def plan_swap(
    target: guard.Target,
    *,
    models: int,
    operations: int = 0,
    cache: str = "",
    locks: tuple[int, int] | None = None,
) -> tuple[SwapPlan | None, str]:
    """A build in a new database when an in-place reset of ``target`` would need more
    locks than the server has, or when ``cache`` says why the build cache wants one (a
    migrated state is copied from, or kept of, a database no transaction holds); else
    None, with a warning when the locks call for one but it cannot be made. ``locks``:
    :func:`locks_needed`'s answer, when the caller has it already."""
    strategy = get_settings().strategy
    if strategy == "in-place":
        return None, ""
    connection = connections[target.alias]
    needed, capacity = locks or locks_needed(target, models=models, operations=operations)
    if strategy == "new-database":
        reason = f"{SETTING_NAME}['STRATEGY'] is 'new-database'"
    elif needed <= capacity:
        if not cache:
            return None, ""
        reason = cache
    else:
        reason = (
            f"a reset in place takes about {needed} locks, more than the {capacity} the "
            "server's lock table holds (max_locks_per_transaction x max_connections)"
        )
    lost, context = postgres.whole_database_context(connection, target.schemas)
    extensions = postgres.extensions(connection)
    problem = _role_problem(target)
    if not problem and lost:
        problem = f"the database holds {', '.join(lost)} outside {SETTING_NAME}['SCHEMAS']"
    if not problem:
        kinds = {row[0] for row in context}
        homes = (*target.schemas, "pg_catalog")
        outside = [e.name for e in extensions if e.schema not in homes]
        if "schema" in kinds:
            names = ", ".join(repr(row[1]) for row in context if row[0] == "schema")
            problem = f"it has other schemas than {SETTING_NAME}['SCHEMAS'] ({names})"
        elif "default acl" in kinds:
            problem = "it has database-wide default privileges"
        elif outside:
            problem = f"extension(s) {', '.join(outside)} live outside the reset schemas"
    if problem and strategy == "new-database":
        raise ResetError(
            f"Cannot build in a new database as {SETTING_NAME}['STRATEGY'] asks: {problem}; "
            "nothing was changed."
        )
    if problem and reason == cache:
        return None, ""  # the build cache is not used; in place, as without it
    if problem:
        return None, f"{reason}; building in a new database would avoid that, but {problem}"
    states = postgres.schema_states(connection, target.schemas)
    return SwapPlan(target.alias, target.database, reason, states, extensions, context), ""


def build_fresh(
    plan: SwapPlan,
    *,
    build: Callable[[], None],
    terminate_blockers: bool,
    log: Callable[[str, int], None],
    ready: Callable[[], None] = lambda: None,
    committing: Callable[[], None] = lambda: None,
    committed: Callable[[], None] = lambda: None,
    recheck: Callable[[Any], None] = lambda cursor: None,
    template: Snapshot | None = None,
    schemas: Sequence[str] = (),
) -> float:
    """Make an empty database like the target (owner, encoding, locale, schemas,
    extensions), run ``build`` connected to it, and swap it in; return the seconds.
    ``ready`` is as for :func:`swap_in`. With ``template`` (a migrated state of the
    target's), the new database is a copy of it instead, as it was made."""

    def possible(wanted: postgres.DatabaseProperties) -> None:
        if wanted.locale_provider not in ("c", "i"):
            raise NotRestorable(
                f"database {plan.target!r} uses the locale provider "
                f"{wanted.locale_provider!r}, which a new database cannot be given here"
            )

    def empty(cursor: Any, name: str, wanted: postgres.DatabaseProperties) -> None:
        if template is not None:
            refuse_changed(cursor, template)  # under the name lock, just before the copy
            try:
                copy = postgres.create_database_sql(name, template.name, wanted.owner)
                postgres.execute(cursor, [copy])
            except Exception as exc:  # dropped meanwhile (another run's sweep, say)
                raise NotRestorable(
                    f"the migrated state {template.name} could not be copied: {one_line(exc)}"
                ) from exc
        else:
            postgres.execute(cursor, [postgres.create_empty_database_sql(name, wanted)])

    def inside() -> None:
        if template is not None:
            # Made like the target when it was kept, under the same key.
            build()
            return
        connection = connections[plan.alias]
        names = [state.name for state in plan.states]
        present = postgres.existing_schemas(connection, names)
        present_extensions = {e.name for e in postgres.extensions(connection)}
        current_user = postgres.privileges(connection).current_user
        faults.reached("schema")
        postgres.execute(
            connection,
            postgres.prepare_schemas_sql(
                present, plan.states, plan.extensions, present_extensions, current_user
            ),
        )
        _, context = postgres.whole_database_context(connection, names)
        states = postgres.schema_states(connection, names)
        if context != plan.context or [s.comparable() for s in states] != [
            s.comparable() for s in plan.states
        ]:
            raise NotRestorable(
                f"the new database could not be made like {plan.target!r} around the "
                f"schemas ({context!r} != {plan.context!r})"
            )
        build()

    return swap_in(
        plan.alias,
        plan.target,
        make=empty,
        inside=inside,
        terminate_blockers=terminate_blockers,
        log=log,
        ready=ready,
        check=possible,
        committing=committing,
        committed=committed,
        recheck=recheck,
        schemas=schemas,
    )


def planned_build(plan: SwapPlan, template: str = "") -> tuple[list[str], list[str], list[str]]:
    """For ``--dry-run``: the statements that make the new database (a copy of
    ``template``, when given), those that prepare it (assuming ``template0`` has its usual
    ``public`` schema and ``plpgsql``), and those that swap it in, as text."""
    if template:
        before, swap = _planned_swap(
            plan.alias,
            plan.target,
            lambda new, wanted: postgres.create_database_sql(new, template, wanted.owner),
        )
        return before, [], swap
    before, swap = _planned_swap(plan.alias, plan.target, postgres.create_empty_database_sql)
    connection = connections[plan.alias]
    current_user = postgres.privileges(connection).current_user
    prepare = postgres.prepare_schemas_sql(
        {"public"}, plan.states, plan.extensions, {"plpgsql"}, current_user
    )
    return before, [postgres.render(connection, s) for s in prepare], swap
