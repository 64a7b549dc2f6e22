"""The ``DJANGO_RESETDB`` setting: defaults, merging and a typed view of it."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from django_resetdb.exceptions import Refused

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
    "BACKUP_DIR": None,
    "FAST_BUILD": True,
    "SNAPSHOTS": 3,
    "STRATEGY": "auto",
    "REGENERATE": "own",
    "SHARED_REF": None,
    "IGNORED_SETTINGS": [],
    "BACKUPS": 10,
}

# Where a reset builds: "auto" decides by the locks a reset in place would take.
STRATEGIES = ("auto", "in-place", "new-database")

# Which part of an app's migration history a reset regenerates: the developer's own,
# after the shared point in version control, or all of it.
REGENERATE_MODES = ("own", "all")

# Settings a command line's flags override for one call (see ``overridden``).
_overrides: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "django_resetdb_overrides", default=None
)


@contextlib.contextmanager
def overridden(**values: Any) -> Iterator[None]:
    """Within the block, ``get_settings`` reads these keys as given (None: as set)."""
    given = {key: value for key, value in values.items() if value is not None}
    token = _overrides.set({**(_overrides.get() or {}), **given})
    try:
        yield
    finally:
        _overrides.reset(token)


@dataclass(frozen=True)
class ResetDBSettings:
    enabled: bool
    hosts: tuple[str, ...]
    schemas: tuple[str, ...]
    apps: tuple[str, ...] | None
    exclude_apps: tuple[str, ...]
    seeds: tuple[str, ...]
    lock_timeout: float
    backup_dir: Path
    fast_build: bool
    snapshots: int
    strategy: str
    regenerate: str
    shared_ref: str | None
    # Settings left out of the key of the snapshot cache and the build cache.
    ignored_settings: tuple[str, ...] = ()
    # How many finished backups of migration files are kept (None: all).
    backups: int | None = 10


def project_root() -> Path:
    """The project's folder: ``settings.BASE_DIR`` when it is set, else the current one."""
    base_dir = getattr(settings, "BASE_DIR", None)
    return Path(base_dir if base_dir else Path.cwd()).resolve()


def user_settings() -> Any:
    return getattr(settings, SETTING_NAME, {})


def enabled_value(enabled: object) -> bool:
    """Only a real ``True`` enables resets, or ``None`` with ``DEBUG = True``: ``"false"``,
    ``1`` or ``"yes"`` are true to ``bool()`` but are a settings mistake, and a mistake must
    not switch on a command that drops data, whatever the system checks said (they do not
    run under ``call_command`` or ``--skip-checks``)."""
    if enabled is None:
        return settings.DEBUG is True
    return enabled is True


# Keys that take a list of strings: a bare string would be read a letter at a time (a
# "*" among them allowing any host).
LIST_KEYS = ("HOSTS", "SCHEMAS", "APPS", "EXCLUDE_APPS", "SEEDS", "IGNORED_SETTINGS")


def get_settings() -> ResetDBSettings:
    """The merged settings, read afresh on every call: the gates must see what the
    settings say now (a process may change them without Django's setting_changed), and
    whatever the system checks said, since ``call_command``, ``--skip-checks`` and the
    Python API run none. A shape the gates could misread refuses (exit status 3); other
    invalid values are reported by the system checks."""
    raw = user_settings()
    if not isinstance(raw, Mapping):
        raise Refused(
            f"{SETTING_NAME} is a {type(raw).__name__}, not a dict of settings; nothing was "
            "done. Write it as a dict, for instance {'ENABLED': True}."
        )
    merged = {**DEFAULTS, **raw, **(_overrides.get() or {})}
    for key in LIST_KEYS:
        value = merged[key]
        if isinstance(value, (str, bytes)):
            raise Refused(
                f"{SETTING_NAME}[{key!r}] must be a list, not the string {value!r}; nothing "
                f"was done. Write [{value!r}]."
            )
    hosts = merged["HOSTS"]
    if not isinstance(hosts, (list, tuple, set, frozenset)) or not all(
        isinstance(host, str) for host in hosts
    ):
        # The gate compares each with the host reached: anything else cannot be read.
        raise Refused(
            f"{SETTING_NAME}['HOSTS'] must be a list of host names, socket folders or "
            f"patterns (strings), not {hosts!r}; nothing was done."
        )
    regenerate = merged["REGENERATE"]
    if regenerate not in REGENERATE_MODES:
        # A misspelt value must not regenerate what the team shares.
        raise Refused(
            f"{SETTING_NAME}['REGENERATE'] must be 'own' or 'all', not {regenerate!r}; "
            "nothing was done."
        )
    shared_ref = merged["SHARED_REF"]
    if shared_ref is not None and (not isinstance(shared_ref, str) or not shared_ref):
        raise Refused(
            f"{SETTING_NAME}['SHARED_REF'] must be None or the name of a git branch, tag or "
            f"commit, not {shared_ref!r}; nothing was done."
        )
    apps = merged["APPS"]
    backup_dir = merged["BACKUP_DIR"]
    return ResetDBSettings(
        enabled=enabled_value(merged["ENABLED"]),
        hosts=tuple(merged["HOSTS"]),
        schemas=tuple(merged["SCHEMAS"]),
        apps=None if apps is None else tuple(apps),
        exclude_apps=tuple(merged["EXCLUDE_APPS"]),
        seeds=tuple(merged["SEEDS"]),
        lock_timeout=float(merged["LOCK_TIMEOUT"]),
        backup_dir=(
            project_root() / ".resetdb" / "backups"
            if backup_dir is None
            else project_root() / Path(backup_dir)
        ),
        fast_build=bool(merged["FAST_BUILD"]),
        snapshots=int(merged["SNAPSHOTS"]),
        strategy=str(merged["STRATEGY"]),
        regenerate=regenerate,
        shared_ref=shared_ref,
        ignored_settings=tuple(str(name) for name in merged["IGNORED_SETTINGS"]),
        backups=_backups(merged["BACKUPS"]),
    )


def _backups(value: object) -> int | None:
    """``BACKUPS`` as read at run time: a value the checks would report keeps every
    backup (deleting them is what a mistake must not do)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value
