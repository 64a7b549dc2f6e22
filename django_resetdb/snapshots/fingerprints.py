"""Snapshot fingerprints: what a reset reads, in canonical form, and its digest and quick key."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
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
    dependencies,
    guard,
    postgres,
    seeding,
)
from django_resetdb.canonical import canonical as _canonical
from django_resetdb.conf import SETTING_NAME, get_settings, project_root, user_settings
from django_resetdb.output import relative_path
from django_resetdb.projectapps import source_text
from django_resetdb.regenerate import RegenerationPlan, migration_file, normalized

# Keys of a DATABASES entry that say where and how to connect, not what is built.
CONNECTION_KEYS = frozenset(
    {"NAME", "USER", "PASSWORD", "HOST", "PORT", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "TEST"}
)


# Keys of DJANGO_RESETDB that change nothing in the result (the fast build and a build
# in a new database leave what the plain ways leave).
NEUTRAL_KEYS = frozenset(
    {
        "ENABLED",
        "HOSTS",
        "LOCK_TIMEOUT",
        "BACKUP_DIR",
        "BACKUPS",
        "SNAPSHOTS",
        "FAST_BUILD",
        "STRATEGY",
        # What it leaves out is out of the key: itself changes nothing else.
        "IGNORED_SETTINGS",
    }
)


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _migration_sources(plan: RegenerationPlan | None) -> list[tuple[str, str]]:
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
    # A partly regenerated app's own files go too; its shared ones stay.
    deleted = {path.resolve() for app in changed for path in app.old_files}
    sources = {}
    for (label, name), path in files.items():
        if label not in replaced and path.resolve() not in deleted:
            text = source_text(path)
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
    ignored = set(get_settings().ignored_settings)
    with warnings.catch_warnings():
        # Django 6.1 warns on each read of a deprecated setting (EMAIL_BACKEND and the
        # other email settings, even at their defaults): reading them all here is not the
        # project using them, and Django already warns about the ones it sets.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        for name in dir(settings):
            if name.isupper() and name not in ("DATABASES", SETTING_NAME, *ignored):
                values[name] = _canonical(getattr(settings, name, None))
    values["DATABASES"] = {
        alias: _canonical({k: v for k, v in entry.items() if k not in CONNECTION_KEYS})
        for alias, entry in sorted(getattr(settings, "DATABASES", {}).items())
        if isinstance(entry, dict)
    }
    raw = user_settings()
    values[SETTING_NAME] = {
        key: _canonical(value)
        for key, value in (raw if isinstance(raw, Mapping) else {}).items()
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


def environment_inputs(alias: str, target: guard.Target, context: list[Any]) -> dict[str, Any]:
    """What decides what the migrations leave besides their own files and the code they
    import: the key of the build cache's states (see ``buildcache``). The seeds are not
    part of it."""
    inputs = _inputs(alias, target, context)
    inputs["settings"][SETTING_NAME].pop("SEEDS", None)
    inputs["kind"] = "state"
    return inputs


def environment(alias: str, target: guard.Target, context: list[Any]) -> str:
    return _digest(environment_inputs(alias, target, context))


def fingerprint_inputs(
    alias: str,
    target: guard.Target,
    context: list[Any],
    migrations: RegenerationPlan | None,
    seeds: Sequence[seeding.Seed] | None,
) -> dict[str, Any]:
    """Everything a snapshot's result depends on (see :func:`fingerprint`)."""
    inputs = _inputs(alias, target, context)
    inputs["migrations"] = _migration_sources(migrations)
    inputs["seeds"] = _seed_sources(seeds)
    inputs["code"] = dependencies.code_digests()
    return inputs


def fingerprint(
    alias: str,
    target: guard.Target,
    context: list[Any],
    migrations: RegenerationPlan | None,
    seeds: Sequence[seeding.Seed] | None,
) -> str:
    return _digest(fingerprint_inputs(alias, target, context, migrations, seeds))


def digest(inputs: dict[str, Any]) -> str:
    return _digest(inputs)


# Inputs by name, to say which changed ----------------------------------------------

# A distribution's metadata folder: name-version.dist-info (or .egg-info).
_DISTRIBUTION = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+?)(?:-py[\d.]+)?\.(?:dist|egg)-info$")


def _short(value: Any) -> str:
    return _digest(value)[:12]


def components(inputs: dict[str, Any]) -> dict[str, str]:
    """The inputs of a key one by one, each by a short digest (a package by its version):
    kept with a snapshot or a state, so that a later reset that does not find it can say
    which input differs."""
    found: dict[str, str] = {}
    ours, django_version, server = [*inputs.get("versions", []), "", "", ""][:3]
    found["version of django_resetdb"] = str(ours)
    found["version of Django"] = str(django_version)
    found["version of PostgreSQL"] = str(server)
    for entry in inputs.get("installed", ()):
        match = _DISTRIBUTION.match(str(entry))
        if match:
            name = match["name"].lower().replace("_", "-")
            found[f"package {name}"] = match["version"]
        elif str(entry).endswith("-info"):  # a metadata folder without a version
            found[f"package {str(entry).rpartition('.')[0].lower()}"] = ""
        else:
            found["version of Python"] = str(entry).split()[0]
    found["the database around the schemas"] = _short(inputs.get("database"))
    for name, value in inputs.get("settings", {}).items():
        if name == SETTING_NAME:
            for key, item in value.items():
                found[f"setting {SETTING_NAME}[{key!r}]"] = _short(item)
        elif name == "DATABASES":
            for alias, item in value.items():
                found[f"setting DATABASES[{alias!r}]"] = _short(item)
        else:
            found[f"setting {name}"] = _short(value)
    for key, value in inputs.get("migrations", []):
        found[f"migration {key}"] = str(value)[:12]
    seeds = inputs.get("seeds", [])
    for seed in seeds if isinstance(seeds, list) else []:
        if isinstance(seed, list) and seed:
            found[f"seed {seed[0]}"] = _short(seed)
        else:
            found[NO_SEED] = "yes"
    for path, value in inputs.get("code", []):
        found[f"file {path}"] = str(value)[:12]
    # Not part of the key: to tell a setting edited from one made at start-up.
    found[SETTINGS_FILES] = _settings_files_digest()
    return found


# The settings files' contents, by digest (see differences).
SETTINGS_FILES = "the settings files"


def _settings_files_digest() -> str:
    return _short([dependencies.file_digest(path) for path in dependencies.settings_files()])


# The input of a run with --no-seed.
NO_SEED = "--no-seed"

# How many differing inputs a line names.
SHOWN = 4


def differences(kept: Mapping[str, str], now: Mapping[str, str]) -> str:
    """The inputs that differ between a kept copy's ``kept`` and this run's ``now``, in a
    few words each. A setting that changed while the settings files did not is said to
    be made at start-up (or read from the environment)."""
    phrases: list[str] = []
    # One of the two ran without seeds: that says it, not each seed.
    seeding_differs = (NO_SEED in kept) != (NO_SEED in now)
    for name in sorted(now.keys() | kept.keys(), key=_order):
        before, after = kept.get(name), now.get(name)
        if before == after or (seeding_differs and name.startswith("seed ")):
            continue
        if name == SETTINGS_FILES:
            continue  # their values are said, setting by setting
        if name == NO_SEED:
            phrases.append("this run has --no-seed" if before is None else "kept with --no-seed")
        elif before is None:
            phrases.append(f"{name} added")
        elif after is None:
            phrases.append(f"{name} removed")
        elif name.startswith(("package ", "version of ")):
            phrases.append(f"{name} {before} -> {after}")
        elif name.startswith("setting ") and _made_at_start_up(kept, now):
            setting = name.removeprefix("setting ")
            phrases.append(
                f"{name} changed though no settings file did: made anew at each start-up "
                f"or read from the environment (if no seed reads it, leave it out of the "
                f"key: {SETTING_NAME}['IGNORED_SETTINGS'] = [{setting!r}])"
            )
        else:
            phrases.append(f"{name} changed")
    if not phrases:
        return ""
    more = len(phrases) - SHOWN
    shown = "; ".join(phrases[:SHOWN])
    return f"{shown}; and {more} more" if more > 0 else shown


def _order(name: str) -> tuple[int, str]:
    # What a user changes on purpose first: settings, files, migrations, then the rest.
    for rank, prefix in enumerate(("setting ", "file ", "migration ", "seed ", "package ")):
        if name.startswith(prefix):
            return rank, name
    return 9, name


def _made_at_start_up(kept: Mapping[str, str], now: Mapping[str, str]) -> bool:
    """Whether a setting that differs did so with the settings files as they were: not
    an edit, a value worked out when the settings were read."""
    return SETTINGS_FILES in kept and kept[SETTINGS_FILES] == now.get(SETTINGS_FILES)


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
