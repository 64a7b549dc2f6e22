"""What a reset says: its results and their summary lines, the dry run's text, and the
message of a failed transaction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connections

from django_resetdb import (
    buildcache,
    clock,
    creating,
    dependencies,
    faults,
    guard,
    migrate_step,
    newdatabase,
    postgres,
    snapshots,
)
from django_resetdb.output import Log, one_line, relative_path
from django_resetdb.pipeline.plan import COMMAND, ResetPlan
from django_resetdb.regenerate import AppliedPlan, AppRegeneration
from django_resetdb.schemas import planned_statements


@dataclass
class DatabaseResult:
    alias: str
    database: str
    timings: dict[str, float] = field(default_factory=dict)
    tables: int = 0
    migrations: int = 0
    built: int = 0
    adapted: list[str] = field(default_factory=list)
    seeded: bool = False
    objects: int = 0
    rows: int = 0
    snapshot: str = ""  # the snapshot restored, if one was
    state: str = ""  # the migrated state the build started from, if any
    state_kept: str = ""  # the migrated state this build kept, if any
    state_problem: str = ""  # why it kept none, when it tried
    # What the seeds read, kept with a snapshot of this database.
    reads: dependencies.Reads = field(default_factory=dependencies.Reads)

    def summary(self) -> str:
        seeded = f"{self.rows} row(s) seeded" if self.seeded else "not seeded"
        restored = " from its snapshot" if self.snapshot else ""
        return (
            f"database {self.database!r} (alias {self.alias!r}){restored}: {self.tables} "
            f"table(s), {seeded}"
        )


@dataclass
class ResetResult:
    plan: ResetPlan
    migrations: AppliedPlan | None = None
    databases: list[DatabaseResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # From the moment run_plan was given as ``started`` (the command: the process's
    # start; reset(): its call) to the end, waits and the prompt included.
    seconds: float = 0.0
    # The databases hold the rebuild (a commit or a swap happened): no longer undone.
    committed: bool = False

    def summary(self) -> str:
        parts = "; ".join(db.summary() for db in self.databases)
        prompt = self.timings.get("prompt")
        answer = f" ({prompt:.2f} s of it waiting for the answer)" if prompt is not None else ""
        summary = f"Rebuilt {parts} in {self.seconds:.2f} s{answer}."
        faults.reached("summary")
        return summary


def _log_wait(log: Log, seconds: float, what: str) -> None:
    # An uncontended lock takes a millisecond: a line only when someone else held it,
    # so that the output of an ordinary run stays the same.
    if seconds >= clock.WAIT_SHOWN:
        log(f"  lock        waited {seconds:.2f} s {what}", 1)


def _migrations_lines(applied: AppliedPlan, seconds: float) -> list[tuple[str, int]]:
    """The migrations step's lines, each with the verbosity that shows it."""
    plan = applied.plan
    # Regenerated whole, or their own migrations on top of the shared ones.
    apps = [app for app in plan.apps if not app.kept or app.partial]
    changed = [app for app in apps if app.changed]
    if not plan.apps:
        what = "no app of the project to regenerate"
    elif not apps:
        what = "no app regenerated"
    elif not changed:
        what = f"no changes in {', '.join(app.label for app in apps)}"
    else:
        written = sum(len(app.new_files) for app in changed)
        what = f"regenerated {', '.join(app.label for app in changed)} ({written} file(s))"
    lines = [(f"  migrations  {what} in {seconds:.2f} s", 1)]
    lines += [(line, 1) for line in _file_lines([a for a in plan.changed if not a.kept], plan.root)]
    for app in plan.kept:
        adds = app.changed and not app.partial
        pending = " and added a migration for its pending model changes" if adds else ""
        lines.append((f"              kept {app.kept_phrase()}{pending}", 1))
        if app.kept_in_short:
            lines.append((f"                ({app.kept})", 2))
        lines += [(line, 1) for line in _file_lines([app], plan.root)]
    return lines


# What a run did to a file, after the fact, for the verbs of the plan.
DONE = {"rewrite": "rewrote", "delete": "deleted", "add": "added"}


def _file_lines(changed: list[AppRegeneration], root: Path) -> list[str]:
    """Each file the run rewrote, deleted or added, once, by its path from ``root``."""
    lines = []
    for app in changed:
        lines += [
            f"              {DONE[verb]:<7} {relative_path(path, root)}"
            for verb, path in app.file_changes()
        ]
        if app.shared_warning():
            lines.append(f"              {app.shared_warning()}")
    return lines


def dry_run_lines(
    plan: ResetPlan, *, terminate_blockers: bool = False, verbosity: int = 1, sql: bool = False
) -> Iterator[str]:
    """What ``resetdb --dry-run`` prints: the targets, the steps and files, then, with
    ``sql``, the SQL per database; reads the catalogs and the migration files, changes
    nothing.

    Lines come as they are worked out, the plan first: rendering the migrations' SQL is
    the slow part, and what it cannot show it says in a line of its own.
    """
    yield f"{COMMAND} would do this (dry run, nothing is changed):"
    for target in plan.targets:
        for line in target.lines():
            yield from _one_item_per_line(line)
    yield "Steps:"
    for line in plan.lines(terminate_blockers=terminate_blockers, verbosity=verbosity):
        yield from _one_item_per_line(line)
    if not sql:
        yield "SQL: not shown (--sql shows the statements each database would run)"
        return
    for target in plan.targets:
        yield from _dry_run_sql(plan, target)


def _dry_run_sql(plan: ResetPlan, target: guard.Target) -> Iterator[str]:
    new = next((new for new in plan.creations if new.alias == target.alias), None)
    if new is not None:
        yield from _dry_run_creation(plan, new)
        return
    if plan.restoring:
        assert plan.snapshot is not None
        yield f"SQL on the maintenance database, for {target.database!r}:"
        for statement in snapshots.planned_statements(plan.snapshot):
            yield f"  {statement};"
        return
    swap: list[str] = []
    start = plan.states.start if plan.states is not None else None
    if plan.swap is not None and start is not None:
        # A copy of the migrated state instead of an empty database.
        before, _, swap = newdatabase.planned_build(plan.swap, template=start.state.name)
        yield f"SQL on the maintenance database, for {target.database!r}:"
        yield from (f"  {statement};" for statement in before)
        yield "SQL in the new database, each step committing on its own:"
        yield (
            f"  -- the {start.kept} migration(s) the state {start.state.name} holds are "
            "not shown: they are applied already"
        )
        connection = connections[target.alias]
        for statement in buildcache.planned_drops(start):
            yield f"  {postgres.render(connection, statement)};"
    elif plan.swap is not None:
        before, prepare, swap = newdatabase.planned_build(plan.swap)
        yield f"SQL on the maintenance database, for {target.database!r}:"
        yield from (f"  {statement};" for statement in before)
        yield "SQL in the new database, each step committing on its own:"
        yield from (f"  {statement};" for statement in prepare)
    else:
        yield f"SQL for database {target.database!r} (alias {target.alias!r}):"
        yield f"  {postgres.BEGIN_SQL};"
        for statement in planned_statements(target.alias, plan.schemas):
            yield f"  {statement};"
    yield from _dry_run_migrate(plan, target)
    if plan.swap is not None:
        yield f"SQL on the maintenance database, to swap it in for {target.database!r}:"
        yield from (f"  {statement};" for statement in swap)
    else:
        yield f"  {postgres.COMMIT_SQL};"


def _dry_run_creation(plan: ResetPlan, new: creating.NewDatabase) -> Iterator[str]:
    create, lock = creating.planned_statements(new)
    yield f"SQL on the maintenance database, for {new.name!r}:"
    yield from (f"  {statement};" for statement in create)
    yield f"SQL for database {new.name!r} (alias {new.alias!r}), once created:"
    yield f"  {postgres.BEGIN_SQL};"
    yield from (f"  {statement};" for statement in lock)
    yield (
        f"  -- schemas: {', '.join(plan.schemas)} dropped and made again as the template "
        f"{new.template} has them (not shown: the database does not exist yet)"
    )
    target = next(t for t in plan.targets if t.alias == new.alias)
    with creating.rendering_on_maintenance(new.alias):
        yield from _dry_run_migrate(plan, target)
    yield f"  {postgres.COMMIT_SQL};"


def _dry_run_migrate(plan: ResetPlan, target: guard.Target) -> Iterator[str]:
    start = plan.states.start if plan.states is not None else None
    held = buildcache.held(start) if start is not None else set()
    for planned in migrate_step.planned_sql(target.alias, plan.migrations):
        if planned.name in held:
            continue  # in the migrated state the build starts from
        if planned.not_shown:
            yield f"  -- migrate: {planned.name}: SQL not shown ({planned.not_shown})"
            continue
        yield f"  -- migrate: {planned.name}"
        if planned.looked_up:
            yield (
                "  -- (names of existing constraints or sequences were looked up in the "
                "database as it is now, not as the earlier migrations leave it)"
            )
        if planned.found_none:
            yield (
                "  -- (names of existing constraints or sequences were looked up in the "
                "database as it is now and some were not there: the statements that would "
                "drop or rename them are missing here)"
            )
        for statement in planned.statements:
            yield from _wrapped_statement(f"  {statement}")
    if plan.seeds is not None and plan.seeds[target.alias]:
        yield (
            f"  -- seed: {len(plan.seeds[target.alias])} seed(s), rows written with COPY "
            "and INSERT (not shown)"
        )


# Past this width a dry run's line is broken up: a list of a large project's apps or files,
# or a table of many columns, would otherwise make lines kilobytes long.
WIDTH = 160


def _one_item_per_line(line: str) -> list[str]:
    """``line`` as it is, or, when it is too long, the comma-separated list in it with one
    item per line, each under the first."""
    first = line.find(", ")
    if len(line) <= WIDTH or first < 0:
        return [line]
    column = line.rfind(" ", 0, first) + 1
    items = line[column:].split(", ")
    lines = [f"{line[:column]}{items[0]},"]
    lines += [f"{' ' * column}{item}," for item in items[1:-1]]
    lines.append(f"{' ' * column}{items[-1]}")
    return lines


def _wrapped_statement(line: str) -> list[str]:
    """A long ``CREATE TABLE`` with one column or constraint per line; other statements as
    they are. Breaks only after the commas between the table's elements, never inside a
    quoted name or a literal, so the statement still runs as it is."""
    if len(line) <= WIDTH or not postgres.creates_table(line):
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    lines: list[str] = []
    depth, quote, start = 0, "", 0
    for position, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""  # a doubled quote closes and reopens: the same as going on
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
            if depth == 1:
                lines.append(line[: position + 1])
                start = position + 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                break  # the table's elements end here; the rest stays on the last line
        elif char == "," and depth == 1:
            lines.append(indent + line[start : position + 1].strip())
            start = position + 1
    else:
        return [line]  # not the shape expected: shown as it is
    lines.append(indent + line[start:].strip())
    return lines


def _indented(log: Log, deeper: int = 1) -> Log:
    """``log`` for the lines of a step: indented, and shown from ``deeper`` levels of
    verbosity further on."""

    def write(message: str, level: int) -> None:
        log(f"  {message}", level + deeper)

    return write


def _database_error(exc: BaseException, outcome: str) -> str:
    message = one_line(exc)
    if postgres.is_out_of_locks(exc):
        message += (
            " (the reset needs more locks than the server's lock table holds: give the role "
            "CREATEDB, so that resetdb builds in a new database and swaps it in, or raise "
            "max_locks_per_transaction)"
        )
    return f"{type(exc).__name__}: {message}; the transaction was rolled back, {outcome}."
