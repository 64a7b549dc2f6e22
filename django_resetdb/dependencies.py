"""What a build depends on besides its declared inputs, for the snapshot cache: the code
imported in the process, and what the seeds read while they run.

Code that is not installed (the project's own modules, and any other folder on the
path) is covered by its files: their sizes and modification times for the quick key,
their contents for the fingerprint. Installed code is covered by the names and versions
of the installed distributions, and the Python version. The seeds' reads are recorded
while they run (the files they open for reading, through an audit hook; the environment
variables they look up, through ``os.environ``) and kept with the snapshot, to be
compared with what is there when a reset would restore it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import router
from django.db.migrations.loader import MigrationLoader

from django_resetdb.conf import project_root
from django_resetdb.projectapps import install_folders

# What an open() of these reads is not a file the seeds' result depends on.
_SYSTEM_FOLDERS = (Path("/proc"), Path("/sys"), Path("/dev"))


@functools.cache
def _installed() -> tuple[tuple[Path, ...], Path]:
    """The installation folders that do not contain the project (see projectapps), and
    the project folder, looked up once: the quick key must stay quick."""
    root = project_root()
    folders = tuple(f for f in install_folders() if not (f == root or f in root.parents))
    return folders, root


def is_installed(path: Path) -> bool:
    """Whether ``path``, resolved, is installed code rather than the project's."""
    return _is_installed(path)


def _is_installed(path: Path) -> bool:
    """Whether ``path``, resolved, is installed code (see projectapps)."""
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return True
    folders, _ = _installed()
    text = str(path)
    return text.startswith(_installed_prefixes()) or any(text == str(f) for f in folders)


@functools.cache
def _installed_prefixes() -> tuple[str, ...]:
    folders, _ = _installed()
    return tuple(str(folder) + os.sep for folder in folders)


def _plainly_installed(filename: str) -> bool:
    """Whether ``filename``, as a module names it, is installed code, told from the text
    alone: most imported modules are, and resolving each path would take a while."""
    return (
        f"{os.sep}site-packages{os.sep}" in filename
        or f"{os.sep}dist-packages{os.sep}" in filename
        or filename.startswith(_installed_prefixes())
    )


def _migration_packages() -> tuple[str, ...]:
    """Dotted names of the migration packages: their files are covered, as planned, by
    the migration sources; the reset itself rewrites them."""
    names = []
    for app_config in apps.get_app_configs():
        module, _ = MigrationLoader.migrations_module(app_config.label)
        if module:
            names.append(module)
    return tuple(names)


@functools.cache
def code_files() -> tuple[Path, ...]:
    """The files of the modules imported in this process that are not installed code,
    settled the first time a reset asks (it decides with what is imported by then; the
    same modules are imported at that point of every run of the same project).

    The routers are loaded first: Django imports them on first use. The settings
    module (and the package of split settings it is in, see :func:`_settings_package`)
    is left out, as settings are covered by their values (see snapshots); so is
    the script that was run (``manage.py``, or one that calls ``reset()``), so that the
    same project gets the same key whichever way its reset is started."""
    router.routers  # noqa: B018 (imports DATABASE_ROUTERS)
    migrations = _migration_packages()
    inside = tuple(package + "." for package in (*migrations, *_settings_package()))
    left_out = {"__main__", getattr(settings, "SETTINGS_MODULE", None), *migrations}
    left_out |= set(_settings_package())
    found: set[Path] = set()
    for name, module in list(sys.modules.items()):
        if name in left_out or name.startswith(inside):
            continue
        filename = getattr(module, "__file__", None)
        if not isinstance(filename, str) or not filename:
            continue
        if _plainly_installed(filename):
            continue
        path = Path(os.path.abspath(filename))
        if path.suffix == ".pyc" and path.parent.name == "__pycache__":
            with contextlib.suppress(ValueError):
                path = Path(importlib.util.source_from_cache(str(path)))
        if not _is_installed(path.resolve()):
            found.add(path)
    return tuple(sorted(found))


def settings_files() -> list[Path]:
    """The files of the settings module and of the package of split settings it is in
    (see :func:`_settings_package`)."""
    module = str(getattr(settings, "SETTINGS_MODULE", "") or "")
    names = [module, *_settings_package()]
    inside = tuple(f"{package}." for package in _settings_package())
    names += [name for name in list(sys.modules) if name.startswith(inside)] if inside else []
    found = []
    for name in sorted(set(names)):
        filename = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(filename, str) and filename.endswith(".py"):
            found.append(Path(filename))
    return found


def _settings_package() -> tuple[str, ...]:
    """The package of split settings (``mysite.settings`` holding ``base``, ``dev``,
    ``production``, as ``wagtail start`` and cookiecutter-django lay them out), when the
    settings module is in a package named ``settings``: its modules are settings too,
    covered by the values they give (see snapshots)."""
    module = str(getattr(settings, "SETTINGS_MODULE", "") or "")
    package = module.rpartition(".")[0]
    return (package,) if package.rpartition(".")[2] == "settings" else ()


def _stat(path: Path) -> list[Any]:
    try:
        stat = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path), stat.st_size, stat.st_mtime_ns]


def code_stats() -> list[list[Any]]:
    """For the quick key: each code file's size and modification time."""
    return [_stat(path) for path in code_files()]


def file_digest(path: str | Path) -> str:
    """The SHA-256 of a file's contents, or "" when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def shown(path: Path) -> str:
    """``path`` as keys record it: relative to the project when inside it."""
    return _shown(path)


def _shown(path: Path) -> str:
    _, root = _installed()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def code_digests() -> list[list[str]]:
    """For the fingerprint: each code file's contents, by digest."""
    return [[_shown(path), file_digest(path)] for path in code_files()]


@functools.cache
def installed_distributions() -> tuple[str, ...]:
    """The Python version and the installed distributions on the path, by name and
    version (as their metadata folders are named): what installed code is covered by.
    Listing the folders is quick, which reading each distribution's metadata is not."""
    found = {sys.version}
    for entry in sys.path:
        folder = Path(os.path.abspath(entry or "."))
        if not folder.is_dir() or not _is_installed(folder.resolve()):
            continue
        with contextlib.suppress(OSError):
            for item in os.scandir(folder):
                if item.name.endswith((".dist-info", ".egg-info")):
                    found.add(item.name)
    return tuple(sorted(found))


# Recording the seeds' reads ---------------------------------------------------------


def _value_digest(value: str | None) -> str:
    return (
        ""
        if value is None
        else hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    )


@dataclass
class Reads:
    """What the seeds read: file path -> digest of its contents, variable name -> digest
    of its value; "" for a file or a variable that was not there."""

    files: dict[str, str] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    # Folders listed (os.listdir, os.scandir, glob, pathlib) -> digest of their names;
    # paths looked at (os.stat: exists, isfile, ...) -> what they were ("file", "dir",
    # "other"), "" when absent.
    listings: dict[str, str] = field(default_factory=dict)
    looked_at: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, dict[str, str]]:
        return {
            "files": dict(sorted(self.files.items())),
            "environ": dict(sorted(self.environ.items())),
            "listings": dict(sorted(self.listings.items())),
            "looked_at": dict(sorted(self.looked_at.items())),
        }

    @classmethod
    def from_json(cls, data: Any) -> Reads | None:
        if not isinstance(data, dict):
            return None
        parts: list[dict[str, str]] = []
        for key in ("files", "environ", "listings", "looked_at"):
            part = data.get(key)
            if not isinstance(part, dict):
                return None  # kept by an earlier version, which did not record them all
            parts.append({str(k): str(v) for k, v in part.items()})
        files, environ, listings, looked_at = parts
        return cls(files, environ, listings, looked_at)

    def changed(self) -> str:
        """What differs now from what the seeds read, or "" when nothing does."""
        for path, digest in self.files.items():
            if file_digest(path) != digest:
                return f"file {path!r}, read by the seeds or imported by the build, changed"
        for name, digest in self.environ.items():
            if _value_digest(os.environ.get(name)) != digest:
                return f"environment variable {name!r}, read by the seeds, changed"
        for path, digest in self.listings.items():
            if listing_digest(path) != digest:
                return f"folder {path!r}, listed by the seeds, changed"
        for path, kind in self.looked_at.items():
            if path_kind(path) != kind:
                return f"path {path!r}, looked at by the seeds, changed"
        return ""


def listing_digest(path: str) -> str:
    """A digest of the names in folder ``path``, or "" when it cannot be listed."""
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return ""
    return hashlib.sha256("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest()


def path_kind(path: str) -> str:
    """What ``path`` is, as an existence check sees it: "file", "dir", "other" or ""."""
    if os.path.isfile(path):
        return "file"
    if os.path.isdir(path):
        return "dir"
    return "other" if os.path.lexists(path) else ""


class _Recorder:
    def __init__(self) -> None:
        self.opened: list[str] = []
        self.environ: dict[str, str | None] = {}
        self.listed: list[str] = []
        self.looked_at: list[str] = []


# The recordings under way, by thread: two resets may run at once in one process. Audit
# hooks cannot be removed: the hook stays, and does nothing unless a recording is active.
_recorders: dict[int, _Recorder] = {}
_lock = threading.Lock()
_hooked = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _recorders or event not in ("open", "os.listdir", "os.scandir"):
        return
    recorder = _recorders.get(threading.get_ident())
    if recorder is None:
        return
    if event != "open":
        (folder,) = args[:1] or (None,)
        if folder is None or folder == "":
            folder = "."
        if isinstance(folder, (str, bytes, os.PathLike)):
            recorder.listed.append(os.path.abspath(os.fsdecode(folder)))
        return
    path, mode, flags = (*args, None, None)[:3]
    if isinstance(mode, str):
        # Only what writes without reading: "r+" and "a+" read what is there.
        if "w" in mode or "x" in mode or ("a" in mode and "+" not in mode):
            return
    elif isinstance(flags, int) and (
        flags & os.O_WRONLY or (flags & os.O_RDWR and flags & os.O_TRUNC)
    ):
        return
    if isinstance(path, (str, bytes, os.PathLike)):
        recorder.opened.append(os.path.abspath(os.fsdecode(path)))


# os.stat and os.lstat as they were when the first recording began, put back after the
# last one ends.
_previous: list[Any] = []


def _noting(real: Any) -> Any:
    def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        # What os.path.exists, isfile, pathlib's exists() ... ask: no audit event
        # tells of it. Paths only (not open file descriptors).
        recorder = _recorders.get(threading.get_ident()) if _recorders else None
        if recorder is not None and isinstance(path, (str, bytes, os.PathLike)):
            recorder.looked_at.append(os.path.abspath(os.fsdecode(path)))
        return real(path, *args, **kwargs)

    return stat


class _RecordingEnviron(os._Environ):  # type: ignore[type-arg]
    """``os.environ`` while seeds run: every look-up (``[]``, ``get``, ``in``,
    ``os.getenv``) goes through ``__getitem__``, which notes the name and the value."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        recorder = _recorders.get(threading.get_ident())
        try:
            value = super().__getitem__(key)
        except KeyError:
            if recorder is not None:
                recorder.environ.setdefault(str(key), None)
            raise
        if recorder is not None:
            recorder.environ.setdefault(str(key), value)
        return value


def _reading(path: Path, *, folders: bool = False) -> str | None:
    """The file ``path``'s read stands for, or None when it is covered otherwise (a
    folder is, unless ``folders``: opening one reads nothing)."""
    if path.suffix == ".pyc" and path.parent.name == "__pycache__":
        # A module imported from its cached bytecode: its source decides.
        with contextlib.suppress(ValueError):
            path = Path(importlib.util.source_from_cache(str(path)))
    resolved = path.resolve()
    if any(resolved == f or f in resolved.parents for f in _SYSTEM_FOLDERS):
        return None
    if (resolved.is_dir() and not folders) or _is_installed(resolved):
        return None
    return str(path)


def imported_since(before: set[str]) -> dict[str, str]:
    """The source files of the modules imported since ``sys.modules`` held ``before``
    that are not installed code (the project's own), with their digests."""
    files: dict[str, str] = {}
    for name in set(sys.modules) - before:
        path = getattr(sys.modules.get(name), "__file__", None)
        if not path:
            continue
        shown = _reading(Path(path))
        if shown is not None and os.path.isfile(shown):
            files[shown] = file_digest(shown)
    return files


@contextlib.contextmanager
def record() -> Iterator[Reads]:
    """Record, on this thread, the files opened for reading and the environment
    variables looked up until the block ends; the result is filled in then."""
    global _hooked
    reads = Reads()
    thread = threading.get_ident()
    if thread in _recorders:
        # A seed run inside a recording (a seed callable calling seed()): the outer
        # recording sees it all.
        yield reads
        return
    recorder = _Recorder()
    with _lock:
        if not _hooked:
            sys.addaudithook(_audit)
            _hooked = True
        # Only the standard mapping can be given the recording class; a replaced one (a
        # test tool's) is left alone, and its look-ups go unrecorded.
        if type(os.environ) is os._Environ:
            os.environ.__class__ = _RecordingEnviron
        if not _recorders:
            _previous[:] = [os.stat, os.lstat]
            os.stat, os.lstat = _noting(os.stat), _noting(os.lstat)
        _recorders[thread] = recorder
    try:
        yield reads
    finally:
        with _lock:
            del _recorders[thread]
            if not _recorders:
                os.stat, os.lstat = _previous
                if type(os.environ) is _RecordingEnviron:
                    os.environ.__class__ = os._Environ  # type: ignore[assignment]
    for opened in dict.fromkeys(recorder.opened):
        shown = _reading(Path(opened))
        if shown is not None:
            reads.files[shown] = file_digest(shown) if os.path.isfile(shown) else ""
    reads.environ = {name: _value_digest(value) for name, value in recorder.environ.items()}
    for folder in dict.fromkeys(recorder.listed):
        shown = _reading(Path(folder), folders=True)
        if shown is not None:
            reads.listings[shown] = listing_digest(shown)
    for looked in dict.fromkeys(recorder.looked_at):
        shown = _reading(Path(looked), folders=True)
        if shown is not None and shown not in reads.files:
            reads.looked_at[shown] = path_kind(shown)
