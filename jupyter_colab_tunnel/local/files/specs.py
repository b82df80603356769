"""`SRC... DST` of `cp`: which side each is on, and where each source lands (pure).

A remote path is written `remote:PATH`, relative to the remote server's root directory; an
absolute one is made relative with the root's real path (GET /colab/files/?op=stat gives it)
and refused when it leaves the root. The rules for the target are `cp`'s and `scp`'s: a source
copied to an existing directory lands inside it under its own name; a directory copied (-r) to
a path that does not exist becomes that path; several sources need an existing directory.
"""

from __future__ import annotations

import ntpath
import os
import posixpath
from dataclasses import dataclass, field
from typing import Literal

from ...problems import ColabTunnelError, Kind, Problem

REMOTE_PREFIX = "remote:"
EntryType = Literal["file", "directory"]

# Exit codes of `cp` (docs/files.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class SpecError(ColabTunnelError):
    """Input refused before any transfer (exit 2): `path` is what it is about."""

    def __init__(self, kind: Kind, path: str, message: str, hint: str = "") -> None:
        super().__init__(Problem(kind, message, hint))
        self.path = path


@dataclass(frozen=True)
class Location:
    """One side of a copy: `path` is local as given, or remote as written after `remote:`."""

    remote: bool
    path: str

    @property
    def shown(self) -> str:
        return f"{REMOTE_PREFIX}{self.path}" if self.remote else self.path

    @property
    def slash(self) -> bool:
        """Written with a trailing slash: it must be a directory."""
        return self.path.endswith("/") or (not self.remote and self.path.endswith(os.sep))


def parse_location(text: str) -> Location:
    if text.startswith(REMOTE_PREFIX):
        return Location(True, text[len(REMOTE_PREFIX) :])
    return Location(False, text)


@dataclass(frozen=True)
class Direction:
    upload: bool
    sources: list[Location]
    target: Location


def parse_args(words: list[str]) -> Direction:
    """SRC... DST as a direction; ValueError (a usage error) when both or neither are remote."""
    if len(words) < 2:
        raise ValueError("give at least one source and a target: SRC... DST")
    places = [parse_location(w) for w in words]
    sources, target = places[:-1], places[-1]
    remote_sources = sum(s.remote for s in sources)
    if remote_sources not in (0, len(sources)):
        raise ValueError("the sources must be all local or all remote (remote:PATH)")
    if bool(remote_sources) == target.remote:
        side = "remote" if target.remote else "local"
        raise ValueError(
            f"both sides are {side}: one side must be remote:PATH and the other a local path "
            "(cp copies between this machine and the remote)"
        )
    for place in places:
        if not place.remote and not place.path:
            raise ValueError("an empty local path")
    return Direction(upload=target.remote, sources=sources, target=target)


def remote_relative(written: str, root: str | None) -> str:
    """The path to send for a remote path as written: relative to the root, '/'-separated,
    without '.' or empty segments ('' is the root). `root` is the root's absolute real path,
    needed only for an absolute path. SpecError('path_outside_root') for '..' or outside."""
    shown = REMOTE_PREFIX + written
    path = written.replace("\\", "/") if ntpath.isabs(written) and ":" in written[:3] else written
    if path.startswith("/"):
        if root is None:
            raise SpecError("path_outside_root", shown, "the remote's root directory is unknown")
        base = root.rstrip("/") or "/"
        if path.rstrip("/") != base and not path.startswith(base.rstrip("/") + "/"):
            raise SpecError(
                "path_outside_root",
                shown,
                f"{written} is outside the remote server's root directory {root}",
            )
        path = path[len(base) :]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SpecError(
            "path_outside_root", shown, f"{shown}: '..' could leave the remote's root directory"
        )
    return "/".join(parts)


def needs_root(places: list[Location]) -> bool:
    return any(p.remote and p.path.startswith("/") for p in places)


def local_name(path: str) -> str:
    """The name a local source has inside a target directory."""
    return os.path.basename(os.path.normpath(os.path.abspath(path)))


def remote_name(path: str) -> str:
    """The name a remote source (relative path) has inside a target directory; '' for the root."""
    return posixpath.basename(path)


@dataclass(frozen=True)
class Source:
    """A source that exists, its type, its name in a target directory and its size (files)."""

    path: str  # local as given, or remote relative to the root
    shown: str
    type: EntryType
    name: str
    size: int = 0


@dataclass
class Plan:
    """What to do: directories to create (targets), then (source, target, size) file pairs."""

    directories: list[str] = field(default_factory=list)
    files: list[tuple[str, str, int]] = field(default_factory=list)
    # Where each source lands, and its type.
    landings: list[tuple[str, EntryType]] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, _, size in self.files)


def place(
    sources: list[Source],
    target: str,
    target_shown: str,
    target_type: EntryType | None,
    target_slash: bool,
    recursive: bool,
    join: str = "local",
) -> list[tuple[Source, str]]:
    """Each source with the path it lands at (cp's rules). `target_type` is None when the target
    does not exist; `join` says how paths of the target's side are joined."""
    joined = os.path.join if join == "local" else _remote_join
    for source in sources:
        if source.type == "directory" and not recursive:
            raise SpecError(
                "is_a_directory",
                source.shown,
                f"{source.shown} is a directory (not copied without -r)",
                "Copy a directory with -r, or name a file inside it.",
            )
    if target_type == "directory":
        return [(s, joined(target, s.name) if s.name else target) for s in sources]
    if len(sources) > 1:
        raise SpecError(
            "not_a_directory" if target_type == "file" else "path_not_found",
            target_shown,
            f"{target_shown} is not an existing directory (several sources need one)",
            "Create the directory first (or copy one directory with -r), then run again.",
        )
    source = sources[0]
    if target_type == "file":
        if source.type == "directory" or target_slash:
            raise SpecError(
                "not_a_directory",
                target_shown,
                f"{target_shown} is a file, not a directory",
                "A file is in the way: name a directory, or remove or rename the file.",
            )
        return [(source, target)]
    # The target does not exist: a file becomes it; a directory (-r) becomes it.
    if target_slash and source.type == "file":
        raise SpecError(
            "path_not_found",
            target_shown,
            f"the directory {target_shown} does not exist",
            "Create the directory first, or name the target file without a trailing slash.",
        )
    return [(source, target)]


def _remote_join(directory: str, name: str) -> str:
    return posixpath.join(directory, name) if directory else name


def remote_parent(path: str) -> str:
    return posixpath.dirname(path)
