"""Running a reset's plan: migrations regenerated, schemas reset, migrate, seeds; all or
nothing, then the commit or the swap, and the snapshot kept."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from django.db import connections, transaction

from django_resetdb import (
    aliases,
    backups,
    buildcache,
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
from django_resetdb.exceptions import ResetError, TransactionEnded
from django_resetdb.output import INTERRUPTED_EXIT_STATUS, Log, one_line, quiet
from django_resetdb.pipeline.plan import (
    COMMAND,
    ResetPlan,
    _models_on,
    _operations,
    _plan_migrations,
    plan_build_cache,
    plan_reset,
)
from django_resetdb.pipeline.report import (
    DatabaseResult,
    ResetResult,
    _database_error,
    _indented,
    _log_wait,
    _migrations_lines,
)
from django_resetdb.progress import NO_PROGRESS, Progress
from django_resetdb.regenerate import (
    AppliedPlan,
    apply_plan,
    committing_plan,
    finish_plan,
    migration_files,
    planned_files,
    refuse_interrupted,
    reopen_plan,
    same_files,
    undo_plan,
)
from django_resetdb.schemas import reset_schemas, take_reset_lock
from django_resetdb.signals import post_reset, pre_reset


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
            models, operations = _models_on(new.alias), _operations(plan.migrations)
            plan.locks = newdatabase.locks_needed(target, models=models, operations=operations)
            plan.swap, plan.lock_warning = newdatabase.plan_swap(
                target, models=models, operations=operations, locks=plan.locks
            )
            if plan.snapshot is not None:
                plan.snapshot = snapshots.plan_snapshot(
                    target, plan.migrations, plan.seeds_on(new.alias), several=False
                )
            plan_build_cache(plan)
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


@dataclass
class Run:
    """What the steps of one run share: the plan it follows, the result it fills, and how
    it reports. The plan it follows may be replaced (a snapshot that could not be used
    sends the run back to a planned regeneration); the caller's plan is never changed."""

    plan: ResetPlan
    result: ResetResult
    log: Log
    progress: Progress = NO_PROGRESS
    terminate_blockers: bool = False
    migrate_output: Any | None = None
    # The user was shown the plan's steps at the prompt: a line that would only say
    # again what a step is going to do is a detail then.
    plan_shown: bool = False
    # The aliases whose database this run created.
    created: frozenset[str] = frozenset()


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
    with aliases.sharing(plan.twins):
        return _run_plan(plan, result, interactive, terminate_blockers, log, progress,
                         migrate_output, started)  # fmt: skip


def _run_plan(
    plan: ResetPlan,
    result: ResetResult,
    interactive: bool,
    terminate_blockers: bool,
    log: Log,
    progress: Progress,
    migrate_output: Any | None,
    started: float,
) -> ResetResult:
    created: list[creating.NewDatabase] = []
    creating_now = frozenset(new.alias for new in plan.creations)
    if not interactive:  # else the plan shown at the prompt said it
        for twin, alias in plan.twins.items():
            log(f"  {aliases.twin_line(twin, alias)}", 1)
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
        if plan.states is not None and plan.states.start is not None:
            spare.add(plan.states.start.state.name)
        # A run that will keep a snapshot makes room for it now, before it dirties the
        # server's cache: dropping a database later would have to write all of that.
        room = int(usable and snapshot_plan is not None and snapshot_plan.existing is None)
        states = plan.states
        keeping_state = states is not None and not (states.start and states.start.same)
        sweeper = snapshots.Sweeper(
            target.alias,
            target.database,
            spare,
            room,
            # SNAPSHOTS = 0 turns the cache off for good: what it kept goes too (a
            # --no-snapshot run leaves the cache as it is).
            snapshots=usable or plan.swap is not None or get_settings().snapshots == 0,
            state_room=int(keeping_state),
            later=True,
        )
        sweeper.start()
    run = Run(
        plan,
        result,
        log,
        progress,
        terminate_blockers,
        migrate_output,
        plan_shown=interactive,
        created=creating_now,
    )
    keeping = False
    with interrupts.handled():
        try:
            try:
                with _dropped_on_failure(created, result, log):
                    restored = _carry_out(run)
                plan = run.plan
            finally:
                if sweeper is not None:
                    waited = sweeper.finish(log)
                    if waited:
                        result.timings["sweep"] = waited
                # Deferred since the commit began: the reset is done, files and databases.
                late = interrupts.resume()
            keeping = not restored and snapshot_plan is not None and not snapshot_plan.unusable
            if late:
                message = "Interrupted " + _after_commit(run.plan, result, keeping)
                raise ResetError(message, returncode=INTERRUPTED_EXIT_STATUS)
            try:
                if keeping:
                    assert snapshot_plan is not None
                    _keep(run, snapshot_plan)
                result.seconds = time.monotonic() - started
            except KeyboardInterrupt as exc:
                # The half-made copy, if any, is dropped by the next run.
                message = "Interrupted " + _after_commit(run.plan, result, keeping)
                raise ResetError(message, returncode=INTERRUPTED_EXIT_STATUS) from exc
        except Exception as exc:
            # Past the commit nothing is undone, whatever fails: a message that said
            # "rolled back" or "nothing was changed" would be untrue.
            if not result.committed or str(exc).startswith("Interrupted after "):
                raise
            if result.migrations is not None:
                finish_plan(result.migrations)  # the files are those of the rebuild
            what = f"{type(exc).__name__}: {one_line(exc).rstrip('.')}"
            raise ResetError(
                f"{what}; this came {_after_commit(run.plan, result, keeping)}"
            ) from exc
    return result


def _after_commit(plan: ResetPlan, result: ResetResult, keeping: bool) -> str:
    """What the databases and files are once the rebuild has committed, for a message
    about something that happened after: "after ...: the reset is complete (...)."."""
    if any(database.snapshot for database in result.databases):
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
    return f"after {what}: the reset is complete ({files}){kept}."


def _snapshot_exists(plan: ResetPlan) -> bool:
    snapshot_plan = plan.snapshot
    if snapshot_plan is None or not snapshot_plan.name:
        return False
    try:
        return any(
            s.name == snapshot_plan.name and not s.edited
            for s in snapshots.listed(snapshot_plan.alias, snapshot_plan.target)
        )
    except Exception:  # the message falls back on what the run itself recorded
        return False


def _carry_out(run: Run) -> bool:
    """Restore or rebuild, with the files; True when a snapshot was restored."""
    plan, result, log = run.plan, run.result, run.log
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
        plan = _check_files(run)
        restored = plan.restoring and _from_snapshot(run)
        if not restored and plan.unchanged:
            # Restoring was the point of skipping the plan; rebuilding needs it.
            plan = run.plan = dataclasses.replace(
                plan, migrations=_plan_migrations(), unchanged=False
            )
        if not restored:
            if snapshot_plan is not None and snapshot_plan.passed_over:
                log(f"  snapshot    not restored: {snapshot_plan.passed_over}", 1)
            if snapshot_plan is not None and snapshot_plan.differs:
                log(f"  snapshot    not restored: {snapshot_plan.differs}", 1)
            if snapshot_plan is not None and snapshot_plan.unusable:
                log(f"  snapshot    not used: {snapshot_plan.unusable}", 1)
            states = plan.states
            if states is not None and states.start is None and states.misses:
                # The newest state's reason; the older ones' at -v 2.
                for why in states.misses[:-1]:
                    log(f"  cache       not used: {why}", 2)
                log(f"  cache       not used: {states.misses[-1]}", 1)
            built = plan.swap is not None and _build_and_swap(run)
            if not built:
                if plan.lock_warning:
                    log(f"  database    in place, though {plan.lock_warning}", 1)
                elif plan.locks[1]:
                    needed, capacity = plan.locks
                    log(
                        f"  database    in place: about {needed} lock-table entries of the "
                        f"{capacity} the server holds",
                        2,
                    )
                _rebuild_all(run)
        result.committed = True
        if result.migrations is not None:
            finish_plan(result.migrations)
        # The database is now rebuilt from the files those runs left, or from newer ones.
        for backup in earlier:
            backup.mark(backups.COMPLETE)
    return restored


def _check_files(run: Run) -> ResetPlan:
    """Once the run holds the migration files: when another run changed them since they
    were planned from, go on only if they are now what this run would have written (a
    reset of the same project started at the same time), with nothing left to write;
    otherwise stop, nothing changed. Returns the plan the run follows."""
    plan = run.plan
    if plan.files is None:
        return plan
    now = migration_files()
    if now == plan.files:
        return plan
    # With --keep-migrations nothing is written: only the files as read would do.
    if now is not None and same_files(now, planned_files(plan.migrations, plan.files)):
        fresh = _plan_migrations()
        if not fresh.changed:
            run.log(
                "  migrations  the migration files were changed meanwhile (by another "
                "run) to what this one would write: none left to write",
                1,
            )
            run.plan = dataclasses.replace(plan, migrations=fresh)
            return run.plan
    raise ResetError(
        "The migration files changed after this run planned from them (another run "
        "changing them, or an edit, while it waited), and they are not what it would "
        "write; nothing was changed. Run resetdb again to plan from the files as they "
        "are now."
    )


def _apply_files(plan: ResetPlan, result: ResetResult, log: Log) -> None:
    if plan.migrations is None or result.migrations is not None:
        return
    step = time.monotonic()
    result.migrations = apply_plan(
        plan.migrations, log=_indented(log), command=COMMAND, finish=False
    )
    result.timings["migrations"] = time.monotonic() - step
    for line, level in _migrations_lines(result.migrations, result.timings["migrations"]):
        log(line, level)


def _rebuild_all(run: Run) -> None:
    """Every database in a transaction of its own, committed together at the end."""
    plan, result, log = run.plan, run.result, run.log
    conf = get_settings()
    # The id of each database's transaction: code run inside it may end it itself.
    transaction_ids: dict[str, str] = {}
    try:
        with contextlib.ExitStack() as transactions:
            step = time.monotonic()
            for alias in plan.aliases:
                transactions.enter_context(transaction.atomic(using=alias))
                take_reset_lock(alias, conf.lock_timeout)
                transaction_ids[alias] = postgres.transaction_id(connections[alias])
            result.timings["lock"] = time.monotonic() - step
            _log_wait(log, result.timings["lock"], "for another reset of the database")
            _apply_files(plan, result, log)
            for alias in plan.aliases:
                prefix = f"[{alias}] " if len(plan.aliases) > 1 else ""
                database = _rebuild(run, alias, prefix)
                result.databases.append(database)
            for alias in plan.aliases:
                postgres.check_deferred_constraints(connections[alias])
            # A marker the DBA stored while the run went on stops it now, before the
            # commit (the gates read it at the start).
            for alias, target in zip(plan.aliases, plan.targets, strict=True):
                guard.check_protected(connections[alias], target.database, COMMAND)
            _committing(result)
            interrupts.defer()  # until run_plan has finished what the commit began
    except BaseException as exc:
        # The commit failed, or never began: a Ctrl-C deferred meanwhile changes nothing.
        interrupts.resume()
        _refuse_committed_inside(result, exc, transaction_ids)
        _undo(result.migrations, exc, log)
        raise
    result.committed = True
    for alias in plan.aliases:
        faults.reached("commit", alias)


def _refuse_committed_inside(
    result: ResetResult, exc: BaseException, transaction_ids: dict[str, str]
) -> None:
    """After ``exc``: when code run inside the reset had committed its transaction (a
    seed, a migration's RunPython or a receiver sent COMMIT), say what is committed and
    keep the files that go with it, instead of putting the earlier ones back."""
    if isinstance(exc, TransactionEnded) and exc.committed:
        _committed_inside(result, str(exc))
    if not any(postgres.committed(connections[a], t) for a, t in transaction_ids.items()):
        return
    what = str(exc) if isinstance(exc, ResetError) else f"{type(exc).__name__}: {one_line(exc)}"
    for untrue in (
        "; the transaction was rolled back, nothing was changed",
        "; nothing was written",
    ):
        what = what.rstrip(".").removesuffix(untrue)
    _committed_inside(
        result,
        f"{what}; but code run inside the reset (a migration's RunPython or a receiver) had "
        "committed its transaction itself (a COMMIT sent as SQL)",
    )


def _committed_inside(result: ResetResult, what: str) -> NoReturn:
    """Code run inside the transaction of a reset in place (a seed, a RunPython, a
    receiver) committed it: the database holds the rebuild up to there, so the migration
    files stay those it was rebuilt from."""
    where = ""
    if result.migrations is not None:
        finish_plan(result.migrations)
        if result.migrations.backup is not None:
            where = f" (backup {str(result.migrations.backup.path)!r} holds the earlier ones)"
    raise ResetError(
        f"{what.rstrip('.')}: the database holds the rebuild up to it, committed, and the "
        f"migration files are those it was rebuilt from{where}; run resetdb again."
    )


def _committing(result: ResetResult) -> None:
    if result.migrations is not None:
        committing_plan(result.migrations)


def _marker_check(target: str) -> Callable[[Any], None]:
    """For a swap's ``recheck``: refuse when a DBA marked ``target`` while the run went
    on (read on the maintenance database, from what is stored)."""

    def check(cursor: Any) -> None:
        guard.refuse_marked(postgres.protected_markers(cursor, target), target, COMMAND)

    return check


def _committed(result: ResetResult) -> None:
    """The databases hold the rebuild: from now on nothing is undone."""
    result.committed = True


def _reopen(result: ResetResult) -> None:
    if result.migrations is not None:
        reopen_plan(result.migrations)


def _from_snapshot(run: Run) -> bool:
    """Restore the plan's snapshot; False when it cannot be used this time (then the
    files may be regenerated already, and the rebuild goes on from there)."""
    plan, result, log = run.plan, run.result, run.log
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
            terminate_blockers=run.terminate_blockers,
            log=_indented(log, 0),
            inside=inside,
            committing=lambda: _committing(result),
            committed=lambda: _committed(result),
            recheck=_marker_check(snapshot_plan.target),
            progress=run.progress,
            schemas=plan.targets[0].schemas,
        )
    except snapshots.NotRestorable as exc:
        _reopen(result)
        log(f"  snapshot    not used: {exc}", 1)
        return False
    except BaseException as exc:
        if not result.committed:  # swapped in already: nothing is undone (see run_plan)
            _undo(result.migrations, exc, log)
        raise
    result.committed = True
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


def _build_and_swap(run: Run) -> bool:
    """Rebuild in a new database, step by step, and swap it in; False when that cannot
    be done this time (then the rebuild goes on in place)."""
    plan, result, log = run.plan, run.result, run.log
    swap = plan.swap
    assert swap is not None
    built: list[DatabaseResult] = []
    started: list[bool] = []

    def ready() -> None:
        # Said only once the sessions connected now allow the swap.
        started.append(True)
        where = (
            "a second new database, to swap it in for the empty one at the end"
            if swap.alias in run.created
            else "a new database, to swap it in at the end"
        )
        log(f"  database    building in {where}: {swap.reason}", 2 if run.plan_shown else 1)
        _apply_files(plan, result, log)

    def build() -> None:
        # No transaction around it all: nobody sees this database until the swap, and
        # a failure drops it.
        built.append(_rebuild(run, swap.alias, "", fresh=True))

    start = plan.states.start if plan.states is not None else None
    try:
        seconds = newdatabase.build_fresh(
            swap,
            build=build,
            terminate_blockers=run.terminate_blockers,
            log=_indented(log, 0),
            ready=ready,
            committing=lambda: _committing(result),
            committed=lambda: _committed(result),
            recheck=_marker_check(swap.target),
            template=start.snapshot if start is not None else None,
            schemas=plan.targets[0].schemas,
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
        if not result.committed:  # swapped in already: nothing is undone (see run_plan)
            _undo(result.migrations, exc, log)
        raise
    result.committed = True
    (database,) = built
    database.database = swap.target
    database.timings["swap"] = seconds
    result.databases.append(database)
    log(f"  swap        swapped the new database in ({seconds:.2f} s from its creation)", 1)
    return True


def _keep(run: Run, snapshot_plan: snapshots.SnapshotPlan) -> None:
    """Keep a snapshot of the database just rebuilt; a failure here is only reported: a
    snapshot is a cache, and the reset is complete whatever befalls it."""
    try:
        _keep_snapshot(run, snapshot_plan)
    except Exception as exc:
        why = str(exc) if isinstance(exc, ResetError) else f"{type(exc).__name__}: {one_line(exc)}"
        if _snapshot_exists(run.plan):  # it failed once the copy had its name
            run.log(f"  snapshot    kept {snapshot_plan.name}, then: {why}", 1)
        else:
            run.log(f"  snapshot    not kept: {why}", 1)


def _keep_snapshot(run: Run, snapshot_plan: snapshots.SnapshotPlan) -> None:
    plan, result, log = run.plan, run.result, run.log
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
    seconds, stale = snapshots.keep(
        snapshot_plan,
        tables=database.tables,
        rows=database.rows,
        quick=snapshot_plan.quick,
        log=log,
        reads=database.reads,
        progress=run.progress,
    )
    result.timings["snapshot"] = seconds
    older = f"; the next run drops {stale} older one(s)" if stale else ""
    log(f"  snapshot    kept {snapshot_plan.name} in {seconds:.2f} s{older}", 1)


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


def _rebuild(run: Run, alias: str, prefix: str, *, fresh: bool = False) -> DatabaseResult:
    """Rebuild one database: its schemas reset, migrated, seeded. ``fresh``: in the new
    database of a build and swap, where the build cache is used."""
    plan, result, log, progress = run.plan, run.result, run.log, run.progress
    terminate_blockers, migrate_output = run.terminate_blockers, run.migrate_output
    connection = connections[alias]
    states = plan.states if fresh else None
    start = states.start if states is not None else None
    # Project modules first imported by the build (a RunPython's lazy import) count for
    # the snapshot as the seeds' reads do: the key was made before they were imported.
    modules_before = set(sys.modules)
    step = time.monotonic()
    if start is None:
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
        # In a new database nothing of the user's is dropped: a detail, not a step.
        log(
            f"  {prefix}schema      dropped {schema.tables_dropped} table(s) of "
            f"{', '.join(schema.schemas)}{restored} in {db.timings['schema']:.2f} s",
            2 if fresh else 1,
        )
    else:
        # The new database is a copy of the state: what changed goes, the rest is kept.
        buildcache.drop_what_changed(alias, start)
        db = DatabaseResult(alias, connection.settings_dict["NAME"])
        db.state = start.state.name
        db.timings["schema"] = time.monotonic() - step

    step = time.monotonic()
    # With migrate's own output shown (verbosity 2), its lines are the progress.
    shown = progress if migrate_output is None else NO_PROGRESS
    if states is not None:
        migrated = _migrate_cached(run, alias, states, migrate_output, shown, db)
    else:
        migrated = _migrate(plan, alias, migrate_output, shown, prefix)
    db.timings["migrate"] = time.monotonic() - step
    db.migrations = len(migrated.applied)
    db.built = migrated.built
    db.adapted = migrated.adapted
    db.tables = postgres.count_tables(connection, plan.schemas)
    built = f" ({db.built} built from the models)" if db.built else ""
    if start is not None:
        less = f", less {', '.join(start.removed_apps)}" if start.removed_apps else ""
        log(
            f"  {prefix}migrate     started from the state after {start.kept} of "
            f"{start.total} migrations ({start.state.name}{less}), applied {db.migrations} "
            f"migration(s){built}, {db.tables} table(s) in {db.timings['migrate']:.2f} s",
            1,
        )
    else:
        log(
            f"  {prefix}migrate     applied {db.migrations} migration(s){built}, {db.tables} "
            f"table(s) in {db.timings['migrate']:.2f} s",
            1,
        )
    if db.state_kept:
        log(f"  {prefix}cache       kept the migrated state {db.state_kept}", 1)
    elif db.state_problem:
        log(f"  {prefix}cache       migrated state not kept: {db.state_problem}", 1)
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
    db.reads.files.update(dependencies.imported_since(modules_before))
    timings = dict(db.timings)
    if "migrations" in result.timings:
        timings["migrations"] = result.timings["migrations"]
    post_reset.send(sender=ResetPlan, alias=alias, plan=plan, timings=timings, snapshot=None)
    return db


def _migrate_cached(
    run: Run,
    alias: str,
    states: buildcache.StatePlan,
    output: Any | None,
    progress: Progress,
    db: DatabaseResult,
) -> migrate_step.MigrateResult:
    """Apply what the migrated state (if any) does not hold, then keep the state of the
    whole plan before post_migrate runs."""
    plan = run.plan
    start = states.start
    shown = migrate_step.Shown(progress, "  migrate     ")
    labels: list[str] = []
    if plan.migrations is not None and get_settings().fast_build:
        labels = [app.label for app in plan.migrations.regenerated]
    build_plan = migrate_step.plan_rest(alias, labels)
    pending: list[tuple[str, tuple[str, ...]]] = []
    if start is not None:
        held = {f"{app}.{name}" for app, name in build_plan.applied}
        if held != buildcache.held(start):
            raise snapshots.NotRestorable(
                f"the state {start.state.name} does not hold the migrations it records"
            )
        pending = list(start.later)
        if pending and len(build_plan.fast) < len(build_plan.plan):
            # Migrations run for real may alter what those statements name.
            postgres.execute_batches(connections[alias], [sql for sql, _ in pending])
            pending = []

    def checkpoint(migrated: migrate_step.MigrateResult) -> None:
        if start is not None and start.same:
            return  # the state holds all of it already
        connection = connections[alias]
        later = pending + list(zip(migrated.later, migrated.later_tables, strict=True))
        # Kept under the environment the next reset will find: the target's, as the
        # migrations just left it (the extensions they made are there from now on).
        kept = buildcache.with_environment(states, _environment_now(plan, alias))
        data = buildcache.record(kept, later=later)
        tables = postgres.count_tables(connection, plan.schemas)
        try:
            db.state_kept, seconds = snapshots.keep_state(
                alias,
                states.target,
                connection.settings_dict["NAME"],
                kept.key,
                data,
                tables=tables,
            )
        except Exception as exc:  # the reset goes on without it
            db.state_problem = one_line(exc)
            return
        db.timings["state"] = seconds

    migrated = migrate_step.build(
        alias, build_plan, output=output, shown=shown, checkpoint=checkpoint
    )
    if build_plan.fallback and any(m.app_label in labels for m in build_plan.plan):
        migrated.fallback = build_plan.fallback
    migrated.later = [sql for sql, _ in pending] + migrated.later
    if start is not None:
        snapshots.mark_used(alias, start.snapshot, "")
    return migrated


def _environment_now(plan: ResetPlan, alias: str) -> dict[str, Any]:
    """The build cache's environment of ``alias``'s database as it is now (its inputs)."""
    target = plan.targets[0]
    _, context = postgres.whole_database_context(connections[alias], target.schemas)
    return snapshots.environment_inputs(alias, target, context)


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
