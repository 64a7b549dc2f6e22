"""Backups of the migration files a reset touches, and putting them back.

A backup is a folder with a copy of every file the reset will delete or overwrite, and
a ``manifest.json`` naming where each came from, its checksum and mode, and the files the
reset is going to create. The manifest is written, with the copies flushed to disk,
before the first file of the project is touched, so even after a crash the backup
describes how to undo the reset.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django

from django_resetdb.exceptions import ResetError
from django_resetdb.output import Log, one_line
from django_resetdb.projectapps import MIGRATION_FILE

MANIFEST = "manifest.json"
FORMAT = 1

# Status of a backup, as the manifest records it.
IN_PROGRESS = "in progress"
# The new files are written and verified; the database is committing. A run killed now
# may have left the database rebuilt from them, or as it was.
COMMITTING = "committing"
COMPLETE = "complete"
ROLLED_BACK = "rolled back"
RESTORED = "restored"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> datetime.datetime:
    return datetime.datetime.now().astimezone()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` in one step: readers see the old or the new file."""

    def write(temporary: Path) -> None:
        temporary.write_bytes(data)
        if mode is not None:
            os.chmod(temporary, mode)
        _fsync(temporary)

    _replace(path, write)


def link_atomically(path: Path, link: str) -> None:
    """Replace ``path`` with a symbolic link to ``link`` in one step."""
    _replace(path, lambda temporary: os.symlink(link, temporary))


def _replace(path: Path, make: Callable[[Path], None]) -> None:
    """Make what replaces ``path`` under a temporary name beside it, then rename it over
    ``path``. On any failure (a full disk, say) nothing half-made is left beside the
    file, which is kept whole."""
    temporary = path.with_name(f".{path.name}.resetdb-tmp")
    try:
        temporary.unlink(missing_ok=True)
        make(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _same_times_and_mode(copy: Path, path: Path) -> None:
    """Give ``path`` the modification time and mode of its backed-up ``copy``, when they
    differ (the content is the same)."""
    want, have = copy.stat(), path.stat()
    if (want.st_mtime_ns, stat.S_IMODE(want.st_mode)) != (
        have.st_mtime_ns,
        stat.S_IMODE(have.st_mode),
    ):
        shutil.copystat(copy, path)


def _holds(path: Path, checksum: str) -> bool:
    return path.is_file() and sha256(path) == checksum


def remove_bytecode(path: Path) -> None:
    """Delete the cached bytecode of the module at ``path``: it is derived, not backed up."""
    cache = path.parent / "__pycache__"
    if cache.is_dir():
        for compiled in cache.glob(f"{path.stem}.*.pyc"):
            compiled.unlink(missing_ok=True)


@dataclass
class RestoreResult:
    backup: Path
    restored: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    displaced: list[tuple[Path, Path]] = field(default_factory=list)
    # The folder the displaced files went to (under the backup), when there are any.
    aside: Path | None = None
    strangers: list[Path] = field(default_factory=list)


@dataclass
class Backup:
    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        return str(self.manifest.get("status", "unknown"))

    @property
    def created(self) -> str:
        return str(self.manifest.get("created", ""))

    @property
    def apps(self) -> list[str]:
        return list(self.manifest.get("apps", []))

    @property
    def originals(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("files", []))

    @property
    def planned(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("created_files", []))

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        command: str,
        apps: Iterable[str],
        originals: Iterable[tuple[str, Path]],
        planned: Iterable[tuple[Path, bytes]],
        created_dirs: Iterable[Path] = (),
        project: Path | None = None,
    ) -> Backup:
        """Copy ``originals`` (app label, path) into a new backup folder under ``root``.

        ``planned`` are the files the reset will write, with their content, so that a
        restore can tell the reset's files from files written since. ``project`` is the
        project's folder: files kept aside by a restore are named relative to it.
        """
        try:
            path = _new_folder(root)
        except OSError as exc:
            raise _backup_failed(root, exc) from exc
        try:
            return cls._fill(path, command, apps, originals, planned, created_dirs, project)
        except BaseException as exc:
            # A full disk, say: a half-made backup is no backup, and nothing was changed.
            shutil.rmtree(path, ignore_errors=True)
            if isinstance(exc, OSError):
                raise _backup_failed(root, exc) from exc
            raise

    @classmethod
    def _fill(
        cls,
        path: Path,
        command: str,
        apps: Iterable[str],
        originals: Iterable[tuple[str, Path]],
        planned: Iterable[tuple[Path, bytes]],
        created_dirs: Iterable[Path],
        project: Path | None,
    ) -> Backup:
        files: list[dict[str, Any]] = []
        for label, original in originals:
            copy = Path("files") / label / original.name
            (path / copy).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(original, path / copy)  # a link's target's content
            _fsync(path / copy)
            entry = {
                "path": str(original),
                "copy": copy.as_posix(),
                "sha256": sha256(path / copy),
                "size": (path / copy).stat().st_size,
                "mode": original.stat().st_mode & 0o7777,
            }
            if original.is_symlink():
                # Put back as the same link, not as a file with its content.
                entry["link"] = os.readlink(original)
            files.append(entry)
        manifest = {
            "format": FORMAT,
            "command": command,
            "created": _now().isoformat(timespec="microseconds"),
            "status": IN_PROGRESS,
            "django": django.get_version(),
            "apps": list(apps),
            "files": files,
            "created_files": [
                {"path": str(target), "sha256": sha256_bytes(data)} for target, data in planned
            ],
            "created_dirs": [str(directory) for directory in created_dirs],
            "project": str(project) if project is not None else None,
            "history": [],
        }
        backup = cls(path, manifest)
        backup._save()
        return backup

    def _save(self) -> None:
        data = (json.dumps(self.manifest, indent=2) + "\n").encode()
        write_atomically(self.path / MANIFEST, data)
        _fsync(self.path)

    def mark(self, status: str) -> None:
        self.manifest["status"] = status
        self.manifest.setdefault("history", []).append(
            {"status": status, "at": _now().isoformat(timespec="seconds")}
        )
        self._save()

    def check(self) -> None:
        """Raise unless every copy in the backup is intact."""
        for entry in self.originals:
            copy = self.path / entry["copy"]
            if not copy.is_file() or sha256(copy) != entry["sha256"]:
                raise ResetError(
                    f"Backup {str(self.path)!r} is damaged: {entry['copy']!r} is missing or "
                    f"does not match its checksum; nothing was restored."
                )

    def restore(self, log: Log | None = None, *, dry_run: bool = False) -> RestoreResult:
        """Put every backed-up file back byte for byte and remove the files the reset wrote.

        A file that differs from both the backup and what the reset wrote (edited since)
        is first copied aside into the backup folder, so nothing is lost. With
        ``dry_run``, only say what would be done.
        """
        self.check()
        result = RestoreResult(self.path)
        aside = self.path / f"displaced-{_now().strftime('%Y%m%d-%H%M%S-%f')}"
        reset_wrote = {entry["path"]: entry["sha256"] for entry in self.planned}
        original_paths = {entry["path"] for entry in self.originals}

        def displace(path: Path) -> None:
            if path.is_file() and sha256(path) != reset_wrote.get(str(path)):
                taken = {copy for _, copy in result.displaced}
                target = _free_name(aside / self._relative(path), taken)
                if not dry_run:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
                result.displaced.append((path, target))
                result.aside = aside

        for entry in self.planned:
            path = Path(entry["path"])
            if entry["path"] in original_paths or not path.exists():
                continue
            displace(path)
            if not dry_run:
                path.unlink()
                remove_bytecode(path)
            result.removed.append(path)
        for entry in self.originals:
            path = Path(entry["path"])
            link = entry.get("link")
            if link is not None and path.is_symlink() and os.readlink(path) == link:
                result.unchanged.append(path)
                continue
            if link is None and not path.is_symlink() and _holds(path, entry["sha256"]):
                if not dry_run:  # a restore killed before it set them leaves other ones
                    _same_times_and_mode(self.path / entry["copy"], path)
                result.unchanged.append(path)
                continue
            displace(path)
            if not dry_run:
                path.parent.mkdir(parents=True, exist_ok=True)
                if link is not None:
                    link_atomically(path, link)
                else:
                    data = (self.path / entry["copy"]).read_bytes()
                    write_atomically(path, data, entry["mode"])
                    shutil.copystat(self.path / entry["copy"], path)
                remove_bytecode(path)
            result.restored.append(path)
        if not dry_run:
            for directory in reversed(self.manifest.get("created_dirs", [])):
                _remove_created_folder(Path(directory))
            self.mark(RESTORED)
        result.strangers = self._strangers()
        if log is not None:
            level = 1 if dry_run else 2
            verbs = (
                ("would restore", "would remove", "would keep aside", "would leave")
                if dry_run
                else ("restored", "removed", "kept aside", "left")
            )
            for path in result.restored:
                log(f"  {verbs[0]} {path}", level)
            for path in result.removed:
                log(f"  {verbs[1]} {path}", level)
            for original, copy in result.displaced:
                log(f"  {verbs[2]} {original} (edited since the reset) as {copy}", 1)
            for path in result.strangers:
                log(f"  {verbs[3]} {path}: neither the backup nor the reset wrote it", 1)
        return result

    def _relative(self, path: Path) -> Path:
        # The full path under the project, so that two apps' "0001_initial.py" (or a
        # file outside the project, named by its absolute path) never share a name.
        project = self.manifest.get("project")
        if project:
            with contextlib.suppress(ValueError):
                return path.relative_to(project)
        return path.relative_to(path.anchor)

    def _strangers(self) -> list[Path]:
        known = {entry["path"] for entry in self.originals}
        folders = {Path(entry["path"]).parent for entry in [*self.originals, *self.planned]}
        return sorted(
            path
            for folder in folders
            if folder.is_dir()
            for path in folder.iterdir()
            if MIGRATION_FILE.match(path.name) and str(path) not in known
        )


def _free_name(target: Path, taken: set[Path]) -> Path:
    """``target``, or ``target`` with a number added, naming no file there or taken."""
    candidate = target
    number = 1
    while candidate in taken or candidate.exists():
        number += 1
        candidate = target.with_name(f"{target.name}.{number}")
    return candidate


def _remove_created_folder(directory: Path) -> None:
    # The reset created this package: remove it if it holds only the empty
    # __init__.py it wrote (and caches).
    if not directory.is_dir():
        return
    init = directory / "__init__.py"
    if init.is_file() and init.stat().st_size == 0:
        init.unlink()
    cache = directory / "__pycache__"
    if cache.is_dir():
        shutil.rmtree(cache)
    with contextlib.suppress(OSError):
        directory.rmdir()


def _backup_failed(root: Path, exc: OSError) -> ResetError:
    return ResetError(
        f"Backing up the migration files to {str(root)!r} failed ({type(exc).__name__}: "
        f"{one_line(exc)}); nothing was changed."
    )


def _new_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _ignore_in_git(root)
    stamp = _now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        path = root / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise ResetError(
        f"Cannot create a backup folder in {str(root)!r}: too many backups this second."
    )


def _ignore_in_git(root: Path) -> None:
    # The default location is ".resetdb/backups" in the project: make the
    # ".resetdb" folder ignore itself, whatever the project's .gitignore says.
    if root.name == "backups" and root.parent.name == ".resetdb":
        marker = root.parent / ".gitignore"
        # Also when a full disk once left it empty: it would keep nothing out of git.
        if not marker.exists() or marker.stat().st_size == 0:
            write_atomically(marker, b"# Written by django_resetdb: backups stay out of git.\n*\n")


def list_backups(root: Path) -> list[Backup]:
    """The backups under ``root``, oldest first. Folders without a manifest are left out."""
    if not root.is_dir():
        return []
    backups = []
    for path in root.iterdir():
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            continue
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and manifest.get("format") == FORMAT:
            backups.append(Backup(path, manifest))
    return sorted(backups, key=lambda backup: (backup.created, backup.name))


# Backups whose run is over: the files are those of the run, or those it put back.
_FINISHED = (COMPLETE, ROLLED_BACK, RESTORED)


def prune(root: Path, keep: int | None, project: Path | None = None) -> list[Path]:
    """Remove the oldest finished backups under ``root`` beyond the newest ``keep`` (None:
    keep every one); a backup of a run not over (in progress, committing) is never
    removed, nor, with ``project``, one of another project (a ``BACKUP_DIR`` several
    projects share). Call it holding :func:`files_lock`. Returns the folders removed;
    what cannot be removed stays, and is no error."""
    if keep is None:
        return []
    try:
        found = list_backups(root)
    except OSError:
        return []
    finished = [
        backup
        for backup in found
        if backup.status in _FINISHED
        and (project is None or backup.manifest.get("project") in (None, str(project)))
    ]
    removed = []
    for backup in finished[: max(0, len(finished) - keep)]:
        shutil.rmtree(backup.path, ignore_errors=True)
        if not backup.path.exists():
            removed.append(backup.path)
    return removed


def find_backup(root: Path, name: str | None) -> Backup:
    backups = list_backups(root)
    if not backups:
        raise ResetError(f"No backups in {str(root)!r}.")
    if name is None:
        return backups[-1]
    for backup in backups:
        if backup.name == name or str(backup.path) == str(Path(name).resolve()):
            return backup
    raise ResetError(f"No backup named {name!r} in {str(root)!r}; --list-backups shows the names.")


def interrupted(root: Path) -> list[Backup]:
    """Backups of runs that stopped half-way (killed): their files may need restoring.

    Call it holding :func:`files_lock`: a backup of a run going on now is in progress too.
    """
    return [backup for backup in list_backups(root) if backup.status == IN_PROGRESS]


def committing(root: Path) -> list[Backup]:
    """Backups of runs killed while their database committed: the new files are whole,
    the database may be rebuilt from them or be as it was. Call it holding
    :func:`files_lock`, as :func:`interrupted`."""
    return [backup for backup in list_backups(root) if backup.status == COMMITTING]


# Lock files held by this process, with how many times: the lock is re-entrant here.
_held: dict[Path, int] = {}


def _lock_path(root: Path) -> Path:
    # In the temporary folder, not the project: taking the lock must not create files
    # in a project that has nothing to back up.
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"django_resetdb-{key}.lock"


@contextlib.contextmanager
def files_lock(root: Path, timeout: float) -> Iterator[None]:
    """One run at a time changes the migration files backed up under ``root``.

    Waits up to ``timeout`` seconds, then raises :class:`ResetError` naming the process
    that holds it. The operating system releases it when the holder dies, even by
    SIGKILL, so a leftover lock file means nothing.
    """
    with _files_lock(root, timeout) as taken:
        if not taken:
            raise ResetError(
                f"Another run (pid {_holder(_lock_path(root))}) is changing the migration "
                f"files backed up in {str(root)!r}; gave up after {timeout:g} s. Try again "
                "when it has finished."
            )
        yield


@contextlib.contextmanager
def files_lock_if_free(root: Path) -> Iterator[bool]:
    """:func:`files_lock` without waiting: True inside when it was taken, False when
    another process holds it now."""
    with _files_lock(root, 0) as taken:
        yield taken


@contextlib.contextmanager
def _files_lock(root: Path, timeout: float) -> Iterator[bool]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory file locks; the database lock still holds.
        yield True
        return
    path = _lock_path(root)
    if path in _held:
        _held[path] += 1
        try:
            yield True
        finally:
            _held[path] -= 1
        return
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _held[path] = 1
        try:
            yield True
        finally:
            del _held[path]
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"
