"""The snapshot store: names, listing, finding, keeping and dropping snapshots, and the Sweeper."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

from django_resetdb import (
    __version__,
    background,
    clock,
    dependencies,
    faults,
    guard,
    postgres,
    seeding,
)
from django_resetdb.conf import SETTING_NAME, get_settings
from django_resetdb.exceptions import ResetError
from django_resetdb.output import Log, one_line
from django_resetdb.progress import NO_PROGRESS, Progress
from django_resetdb.regenerate import RegenerationPlan
from django_resetdb.snapshots.fingerprints import (
    components,
    differences,
    digest,
    fingerprint_inputs,
    quick_key,
)

PREFIX = "resetdb_snap_"


# The kind of a migrated state (see ``buildcache``), kept under the same prefix.
STATE = "state"


SWAP = "resetdb_swap_"


# PostgreSQL keeps the first NAMEDATALEN - 1 bytes of a name.
NAME_BYTES = 63


# Random hex digits that end a replaced database's name.
REPLACED_SUFFIX = 8


REPLACED_END = re.compile(f"[0-9a-f]{{{REPLACED_SUFFIX}}}")


class NotRestorable(Exception):
    """The snapshot cannot be used this time; the reset goes the normal way."""


@dataclass(frozen=True)
class Snapshot:
    name: str
    target: str
    fingerprint: str
    created: str
    used: str  # when a reset last restored it (or made it)
    quick: str  # its quick key, see quick_key()
    tables: int
    rows: int
    size: int
    data: dict[str, Any]  # its comment, as stored
    version: str = ""  # its pg_database row's version now, see postgres.row_versions

    @classmethod
    def parse(cls, name: str, comment: str | None, size: int, version: str = "") -> Snapshot | None:
        try:
            data = json.loads(comment or "")
            return cls(
                name,
                str(data["target"]),
                str(data["fingerprint"]),
                str(data["created"]),
                str(data.get("used", data["created"])),
                str(data.get("quick", "")),
                int(data["tables"]),
                int(data["rows"]),
                size,
                data,
                version,
            )
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def kind(self) -> str:
        """ "snapshot" (the database after a reset) or "state" (after the migrations,
        before the seeds: see ``buildcache``)."""
        return str(self.data.get("kind") or "snapshot")

    @property
    def is_state(self) -> bool:
        return self.kind == STATE

    @property
    def kept_on(self) -> str:
        """When it was kept, to the second, as the listings show it."""
        return self.created[:19].replace("T", " ")

    @property
    def edited(self) -> bool:
        """Whether someone changed it after it was kept: to edit a snapshot one opens it
        to connections (and may close it again), which gives its ``pg_database`` row a
        new version; the version the row had once kept is in its comment."""
        return "row" in self.data and str(self.data["row"]) != self.version

    def changed(self) -> str:
        """Why it may not be what was kept, or "": it is not restored then."""
        if self.edited:
            return (
                f"{self.name} was changed after it was kept (opened to connections, "
                "altered or renamed): its rows may not be what the seeds wrote"
            )
        if "row" not in self.data:
            return f"{self.name} was kept by an earlier version, which did not record its state"
        return ""

    def stale(self) -> str:
        """What the seeds read that differs now (see dependencies.Reads), or "": a
        snapshot whose seeds' reads are not known is stale too."""
        reads = dependencies.Reads.from_json(self.data.get("reads"))
        if reads is None:
            return "what the seeds read when it was kept is not known"
        return reads.changed()

    def describe(self) -> str:
        if self.is_state:
            held = len(self.data.get("migrations") or [])
            what = f"migrated state: {held} migration(s), {self.tables} table(s), not seeded"
        else:
            what = f"{self.tables} table(s), {self.rows} row(s) seeded"
        if self.edited:
            what += "; changed after it was kept, not used"
        return f"{self.name}  {self.kept_on}  {self.size / 2**20:.0f} MB  {what}"


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _stale(
    snapshots: Sequence[Snapshot], spare: set[str], room: int = 0, state_room: int = 0
) -> list[Snapshot]:
    """The snapshots beyond ``SNAPSHOTS`` (less ``room`` for ones about to be kept),
    least recently used first, but ``spare``; and so the migrated states, counted on
    their own (less ``state_room``)."""
    stale = []
    for kind, making in (("snapshot", room), (STATE, state_room)):
        of_kind = [s for s in snapshots if s.kind == kind]
        by_use = sorted(of_kind, key=lambda s: (s.used, s.name), reverse=True)
        keep = max(0, get_settings().snapshots - making)
        stale += [s for s in by_use[keep:] if s.name not in spare]
    return stale


@dataclass
class SnapshotPlan:
    alias: str
    target: str
    fingerprint: str
    existing: Snapshot | None
    unusable: str = ""  # why the cache is off this time, or ""
    quick: str = ""  # found by its quick key, without planning the migrations
    passed_over: str = ""  # why the snapshot of this fingerprint is not restored, or ""
    in_the_way: bool = False  # that snapshot was changed: none is kept in its place
    # The fingerprint's inputs one by one (see fingerprints.components), kept with the
    # snapshot; and, when none matched, which of them differ from the newest snapshot's.
    inputs: dict[str, str] = field(default_factory=dict)
    differs: str = ""

    @property
    def name(self) -> str:
        return snapshot_name(self.target, self.fingerprint)


def _fitted(prefix: str, target: str, digest: str, reserved: int = 0) -> str:
    """``prefix``, as much of ``target`` as fits, and ``digest``: a name PostgreSQL keeps
    whole (it cuts names at ``NAME_BYTES`` bytes), ``reserved`` bytes left for a suffix.
    The target is cut by bytes, never inside a character; the digest is never cut."""
    room = NAME_BYTES - len(prefix.encode()) - 1 - len(digest) - reserved
    part = target.encode()[: max(room, 0)].decode("utf-8", "ignore")
    return f"{prefix}{part}_{digest}"


def snapshot_name(target: str, fingerprint: str) -> str:
    """The target's name (as much of it as fits), then a digest of the target and the
    fingerprint: on a shared server the name says whose it is, and two fingerprints
    never share one."""
    digest = hashlib.sha256(f"{target}\0{fingerprint}".encode()).hexdigest()
    return _fitted(PREFIX, target, digest[:24])


def _target_digest(target: str) -> str:
    return hashlib.sha256(target.encode()).hexdigest()[:16]


def swap_names(target: str) -> tuple[str, str]:
    """The copy's name while it is made, and the prefix of the replaced databases' (a
    replaced database's name ends with ``REPLACED_SUFFIX`` random hex digits, so that
    a run right after another never reuses one)."""
    digest = _target_digest(target)
    return (
        _fitted(f"{SWAP}new_", target, digest),
        _fitted(f"{SWAP}old_", target, digest, 1 + REPLACED_SUFFIX) + "_",
    )


def keep_name(target: str) -> str:
    """A snapshot's name while it is copied and marked: one that names its target, so
    that a copy left by a killed run is known for whose it is (a snapshot's own name
    does not tell)."""
    return _fitted(f"{SWAP}keep_", target, _target_digest(target))


def _legacy_names(target: str) -> tuple[str, str, str]:
    """The names earlier versions gave the copy in the making, the replaced databases
    (a prefix) and the snapshot being kept, from a digest of the target alone: what
    they left is still listed and dropped."""
    digest = hashlib.sha256(target.encode()).hexdigest()[:20]
    return f"{SWAP}new_{digest}", f"{SWAP}old_{digest}_", f"{SWAP}keep_{digest}"


def _half_made_names(target: str) -> list[str]:
    new, _, keeping = _legacy_names(target)
    return [swap_names(target)[0], keep_name(target), new, keeping]


def _replaced_prefixes(target: str) -> list[str]:
    return [swap_names(target)[1], _legacy_names(target)[1]]


def _is_replaced(name: str, target: str) -> bool:
    """Whether ``name`` is one a swap of ``target`` gave the database it replaced."""
    return any(
        name.startswith(prefix) and REPLACED_END.fullmatch(name[len(prefix) :]) is not None
        for prefix in _replaced_prefixes(target)
    )


def half_made(alias: str, target: str) -> list[str]:
    """The databases that runs killed half-way left for ``target``: a restore's or a
    build's new database, a snapshot being kept."""
    with maintenance_cursor(alias) as cursor:
        return _half_made_on(cursor, target)


def _half_made_on(cursor: Any, target: str) -> list[str]:
    names = _half_made_names(target)
    return [name for name, _, _ in postgres.databases_like(cursor, SWAP) if name in names]


def drop_half_made(cursor: Any, target: str) -> list[str]:
    """Drop what runs killed half-way left for ``target`` (see :func:`half_made`) and
    return their names. The caller holds the target's name lock, so nobody is making
    any of them now: the background sweep, which cannot take that lock while this run
    holds it, would leave them."""
    left = _half_made_on(cursor, target)
    postgres.execute(cursor, [postgres.drop_database_sql(name) for name in left])
    return left


def replaced(alias: str, target: str) -> list[tuple[str, int]]:
    """The databases restores and swaps of ``target`` replaced, not dropped yet (their
    background drop failed, or is still going), with their sizes: the next run drops
    them."""
    with maintenance_cursor(alias) as cursor:
        rows = [
            row
            for prefix in _replaced_prefixes(target)
            for row in postgres.databases_like(cursor, prefix, sizes=True)
        ]
    return [(name, size) for name, _, size in rows if _is_replaced(name, target)]


class Sweeper(threading.Thread):
    """Drops, in the background, what earlier runs left to drop: the databases restores
    replaced whose own drop failed (see :func:`background.drop_later`) and the snapshots
    beyond ``SNAPSHOTS`` (least recently used first).

    A rebuild does not wait for a database's removal (on PostgreSQL 15+ ``DROP
    DATABASE`` forces a checkpoint, which right after a rebuild has much to write); the
    next run drops them while it plans, before it writes much itself. With ``later``
    (a reset's sweep) it only picks them and hands them to a process of their own (see
    :func:`background.drop_later`): the run never waits for a drop, its own or one an
    earlier run's process is still at. ``spare`` names a snapshot this run is about to
    restore; ``room`` makes room for one it is about to keep. Without ``snapshots`` (the
    cache is off this time) the snapshots are left as they are. What a run killed
    half-way left is dropped too, at once, unless a run is making it now (it goes by
    a name every run of the target makes its copies under).
    """

    def __init__(
        self,
        alias: str,
        target: str,
        spare: set[str] | None = None,
        room: int = 0,
        *,
        snapshots: bool = True,
        state_room: int = 0,
        later: bool = False,
    ) -> None:
        super().__init__(name="django_resetdb sweeper", daemon=True)
        self.alias, self.target = alias, target
        self.spare = spare or set()
        self.room = room
        self.state_room = state_room
        self.snapshots = snapshots
        self.later = later
        self.dropped: list[str] = []
        self.handed: list[str] = []  # to a process that drops them
        self.error = ""

    def run(self) -> None:
        try:
            # A connection of this thread's own: Django's may not cross threads.
            with maintenance_cursor(self.alias) as cursor:
                with postgres.database_name_free(cursor, self.target) as free:
                    if free:  # else the swap or snapshot holding the lock drops them
                        self.dropped += drop_half_made(cursor, self.target)
                    # Listed before the lock is let go: a swap this run makes later
                    # drops what it replaced itself.
                    rows = postgres.databases_like(cursor, SWAP)
                # An earlier run's background drop may be at them too: dropping is
                # idempotent.
                names = [name for name, _, _ in rows if _is_replaced(name, self.target)]
                # Earlier versions left what replaced a template a template: un-marked
                # first, or it cannot be dropped (only those: one a background drop is at
                # is invalid, and cannot be altered).
                templates = postgres.templates_among(cursor, names)
                postgres.execute(cursor, [postgres.not_template_sql(name) for name in templates])
                kept = [
                    snapshot
                    for snapshot in _parsed(cursor)
                    # One someone changed is theirs now: never dropped unasked.
                    if snapshot.target == self.target and not snapshot.edited
                ]
                if self.snapshots:
                    names += [s.name for s in _stale(kept, self.spare, self.room, self.state_room)]
                if self.later and names:
                    # Read now: one someone opens meanwhile is left by the process.
                    versions = postgres.row_versions(cursor, SWAP)
                    versions.update(postgres.row_versions(cursor, PREFIX))
                    picked = [(name, versions.get(name, "")) for name in names]
                    problem = background.drop_later(cursor.connection, picked)
                    if problem:
                        raise ResetError(f"could not start dropping them: {problem}")
                    self.handed += names
                    return
                for name in names:
                    postgres.execute(cursor, [postgres.drop_database_sql(name)])
                    self.dropped.append(name)
        except Exception as exc:
            self.error = one_line(exc)

    def finish(self, log: Log) -> float:
        """Wait for the drops to end; return the seconds waited, and say so when any."""
        waited = 0.0
        if self.is_alive():
            step = time.monotonic()
            self.join()
            waited = time.monotonic() - step
            level = 1 if waited >= clock.WAIT_SHOWN else 2
            log(f"  snapshot    waited {waited:.2f} s for {self._what()} to be dropped", level)
        for name in self.dropped:
            log(f"  dropped {name}, left by an earlier run", 2)
        for name in self.handed:
            log(f"  dropping {name}, left by an earlier run, in the background", 2)
        if self.error:
            log(f"  could not drop what an earlier run left: {self.error}", 0)
        return waited

    def _what(self) -> str:
        if len(self.dropped) == 1:
            return "the earlier database"
        if self.dropped:
            return f"{len(self.dropped)} earlier databases"
        return "what earlier runs left"


@contextlib.contextmanager
def maintenance_cursor(alias: str) -> Iterator[Any]:
    """A cursor on the server's maintenance database, in autocommit, as Django opens it
    to create test databases."""
    with postgres.maintenance_cursor(connections[alias]) as cursor:
        yield cursor


def plan_snapshot(
    target: guard.Target,
    migrations: RegenerationPlan | None,
    seeds: Sequence[seeding.Seed] | None,
    *,
    several: bool,
) -> SnapshotPlan | None:
    """Whether a snapshot can be restored or kept for ``target``; None when the cache is
    off (``SNAPSHOTS = 0``)."""
    if get_settings().snapshots == 0:
        return None
    alias = target.alias
    plan = SnapshotPlan(alias, target.database, "", None)
    if several:
        plan.unusable = "not used when several databases are reset together"
    else:
        plan.unusable = _role_problem(target)
    if not plan.unusable:
        refresh(plan, target, migrations, seeds)
        if not plan.unusable:
            plan.existing = find(alias, target.database, plan.fingerprint)
            if plan.existing is None:
                _passed_over(plan)
                if not plan.passed_over:
                    plan.differs = _differs(plan)
    return plan


def _differs(plan: SnapshotPlan) -> str:
    """Why no snapshot of the target answers: what its seeds read that changed, or which
    inputs differ from the newest snapshot's, as "...; ... since NAME was kept"; "" when
    there is none to compare with."""
    kept = [s for s in listed(plan.alias, plan.target) if not s.is_state and not s.changed()]
    same = next((s for s in kept if s.name == plan.name), None)
    if same is not None:
        stale = same.stale()
        return f"what its seeds read changed since {same.name} was kept ({stale})" if stale else ""
    known = [s for s in kept if isinstance(s.data.get("inputs"), dict)]
    if not known:
        return ""
    # The one the database was last rebuilt from (restored or kept): what changed since.
    newest = max(known, key=lambda s: (s.used, s.created))
    found = differences(newest.data["inputs"], plan.inputs)
    return f"{found} since {newest.name} was kept" if found else ""


def _passed_over(plan: SnapshotPlan) -> None:
    """Say why the snapshot of the plan's fingerprint, if there is one, is not restored
    (unless it is only out of date), and whether it is left in the way."""
    found = next((s for s in listed(plan.alias, plan.target) if s.name == plan.name), None)
    if found is not None and not found.is_state:
        plan.passed_over = found.changed()
        plan.in_the_way = found.edited


def find_quick(target: guard.Target, seeds: Sequence[seeding.Seed] | None) -> SnapshotPlan | None:
    """The snapshot whose quick key is this run's, if the cache is usable: then the
    migrations need no planning. None otherwise."""
    if get_settings().snapshots == 0 or _role_problem(target):
        return None
    lost, context = postgres.whole_database_context(connections[target.alias], target.schemas)
    if lost:
        return None
    key = quick_key(target, context, seeds)
    found = [
        s
        for s in listed(target.alias, target.database)
        if not s.is_state and s.quick == key and not s.stale() and not s.changed()
    ]
    if not found:
        plan = SnapshotPlan(target.alias, target.database, "", None)
        plan.quick = key
        return plan
    snapshot = found[-1]
    return SnapshotPlan(target.alias, target.database, snapshot.fingerprint, snapshot, "", key)


def _role_problem(target: guard.Target) -> str:
    """Why the role cannot create, rename and drop databases for ``target``, or ""."""
    abilities = postgres.capabilities(connections[target.alias])
    if not (abilities.superuser or abilities.create_database):
        return f"role {abilities.current_user!r} cannot create databases (CREATEDB)"
    if not (abilities.superuser or abilities.owns_database):
        return f"role {abilities.current_user!r} does not own database {target.database!r}"
    return ""


def refresh(
    plan: SnapshotPlan,
    target: guard.Target,
    migrations: RegenerationPlan | None,
    seeds: Sequence[seeding.Seed] | None,
    *,
    quick: bool = False,
) -> None:
    """Work out the fingerprint from the database as it is now.

    Before a reset it is the key to look for; after a rebuild, the key the snapshot is
    kept under. They differ when the reset itself changes the database around the
    schemas (its first run creates the extensions the migrations ask for): a snapshot is
    found by the next reset of a database that looks like the one it was taken of.
    """
    lost, context = postgres.whole_database_context(connections[plan.alias], target.schemas)
    inputs = fingerprint_inputs(plan.alias, target, context, migrations, seeds)
    plan.fingerprint = digest(inputs)
    plan.inputs = components(inputs)
    regenerating = migrations is not None
    plan.quick = quick_key(target, context, seeds, regenerating=regenerating) if quick else ""
    plan.existing = None
    if lost:
        plan.unusable = (
            f"a copy of the whole database would also bring back {', '.join(lost)} outside "
            f"{SETTING_NAME}['SCHEMAS']"
        )


def listed(alias: str, target: str | None = None, *, sizes: bool = False) -> list[Snapshot]:
    """The snapshots on ``alias``'s server (of database ``target``), oldest first;
    ``size`` is 0 unless ``sizes``."""
    with maintenance_cursor(alias) as cursor:
        found = _parsed(cursor, sizes=sizes)
    return sorted(
        (s for s in found if target is None or s.target == target),
        key=lambda s: (s.created, s.name),
    )


def _parsed(cursor: Any, *, sizes: bool = False) -> list[Snapshot]:
    """The snapshots on ``cursor``'s server, with their rows' versions."""
    # A database someone opened to connections is not left as the tool leaves its
    # snapshots, whatever its name and comment say: it is not listed nor dropped.
    rows = postgres.databases_like(cursor, PREFIX, sizes=sizes, closed=True)
    versions = postgres.row_versions(cursor, PREFIX)
    found = (
        Snapshot.parse(name, comment, size, versions.get(name, "")) for name, comment, size in rows
    )
    return [s for s in found if s is not None]


def mark_used(alias: str, snapshot: Snapshot, quick: str) -> None:
    """Record that a reset restored ``snapshot`` now (the least recently used go first),
    and the quick key it was restored for."""
    comment = json.dumps({**snapshot.data, "used": _now(), "quick": quick or snapshot.quick})
    with maintenance_cursor(alias) as cursor:
        postgres.execute(cursor, [postgres.comment_on_database_sql(snapshot.name, comment)])


def refuse_changed(cursor: Any, snapshot: Snapshot) -> None:
    """Raise :class:`NotRestorable` when ``snapshot`` changed since it was listed (read
    again just before it is copied, under the target's name lock)."""
    now = postgres.row_versions(cursor, snapshot.name).get(snapshot.name, "")
    again = dataclasses.replace(snapshot, version=now)
    if not now:
        raise NotRestorable(f"{snapshot.name} was dropped meanwhile")
    if again.changed():
        raise NotRestorable(again.changed())


def find(alias: str, target: str, fingerprint: str) -> Snapshot | None:
    """The snapshot kept under ``fingerprint``, unless what its seeds read has changed
    since (a rebuild then keeps a new one in its place)."""
    name = snapshot_name(target, fingerprint)
    return next(
        (
            s
            for s in listed(alias, target)
            if s.name == name
            and not s.is_state
            and s.fingerprint == fingerprint
            and not s.stale()
            and not s.changed()
        ),
        None,
    )


@contextlib.contextmanager
def connected_to(alias: str, database: str) -> Iterator[None]:
    """``alias``'s connection pointed at ``database`` while inside, then back."""
    with postgres.pointed_at(connections[alias], database):
        yield


def keep(
    plan: SnapshotPlan,
    *,
    tables: int,
    rows: int,
    quick: str,
    log: Callable[[str, int], None],
    reads: dependencies.Reads | None = None,
    progress: Progress = NO_PROGRESS,
) -> tuple[float, int]:
    """Copy the target database, just reset, into a snapshot. Returns the seconds and
    how many snapshots are now beyond ``SNAPSHOTS``, for the next run to drop. Raises
    :class:`ResetError` when the copy cannot be made (the reset itself is done).
    ``progress`` shows the seconds the copy has taken so far."""
    started = time.monotonic()
    alias, target = plan.alias, plan.target
    connections[alias].close()
    comment = json.dumps(
        {
            "django_resetdb": __version__,
            "target": target,
            "fingerprint": plan.fingerprint,
            "created": _now(),
            "tables": tables,
            "rows": rows,
            "quick": quick,
            # Checked again before a restore: the seeds may read them again.
            "reads": (reads or dependencies.Reads()).as_json(),
            # To say which input differs when a later reset does not find it.
            "inputs": plan.inputs,
        }
    )
    with maintenance_cursor(alias) as cursor:
        postgres.lock_database_name(cursor, target, get_settings().lock_timeout)
        for name in drop_half_made(cursor, target):
            log(f"  dropped {name}, left by an earlier run", 2)
        current_user = postgres.current_user(cursor)
        with progress.seconds("  snapshot    copying the database to keep a snapshot:"):
            _copy_as(cursor, target, target, plan.name, comment, current_user)
    faults.reached("kept", plan.name)
    # The oldest beyond SNAPSHOTS are dropped by the next run, in the background.
    # The sweep leaves those someone changed: they are not counted.
    ours = [s for s in listed(alias, target) if not s.edited]
    return time.monotonic() - started, len(_stale(ours, {plan.name}))


def _copy_as(cursor: Any, target: str, source: str, name: str, comment: str, owner: str) -> None:
    """Copy ``source`` as the closed, marked database ``name``. Copied and marked under a
    name of the target's, then renamed: a run killed before the mark would leave a full
    copy that no listing could tell was ours. The caller holds the target's name lock."""
    staging = keep_name(target)
    _refuse_in_the_way(cursor, name)
    try:
        copy = postgres.create_database_sql(staging, source, owner)
        postgres.execute(cursor, [postgres.drop_database_sql(staging), copy])
    except Exception as exc:
        raise ResetError(one_line(exc)) from exc
    faults.reached("snapshot", staging)
    postgres.execute(cursor, postgres.snapshot_marks_sql(staging, comment))
    postgres.execute(cursor, [postgres.drop_database_sql(name)])
    # The version its row has from now on goes into its comment: a later change of
    # the row (opening it to edit it) is seen before it is restored.
    data = json.loads(comment)
    postgres.rename_stamped(
        cursor, staging, name, lambda version: json.dumps({**data, "row": version})
    )


def _refuse_in_the_way(cursor: Any, name: str) -> None:
    """Refuse to replace database ``name`` when it is not a snapshot as the tool leaves
    them: someone opened it to connections, or changed it after it was kept."""
    comments = {n: comment for n, comment, _ in postgres.databases_like(cursor, name)}
    if name not in comments:
        return
    closed = name in {n for n, _, _ in postgres.databases_like(cursor, name, closed=True)}
    version = postgres.row_versions(cursor, name).get(name, "")
    snapshot = Snapshot.parse(name, comments[name], 0, version)
    if closed and snapshot is not None and not snapshot.edited:
        return
    why = "was opened to connections" if not closed else "was changed after it was kept"
    raise ResetError(
        f"database {name!r}, which this one would replace, {why}: it is left as it is. "
        "Drop it (resetdb --drop-snapshots drops it if it is closed again) or rename it "
        "to keep it, and the next reset keeps a new one."
    )


def state_name(target: str, key: str) -> str:
    """The name of the migrated state of ``target`` kept under ``key``."""
    return snapshot_name(target, f"{STATE}\0{key}")


def keep_state(
    alias: str,
    target: str,
    source: str,
    key: str,
    data: dict[str, Any],
    *,
    tables: int,
) -> tuple[str, float]:
    """Copy database ``source`` (the new database of a build of ``target``, just
    migrated, nobody connected) into a migrated state; return its name and the seconds.
    Runs while the build holds the target's name lock (see ``swap_in``). Raises
    :class:`ResetError` when the copy cannot be made."""
    started = time.monotonic()
    name = state_name(target, key)
    comment = json.dumps(
        {
            "django_resetdb": __version__,
            "target": target,
            "fingerprint": key,
            "created": _now(),
            "tables": tables,
            "rows": 0,
            "quick": "",
            **data,
        }
    )
    connections[alias].close()
    with maintenance_cursor(alias) as cursor:
        _copy_as(cursor, target, source, name, comment, postgres.current_user(cursor))
    faults.reached("state", name)
    return name, time.monotonic() - started


def states(alias: str, target: str) -> list[Snapshot]:
    """The migrated states of ``target`` a build may start from, oldest first: not one
    changed after it was kept."""
    return [s for s in listed(alias, target) if s.is_state and not s.changed()]


def drop(alias: str, name: str) -> None:
    if not name.startswith(PREFIX):
        raise ResetError(f"{name!r} is not a snapshot of django_resetdb.")
    with maintenance_cursor(alias) as cursor:
        postgres.execute(cursor, [postgres.drop_database_sql(name)])


@dataclass(frozen=True)
class Listing:
    """What ``resetdb --list-snapshots`` shows for one database."""

    alias: str
    database: str
    kept: list[Snapshot]
    half_made: list[str]
    replaced: list[tuple[str, int]]  # name, size in bytes

    @property
    def size(self) -> int:
        return sum(s.size for s in self.kept)

    def summary(self) -> str:
        """How many snapshots (and migrated states) there are, and their size."""
        states = sum(1 for s in self.kept if s.is_state)
        held = f" and {states} migrated state(s)" if states else ""
        return (
            f"{len(self.kept) - states} snapshot(s){held} of database {self.database!r} "
            f"(alias {self.alias!r}), {self.size / 2**20:.0f} MB in all."
        )


def _gated(aliases: Sequence[str], command: str) -> Iterator[tuple[str, str]]:
    """Each alias and its database, once every alias is known to be PostgreSQL."""
    for alias in aliases:  # before any alias is touched
        guard.check_postgresql(alias, command)
    for alias in aliases:
        # They touch only the tool's own copies: HOSTS is the only gate.
        yield alias, guard.check_server(alias, command).database


def list_all(aliases: Sequence[str]) -> Iterator[Listing]:
    """The snapshots of each alias's database, with sizes, and what the next run drops."""
    for alias, database in _gated(aliases, "resetdb --list-snapshots"):
        yield Listing(
            alias,
            database,
            listed(alias, database, sizes=True),
            half_made(alias, database),
            replaced(alias, database),
        )


def drop_all(aliases: Sequence[str], log: Log) -> Iterator[tuple[str, str, int, int]]:
    """Drop every snapshot and migrated state of each alias's database, and what earlier
    runs left; yields the alias, its database and the numbers of snapshots and of
    states dropped."""
    for alias, database in _gated(aliases, "resetdb --drop-snapshots"):
        found = listed(alias, database)
        for snapshot in found:
            drop(alias, snapshot.name)
        sweeper = Sweeper(alias, database)
        sweeper.run()
        sweeper.finish(log)
        held = sum(1 for snapshot in found if snapshot.is_state)
        yield alias, database, len(found) - held, held
