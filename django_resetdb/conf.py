"""The ``DJANGO_RESETDB`` setting: defaults, merging and a cached, typed view of it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "DJANGO_RESETDB"

# Unix socket directories are absolute paths, hence "/*".
DEFAULT_HOSTS: tuple[str, ...] = ("", "localhost", "127.0.0.1", "::1", "/*")

# Keys and their defaults. ``ENABLED`` is ``None`` here because its real default
# is ``settings.DEBUG``, read at the time the setting is resolved.
DEFAULTS: dict[str, Any] = {
    "ENABLED": None,
    "HOSTS": list(DEFAULT_HOSTS),
    "SCHEMAS": ["public"],
    "APPS": None,
    "EXCLUDE_APPS": [],
    "SEEDS": [],
    "LOCK_TIMEOUT": 5.0,
}


@dataclass(frozen=True)
class ResetDBSettings:
    enabled: bool
    hosts: tuple[str, ...]
    schemas: tuple[str, ...]
    apps: tuple[str, ...] | None
    exclude_apps: tuple[str, ...]
    seeds: tuple[str, ...]
    lock_timeout: float


def user_settings() -> Any:
    return getattr(settings, SETTING_NAME, {})


@functools.cache
def get_settings() -> ResetDBSettings:
    """Return the merged settings; invalid values are reported by the system checks."""
    raw = user_settings()
    merged = {**DEFAULTS, **(raw if isinstance(raw, dict) else {})}
    enabled = merged["ENABLED"]
    if enabled is None:
        enabled = bool(settings.DEBUG)
    apps = merged["APPS"]
    return ResetDBSettings(
        enabled=bool(enabled),
        hosts=tuple(merged["HOSTS"]),
        schemas=tuple(merged["SCHEMAS"]),
        apps=None if apps is None else tuple(apps),
        exclude_apps=tuple(merged["EXCLUDE_APPS"]),
        seeds=tuple(merged["SEEDS"]),
        lock_timeout=float(merged["LOCK_TIMEOUT"]),
    )


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    # ENABLED defaults to DEBUG, so a change of DEBUG changes the result too.
    if setting in (SETTING_NAME, "DEBUG"):
        get_settings.cache_clear()
