"""The disk side of /colab/files: where a request's path lands under the root, and what is
there. Blocking calls only (stat, scandir, rename): the handler runs them off the event loop.

A path is relative to the server's root directory. It may not leave it, neither by a `..`
segment nor through a symlink (its real path is checked), and a hidden segment is refused
unless the contents manager allows hidden files (Jupyter's `allow_hidden`, its rules from
jupyter_core). Uploads land in a hidden partial file beside their target and are renamed over
it only when whole and verified: a target is never half-written under its own name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from jupyter_core.paths import is_hidden

from ...problems import ColabTunnelError, Kind, Problem

PARTIAL_SUFFIX = ".colab-partial"
LONG_PARTIAL_PREFIX = ".colab-partial-"
# A partial's name is `.{name}.colab-partial`; a longer name than this gets a hashed one, so
# that the partial's name stays within the 255 bytes a file system allows.
MAX_NAME_FOR_PARTIAL = 200
MAX_LIST_ENTRIES = 100_000
# Where a write fails for lack of room: no space, a quota, a file size limit (RLIMIT_FSIZE).
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class FilesError(ColabTunnelError):
    """A refused or failed files request: its HTTP status, its problem, extra answer fields."""

    def __init__(self, status: int, kind: Kind, message: str, hint: str = "", **extra: Any) -> None:
        super().__init__(Problem(kind, message, hint))
        self.status = status
        self.extra = extra


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the root, '/'-separated ('' for the root)
    kind: str  # "file" or "directory"
    size: int
    mtime: str
    etag: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.path.rsplit("/", 1)[-1],
            "type": self.kind,
            "size": self.size,
            "mtime": self.mtime,
            "etag": self.etag,
        }


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def etag_of(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def entry_of(rel: str, st: os.stat_result) -> Entry:
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
    return Entry(rel, kind, st.st_size if kind == "file" else 0, iso_time(st.st_mtime), etag_of(st))


def is_partial_name(name: str) -> bool:
    return name.endswith(PARTIAL_SUFFIX) or name.startswith(LONG_PARTIAL_PREFIX)


def partial_name(name: str) -> str:
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_FOR_PARTIAL:
        digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()  # noqa: S324
        return LONG_PARTIAL_PREFIX + digest
    return f".{name}{PARTIAL_SUFFIX}"


def disk_error(e: OSError, what: str) -> FilesError:
    """An OSError of the remote's disk as the answer a client can act on."""
    if e.errno in FULL_ERRNOS:
        return FilesError(
            507, "disk_full", f"the remote's disk is full while writing {what} ({e.strerror})"
        )
    if isinstance(e, PermissionError):
        return FilesError(
            403,
            "forbidden",
            f"the remote server's user may not do that to {what} ({e.strerror})",
            "Choose a directory that the remote Jupyter server's user may write, e.g. under "
            "its root directory.",
        )
    return FilesError(500, "server_error", f"the remote could not use {what}: {e.strerror or e}")


class FileStore:
    """The root directory and its rules; every method may block (call it off the loop)."""

    def __init__(self, root: str, allow_hidden: Callable[[], bool]) -> None:
        self.root = os.path.realpath(os.path.expanduser(root))
        self._allow_hidden = allow_hidden

    # ----- a request's path -----------------------------------------------------------

    def split(self, rel: str) -> list[str]:
        """The path's segments; FilesError for one that could leave the root."""
        if "\x00" in rel:
            raise FilesError(400, "bad_request", "the path holds a NUL character")
        if rel.startswith("/"):
            raise FilesError(
                403,
                "path_outside_root",
                f"{shown(rel)} is absolute: paths are relative to the server's root directory",
            )
        parts = [p for p in rel.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise FilesError(403, "path_outside_root", f"{shown(rel)} has a '.' or '..' segment")
        return parts

    def locate(self, rel: str) -> tuple[str, str]:
        """(the normalized relative path, its absolute path) once it is allowed."""
        parts = self.split(rel)
        norm = "/".join(parts)
        path = os.path.join(self.root, *parts)
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise FilesError(
                403,
                "path_outside_root",
                f"{shown(norm)} leads out of the server's root directory through a symlink",
            )
        if parts and not self._allow_hidden() and self._hidden(parts, path):
            raise FilesError(
                403, "path_hidden", f"{shown(norm)} is hidden, and this server hides such files"
            )
        return norm, path

    def _hidden(self, parts: list[str], path: str) -> bool:
        if any(p.startswith(".") for p in parts):
            return True
        return os.path.lexists(path) and is_hidden(path, self.root)

    def stat(self, rel: str) -> tuple[Entry, str]:
        norm, path = self.locate(rel)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FilesError(404, "path_not_found", f"{shown(norm)} does not exist") from None
        except OSError as e:
            raise disk_error(e, shown(norm)) from None
        return entry_of(norm, st), path

    def file(self, rel: str) -> tuple[Entry, str]:
        entry, path = self.stat(rel)
        if entry.kind != "file":
            raise FilesError(409, "is_a_directory", f"{shown(entry.path)} is a directory")
        return entry, path

    def directory(self, rel: str) -> tuple[Entry, str]:
        entry, path = self.stat(rel)
        if entry.kind != "directory":
            raise FilesError(409, "not_a_directory", f"{shown(entry.path)} is a file")
        return entry, path

    # ----- uploads ----------------------------------------------------------------------

    def upload_target(self, rel: str) -> tuple[str, str, str]:
        """(relative path, target, partial) of an upload: the parent directory must exist and
        the target must not be a directory."""
        norm, path = self.locate(rel)
        if not norm:
            raise FilesError(409, "is_a_directory", "the root directory is a directory")
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            where = norm.rpartition("/")[0] or "."
            kind: Kind = "not_a_directory" if os.path.lexists(parent) else "path_not_found"
            raise FilesError(
                409 if kind == "not_a_directory" else 404,
                kind,
                f"the directory {shown(where)} of {shown(norm)} "
                + ("is a file" if kind == "not_a_directory" else "does not exist"),
            )
        if os.path.isdir(path):
            raise FilesError(409, "is_a_directory", f"{shown(norm)} is a directory")
        return norm, path, os.path.join(parent, partial_name(os.path.basename(path)))

    def mkdir(self, rel: str) -> Entry:
        norm, path = self.locate(rel)
        try:
            os.makedirs(path, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            # A file at the path itself, or at one of its parents.
            raise FilesError(
                409, "not_a_directory", f"a file is in the way of the directory {shown(norm)}"
            ) from None
        except OSError as e:
            raise disk_error(e, shown(norm)) from None
        self.locate(norm)  # a symlink raced in on the way is refused, not used
        return self.stat(norm)[0]

    # ----- listings ---------------------------------------------------------------------

    def listing(self, rel: str, recursive: bool) -> tuple[Entry, list[Entry], bool]:
        top, path = self.directory(rel)
        entries: list[Entry] = []
        pending = [(top.path, path)]
        allow_hidden = self._allow_hidden()
        while pending:
            base, where = pending.pop()
            try:
                items = list(os.scandir(where))
            except OSError:
                continue  # unreadable below the top: left out, as Jupyter's file browser does
            for item in items:
                if is_partial_name(item.name) or (not allow_hidden and item.name.startswith(".")):
                    continue
                child = f"{base}/{item.name}" if base else item.name
                try:
                    if item.is_symlink() and not self._inside(item.path):
                        continue
                    st = item.stat()
                except OSError:
                    continue
                if not allow_hidden and is_hidden(item.path, self.root):
                    continue
                entry = entry_of(child, st)
                entries.append(entry)
                if len(entries) >= MAX_LIST_ENTRIES:
                    return top, sorted(entries, key=lambda e: e.path), True
                if recursive and entry.kind == "directory" and not item.is_symlink():
                    pending.append((child, item.path))
        return top, sorted(entries, key=lambda e: e.path), False

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)


def shown(rel: str, limit: int = 200) -> str:
    """A path fit for a message (quoted, clipped)."""
    text = rel or "."
    return repr(text if len(text) <= limit else text[:limit] + "...")
