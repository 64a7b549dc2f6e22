"""The whole rebuild: migrations regenerated, schemas reset, migrate, seeds; all or nothing.

In place, each database is rebuilt in one transaction of its own, holding its reset lock;
the transactions commit together at the end, one after the other. A snapshot restore, or
a build in a new database when one transaction would need too many locks, ends with a swap
of names in one transaction instead (see ``snapshots``). The migration files are backed
up before they change and put back on any failure or Ctrl-C; until the databases have
committed, the backup stays "in progress", so that a run killed in between is noticed by
the next one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import connections, router, transaction

from django_resetdb import (
    backups,
    clock,
    creating,
    dependencies,
    faults,
    guard,
    interrupts,
    migrate_step,
    newdatabase,
    postgres,
    seeding,
    snapshots,
)
from django_resetdb.conf import get_settings
from django_resetdb.exceptions import ResetError
from django_resetdb.output import INTERRUPTED_EXIT_STATUS, Log, one_line, quiet
from django_resetdb.progress import NO_PROGRESS, Progress
from django_resetdb.regenerate import (
    AppliedPlan,
    RegenerationPlan,
    apply_plan,
    committing_plan,
    finish_plan,
    plan_migrations,
    refuse_interrupted,
    reopen_plan,
    undo_plan,
)
from django_resetdb.schemas import planned_statements, reset_schemas, take_reset_lock
from django_resetdb.signals import post_reset, pre_reset

__all__ = ["ResetPlan", "ResetResult", "plan_reset", "post_reset", "pre_reset", "reset"]

COMMAND = "resetdb"


@dataclass
class ResetPlan:
    """What a reset will do, worked out without changing anything."""

    targets: list[guard.Target]
    schemas: tuple[str, ...]
    migrations: RegenerationPlan | None  # None: --keep-migrations
    seeds: dict[str, list[seeding.Seed]] | None  # per alias; None: --no-seed
    snapshot: snapshots.SnapshotPlan | None = None  # None: the cache is off
    swap: newdatabase.SwapPlan | None = None  # set: build in a new database and swap it in
    lock_warning: str = ""  # an in-place reset may run out of locks, and why
    # The snapshot's quick key matched: the migrations were not planned, as regenerating
    # them would change nothing (migrations is None then, without --keep-migrations).
    unchanged: bool = False
    # The databases that do not exist yet, created before the rebuild.
    creations: list[creating.NewDatabase] = field(default_factory=list)

    @property
    def restoring(self) -> bool:
        """Whether a snapshot will be restored instead of rebuilding."""
        return (
            self.snapshot is not None
            and not self.snapshot.unusable
            and self.snapshot.existing is not None
        )

    @property
    def aliases(self) -> list[str]:
        return [target.alias for target in self.targets]

    def seeds_on(self, alias: str) -> list[seeding.Seed] | None:
        """The seeds that run on ``alias``; None with --no-seed."""
        return None if self.seeds is None else self.seeds[alias]

    def session_lines(self, *, terminate_blockers: bool = False) -> list[str]:
        """What a swap would do with the other sessions connected now."""
        if not (self.restoring or self.swap is not None):
            return []
        target = self.targets[0]
        instead = (
            "the reset would rebuild in place instead of restoring the snapshot"
            if self.restoring
            else "the reset would rebuild in place instead of in a new database"
        )
        lines = snapshots.planned_session_lines(
            target.database,
            target.sessions,
            terminate_blockers=terminate_blockers,
            instead=instead,
        )
        return [f"  {line}" for line in lines]

    def lines(self, *, terminate_blockers: bool = False) -> list[str]:
        """The steps, one line each, and the files the regeneration touches."""
        lines = [new.planned_line() for new in self.creations]
        if self.unchanged:
            lines.append(
                "  migrations  no changes since the snapshot was kept (the same models and files)"
            )
        elif self.migrations is None:
            lines.append("  migrations  kept as they are (--keep-migrations)")
        elif not self.migrations.apps:
            lines.append("  migrations  no app of the project to regenerate")
        elif not self.migrations.changed:
            lines.append("  migrations  no changes: the files already match the models")
        else:
            regenerate = [app for app in self.migrations.changed if not app.kept]
            if regenerate:
                names = ", ".join(app.label for app in regenerate)
                lines.append(f"  migrations  regenerate {names} (backed up first)")
                root = self.migrations.root
                for app in regenerate:
                    lines += [f"  {line}" for line in [app.header(root), *app.file_lines()]]
        if self.migrations is not None:
            for app in self.migrations.kept:
                lines.append(f"  migrations  kept {app.label} as it is: {app.kept}")
                lines += [f"  {line}" for line in app.file_lines()]
        snapshot = self.snapshot
        if self.restoring:
            assert snapshot is not None and snapshot.existing is not None
            lines.append(
                f"  snapshot    restore {snapshot.existing.name} (kept "
                f"{snapshot.existing.kept_on}) instead of rebuilding"
            )
            return lines + self.session_lines(terminate_blockers=terminate_blockers)
        if self.swap is not None:
            lines.append(
                f"  database    build in a new database, then swap it in: {self.swap.reason}"
            )
            lines += self.session_lines(terminate_blockers=terminate_blockers)
        elif self.lock_warning:
            lines.append(f"  database    in place, though {self.lock_warning}")
        lines.append(f"  schemas     drop and recreate {', '.join(self.schemas)}")
        lines.append("  migrate     apply every migration")
        if self.seeds is None:
            lines.append("  seed        skipped (--no-seed)")
        else:
            entries = next(iter(self.seeds.values()), [])
            listed = ", ".join(s.entry for s in entries) or "nothing: SEEDS is empty"
            lines.append(f"  seed        {listed}")
        if snapshot is not None:
            if snapshot.unusable:
                lines.append(f"  snapshot    not used: {snapshot.unusable}")
            elif not snapshot.fingerprint:  # the database does not exist yet
                lines.append("  snapshot    keep one for the next reset")
            else:
                lines.append(f"  snapshot    keep one as {snapshot.name} for the next reset")
        return lines


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


def plan_reset(
    databases: Sequence[str] = ("default",),
    *,
    keep_migrations: bool = False,
    seed: bool = True,
    snapshot: bool = True,
) -> ResetPlan:
    """Run the gates on every alias and work out the plan; changes nothing."""
    conf = get_settings()
    aliases = list(dict.fromkeys(databases))
    if not aliases:
        raise ResetError("No database to reset.")
    # Before any alias is connected to or gated: no setting would allow another vendor.
    for alias in aliases:
        guard.check_postgresql(alias, COMMAND)
    targets = [guard.check(alias, COMMAND, conf.schemas, creatable=True) for alias in aliases]
    _refuse_same_database(targets)
    creations = [creating.plan_creation(target) for target in targets if not target.exists]
    refuse_interrupted(conf.backup_dir, COMMAND, rebuilds=True)
    seeds = None
    if seed:
        entries = seeding.configured_seeds()
        seeds = {alias: seeding.resolve_seeds(entries, database=alias) for alias in aliases}
    first_seeds = None if seeds is None else seeds[aliases[0]]
    # What needs the database itself is worked out once it exists (see _create).
    exists = targets[0].exists
    snapshot_plan = None
    if snapshot and not keep_migrations and len(targets) == 1 and exists:
        snapshot_plan = snapshots.find_quick(targets[0], first_seeds)
    unchanged = snapshot_plan is not None and snapshot_plan.existing is not None
    migrations = None
    if not keep_migrations and not unchanged:
        migrations = _plan_migrations()
    swap, lock_warning = None, ""
    if len(targets) == 1 and exists:
        swap, lock_warning = newdatabase.plan_swap(targets[0], models=_models_on(aliases[0]))
    if snapshot and not unchanged:
        if len(targets) == 1 and not exists:
            if conf.snapshots:
                snapshot_plan = snapshots.SnapshotPlan(aliases[0], targets[0].database, "", None)
        else:
            snapshot_plan = snapshots.plan_snapshot(
                targets[0], migrations, first_seeds, several=len(targets) > 1
            )
    return ResetPlan(
        targets,
        conf.schemas,
        migrations,
        seeds,
        snapshot_plan,
        swap,
        lock_warning,
        unchanged=unchanged,
        creations=creations,
    )


def _create(
    plan: ResetPlan, created: list[creating.NewDatabase], log: Log, *, confirmed: bool
) -> None:
    """Create the databases that do not exist yet (appending each to ``created``), then
    work out what needed them: the build in a new database, the snapshot."""
    for new in plan.creations:
        line, made = creating.create(new, plan.schemas, created)
        log(line, 1)
        index = plan.aliases.index(new.alias)
        connection = connections[new.alias]
        if made:
            target = dataclasses.replace(
                plan.targets[index],
                exists=True,
                tables=postgres.count_tables(connection, plan.schemas),
                sessions=tuple(postgres.other_sessions(connection)),
            )
        else:
            # Made by someone else since the gates ran: gated again as it is now. After
            # the prompt, what the user confirmed (a database that did not exist) is not
            # what is there, so it is rebuilt only while it holds nothing yet (another
            # resetdb creating it).
            target = guard.check(new.alias, COMMAND, plan.schemas)
            if confirmed and target.tables:
                raise ResetError(
                    f"Database {new.name!r} was created by another session while this run "
                    f"was about to create it, and it holds {target.tables} table(s) now; "
                    "nothing was changed. Run resetdb again to reset it as it is."
                )
        plan.targets[index] = target
        if len(plan.targets) == 1:
            plan.swap, plan.lock_warning = newdatabase.plan_swap(
                target, models=_models_on(new.alias)
            )
            if plan.snapshot is not None:
                plan.snapshot = snapshots.plan_snapshot(
                    target, plan.migrations, plan.seeds_on(new.alias), several=False
                )
    plan.creations = []


@contextlib.contextmanager
def _dropped_on_failure(
    created: list[creating.NewDatabase], result: ResetResult, log: Log
) -> Iterator[None]:
    """Drop the databases this run created when what follows fails before the rebuild
    has committed: they did not exist before it."""
    try:
        yield
    except BaseException as exc:
        if not created or result.committed:
            raise
        said = creating.drop(created)
        if isinstance(exc, ResetError):
            message = f"{str(exc).rstrip('.')}; {said}."
            raise ResetError(message, returncode=exc.returncode) from exc
        # Ctrl-C, a database error: their own message follows; what became of the
        # database comes first.
        log(f"{said[0].upper()}{said[1:]}.", 0)
        raise


def _plan_migrations() -> RegenerationPlan:
    # Apps with hand-written migrations are kept as they are, not refused: what the
    # reset leaves is what their migrations make.
    return plan_migrations(keep_hand_written=True)


def _models_on(alias: str) -> int:
    """The tables migrate makes on ``alias``: its concrete, managed models, many-to-many
    tables included."""
    return sum(
        1
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed
        and not model._meta.proxy
        and not model._meta.swapped
        and router.allow_migrate_model(alias, model)
    )


def _refuse_same_database(targets: Sequence[guard.Target]) -> None:
    seen: dict[tuple[str, int, str], str] = {}
    for target in targets:
        key = (target.host, target.port, target.database)
        if key in seen:
            raise ResetError(
                f"Database aliases {seen[key]!r} and {target.alias!r} are the same database "
                f"{target.database!r} on {target.host or '(default socket)'}:{target.port}; "
                "name it once."
            )
        seen[key] = target.alias


def reset(
    databases: Sequence[str] = ("default",),
    *,
    keep_migrations: bool = False,
    seed: bool = True,
    snapshot: bool = True,
    interactive: bool = False,
    terminate_blockers: bool = False,
    log: Log = quiet,
    ask: Callable[[str], str] = input,
) -> ResetResult:
    """What ``resetdb`` does: gates, plan, then regenerate, reset, migrate and seed (or
    restore a snapshot).

    Either every database is rebuilt and the new migration files are in place, or the
    databases and the files are as they were. The result's ``seconds`` count from this
    call, planning included.
    """
    started = time.monotonic()
    plan = plan_reset(databases, keep_migrations=keep_migrations, seed=seed, snapshot=snapshot)
    return run_plan(
        plan,
        interactive=interactive,
        terminate_blockers=terminate_blockers,
        log=log,
        ask=ask,
        started=started,
    )


def run_plan(
    plan: ResetPlan,
    *,
    interactive: bool = False,
    terminate_blockers: bool = False,
    log: Log = quiet,
    ask: Callable[[str], str] = input,
    migrate_output: Any | None = None,
    started: float | None = None,
    progress: Progress = NO_PROGRESS,
) -> ResetResult:
    """Carry out ``plan``: confirm, lock, regenerate, then rebuild every database.

    The result's ``seconds`` count from ``started`` (a :func:`time.monotonic` value),
    by default from this call. ``progress`` shows how far the long steps are (migrate,
    seed, a snapshot's copy) while they run.
    """
    started = time.monotonic() if started is None else started
    result = ResetResult(plan)
    asking = time.monotonic()
    for target in plan.targets:
        if interactive:
            steps = (
                plan.lines(terminate_blockers=terminate_blockers)
                if target is plan.targets[-1]
                else []
            )
            guard.confirm(target, COMMAND, write=lambda line: log(line, 0), ask=ask, plan=steps)
        else:
            log(target.one_line(), 1)
    if interactive:
        result.timings["prompt"] = time.monotonic() - asking
    created: list[creating.NewDatabase] = []
    with _dropped_on_failure(created, result, log):
        _create(plan, created, log, confirmed=interactive)
        for alias in plan.aliases:
            pre_reset.send(sender=ResetPlan, alias=alias, plan=plan)

    snapshot_plan = plan.snapshot
    sweeper = None
    if len(plan.targets) == 1:
        # Even with the cache off: what earlier restores replaced, or killed runs left
        # half-made, would otherwise stay for good.
        target = plan.targets[0]
        usable = snapshot_plan is not None and not snapshot_plan.unusable
        spare = (
            {snapshot_plan.existing.name}
            if snapshot_plan is not None and snapshot_plan.existing
            else set()
        )
        # A run that will keep a snapshot makes room for it now, before it dirties the
        # server's cache: dropping a database later would have to write all of that.
        room = int(usable and snapshot_plan is not None and snapshot_plan.existing is None)
        sweeper = snapshots.Sweeper(
            target.alias, target.database, spare, room, snapshots=usable or plan.swap is not None
        )
        sweeper.start()
    with interrupts.handled():
        try:
            with _dropped_on_failure(created, result, log):
                restored = _carry_out(
                    plan, result, terminate_blockers, log, migrate_output, progress
                )
        finally:
            if sweeper is not None:
                waited = sweeper.finish(log)
                if waited:
                    result.timings["sweep"] = waited
            # Deferred since the commit began: the reset is done, files and databases.
            late = interrupts.resume()
        keeping = not restored and snapshot_plan is not None and not snapshot_plan.unusable
        if late:
            message = _interrupted_after(plan, result, restored, keeping)
            raise ResetError(message, returncode=INTERRUPTED_EXIT_STATUS)
        try:
            if keeping:
                assert snapshot_plan is not None
                _keep(plan, snapshot_plan, result, log, progress)
            result.seconds = time.monotonic() - started
        except KeyboardInterrupt as exc:
            # The half-made copy, if any, is dropped by the next run.
            message = _interrupted_after(plan, result, restored, keeping)
            raise ResetError(message, returncode=INTERRUPTED_EXIT_STATUS) from exc
    return result


def _interrupted_after(plan: ResetPlan, result: ResetResult, restored: bool, keeping: bool) -> str:
    """What a Ctrl-C once the databases have committed leaves: the whole reset."""
    if restored:
        what = "the snapshot was restored"
    elif any("swap" in database.timings for database in result.databases):
        what = "the new database was swapped in"
    elif len(plan.aliases) > 1:
        what = "the databases were rebuilt"
    else:
        what = "the database was rebuilt"
    applied = result.migrations
    if applied is not None and applied.backup is not None:
        files = "the new migration files are in place"
    elif plan.migrations is None and not plan.unchanged:
        files = "the migration files were kept as they are"
    else:
        files = "the migration files needed no change"
    kept = ""
    if keeping:
        # Whether the copy got its name: the interruption may have come a moment after
        # (a half-made copy is dropped by the next run).
        done = "snapshot" in result.timings or _snapshot_exists(plan)
        kept = "; a snapshot was kept" if done else "; no snapshot was kept"
    return f"Interrupted after {what}: the reset is complete ({files}){kept}."


def _snapshot_exists(plan: ResetPlan) -> bool:
    snapshot_plan = plan.snapshot
    if snapshot_plan is None or not snapshot_plan.name:
        return False
    try:
        return any(
            s.name == snapshot_plan.name
            for s in snapshots.listed(snapshot_plan.alias, snapshot_plan.target)
        )
    except Exception:  # the message falls back on what the run itself recorded
        return False


def _carry_out(
    plan: ResetPlan,
    result: ResetResult,
    terminate_blockers: bool,
    log: Log,
    migrate_output: Any | None,
    progress: Progress,
) -> bool:
    """Restore or rebuild, with the files; True when a snapshot was restored."""
    conf = get_settings()
    snapshot_plan = plan.snapshot
    step = time.monotonic()
    with backups.files_lock(conf.backup_dir, conf.lock_timeout):
        _log_wait(log, time.monotonic() - step, "for another run changing the migration files")
        # Again, now that no other run can be half-way.
        earlier = refuse_interrupted(conf.backup_dir, COMMAND, rebuilds=True)
        for backup in earlier:
            log(
                f"  migrations  an earlier run was interrupted while it committed (backup "
                f"{backup.name}): rebuilding from the migration files it left",
                1,
            )
        restored = plan.restoring and _from_snapshot(
            plan, result, terminate_blockers, log, progress
        )
        if not restored and plan.unchanged:
            # Restoring was the point of skipping the plan; rebuilding needs it.
            plan.migrations, plan.unchanged = _plan_migrations(), False
        if not restored:
            if snapshot_plan is not None and snapshot_plan.unusable:
                log(f"  snapshot    not used: {snapshot_plan.unusable}", 1)
            built = plan.swap is not None and _build_and_swap(
                plan, result, terminate_blockers, log, migrate_output, progress
            )
            if not built:
                if plan.lock_warning:
                    log(f"  database    in place, though {plan.lock_warning}", 1)
                _rebuild_all(plan, result, terminate_blockers, log, migrate_output, progress)
        result.committed = True
        if result.migrations is not None:
            finish_plan(result.migrations)
        # The database is now rebuilt from the files those runs left, or from newer ones.
        for backup in earlier:
            backup.mark(backups.COMPLETE)
    return restored


def _apply_files(plan: ResetPlan, result: ResetResult, log: Log) -> None:
    if plan.migrations is None or result.migrations is not None:
        return
    step = time.monotonic()
    result.migrations = apply_plan(
        plan.migrations, log=_indented(log), command=COMMAND, finish=False
    )
    result.timings["migrations"] = time.monotonic() - step
    for line in _migrations_lines(result.migrations, result.timings["migrations"]):
        log(line, 1)


def _rebuild_all(
    plan: ResetPlan,
    result: ResetResult,
    terminate_blockers: bool,
    log: Log,
    migrate_output: Any | None,
    progress: Progress,
) -> None:
    """Every database in a transaction of its own, committed together at the end."""
    conf = get_settings()
    try:
        with contextlib.ExitStack() as transactions:
            step = time.monotonic()
            for alias in plan.aliases:
                transactions.enter_context(transaction.atomic(using=alias))
                take_reset_lock(alias, conf.lock_timeout)
            result.timings["lock"] = time.monotonic() - step
            _log_wait(log, result.timings["lock"], "for another reset of the database")
            _apply_files(plan, result, log)
            for alias in plan.aliases:
                prefix = f"[{alias}] " if len(plan.aliases) > 1 else ""
                database = _rebuild(
                    plan, alias, result, terminate_blockers, log, migrate_output, prefix, progress
                )
                result.databases.append(database)
            for alias in plan.aliases:
                postgres.check_deferred_constraints(connections[alias])
            _committing(result)
            interrupts.defer()  # until run_plan has finished what the commit began
        for alias in plan.aliases:
            faults.reached("commit", alias)
    except BaseException as exc:
        # The commit failed, or never began: a Ctrl-C deferred meanwhile changes nothing.
        interrupts.resume()
        _undo(result.migrations, exc, log)
        raise


def _committing(result: ResetResult) -> None:
    if result.migrations is not None:
        committing_plan(result.migrations)


def _reopen(result: ResetResult) -> None:
    if result.migrations is not None:
        reopen_plan(result.migrations)


def _from_snapshot(
    plan: ResetPlan, result: ResetResult, terminate_blockers: bool, log: Log, progress: Progress
) -> bool:
    """Restore the plan's snapshot; False when it cannot be used this time (then the
    files may be regenerated already, and the rebuild goes on from there)."""
    snapshot_plan = plan.snapshot
    assert snapshot_plan is not None and snapshot_plan.existing is not None
    kept = snapshot_plan.existing
    timings: dict[str, float] = {}

    def inside() -> None:
        with transaction.atomic(using=snapshot_plan.alias):
            if "migrations" in result.timings:
                timings["migrations"] = result.timings["migrations"]
            post_reset.send(
                sender=ResetPlan,
                alias=snapshot_plan.alias,
                plan=plan,
                timings=timings,
                snapshot=kept.name,
            )

    if plan.unchanged:
        log("  migrations  no changes since the snapshot was kept (the same models and files)", 1)
    try:
        _apply_files(plan, result, log)
        seconds = snapshots.restore(
            snapshot_plan,
            terminate_blockers=terminate_blockers,
            log=_indented(log, 0),
            inside=inside,
            committing=lambda: _committing(result),
            progress=progress,
        )
    except snapshots.NotRestorable as exc:
        _reopen(result)
        log(f"  snapshot    not used: {exc}", 1)
        return False
    except BaseException as exc:
        _undo(result.migrations, exc, log)
        raise
    timings["snapshot"] = seconds
    if not snapshot_plan.quick:
        # Found by its fingerprint: next time, let its quick key find it.
        seeds = plan.seeds_on(snapshot_plan.alias)
        snapshots.refresh(snapshot_plan, plan.targets[0], plan.migrations, seeds, quick=True)
    snapshots.mark_used(snapshot_plan.alias, kept, snapshot_plan.quick)
    log(
        f"  snapshot    restored {kept.name} (kept {kept.kept_on}) in {seconds:.2f} s",
        1,
    )
    result.databases.append(
        DatabaseResult(
            snapshot_plan.alias,
            snapshot_plan.target,
            timings=timings,
            tables=kept.tables,
            seeded=plan.seeds is not None,
            rows=kept.rows,
            snapshot=kept.name,
        )
    )
    return True


def _build_and_swap(
    plan: ResetPlan,
    result: ResetResult,
    terminate_blockers: bool,
    log: Log,
    migrate_output: Any | None,
    progress: Progress,
) -> bool:
    """Rebuild in a new database, step by step, and swap it in; False when that cannot
    be done this time (then the rebuild goes on in place)."""
    swap = plan.swap
    assert swap is not None
    built: list[DatabaseResult] = []
    started: list[bool] = []

    def ready() -> None:
        # Said only once the sessions connected now allow the swap.
        started.append(True)
        log(f"  database    building in a new database, to swap it in at the end: {swap.reason}", 1)
        _apply_files(plan, result, log)

    def build() -> None:
        # No transaction around it all: nobody sees this database until the swap, and
        # a failure drops it.
        built.append(
            _rebuild(
                plan, swap.alias, result, terminate_blockers, log, migrate_output, "", progress
            )
        )

    try:
        seconds = newdatabase.build_fresh(
            swap,
            build=build,
            terminate_blockers=terminate_blockers,
            log=_indented(log, 0),
            ready=ready,
            committing=lambda: _committing(result),
        )
    except snapshots.NotRestorable as exc:
        _reopen(result)
        if started:
            log(
                f"  database    the new database was dropped, not swapped in: {exc}; "
                "resetting in place",
                1,
            )
        else:
            log(f"  database    not built in a new one: {exc}; resetting in place", 1)
        return False
    except BaseException as exc:
        _undo(result.migrations, exc, log)
        raise
    (database,) = built
    database.database = swap.target
    database.timings["swap"] = seconds
    result.databases.append(database)
    log(f"  swap        swapped the new database in ({seconds:.2f} s from its creation)", 1)
    return True


def _keep(
    plan: ResetPlan,
    snapshot_plan: snapshots.SnapshotPlan,
    result: ResetResult,
    log: Log,
    progress: Progress,
) -> None:
    """Keep a snapshot of the database just rebuilt; a failure here is only reported."""
    (database,) = result.databases
    seeds = plan.seeds_on(snapshot_plan.alias)
    snapshots.refresh(snapshot_plan, plan.targets[0], plan.migrations, seeds, quick=True)
    if snapshot_plan.unusable:
        log(f"  snapshot    not kept: {snapshot_plan.unusable}", 1)
        return
    if (
        snapshots.find(snapshot_plan.alias, snapshot_plan.target, snapshot_plan.fingerprint)
        is not None
    ):
        return  # kept already: it could not be restored this time, but it is good
    try:
        seconds, stale = snapshots.keep(
            snapshot_plan,
            tables=database.tables,
            rows=database.rows,
            quick=snapshot_plan.quick,
            log=log,
            reads=database.reads,
            progress=progress,
        )
    except ResetError as exc:
        log(f"  snapshot    not kept: {exc}", 1)
        return
    result.timings["snapshot"] = seconds
    older = f"; the next run drops {stale} older one(s)" if stale else ""
    log(f"  snapshot    kept {snapshot_plan.name} in {seconds:.2f} s{older}", 1)


def _log_wait(log: Log, seconds: float, what: str) -> None:
    # An uncontended lock takes a millisecond: a line only when someone else held it,
    # so that the output of an ordinary run stays the same.
    if seconds >= clock.WAIT_SHOWN:
        log(f"  lock        waited {seconds:.2f} s {what}", 1)


def _undo(applied: AppliedPlan | None, exc: BaseException, log: Log) -> None:
    """Put the migration files back after ``exc``, and raise the one-line error for it
    (a ``KeyboardInterrupt`` or ``ResetError`` with no file to put back goes on as it is)."""
    where = ""
    if applied is not None and applied.backup is not None:
        undo_plan(applied, log)
        where = f"the migration files were put back from backup {str(applied.backup.path)!r}"
    if isinstance(exc, KeyboardInterrupt):
        if where:
            raise ResetError(
                f"Interrupted; the transaction was rolled back and {where}.",
                returncode=INTERRUPTED_EXIT_STATUS,
            ) from exc
    elif isinstance(exc, ResetError):
        if where:
            message = f"{str(exc).rstrip('.')}; {where}."
            raise ResetError(message, returncode=exc.returncode) from exc
    elif isinstance(exc, Exception):
        raise ResetError(_database_error(exc, where or "nothing was changed")) from exc


def _migrations_lines(applied: AppliedPlan, seconds: float) -> list[str]:
    plan = applied.plan
    changed = [app.label for app in plan.changed if not app.kept]
    if not plan.apps:
        what = "no app of the project to regenerate"
    elif not plan.regenerated:
        what = "no app regenerated"
    elif not changed:
        what = f"no changes in {', '.join(app.label for app in plan.regenerated)}"
    else:
        regenerated = [new for app in plan.changed if not app.kept for new in app.new_files]
        what = f"regenerated {', '.join(changed)} ({len(regenerated)} file(s))"
    lines = [f"  migrations  {what} in {seconds:.2f} s"]
    for app in plan.kept:
        added = ", ".join(new.path.name for new in app.new_files)
        pending = f"; added {added} for its pending model changes" if added else ""
        lines.append(f"              kept {app.label} as it is: {app.kept}{pending}")
    return lines


def _rebuild(
    plan: ResetPlan,
    alias: str,
    result: ResetResult,
    terminate_blockers: bool,
    log: Log,
    migrate_output: Any | None,
    prefix: str,
    progress: Progress,
) -> DatabaseResult:
    connection = connections[alias]
    step = time.monotonic()
    schema = reset_schemas(
        alias, plan.schemas, terminate_blockers=terminate_blockers, log=_indented(log, 0)
    )
    db = DatabaseResult(alias, schema.database)
    db.timings["schema"] = time.monotonic() - step
    restored = (
        f", restored extension(s) {', '.join(schema.extensions_restored)}"
        if schema.extensions_restored
        else ""
    )
    log(
        f"  {prefix}schema      dropped {schema.tables_dropped} table(s) of "
        f"{', '.join(schema.schemas)}{restored} in {db.timings['schema']:.2f} s",
        1,
    )

    step = time.monotonic()
    # With migrate's own output shown (verbosity 2), its lines are the progress.
    migrated = _migrate(
        plan, alias, migrate_output, progress if migrate_output is None else NO_PROGRESS, prefix
    )
    db.timings["migrate"] = time.monotonic() - step
    db.migrations = len(migrated.applied)
    db.built = migrated.built
    db.adapted = migrated.adapted
    db.tables = postgres.count_tables(connection, plan.schemas)
    built = f" ({db.built} built from the models)" if db.built else ""
    log(
        f"  {prefix}migrate     applied {db.migrations} migration(s){built}, {db.tables} "
        f"table(s) in {db.timings['migrate']:.2f} s",
        1,
    )
    if plan.seeds is None:
        postgres.execute_batches(connection, migrated.later)
    if migrated.fallback:
        log(f"  {prefix}            plain migrate: {migrated.fallback}", 1)
    for note in migrated.adapted:
        log(f"  {prefix}            {note}", 1)

    if plan.seeds is not None:
        step = time.monotonic()
        rows_before = postgres.count_rows(connection, plan.schemas)
        entries = [s.entry for s in plan.seeds[alias]]
        seeded = seeding.seed(
            entries,
            database=alias,
            gates=False,
            log=_indented(log),
            then=migrated.later,
            progress=progress,
            progress_prefix=f"  {prefix}seed        ",
        )
        db.seeded = True
        db.reads = seeded.reads
        db.objects = seeded.objects
        db.rows = postgres.count_rows(connection, plan.schemas) - rows_before
        db.timings["seed"] = time.monotonic() - step
        log(
            f"  {prefix}seed        {len(seeded.reports)} seed(s), {db.objects} object(s), "
            f"{db.rows} row(s) in {db.timings['seed']:.2f} s",
            1,
        )
    timings = dict(db.timings)
    if "migrations" in result.timings:
        timings["migrations"] = result.timings["migrations"]
    post_reset.send(sender=ResetPlan, alias=alias, plan=plan, timings=timings, snapshot=None)
    return db


def _migrate(
    plan: ResetPlan, alias: str, output: Any | None, progress: Progress, prefix: str
) -> migrate_step.MigrateResult:
    """The fast build when the regenerated apps allow it, else Django's migrate."""
    shown = migrate_step.Shown(progress, f"  {prefix}migrate     ")
    if plan.migrations is None or not get_settings().fast_build:
        return migrate_step.migrate(alias, output=output, shown=shown)
    regenerated = [app.label for app in plan.migrations.regenerated]
    build_plan, why = migrate_step.plan_build(alias, regenerated)
    if build_plan is None:
        result = migrate_step.migrate(alias, output=output, shown=shown)
        result.fallback = why
        return result
    return migrate_step.build(alias, build_plan, output=output, shown=shown)


def dry_run_lines(plan: ResetPlan, *, terminate_blockers: bool = False) -> Iterator[str]:
    """What ``resetdb --dry-run`` prints: the targets, the steps and files, then the SQL per
    database; reads the catalogs and the migration files, changes nothing.

    Lines come as they are worked out, the plan first: rendering the migrations' SQL is
    the slow part, and what it cannot show it says in a line of its own.
    """
    yield f"{COMMAND} would do this (dry run, nothing is changed):"
    for target in plan.targets:
        for line in target.lines():
            yield from _one_item_per_line(line)
    yield "Steps:"
    for line in plan.lines(terminate_blockers=terminate_blockers):
        yield from _one_item_per_line(line)
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
    if plan.swap is not None:
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
    for planned in migrate_step.planned_sql(target.alias, plan.migrations):
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
