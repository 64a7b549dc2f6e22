"""The plan of a reset: what ``resetdb`` will do to which databases, worked out before
anything changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.apps import apps
from django.db import connections, router

from django_resetdb import (
    backups,
    buildcache,
    creating,
    guard,
    newdatabase,
    postgres,
    seeding,
    snapshots,
)
from django_resetdb.aliases import same_database, twin_line
from django_resetdb.conf import get_settings
from django_resetdb.exceptions import ResetError, refuse_string
from django_resetdb.regenerate import (
    PlannedLoader,
    RegenerationPlan,
    migration_files,
    plan_migrations,
    refuse_interrupted,
)

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
    # The build cache: the migrated state the build starts from, if any, and the one it
    # keeps (see buildcache); None when it is not used.
    states: buildcache.StatePlan | None = None
    # The migration files the plan was made from (see regenerate.migration_files).
    files: dict[Path, bytes] | None = None
    # Other aliases naming a database being reset (a read replica alias, say), each with
    # the alias whose connection it uses during the run (see aliases).
    twins: dict[str, str] = field(default_factory=dict)
    # About how many lock-table entries a reset in place takes, and how many the server
    # holds (see newdatabase.locks_needed); (0, 0) when not worked out.
    locks: tuple[int, int] = (0, 0)

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

    def lines(self, *, terminate_blockers: bool = False, verbosity: int = 1) -> list[str]:
        """The steps, one line each, and the files the regeneration touches (at
        ``verbosity`` 2, every reason an app is kept in full)."""
        lines = [new.planned_line() for new in self.creations]
        lines += [f"  {twin_line(twin, alias)}" for twin, alias in self.twins.items()]
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
                    lines += [f"  {line}" for line in [app.header(root), *app.file_lines(root)]]
        if self.migrations is not None:
            for app in self.migrations.kept:
                lines.append(f"  migrations  kept {app.kept_phrase()}")
                if verbosity >= 2 and app.kept_in_short:
                    lines.append(f"                ({app.kept})")
                lines += [f"  {line}" for line in app.file_lines(self.migrations.root)]
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
        start = self.states.start if self.states is not None else None
        if start is None:
            lines.append(f"  schemas     drop and recreate {', '.join(self.schemas)}")
            lines.append("  migrate     apply every migration")
        else:
            lines.append(f"  migrate     {start.line()}")
        if self.states is not None and start is None:
            lines += [f"  cache       not used: {why}" for why in self.states.misses]
        if self.states is not None and not (start is not None and start.same):
            lines.append(
                "  cache       keep the migrated state, before the seeds, for the next reset"
            )
        if self.seeds is None:
            lines.append("  seed        skipped (--no-seed)")
        else:
            entries = next(iter(self.seeds.values()), [])
            listed = ", ".join(s.entry for s in entries) or "nothing: SEEDS is empty"
            lines.append(f"  seed        {listed}")
        if snapshot is not None:
            if snapshot.passed_over:
                lines.append(f"  snapshot    not restored: {snapshot.passed_over}")
            if snapshot.differs:
                lines.append(f"  snapshot    not restored: {snapshot.differs}")
            if snapshot.unusable:
                lines.append(f"  snapshot    not used: {snapshot.unusable}")
            elif snapshot.in_the_way:
                lines.append(
                    f"  snapshot    none kept: {snapshot.name} is left as it is, and the "
                    "new one would take its name"
                )
            elif not snapshot.fingerprint:  # the database does not exist yet
                lines.append("  snapshot    keep one for the next reset")
            else:
                lines.append(f"  snapshot    keep one as {snapshot.name} for the next reset")
        return lines


def plan_reset(
    databases: Sequence[str] = ("default",),
    *,
    keep_migrations: bool = False,
    seed: bool = True,
    snapshot: bool = True,
) -> ResetPlan:
    """Run the gates on every alias and work out the plan; changes nothing."""
    refuse_string(databases, "the databases")
    conf = get_settings()
    aliases = list(dict.fromkeys(databases))
    if not aliases:
        raise ResetError("No database to reset.")
    # Before any alias is connected to or gated: no setting would allow another vendor.
    for alias in aliases:
        guard.check_postgresql(alias, COMMAND)
    targets = [guard.check(alias, COMMAND, conf.schemas, creatable=True) for alias in aliases]
    _refuse_same_database(targets)
    twins = {
        twin: target.alias
        for target in targets
        for twin in same_database(target.alias, target.database, aliases_of(targets))
    }
    creations = [creating.plan_creation(target) for target in targets if not target.exists]
    # Refused before the prompt where it can be told now. While another run changes the
    # files, its backup is half-way too: the run checks again once it has waited for it.
    with backups.files_lock_if_free(conf.backup_dir) as free:
        if free:
            refuse_interrupted(conf.backup_dir, COMMAND, rebuilds=True)
        # Read before anything is planned from them: a run that waits for another one
        # changing them checks they are still these (see pipeline.run).
        files = migration_files()
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
    locks = (0, 0)
    if len(targets) == 1 and exists:
        # A restore takes few locks: the history is counted only for a rebuild.
        models, operations = _models_on(aliases[0]), 0 if unchanged else _operations(migrations)
        locks = newdatabase.locks_needed(targets[0], models=models, operations=operations)
        swap, lock_warning = newdatabase.plan_swap(
            targets[0], models=models, operations=operations, locks=locks
        )
    if snapshot and not unchanged:
        if len(targets) == 1 and not exists:
            if conf.snapshots:
                snapshot_plan = snapshots.SnapshotPlan(aliases[0], targets[0].database, "", None)
        else:
            snapshot_plan = snapshots.plan_snapshot(
                targets[0], migrations, first_seeds, several=len(targets) > 1
            )
    plan = ResetPlan(
        targets,
        conf.schemas,
        migrations,
        seeds,
        snapshot_plan,
        swap,
        lock_warning,
        unchanged=unchanged,
        creations=creations,
        files=files,
        twins=twins,
        locks=locks,
    )
    if exists:
        plan_build_cache(plan)
    return plan


# Why a reset builds in a new database for the build cache.
STARTING = "to start from a migrated state of the build cache"
KEEPING = "to keep its migrated state in the build cache"


def plan_build_cache(plan: ResetPlan) -> None:
    """Use the build cache when the snapshot cache is on and usable and no snapshot is
    restored: the state to start from, and the build in a new database it needs (a
    state is copied from, or kept of, a database no transaction holds)."""
    snapshot = plan.snapshot
    if (
        snapshot is None
        or snapshot.unusable
        or plan.restoring
        or plan.unchanged
        or len(plan.targets) != 1
    ):
        return
    target = plan.targets[0]
    _, context = postgres.whole_database_context(connections[target.alias], target.schemas)
    environment = snapshots.environment_inputs(target.alias, target, context)
    states = buildcache.plan_states(
        target,
        plan.migrations,
        environment,
        snapshots.states(target.alias, target.database),
    )
    if plan.swap is None:
        why = STARTING if states.start is not None else KEEPING
        swap, _ = newdatabase.plan_swap(target, models=_models_on(target.alias), cache=why)
        if swap is None:
            return
        plan.swap = swap
    plan.states = states


def _plan_migrations() -> RegenerationPlan:
    # Apps with hand-written migrations are kept as they are, not refused: what the
    # reset leaves is what their migrations make.
    return plan_migrations(keep_hand_written=True)


def _operations(migrations: RegenerationPlan | None) -> int:
    """The operations of every migration a reset on an empty schema applies (``None``:
    the files as they are)."""
    try:
        graph = PlannedLoader(migrations).graph
    except Exception:  # the reset itself says what is wrong with them
        return 0
    return sum(len(migration.operations) for migration in graph.nodes.values())


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


def aliases_of(targets: Sequence[guard.Target]) -> list[str]:
    return [target.alias for target in targets]


def _refuse_same_database(targets: Sequence[guard.Target]) -> None:
    seen: dict[tuple[str, int, str] | str, str] = {}
    for target in targets:
        # Two host names (localhost, 127.0.0.1) may reach one server: its identity says.
        key = target.identity or (target.host, target.port, target.database)
        if key in seen:
            raise ResetError(
                f"Database aliases {seen[key]!r} and {target.alias!r} are the same database "
                f"{target.database!r} on {target.host or '(default socket)'}:{target.port}; "
                "name it once."
            )
        seen[key] = target.alias
