"""Snapshots: a template database kept after a reset, restored by the next reset whose
inputs are the same.

A snapshot is a copy of the whole database, named after a fingerprint of everything that
decides what a reset leaves: migration files, seeds (fixture files, the modules of
callables), the code imported and the installed distributions (see ``dependencies``),
every setting, Django's, PostgreSQL's and this package's versions, and the database
around the reset schemas (the schemas' owners and grants, extensions, other schemas).
What the seeds read while they ran (files, environment variables) is kept with the
snapshot and checked again before it is restored.

A restore copies it into a new database (``CREATE DATABASE ... TEMPLATE``), gives the
copy the target's owner, grants, comment and settings, checks them, then swaps the two
names in one transaction: until the swap the target is untouched, after it the target is
the copy. The replaced database, closed to connections, is dropped at once by a
process of its own (see ``background``); if that fails, by the next run, in the
background while it plans.

A copy of the whole database would also bring back, or lose, what lives outside the reset
schemas; so the cache is only used when nothing is there but extensions.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import importlib.util
import inspect
import json
import marshal
import os
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
from django.apps import apps
from django.conf import settings
from django.db import connections
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState

from django_resetdb import (
    __version__,
    background,
    clock,
    dependencies,
    guard,
    interrupts,
    postgres,
    seeding,
)
from django_resetdb.conf import SETTING_NAME, get_settings, project_root, user_settings
from django_resetdb.exceptions import ResetError
from django_resetdb.migrations_reset import MigrationPlan, migration_file, normalized
from django_resetdb.output import Log, one_line, relative_path
from django_resetdb.progress import NO_PROGRESS, Progress

PREFIX = "resetdb_snap_"
SWAP = "resetdb_swap_"
# PostgreSQL keeps the first NAMEDATALEN - 1 bytes of a name.
NAME_BYTES = 63
# Random hex digits that end a replaced database's name.
REPLACED_SUFFIX = 8
REPLACED_END = re.compile(f"[0-9a-f]{{{REPLACED_SUFFIX}}}")
# Where an object's default repr says it lives in memory.
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

# Keys of a DATABASES entry that say where and how to connect, not what is built.
CONNECTION_KEYS = frozenset(
    {"NAME", "USER", "PASSWORD", "HOST", "PORT", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "TEST"}
)
# Keys of DJANGO_RESETDB that change nothing in the result (the fast build and a build
# in a new database leave what the plain ways leave).
NEUTRAL_KEYS = frozenset(
    {"ENABLED", "HOSTS", "LOCK_TIMEOUT", "BACKUP_DIR", "SNAPSHOTS", "FAST_BUILD", "STRATEGY"}
)


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

    @classmethod
    def parse(cls, name: str, comment: str | None, size: int) -> Snapshot | None:
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
            )
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def kept_on(self) -> str:
        """When it was kept, to the second, as the listings show it."""
        return self.created[:19].replace("T", " ")

    def stale(self) -> str:
        """What the seeds read that differs now (see dependencies.Reads), or "": a
        snapshot whose seeds' reads are not known is stale too."""
        reads = dependencies.Reads.from_json(self.data.get("reads"))
        if reads is None:
            return "what the seeds read when it was kept is not known"
        return reads.changed()

    def describe(self) -> str:
        return (
            f"{self.name}  {self.kept_on}  {self.size / 2**20:.0f} MB  "
            f"{self.tables} table(s), {self.rows} row(s) seeded"
        )


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _stale(snapshots: Sequence[Snapshot], spare: set[str], room: int = 0) -> list[Snapshot]:
    """The snapshots beyond ``SNAPSHOTS`` (less ``room`` for ones about to be kept),
    least recently used first, but ``spare``."""
    by_use = sorted(snapshots, key=lambda s: (s.used, s.name), reverse=True)
    keep = max(0, get_settings().snapshots - room)
    return [s for s in by_use[keep:] if s.name not in spare]


@dataclass
class SnapshotPlan:
    alias: str
    target: str
    fingerprint: str
    existing: Snapshot | None
    unusable: str = ""  # why the cache is off this time, or ""
    quick: str = ""  # found by its quick key, without planning the migrations

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
    names = _half_made_names(target)
    with maintenance_cursor(alias) as cursor:
        rows = postgres.databases_like(cursor, SWAP)
    return [name for name, _, _ in rows if name in names]


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
    next run drops them while it plans, before it writes much itself.
    ``spare`` names a snapshot this run is about to restore; ``room`` makes room for
    one it is about to keep. Without ``snapshots`` (the cache is off this time) the
    snapshots are left as they are. What a run killed half-way left is dropped too,
    unless a run is making it now.
    """

    def __init__(
        self,
        alias: str,
        target: str,
        spare: set[str] | None = None,
        room: int = 0,
        *,
        snapshots: bool = True,
    ) -> None:
        super().__init__(name="django_resetdb sweeper", daemon=True)
        self.alias, self.target = alias, target
        self.spare = spare or set()
        self.room = room
        self.snapshots = snapshots
        self.dropped: list[str] = []
        self.error = ""

    def run(self) -> None:
        try:
            # A connection of this thread's own: Django's may not cross threads.
            with maintenance_cursor(self.alias) as cursor:
                left = _half_made_names(self.target)
                with postgres.database_name_free(cursor, self.target) as free:
                    # Listed before anything is dropped: a swap this run makes meanwhile
                    # drops what it replaced itself.
                    rows = postgres.databases_like(cursor, SWAP)
                    for name, _, _ in rows if free else []:
                        if name in left:
                            postgres.run_on(cursor, [postgres.drop_database_sql(name)])
                            self.dropped.append(name)
                # An earlier run's background drop may be at them too: dropping is
                # idempotent.
                names = [name for name, _, _ in rows if _is_replaced(name, self.target)]
                kept = [
                    snapshot
                    for snapshot in (
                        Snapshot.parse(name, comment, size)
                        for name, comment, size in postgres.databases_like(
                            cursor, PREFIX, closed=True
                        )
                    )
                    if snapshot is not None and snapshot.target == self.target
                ]
                if self.snapshots:
                    names += [s.name for s in _stale(kept, self.spare, self.room)]
                for name in names:
                    postgres.run_on(cursor, [postgres.drop_database_sql(name)])
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


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _migration_sources(plan: MigrationPlan | None) -> list[tuple[str, str]]:
    """(migration, sha256 of its text without the header) for every migration the
    reset applies, the planned files in place of those they replace."""
    files = plan.files if plan is not None else None
    if files is None:
        loader = MigrationLoader(None, ignore_no_migrations=True)
        files = {
            key: migration_file(migration) for key, migration in loader.disk_migrations.items()
        }
    changed = plan.changed if plan is not None else []
    replaced = {app.label for app in changed if not app.kept}
    sources = {}
    for (label, name), path in files.items():
        if label not in replaced:
            text = path.read_text(encoding="utf-8")
            sources[f"{label}.{name}"] = hashlib.sha256(normalized(text).encode()).hexdigest()
    for app in changed:
        for new in app.new_files:
            digest = hashlib.sha256(normalized(new.text).encode()).hexdigest()
            sources[f"{app.label}.{new.path.stem}"] = digest
    return sorted(sources.items())


def _seed_sources(seeds: Sequence[seeding.Seed] | None) -> list[Any]:
    if seeds is None:
        return ["--no-seed"]
    described: list[Any] = []
    root = project_root()
    for seed in seeds:
        if seed.function is None:
            described.append(
                [seed.entry, [[relative_path(f, root), _sha256(f)] for f in seed.files]]
            )
        else:
            module = inspect.getmodule(seed.function)
            source = getattr(module, "__file__", None)
            described.append(
                [
                    seed.entry,
                    relative_path(source, root) if source else "",
                    _sha256(source) if source else "",
                ]
            )
    return described


def _settings() -> dict[str, Any]:
    """Every setting, as the settings module's source is not part of the code covered:
    a seed may read any of them. The connection's own keys are left out (the target is
    covered by what it is), and DJANGO_RESETDB's keys that change nothing."""
    values: dict[str, Any] = {}
    with warnings.catch_warnings():
        # Django 6.1 warns on each read of a deprecated setting (EMAIL_BACKEND and the
        # other email settings, even at their defaults): reading them all here is not the
        # project using them, and Django already warns about the ones it sets.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        for name in dir(settings):
            if name.isupper() and name not in ("DATABASES", SETTING_NAME):
                values[name] = _canonical(getattr(settings, name, None))
    values["DATABASES"] = {
        alias: _canonical({k: v for k, v in entry.items() if k not in CONNECTION_KEYS})
        for alias, entry in sorted(getattr(settings, "DATABASES", {}).items())
        if isinstance(entry, dict)
    }
    raw = user_settings()
    values[SETTING_NAME] = {
        key: _canonical(value)
        for key, value in (raw if isinstance(raw, dict) else {}).items()
        if key not in NEUTRAL_KEYS
    }
    return values


def _inputs(alias: str, target: guard.Target, context: list[Any]) -> dict[str, Any]:
    """What the result depends on besides the migration files and the seeds."""
    connection = connections[alias]
    abilities = postgres.capabilities(connection)
    states = [state.comparable() for state in postgres.schema_states(connection, target.schemas)]
    return {
        "format": 2,
        "versions": [__version__, django.get_version(), abilities.server_version],
        "installed": dependencies.installed_distributions(),
        "database": [target.database, target.user, list(target.schemas), states, context],
        "settings": _settings(),
    }


def _digest(inputs: dict[str, Any]) -> str:
    text = json.dumps(inputs, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(
    alias: str,
    target: guard.Target,
    context: list[Any],
    migrations: MigrationPlan | None,
    seeds: Sequence[seeding.Seed] | None,
) -> str:
    inputs = _inputs(alias, target, context)
    inputs["migrations"] = _migration_sources(migrations)
    inputs["seeds"] = _seed_sources(seeds)
    inputs["code"] = dependencies.code_digests()
    return _digest(inputs)


def _canonical(value: Any, depth: int = 0) -> Any:
    """A stable stand-in for a value (a deconstructed field's argument, a setting): what
    repr() would give, but naming functions and classes rather than showing their memory
    address, with a function's code (a setting that is a function defined in the
    settings module is seen by its body), and an object of the default repr by its
    attributes."""
    deeper = depth + 1
    if depth > 8:  # deep enough for settings; a cycle stops here
        return ADDRESS.sub("", repr(value))
    if isinstance(value, (list, tuple)):
        return [_canonical(v, deeper) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v, deeper) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): _canonical(v, deeper) for k, v in value.items()}
    if inspect.isfunction(value):
        code = hashlib.sha256(marshal.dumps(value.__code__)).hexdigest()[:16]
        return f"{value.__module__}.{value.__qualname__}:{code}"
    if inspect.isclass(value):
        return f"{value.__module__}.{value.__qualname__}"
    shown = repr(value)
    if ADDRESS.search(shown) and hasattr(value, "__dict__") and not inspect.ismodule(value):
        # The default repr says nothing of what the object holds.
        return [ADDRESS.sub("", shown), _canonical(vars(value), deeper)]
    # An object's default repr shows where it lives in memory, which no other run shares.
    return ADDRESS.sub("", shown)


@functools.cache
def _models_state() -> str:
    """A digest of the project's models as the autodetector compares them (they do not
    change while a process runs: a reset regenerates files, not models)."""
    state = ProjectState.from_apps(apps)
    autodetector = MigrationAutodetector(state, state)
    described = [
        [
            list(key),
            [[name, _canonical(autodetector.deep_deconstruct(f))] for name, f in m.fields.items()],
            _canonical(sorted(m.options.items(), key=str)),
            _canonical(list(m.bases)),
            _canonical([[name, manager.__class__] for name, manager in m.managers]),
        ]
        for key, m in sorted(state.models.items())
    ]
    return _digest({"models": described})


def _migration_files() -> list[list[Any]]:
    """Every migration package's files, with their size and modification time."""
    found = []
    for app_config in apps.get_app_configs():
        module, _ = MigrationLoader.migrations_module(app_config.label)
        try:
            spec = importlib.util.find_spec(module) if module else None
        except (ImportError, ValueError):
            continue
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for entry in os.scandir(folder):
                if entry.name.endswith(".py"):
                    stat = entry.stat()
                    found.append([entry.path, stat.st_size, stat.st_mtime_ns])
    return sorted(found)


def quick_key(
    target: guard.Target,
    context: list[Any],
    seeds: Sequence[seeding.Seed] | None,
    *,
    regenerating: bool = True,
) -> str:
    """A key for the snapshot that can be worked out without planning the migrations:
    the fingerprint's inputs, with the models' state and the migration files' sizes and
    times in place of the files' planned text. Equal keys mean the files are what the
    last regeneration wrote and the models have not moved since: regenerating would
    change nothing. A snapshot kept by a run with ``--keep-migrations`` gets a key of
    its own: its files need not match the models, so a regenerating run must not find it
    by this key (its fingerprint still finds it when regenerating would change nothing)."""
    inputs = _inputs(target.alias, target, context)
    inputs["regenerating"] = regenerating
    inputs["models"] = _models_state()
    inputs["files"] = _migration_files()
    inputs["seeds"] = _seed_sources(seeds)
    inputs["code"] = dependencies.code_stats()
    return _digest(inputs)


def plan_snapshot(
    target: guard.Target,
    migrations: MigrationPlan | None,
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
    return plan


def find_quick(target: guard.Target, seeds: Sequence[seeding.Seed] | None) -> SnapshotPlan | None:
    """The snapshot whose quick key is this run's, if the cache is usable: then the
    migrations need no planning. None otherwise."""
    if get_settings().snapshots == 0 or _role_problem(target):
        return None
    lost, context = postgres.whole_database_context(connections[target.alias], target.schemas)
    if lost:
        return None
    key = quick_key(target, context, seeds)
    found = [s for s in listed(target.alias, target.database) if s.quick == key and not s.stale()]
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
    migrations: MigrationPlan | None,
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
    plan.fingerprint = fingerprint(plan.alias, target, context, migrations, seeds)
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
        # A database someone opened to connections is not left as the tool leaves its
        # snapshots, whatever its name and comment say: it is not listed nor dropped.
        rows = postgres.databases_like(cursor, PREFIX, sizes=sizes, closed=True)
    found = [Snapshot.parse(name, comment, size) for name, comment, size in rows]
    return sorted(
        (s for s in found if s is not None and (target is None or s.target == target)),
        key=lambda s: (s.created, s.name),
    )


def mark_used(alias: str, snapshot: Snapshot, quick: str) -> None:
    """Record that a reset restored ``snapshot`` now (the least recently used go first),
    and the quick key it was restored for."""
    comment = json.dumps({**snapshot.data, "used": _now(), "quick": quick or snapshot.quick})
    with maintenance_cursor(alias) as cursor:
        postgres.run_on(cursor, [postgres.comment_on_database_sql(snapshot.name, comment)])


def find(alias: str, target: str, fingerprint: str) -> Snapshot | None:
    """The snapshot kept under ``fingerprint``, unless what its seeds read has changed
    since (a rebuild then keeps a new one in its place)."""
    name = snapshot_name(target, fingerprint)
    return next(
        (
            s
            for s in listed(alias, target)
            if s.name == name and s.fingerprint == fingerprint and not s.stale()
        ),
        None,
    )


@contextlib.contextmanager
def connected_to(alias: str, database: str) -> Iterator[None]:
    """``alias``'s connection pointed at ``database`` while inside, then back."""
    with postgres.pointed_at(connections[alias], database):
        yield


def restore(
    plan: SnapshotPlan,
    *,
    terminate_blockers: bool,
    log: Callable[[str, int], None],
    inside: Callable[[], None] = lambda: None,
    committing: Callable[[], None] = lambda: None,
    progress: Progress = NO_PROGRESS,
) -> float:
    """Replace the target database with a copy of the snapshot; return the seconds.

    ``inside`` runs connected to the copy, in a transaction, before the swap (the
    post_reset signal); ``progress`` shows the seconds the copy has taken so far. Raises
    :class:`NotRestorable` when the target cannot be swapped this time (sessions that may
    not be ended), with nothing changed.
    """
    assert plan.existing is not None
    snapshot = plan.existing.name

    def copy(cursor: Any, name: str, wanted: postgres.DatabaseProperties) -> None:
        # One statement, however large the database: only the time can be shown.
        with progress.seconds("  snapshot    copying the snapshot to restore it:"):
            postgres.run_on(cursor, [postgres.create_database_sql(name, snapshot, wanted.owner)])

    return swap_in(
        plan.alias,
        plan.target,
        make=copy,
        inside=inside,
        terminate_blockers=terminate_blockers,
        log=log,
        committing=committing,
    )


def split_sessions(
    sessions: Sequence[postgres.Session], *, terminate_blockers: bool
) -> tuple[list[postgres.Session], list[postgres.Session]]:
    """The sessions a swap ends first, and those that keep it from happening.

    Idle sessions holding no lock are ended: they lose their connection, which a client
    such as Django opens again. A session in a transaction or a query, or holding an
    advisory lock, is ended only with ``--terminate-blockers``; one the role may not end
    never is."""
    ending = [s for s in sessions if s.endable and (s.idle or terminate_blockers)]
    return ending, [s for s in sessions if s not in ending]


def _count(sessions: Sequence[postgres.Session], kind: str) -> str:
    return f"{len(sessions)} {kind}session{'' if len(sessions) == 1 else 's'}"


def _pid(session: postgres.Session) -> str:
    return f"pid {session.pid}"


def ending_line(
    target: str,
    sessions: Sequence[postgres.Session],
    *,
    done: bool,
    name: Callable[[postgres.Session], str] = postgres.Session.label,
) -> str:
    """The line naming the sessions a swap ends (``done``) or would end."""
    idle = all(s.idle for s in sessions)
    kind = "idle " if idle else ""
    how = "" if idle else " (--terminate-blockers)"
    verb = "ended" if done else "end"
    named = "; ".join(name(s) for s in sessions)
    later = "" if done else " before the swap"
    return f"sessions    {verb} {_count(sessions, kind)} on {target!r}{later}{how} ({named})"


def blocker_parts(
    target: str,
    sessions: Sequence[postgres.Session],
    name: Callable[[postgres.Session], str] = postgres.Session.describe,
) -> list[str]:
    """Why ``sessions`` keep a swap of ``target`` from happening, naming each: one part
    for those in a transaction or a query, one for those holding an advisory lock, one
    for those the role may not end."""
    locking = [s for s in sessions if s.endable and s.state == "idle" and s.advisory]
    busy = [s for s in sessions if s.endable and s not in locking]
    foreign = [s for s in sessions if not s.endable]
    parts = []
    if locking:
        named = "; ".join(name(s) for s in locking)
        parts.append(
            f"{_count(locking, 'idle ')} on {target!r} holding an advisory lock ({named}), "
            "which --terminate-blockers ends"
        )
    if busy:
        named = "; ".join(name(s) for s in busy)
        parts.append(
            f"{_count(busy, '')} on {target!r} in a transaction or a query ({named}), "
            "which --terminate-blockers ends"
        )
    if foreign:
        named = "; ".join(name(s) for s in foreign)
        parts.append(f"{_count(foreign, '')} on {target!r} that this role may not end ({named})")
    return parts


def planned_session_lines(
    target: str, sessions: Sequence[postgres.Session], *, terminate_blockers: bool, instead: str
) -> list[str]:
    """For the plan: what a swap would do with ``sessions``, connected now (the target's
    lines describe each; these name them by pid). ``instead`` says what the reset would do
    if they keep the swap from happening."""
    ending, blocking = split_sessions(sessions, terminate_blockers=terminate_blockers)
    if blocking:
        lines = [f"sessions    {part}" for part in blocker_parts(target, blocking, _pid)]
        return [*lines, f"            with them connected, {instead}"]
    groups = [[s for s in ending if s.idle], [s for s in ending if not s.idle]]
    return [ending_line(target, group, done=False, name=_pid) for group in groups if group]


def _refuse_blockers(cursor: Any, target: str, terminate_blockers: bool) -> list[postgres.Session]:
    """The sessions to end before the swap; raises :class:`NotRestorable` naming those
    that would keep it from happening."""
    sessions = postgres.database_sessions(cursor, target)
    ending, blocking = split_sessions(sessions, terminate_blockers=terminate_blockers)
    if blocking:
        raise NotRestorable("; ".join(blocker_parts(target, blocking)))
    return ending


# A session that connects between the sessions' ending and the renames makes the swap
# fail; it is tried again this many times, ending the newcomers if they are idle.
SWAP_ATTEMPTS = 3


def swap_in(
    alias: str,
    target: str,
    *,
    make: Callable[[Any, str, postgres.DatabaseProperties], None],
    inside: Callable[[], None],
    terminate_blockers: bool,
    log: Callable[[str, int], None],
    ready: Callable[[], None] = lambda: None,
    check: Callable[[postgres.DatabaseProperties], None] = lambda wanted: None,
    committing: Callable[[], None] = lambda: None,
) -> float:
    """Make a new database (``make``), give it the target's own properties, run
    ``inside`` connected to it, then end the sessions on the target that may be ended
    (see :func:`split_sessions`) and swap the names in one transaction; return the
    seconds. ``ready`` runs once the sessions connected now allow the swap, before
    anything is made. Until the swap the target is untouched; any failure drops the new
    database.

    Raises :class:`NotRestorable` when the target cannot be swapped this time (sessions
    that may not be ended, properties that cannot be carried over), with nothing changed.

    ``committing`` runs just before the swap's transaction commits. Once it has, this
    returns with Ctrl-C deferred (see :mod:`interrupts`): the caller finishes what the
    swap began, then calls ``interrupts.resume()``.
    """
    started = time.monotonic()
    new, old = swap_names(target)
    old += uuid.uuid4().hex[:8]
    conf = get_settings()
    connections[alias].close()
    with maintenance_cursor(alias) as cursor:
        postgres.lock_database_name(cursor, target, conf.lock_timeout)
        # Left by a run that was killed half-way: only ours use this name.
        postgres.run_on(cursor, [postgres.drop_database_sql(new)])
        # Before anything is made: a build in a new database may take minutes.
        _refuse_blockers(cursor, target, terminate_blockers)
        wanted = postgres.database_properties(cursor, target)
        check(wanted)  # may raise NotRestorable: still nothing made, nothing said
        ready()
        current_user = postgres.current_user(cursor)
        make(cursor, new, wanted)
        try:
            postgres.run_on(cursor, postgres.database_properties_sql(new, wanted, current_user))
            copied = postgres.database_properties(cursor, new)
            if copied.comparable() != wanted.comparable():
                raise NotRestorable(
                    f"the new database's properties could not be made equal to {target!r}'s "
                    f"({copied.comparable()!r} != {wanted.comparable()!r})"
                )
            with connected_to(alias, new):
                inside()
            swap = postgres.swap_sql(target, new, old)
            for _ in range(SWAP_ATTEMPTS):
                # Again: sessions may have come or gone while the new database was made.
                ending = _refuse_blockers(cursor, target, terminate_blockers)
                if ending:
                    idle = [s for s in ending if s.idle]
                    busy = [s for s in ending if not s.idle]
                    postgres.terminate_idle_on(cursor, [s.pid for s in idle])
                    postgres.terminate_on(cursor, [s.pid for s in busy])
                    for group in (idle, busy):
                        if group:
                            log(ending_line(target, group, done=True), 1)
                committing()
                interrupts.defer()
                try:
                    swapped = postgres.swap_databases(cursor, swap)
                except BaseException:
                    interrupts.resume()  # not swapped: the error says so
                    raise
                if swapped:
                    break
                if interrupts.resume():
                    raise KeyboardInterrupt
            else:
                raise NotRestorable(
                    f"sessions kept connecting to {target!r} while it was being swapped"
                )
        except BaseException:
            postgres.run_on(cursor, [postgres.drop_database_sql(new)])
            raise
        # Swapped: the replaced database goes now, without this run waiting for it.
        problem = background.drop_later(cursor.connection, old)
        if problem:
            log(f"database    could not start dropping {old} ({problem}); the next run drops it", 1)
        else:
            log(f"database    dropping the replaced database {old} in the background", 2)
    return time.monotonic() - started


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
        }
    )
    with maintenance_cursor(alias) as cursor:
        postgres.lock_database_name(cursor, target, get_settings().lock_timeout)
        current_user = postgres.current_user(cursor)
        # Copied and marked under a name of the target's, then renamed: a run killed
        # before the mark would leave a full copy that no listing could tell was ours.
        staging = keep_name(target)
        try:
            copy = postgres.create_database_sql(staging, target, current_user)
            with progress.seconds("  snapshot    copying the database to keep a snapshot:"):
                postgres.run_on(cursor, [postgres.drop_database_sql(staging), copy])
        except Exception as exc:
            raise ResetError(one_line(exc)) from exc
        postgres.run_on(cursor, postgres.snapshot_marks_sql(staging, comment))
        postgres.run_on(
            cursor,
            [
                postgres.drop_database_sql(plan.name),
                postgres.rename_database_sql(staging, plan.name),
            ],
        )
    # The oldest beyond SNAPSHOTS are dropped by the next run, in the background.
    return time.monotonic() - started, len(_stale(listed(alias, target), {plan.name}))


def drop(alias: str, name: str) -> None:
    if not name.startswith(PREFIX):
        raise ResetError(f"{name!r} is not a snapshot of django_resetdb.")
    with maintenance_cursor(alias) as cursor:
        postgres.run_on(cursor, [postgres.drop_database_sql(name)])


def planned_statements(plan: SnapshotPlan) -> list[str]:
    """The statements a restore would send (for ``--dry-run``), as text."""
    assert plan.existing is not None
    snapshot = plan.existing.name
    before, swap = _planned_swap(
        plan.alias,
        plan.target,
        lambda new, wanted: postgres.create_database_sql(new, snapshot, wanted.owner),
    )
    return before + swap


def _planned_swap(
    alias: str,
    target: str,
    make: Callable[[str, postgres.DatabaseProperties], Any],
) -> tuple[list[str], list[str]]:
    """The statements that make the new database and give it the target's properties,
    and those that swap it in, as text."""
    new, old = swap_names(target)
    old += "XXXXXXXX"
    with maintenance_cursor(alias) as cursor:
        wanted = postgres.database_properties(cursor, target)
        current_user = postgres.current_user(cursor)
        before = [make(new, wanted), *postgres.database_properties_sql(new, wanted, current_user)]
        swap = postgres.swap_sql(target, new, old)
        return (
            [s.as_string(cursor.connection) for s in before],
            [s.as_string(cursor.connection) for s in swap],
        )


# Building in a new database ---------------------------------------------------------
# Dropping a schema locks every object it removes; with its new tables on top, a large
# project needs more locks than PostgreSQL's shared lock table holds by default (64 per
# connection slot), and the one transaction fails. A database nobody can see yet needs
# no such transaction: it is built step by step, then swapped in like a snapshot.

# Lock-table entries one model's table, indexes and constraints take when created.
LOCKS_PER_MODEL = 6


@dataclass
class SwapPlan:
    alias: str
    target: str
    reason: str  # why the reset builds in a new database
    states: list[postgres.SchemaState]
    extensions: list[postgres.Extension]
    context: list[Any]  # the database around the schemas, as the new one must have it


def plan_swap(target: guard.Target, *, models: int) -> tuple[SwapPlan | None, str]:
    """A build in a new database when an in-place reset of ``target`` would need more
    locks than the server has; else None, with a warning when it would but cannot."""
    strategy = get_settings().strategy
    if strategy == "in-place":
        return None, ""
    connection = connections[target.alias]
    objects, capacity = postgres.lock_estimate(connection, target.schemas)
    needed = objects + LOCKS_PER_MODEL * models
    if strategy == "new-database":
        reason = f"{SETTING_NAME}['STRATEGY'] is 'new-database'"
    elif needed <= capacity:
        return None, ""
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
) -> float:
    """Make an empty database like the target (owner, encoding, locale, schemas,
    extensions), run ``build`` connected to it, and swap it in; return the seconds.
    ``ready`` is as for :func:`swap_in`."""

    def possible(wanted: postgres.DatabaseProperties) -> None:
        if wanted.locale_provider not in ("c", "i"):
            raise NotRestorable(
                f"database {plan.target!r} uses the locale provider "
                f"{wanted.locale_provider!r}, which a new database cannot be given here"
            )

    def empty(cursor: Any, name: str, wanted: postgres.DatabaseProperties) -> None:
        postgres.run_on(cursor, [postgres.create_empty_database_sql(name, wanted)])

    def inside() -> None:
        connection = connections[plan.alias]
        names = [state.name for state in plan.states]
        present = postgres.existing_schemas(connection, names)
        present_extensions = {e.name for e in postgres.extensions(connection)}
        current_user = postgres.privileges(connection).current_user
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
    )


def planned_build(plan: SwapPlan) -> tuple[list[str], list[str], list[str]]:
    """For ``--dry-run``: the statements that make the new database, those that prepare
    it (assuming ``template0`` has its usual ``public`` schema and ``plpgsql``), and those
    that swap it in, as text."""
    before, swap = _planned_swap(plan.alias, plan.target, postgres.create_empty_database_sql)
    connection = connections[plan.alias]
    current_user = postgres.privileges(connection).current_user
    prepare = postgres.prepare_schemas_sql(
        {"public"}, plan.states, plan.extensions, {"plpgsql"}, current_user
    )
    return before, [postgres.render(connection, s) for s in prepare], swap
