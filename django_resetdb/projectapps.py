"""Which apps' migrations a reset may regenerate, and where those migrations live.

An app is the project's own when its code lies under the project folder
(``settings.BASE_DIR``, else the current folder) and outside every installation
folder (site-packages, dist-packages, ``sys.prefix``, the user site). Migration
packages are located the way Django locates them, so ``MIGRATION_MODULES`` is
honoured.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import re
import site
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.apps import AppConfig, apps
from django.db.migrations.loader import MigrationLoader

from django_resetdb.conf import SETTING_NAME, get_settings, project_root
from django_resetdb.exceptions import Refused, ResetError

# What makemigrations writes: a number, an underscore, a name.
MIGRATION_FILE = re.compile(r"^\d{4,}_\w+\.py$")

_INSTALL_FOLDER_NAMES = frozenset({"site-packages", "dist-packages"})


def source_text(path: str | Path) -> str:
    """The text of Python source file ``path`` as Python reads it (by its coding
    declaration, else UTF-8); a file that is not text (compiled bytecode) as Latin-1,
    which keeps every byte."""
    data = Path(path).read_bytes()
    try:
        return importlib.util.decode_source(data)
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return data.decode("latin-1")


@dataclass(frozen=True)
class SelectedApp:
    label: str
    module: str
    # Where the migrations package is, or would be created.
    directory: Path
    reason: str

    def migration_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(
            entry
            for entry in self.directory.iterdir()
            if entry.is_file() and MIGRATION_FILE.match(entry.name)
        )

    def other_migrations(self) -> list[str]:
        """The files of the folder's modules that Django loads as migrations but that are
        not numbered ``.py`` files (a module named otherwise, bytecode without its
        source): regenerating would leave them beside the new files."""
        if not self.directory.is_dir():
            return []
        managed = {path.stem for path in self.migration_files()}
        names = {
            info.name
            for info in pkgutil.iter_modules([str(self.directory)])
            # What Django's MigrationLoader skips.
            if not info.ispkg and info.name[0] not in "_~" and info.name not in managed
        }
        return sorted(
            entry.name
            for entry in self.directory.iterdir()
            if entry.is_file() and entry.name.split(".")[0] in names
        )


@dataclass(frozen=True)
class Skipped:
    label: str
    reason: str


def install_folders() -> list[Path]:
    """Folders that hold installed code, never the project's."""
    candidates: list[str] = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        *sysconfig.get_paths().values(),
    ]
    # Old virtualenv releases ship a site module without getsitepackages().
    if hasattr(site, "getsitepackages"):
        candidates += site.getsitepackages()
    user_site = site.getusersitepackages()
    if isinstance(user_site, str):
        candidates.append(user_site)
    folders = []
    for candidate in candidates:
        if candidate:
            resolved = Path(candidate).resolve()
            if resolved not in folders:
                folders.append(resolved)
    return folders


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def installed_location(path: Path, root: Path) -> Path | None:
    """The installation folder ``path`` lies in, if any.

    An installation folder that contains the project folder (a user site at ``~`` or a
    prefix at ``/``) does not count, otherwise nothing would be the project's.
    """
    if _INSTALL_FOLDER_NAMES & set(path.parts):
        return path
    for folder in install_folders():
        if _inside(path, folder) and not _inside(root, folder):
            return folder
    return None


def own_app_problem(app_config: AppConfig, root: Path) -> str | None:
    """Why ``app_config`` is not the project's own, or None when it is."""
    path = Path(app_config.path).resolve()
    installed = installed_location(path, root)
    if installed is not None:
        return f"its code is installed in {str(path)!r}"
    if not _inside(path, root):
        return f"its code in {str(path)!r} lies outside the project folder {str(root)!r}"
    return None


def _package_folder(module: str) -> Path | None:
    """The folder of an importable package ``module``, or None."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def migrations_directory(app_config: AppConfig, module: str) -> tuple[Path, bool]:
    """Where the migrations package ``module`` of ``app_config`` is or would be created.

    Mirrors how ``MigrationWriter`` finds it, without creating anything.
    """
    existing = _package_folder(module)
    if existing is not None:
        return existing, True
    parent, _, basename = module.rpartition(".")
    if parent == app_config.name:
        return Path(app_config.path).resolve() / basename, False
    parts = module.split(".")
    missing: list[str] = []
    while parts:
        missing.insert(0, parts.pop())
        base = _package_folder(".".join(parts)) if parts else None
        if base is not None:
            return base.joinpath(*missing), False
    raise ResetError(
        f"Cannot locate the migrations package {module!r} of app {app_config.label!r}: "
        f"no part of it can be imported; create the package first."
    )


def select_apps(labels: Sequence[str] = ()) -> tuple[list[SelectedApp], list[Skipped]]:
    """The apps whose migrations would be regenerated, and those skipped with a reason.

    Explicit ``labels`` win over ``DJANGO_RESETDB['APPS']``, which wins over detection.
    Raise :class:`Refused` for an app that is not the project's or is excluded.
    """
    conf = get_settings()
    root = project_root()
    requested: Iterable[str] | None = None
    if labels:
        requested, why = labels, "named on the command line"
    elif conf.apps is not None:
        # An empty list means what it says: no app.
        requested, why = conf.apps, f"listed in {SETTING_NAME}['APPS']"

    selected: list[SelectedApp] = []
    skipped: list[Skipped] = []
    if requested is not None:
        for label in dict.fromkeys(requested):
            try:
                app_config = apps.get_app_config(label)
            except LookupError:
                raise ResetError(f"No installed app with label {label!r}.") from None
            if label in conf.exclude_apps:
                raise Refused(
                    f"resetmigrations refused: app {label!r} is listed in "
                    f"{SETTING_NAME}['EXCLUDE_APPS']; remove it from there to regenerate "
                    f"its migrations."
                )
            problem = own_app_problem(app_config, root)
            if problem is not None:
                raise Refused(
                    f"resetmigrations refused: app {label!r} is not one of the project's "
                    f"own apps ({problem}); only the project's own migrations are "
                    f"regenerated, and no setting or flag changes that."
                )
            _add(app_config, why, root, selected, skipped)
        return selected, skipped

    for app_config in apps.get_app_configs():
        if own_app_problem(app_config, root) is not None:
            continue
        if app_config.label in conf.exclude_apps:
            skipped.append(Skipped(app_config.label, f"listed in {SETTING_NAME}['EXCLUDE_APPS']"))
            continue
        _add(app_config, "the project's own app", root, selected, skipped)
    return selected, skipped


def _add(
    app_config: AppConfig,
    reason: str,
    root: Path,
    selected: list[SelectedApp],
    skipped: list[Skipped],
) -> None:
    label = app_config.label
    module, _explicit = MigrationLoader.migrations_module(label)
    if module is None:
        skipped.append(Skipped(label, "MIGRATION_MODULES maps it to None"))
        return
    directory, exists = migrations_directory(app_config, module)
    installed = installed_location(directory, root)
    if installed is not None:
        raise Refused(
            f"resetmigrations refused: the migrations of app {label!r} ({module!r}) are "
            f"installed in {str(directory)!r}; installed files are never regenerated, "
            f"point MIGRATION_MODULES[{label!r}] at a package of the project instead."
        )
    has_models = any(True for _ in app_config.get_models(include_auto_created=True))
    has_migrations = exists and any(MIGRATION_FILE.match(p.name) for p in directory.iterdir())
    if not has_models and not has_migrations:
        skipped.append(Skipped(label, "it has no models and no migrations"))
        return
    selected.append(
        SelectedApp(
            label=label,
            module=module,
            directory=directory,
            reason=reason,
        )
    )
