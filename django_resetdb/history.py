"""Which migration files a team shares: those in version control at the shared point.

A reset regenerates a developer's own migrations (uncommitted, or committed only on this
branch) and keeps the shared ones as they are: teammates' and deployed databases have
applied those. The shared point is, by default, where the branch meets its upstream
(``git merge-base HEAD @{upstream}``), else where it meets the default branch
(``origin/HEAD``, else ``main`` or ``master``), else ``HEAD`` itself; ``SHARED_REF`` (or
``--shared-ref``) names another ref.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django_resetdb.exceptions import ResetError

# A local git answers in milliseconds; a hung one must not hold a reset for ever.
GIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class SharedPoint:
    """The commit whose migration files count as shared, and how it was found."""

    commit: str
    how: str  # e.g. "merge base of HEAD and origin/main"
    top: Path  # the repository's top folder
    files: frozenset[Path] = field(default_factory=frozenset)  # shared files, absolute

    def holds(self, path: Path) -> bool:
        return _real(path) in self.files

    def describe(self) -> str:
        return f"{self.how} ({self.commit[:12]})"


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _git(top: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        return subprocess.run(
            ["git", "-C", str(top), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _GitMissing(str(exc)) from exc


class _GitMissing(Exception):
    pass


def _out(top: Path, *args: str) -> str | None:
    result = _git(top, *args)
    return result.stdout.strip() if result.returncode == 0 else None


def repository_top(root: Path) -> Path | None:
    """The top folder of the git repository ``root`` is in, or None (no repository, or
    no git)."""
    try:
        top = _out(root, "rev-parse", "--show-toplevel")
    except _GitMissing:
        return None
    return Path(top) if top else None


def find_shared_point(
    root: Path, folders: Sequence[Path], ref: str | None = None
) -> SharedPoint | None:
    """The shared point of the repository ``root`` is in, with the migration files under
    ``folders`` it holds; None when ``root`` is in no repository or nothing is committed
    yet. ``ref`` names the shared point; a ref that does not exist is an error."""
    top = repository_top(root)
    if top is None:
        if ref:
            raise ResetError(
                f"The shared point {ref!r} cannot be read: {str(root)!r} is not in a git "
                "repository (or git is not installed)."
            )
        return None
    try:
        return _shared_point(top, folders, ref)
    except _GitMissing as exc:  # found once, then gone or hung (GIT_TIMEOUT)
        raise ResetError(
            f"git stopped answering while the shared point was read ({exc}); nothing was changed."
        ) from exc


def _shared_point(top: Path, folders: Sequence[Path], ref: str | None) -> SharedPoint | None:
    if _out(top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}") is None:
        if ref:
            raise ResetError(f"The shared point {ref!r} cannot be read: nothing is committed yet.")
        return None  # a repository without a commit: nothing is shared
    if ref:
        commit = _out(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if commit is None:
            raise ResetError(
                f"The shared point {ref!r} is not a commit of the repository in {str(top)!r}; "
                "name a branch, tag or commit (SHARED_REF or --shared-ref)."
            )
        how = ref
    else:
        commit, how = _default_point(top)
    return SharedPoint(commit, how, top, frozenset(_committed(top, commit, folders)))


def _default_point(top: Path) -> tuple[str, str]:
    candidates: list[str] = []
    upstream = _out(top, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}")
    if upstream:
        candidates.append(upstream)
    default = _out(top, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if default:
        candidates.append(default)
    candidates += ["main", "master"]
    for candidate in candidates:
        if _out(top, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}") is None:
            continue
        base = _out(top, "merge-base", "HEAD", candidate)
        if base:
            return base, f"merge base of HEAD and {candidate}"
    head = _out(top, "rev-parse", "HEAD")
    assert head is not None
    return head, "HEAD"


def _committed(top: Path, commit: str, folders: Iterable[Path]) -> list[Path]:
    """The files under ``folders`` that ``commit`` holds, as absolute paths."""
    inside = []
    real_top = _real(top)
    for folder in folders:
        try:
            inside.append(_real(folder).relative_to(real_top).as_posix())
        except ValueError:
            continue  # outside the repository: nothing of it is shared
    if not inside:
        return []
    listed = _git(top, "ls-tree", "-r", "--name-only", "-z", commit, "--", *inside)
    if listed.returncode != 0:
        raise ResetError(f"git could not list the files of {commit[:12]}: {listed.stderr.strip()}")
    return [real_top / name for name in listed.stdout.split("\0") if name]
