"""System checks for the ``DJANGO_RESETDB`` setting.

Nothing here looks at ``DATABASES``: a system check runs before every command, and an
alias the commands are never pointed at is no concern of theirs. A command pointed at
one that is not PostgreSQL says so itself (``guard.check_postgresql``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from django_resetdb.conf import DEFAULTS, SETTING_NAME, STRATEGIES, user_settings
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
    "BACKUP_DIR": (
        lambda v: v is None or (isinstance(v, (str, PurePath)) and str(v) != ""),
        "None or a folder path",
    ),
}


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    raw = user_settings()
    if not isinstance(raw, dict):
        return [
            Error(
                f"{SETTING_NAME} must be a dict, not {type(raw).__name__}.",
                hint=f"Set {SETTING_NAME} = {{...}} with the keys documented in README.rst.",
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
