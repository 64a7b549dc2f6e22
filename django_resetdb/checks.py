"""System checks: the ``DJANGO_RESETDB`` setting, the psycopg driver, and the unrelated
distribution that ships a package of the same name.

Nothing here looks at ``DATABASES``: a system check runs before every command, and an
alias the commands are never pointed at is no concern of theirs. A command pointed at
one that is not PostgreSQL says so itself (``guard.check_postgresql``)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from django_resetdb import driver
from django_resetdb.conf import (
    DEFAULTS,
    REGENERATE_MODES,
    SETTING_NAME,
    STRATEGIES,
    user_settings,
)
from django_resetdb.identifiers import schema_name_problem


def _is_str_list(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


# (predicate, description of the expected type) per key.
_TYPES: dict[str, tuple[Any, str]] = {
    "ENABLED": (lambda v: v is None or isinstance(v, bool), "a bool (or None for DEBUG)"),
    "HOSTS": (_is_str_list, "a list of host names or patterns"),
    "SCHEMAS": (lambda v: _is_str_list(v) and len(v) > 0, "a non-empty list of schema names"),
    "APPS": (lambda v: v is None or _is_str_list(v), "None or a list of app labels"),
    "EXCLUDE_APPS": (_is_str_list, "a list of app labels"),
    "SEEDS": (_is_str_list, "a list of fixture labels or dotted paths"),
    "LOCK_TIMEOUT": (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
        "a positive number of seconds",
    ),
    "FAST_BUILD": (lambda v: isinstance(v, bool), "a bool"),
    "SNAPSHOTS": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "a number of snapshots to keep (0 turns the cache off)",
    ),
    "STRATEGY": (lambda v: v in STRATEGIES, f"one of {', '.join(map(repr, STRATEGIES))}"),
    "REGENERATE": (lambda v: v in REGENERATE_MODES, "'own' or 'all'"),
    "SHARED_REF": (
        lambda v: v is None or (isinstance(v, str) and v != ""),
        "None or the name of a git branch, tag or commit",
    ),
    "IGNORED_SETTINGS": (_is_str_list, "a list of setting names"),
    "BACKUPS": (
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
        "None (keep every backup) or a number of backups to keep, at least 1",
    ),
    "BACKUP_DIR": (
        lambda v: v is None or (isinstance(v, (str, PurePath)) and str(v) != ""),
        "None or a folder path",
    ),
}


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    raw = user_settings()
    if not isinstance(raw, Mapping):
        return [
            Error(
                f"{SETTING_NAME} must be a dict (or another mapping), not {type(raw).__name__}.",
                hint=f"Set {SETTING_NAME} = {{...}} with the keys documented in the manual "
                "(docs/settings.rst).",
                id="django_resetdb.E001",
            )
        ]
    messages: list[CheckMessage] = []
    unknown = sorted(set(raw) - set(DEFAULTS), key=str)
    for key in unknown:
        messages.append(
            Error(
                f"{SETTING_NAME} has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(DEFAULTS)}.",
                id="django_resetdb.E002",
            )
        )
    for key, (is_valid, expected) in _TYPES.items():
        if key in raw and not is_valid(raw[key]):
            messages.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] must be {expected}, not {raw[key]!r}.",
                    id="django_resetdb.E003",
                )
            )
    schemas = raw.get("SCHEMAS", DEFAULTS["SCHEMAS"])
    if _is_str_list(schemas):
        for name in schemas:
            problem = schema_name_problem(name)
            if problem:
                messages.append(
                    Error(
                        f"{SETTING_NAME}['SCHEMAS']: {problem}.",
                        id="django_resetdb.E004",
                    )
                )
    if raw.get("ENABLED") is True and not settings.DEBUG:
        messages.append(
            Warning(
                f"{SETTING_NAME}['ENABLED'] is True while DEBUG is False: "
                "destructive commands are allowed outside development.",
                hint="Enable resets only in development and CI settings modules.",
                id="django_resetdb.W001",
            )
        )
    return messages


def check_driver(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    # Only the ENGINE names of the settings are read, no connection: a project with no
    # PostgreSQL database (SQLite only, say) needs no PostgreSQL driver.
    engines = [str(entry.get("ENGINE", "")) for entry in settings.DATABASES.values()]
    if not any("postgresql" in engine for engine in engines):
        return []
    return driver_messages(driver.psycopg_problem(), psycopg2_loads=driver.psycopg2_loads)


def driver_messages(problem: str, *, psycopg2_loads: Callable[[], bool]) -> list[CheckMessage]:
    """E005 when no PostgreSQL driver loads; W004 when only psycopg2 does: the project
    still runs on it, only our commands refuse. ``psycopg2_loads`` is called only when
    psycopg 3 does not load."""
    if not problem:
        return []
    if psycopg2_loads():
        return [
            Warning(
                f"psycopg 3 cannot be imported ({problem}): Django uses psycopg2, and "
                "django_resetdb's commands, which need psycopg 3, refuse to run.",
                hint=(
                    f"{driver.INSTALL}; Django then uses psycopg 3 for every connection, "
                    "since it prefers it to psycopg2."
                ),
                id="django_resetdb.W004",
            )
        ]
    return [
        Error(
            f"psycopg 3 cannot be imported ({problem}), nor can psycopg2: Django cannot "
            "connect to PostgreSQL and django_resetdb's commands cannot run.",
            hint=f"{driver.INSTALL} (psycopg with its own libpq), or install libpq.",
            id="django_resetdb.E005",
        )
    ]


# The unrelated 2018 project on PyPI under the import package's own name.
CONFLICTING_DISTRIBUTION = "django-resetdb"


def check_distributions(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    try:
        found = importlib.metadata.distribution(CONFLICTING_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return []
    return [
        Warning(
            f"The distribution {CONFLICTING_DISTRIBUTION!r} {found.version} is installed: it "
            "is an unrelated project that ships a django_resetdb package and a resetdb "
            "command of its own, over this one's files.",
            hint=(
                "pip uninstall django-resetdb, then pip install --force-reinstall "
                "django-resetdb-pg (the uninstall removes files the two share)."
            ),
            id="django_resetdb.W003",
        )
    ]
