"""Which migration files a team shares: those in version control at the shared point.

A reset regenerates a developer's own migrations (uncommitted, or committed only on this
branch) and keeps the shared ones as they are: teammates' and deployed databases have
applied those. By default the shared files are those committed where the branch meets
its upstream (``git merge-base HEAD @{upstream}``) and the default branch
(``origin/HEAD``, ``main``, ``master``, ``origin/main``, ``origin/master``), and at the
tips of those branches; with none of them, at ``HEAD``. ``SHARED_REF`` (or
``--shared-ref``) names one ref instead. An app inside another repository (a submodule)
is asked of that repository, by the default rule.
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
    # Other refs whose files count as shared too (the default branch's tip, say).
    others: tuple[str, ...] = ()
    # The shared points of repositories inside this one (submodules), for their apps.
    nested: tuple[SharedPoint, ...] = ()

    def holds(self, path: Path) -> bool:
        return _real(path) in self.files or any(point.holds(path) for point in self.nested)

    def describe(self, folder: Path | None = None) -> str:
        """How it was found; for the apps of ``folder``, their own repository's."""
        if folder is not None:
            for point in self.nested:
                if _real(folder).is_relative_to(_real(point.top)):
                    return f"{point.describe()} in {point.top.name}"
        also = f", or at {', '.join(self.others)}" if self.others else ""
        return f"{self.how} ({self.commit[:12]}){also}"


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
    ours, inner = _by_repository(top, folders)
    nested = tuple(
        point
        for inner_top, inside in inner.items()
        if (point := _shared_point(inner_top, inside, None)) is not None
    )
    if ref:
        commit = _out(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if commit is None:
            raise ResetError(
                f"The shared point {ref!r} is not a commit of the repository in {str(top)!r}; "
                "name a branch, tag or commit (SHARED_REF or --shared-ref)."
            )
        return SharedPoint(
            commit, ref, top, frozenset(_committed(top, commit, ours)), nested=nested
        )
    points = _default_points(top)
    commit, how = points[0]
    files = set(_committed(top, commit, ours))
    others: list[str] = []
    for other, name in points[1:]:
        more = set(_committed(top, other, ours)) - files
        if more:
            files |= more
            others.append(name)
    return SharedPoint(commit, how, top, frozenset(files), tuple(others), nested)


def _by_repository(top: Path, folders: Sequence[Path]) -> tuple[list[Path], dict[Path, list[Path]]]:
    """``folders`` of repository ``top`` itself, and those inside a repository within it
    (a submodule, a nested clone), by that repository's top folder: the project's
    repository lists nothing inside them."""
    real_top = _real(top)
    ours: list[Path] = []
    inner: dict[Path, list[Path]] = {}
    for folder in folders:
        inner_top = None
        current = _real(folder)
        while current != real_top and current.is_relative_to(real_top):
            if (current / ".git").exists():
                inner_top = current
            current = current.parent
        if inner_top is None:
            ours.append(folder)
        else:
            inner.setdefault(inner_top, []).append(folder)
    return ours, inner


def _default_points(top: Path) -> list[tuple[str, str]]:
    """The commits whose files count as shared, the first one the main one: where HEAD
    meets its upstream and the default branch, and the tips of both (a teammate's
    migration merged in from them, or pulled in by a merge not yet committed, is theirs);
    with none of them but the branch one is on, HEAD itself (named as that branch)."""
    candidates: list[str] = []
    upstream = _out(top, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}")
    if upstream:
        candidates.append(upstream)
    default = _out(top, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if default:
        candidates.append(default)
    candidates += ["main", "master", "origin/main", "origin/master"]
    # The branch one is on is not shared with itself: its commits not on the others are
    # one's own (with no other branch, all of them are shared, below).
    current = _out(top, "symbolic-ref", "--quiet", "--short", "HEAD")
    points: list[tuple[str, str]] = []
    seen: set[str] = set()
    for candidate in dict.fromkeys(c for c in candidates if c != current):
        tip = _out(top, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        if tip is None:
            continue
        base = _out(top, "merge-base", "HEAD", candidate)
        for commit, how in ((base, f"merge base of HEAD and {candidate}"), (tip, candidate)):
            if commit and commit not in seen:
                seen.add(commit)
                points.append((commit, how))
    if not points:
        head = _out(top, "rev-parse", "HEAD")
        assert head is not None
        points.append((head, current or "HEAD"))
    return points


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
