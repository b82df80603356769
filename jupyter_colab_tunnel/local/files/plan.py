"""From `SRC... DST` to a Plan: what exists on each side, where each source lands, and the
files and directories of each source copied with -r. Everything here is checked before the
first byte moves, so bad input is refused whole (exit 2).
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat

from ..client import RemoteError
from .remote import FilesClient
from .specs import (
    Direction,
    EntryType,
    Plan,
    Source,
    SpecError,
    local_name,
    needs_root,
    place,
    remote_name,
    remote_relative,
)

PARTIAL_SUFFIX = ".colab-partial"


async def make_plan(client: FilesClient, direction: Direction, recursive: bool) -> Plan:
    root = None
    if needs_root([*direction.sources, direction.target]):
        root = (await client.stat("")).get("root")
        if not isinstance(root, str):
            raise RemoteError("bad_response", "the remote did not say its root directory")
    if direction.upload:
        return await _plan_upload(client, direction, recursive, root)
    return await _plan_download(client, direction, recursive, root)


async def _remote_type(client: FilesClient, path: str) -> EntryType | None:
    try:
        kind = (await client.stat(path)).get("type")
    except RemoteError as e:
        if e.kind == "path_not_found":
            return None
        raise
    return "directory" if kind == "directory" else "file"


def _local_type(path: str) -> tuple[EntryType | None, int]:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None, 0
    except OSError as e:
        raise SpecError("local_error", path, f"{path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return "directory", 0
    if stat.S_ISREG(st.st_mode):
        return "file", st.st_size
    raise SpecError("local_error", path, f"{path} is neither a file nor a directory")


def _missing(shown: str, remote: bool) -> SpecError:
    side = "on the remote" if remote else "on this machine"
    return SpecError(
        "path_not_found",
        shown,
        f"{shown}: no such file or directory {side}",
        "Check the path (colab_list or `cp` of a directory lists what is there).",
    )


async def _plan_upload(
    client: FilesClient, direction: Direction, recursive: bool, root: str | None
) -> Plan:
    sources: list[Source] = []
    for place_ in direction.sources:
        kind, size = await asyncio.to_thread(_local_type, place_.path)
        if kind is None:
            raise _missing(place_.path, False)
        sources.append(Source(place_.path, place_.path, kind, local_name(place_.path), size))
    target = remote_relative(direction.target.path, root)
    shown = direction.target.shown
    target_type = await _remote_type(client, target)
    placed = place(
        sources, target, shown, target_type, direction.target.slash, recursive, join="remote"
    )
    if target_type is None:
        await _check_remote_parent(client, target, shown)
    plan = Plan()
    for source, landing in placed:
        plan.landings.append((landing, source.type))
        if source.type == "file":
            plan.files.append((source.path, landing, source.size))
        else:
            await asyncio.to_thread(_walk_local, source.path, landing, plan)
    return plan


async def _check_remote_parent(client: FilesClient, target: str, shown: str) -> None:
    parent = posixpath.dirname(target)
    kind = await _remote_type(client, parent)
    if kind is None:
        raise SpecError(
            "path_not_found",
            shown,
            f"the remote directory of {shown} does not exist",
            "Create it first (cp -r of a directory creates directories), or fix the path.",
        )
    if kind == "file":
        raise SpecError(
            "not_a_directory",
            shown,
            f"remote:{parent} is a file, not a directory",
            "A file is in the way: name a directory, or remove or rename the file.",
        )


def _walk_local(top: str, landing: str, plan: Plan) -> None:
    """A local tree into the plan: its directories (created on the remote) and files."""
    plan.directories.append(landing)
    for here, dirs, files in os.walk(top):
        dirs.sort()
        rel = os.path.relpath(here, top)
        base = landing if rel == "." else posixpath.join(landing, *rel.split(os.sep))
        for name in dirs:
            plan.directories.append(posixpath.join(base, name) if base else name)
        for name in sorted(files):
            if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
                continue  # a download of ours under way
            path = os.path.join(here, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone meanwhile, or a dangling link
            if stat.S_ISREG(st.st_mode):
                plan.files.append((path, posixpath.join(base, name) if base else name, st.st_size))


async def _plan_download(
    client: FilesClient, direction: Direction, recursive: bool, root: str | None
) -> Plan:
    sources: list[Source] = []
    for place_ in direction.sources:
        path = remote_relative(place_.path, root)
        try:
            st = await client.stat(path)
        except RemoteError as e:
            if e.kind == "path_not_found":
                raise _missing(place_.shown, True) from None
            raise
        kind: EntryType = "directory" if st.get("type") == "directory" else "file"
        sources.append(
            Source(path, place_.shown, kind, remote_name(path), int(st.get("size") or 0))
        )
    target = direction.target
    target_type, _ = await asyncio.to_thread(_local_type, target.path)
    plan = Plan()
    # As gsutil does, the local directories a download needs are made (not the remote's):
    # the target's parent, or the target itself when it must be a directory.
    make_target = target_type is None and (len(sources) > 1 or target.slash)
    placed = place(
        sources,
        target.path,
        target.path,
        "directory" if make_target else target_type,
        target.slash,
        recursive,
    )
    if target_type is None:
        # (a name inside the target: its parent is the target)
        needed = os.path.join(target.path, "_") if make_target else target.path
        blocked = await asyncio.to_thread(_file_in_the_way, needed)
        if blocked is not None:
            raise SpecError(
                "not_a_directory",
                target.path,
                f"{blocked} is a file, not a directory",
                "A file is in the way: name a directory, or remove or rename the file.",
            )
        plan.directories.append(await asyncio.to_thread(_parent_dir, needed))
    for source, landing in placed:
        plan.landings.append((landing, source.type))
        if source.type == "file":
            plan.files.append((source.path, landing, source.size))
        else:
            await _expand_remote(client, source, landing, plan)
    return plan


async def _expand_remote(client: FilesClient, source: Source, landing: str, plan: Plan) -> None:
    body = await client.list(source.path, recursive=True)
    if body.get("truncated"):
        raise SpecError(
            "bad_request",
            source.shown,
            f"{source.shown} has more entries than the remote lists at once",
            "Copy its subdirectories one by one.",
        )
    plan.directories.append(landing)
    prefix = source.path + "/" if source.path else ""
    for entry in body.get("entries") or []:
        path = str(entry.get("path") or "")
        rel = path[len(prefix) :] if path.startswith(prefix) else ""
        parts = rel.split("/")
        # Never trust a name to stay inside the target: refuse what could leave it.
        if not rel or any(p in ("", ".", "..") or os.sep in p for p in parts):
            raise RemoteError(
                "bad_response", f"the remote listed an entry outside {source.shown}: {path!r}"
            )
        local = os.path.join(landing, *parts)
        if entry.get("type") == "directory":
            plan.directories.append(local)
        elif entry.get("type") == "file":
            plan.files.append((path, local, int(entry.get("size") or 0)))


def _parent_dir(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def _file_in_the_way(path: str) -> str | None:
    """The nearest existing ancestor of `path` when it is not a directory."""
    here = _parent_dir(path)
    while not os.path.exists(here):
        here = os.path.dirname(here)
    return None if os.path.isdir(here) else here
