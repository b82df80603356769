"""One file up or down, verified and resumable (FILES_SPEC, "What the client does").

Up: the remote keeps what arrived in a hidden partial next to the target, so the upload asks
how much it holds (`op=upload`), checks that those bytes are this file's first bytes (sha256 of
the local prefix), and sends only the rest in PUTs of at most 32 MiB (the local relay holds a
request's body whole up to 64 MiB), then commits with the whole file's size and sha256.
Down: the bytes go to `.{name}.colab-partial` next to the target; a partial left by an earlier
run is kept when the remote's prefix hash says it is this file's beginning; the partial is
renamed onto the target only when the remote's sha256 equals the running one.

Disk reads, writes and hashing run off the event loop (1 MiB at a time, the next read or the
previous write overlapping the network). When the remote goes away (a tunnel restart, the relay
answering no_upstream), the transfer waits up to `wait` seconds for it and continues.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import stat
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from ...client import RemoteError
from .remote import FilesClient, cut

MiB = 1024 * 1024
PIECE = 32 * MiB  # the most one request carries
BLOCK = MiB  # one disk read or write
# Answers to retry at once (the remote says where to resume) or shortly (a PUT still arriving).
MAX_RETRIES = 20
BUSY_DELAY = 0.5

Progress = Callable[[int], None]


@dataclass
class Outcome:
    """A file that arrived: its size and sha256, the bytes found already there and the bytes
    sent (or fetched) more than once because of a cut, and whether it was skipped (--update)."""

    path: str
    size: int
    sha256: str
    resumed_from: int = 0
    resumes: int = 0
    sent_again: int = 0
    skipped: bool = False


def partial_path(target: str) -> str:
    head, name = os.path.split(target)
    return os.path.join(head, f".{name}.colab-partial")


def local_error(error: OSError, path: str, doing: str) -> RemoteError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return RemoteError(
            "local_disk_full",
            f"this machine's disk is full while {doing} {path} ({error.strerror})",
            "This machine's disk is full: free space here, or copy somewhere else.",
        )
    return RemoteError("local_error", f"{doing} {path}: {error.strerror or error}")


def _hash_prefix(path: str, length: int) -> Any:
    """sha256 of the first `length` bytes of a file (run in a thread)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while left > 0:
            block = f.read(min(BLOCK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest


async def file_sha256(path: str) -> str:
    size = (await asyncio.to_thread(os.stat, path)).st_size
    return str((await asyncio.to_thread(_hash_prefix, path, size)).hexdigest())


# ----- up ----------------------------------------------------------------------------------


async def _pieces(
    f: Any, digest: Any, length: int, sent: list[int], progress: Progress
) -> AsyncGenerator[bytes, None]:
    """`length` bytes of `f` in blocks read (and hashed) in a thread, the next read overlapping
    the sending of the previous block."""

    def read(n: int) -> bytes:
        block: bytes = f.read(n)
        digest.update(block)
        return block

    left = length
    ahead = asyncio.ensure_future(asyncio.to_thread(read, min(BLOCK, left)))
    try:
        while left > 0:
            block = await ahead
            if not block:
                raise RemoteError("local_error", "the file got shorter while it was read")
            left -= len(block)
            if left > 0:
                ahead = asyncio.ensure_future(asyncio.to_thread(read, min(BLOCK, left)))
            yield block
            sent[0] += len(block)
            progress(len(block))
    finally:
        if not ahead.done():
            with contextlib.suppress(Exception):
                await ahead


async def upload(
    client: FilesClient,
    local: str,
    remote: str,
    wait: float,
    progress: Progress = lambda n: None,
    update: bool = False,
) -> Outcome:
    try:
        size = (await asyncio.to_thread(os.stat, local)).st_size
    except OSError as e:
        raise local_error(e, local, "reading") from None
    if update:
        skipped = await _same_remote(client, local, remote, size)
        if skipped is not None:
            progress(size)
            return skipped
    outcome = Outcome(remote, size, "")
    first = True
    retries = 0
    sent = [0]
    shown = 0  # the progress shown so far (it goes back when the remote kept less)

    def advance(n: int) -> None:
        nonlocal shown
        shown += n
        progress(n)

    while True:
        try:
            state = await client.upload_state(remote)
            received = int(state.get("received") or 0)
            offset, digest = 0, hashlib.sha256()
            if 0 < received <= size:
                digest = await asyncio.to_thread(_hash_prefix, local, received)
                if digest.hexdigest() == state.get("sha256"):
                    offset = received
                else:
                    digest = hashlib.sha256()
            if first:
                outcome.resumed_from = offset
                first = False
            advance(offset - shown)
            f = await asyncio.to_thread(open, local, "rb")
            try:
                await asyncio.to_thread(f.seek, offset)
                while offset < size:
                    length = min(PIECE, size - offset)
                    pieces = _pieces(f, digest, length, sent, advance)
                    await client.put_range(remote, offset, length, pieces)
                    offset += length
            finally:
                await asyncio.to_thread(f.close)
            outcome.sha256 = digest.hexdigest()
            await client.commit(remote, size, outcome.sha256)
            outcome.sent_again = max(0, sent[0] - (size - outcome.resumed_from))
            return outcome
        except OSError as e:
            raise local_error(e, local, "reading") from None
        except RemoteError as e:
            retries += 1
            if cut(e):
                outcome.resumes += 1
                await client.wait_back(time.monotonic() + wait, e)
            elif e.kind == "upload_offset_mismatch" and retries < MAX_RETRIES:
                pass  # the remote holds less than we thought: ask again
            elif e.kind == "upload_busy" and retries < MAX_RETRIES:
                await asyncio.sleep(BUSY_DELAY)
            else:
                raise


async def _same_remote(client: FilesClient, local: str, remote: str, size: int) -> Outcome | None:
    """--update: the outcome of a skip when the remote file has the same size and sha256."""
    try:
        st = await client.stat(remote)
    except RemoteError as e:
        if e.kind == "path_not_found":
            return None
        raise
    if st.get("type") != "file" or st.get("size") != size:
        return None
    theirs = (await client.stat(remote, sha256=True)).get("sha256")
    ours = await file_sha256(local)
    return Outcome(remote, size, ours, skipped=True) if theirs == ours else None


# ----- down --------------------------------------------------------------------------------


class _Writer:
    """Writes and hashes blocks in a thread, one write in flight while the next block comes."""

    def __init__(self, f: Any, digest: Any, progress: Progress) -> None:
        self.f, self.digest, self.progress = f, digest, progress
        self.pending: asyncio.Future[None] | None = None
        self.written = 0

    def _write(self, block: bytes) -> None:
        self.f.write(block)
        self.digest.update(block)

    async def write(self, block: bytes) -> None:
        await self.drain()
        self.pending = asyncio.ensure_future(asyncio.to_thread(self._write, block))
        self.written += len(block)
        self.progress(len(block))

    async def drain(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            await pending


def _open_partial(path: str, keep: int) -> Any:
    f = open(path, "r+b" if keep else "wb")  # noqa: SIM115 (closed by the caller)
    f.seek(keep)
    f.truncate(keep)
    return f


def _finish(f: Any, partial: str, target: str) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(partial, target)
    with contextlib.suppress(OSError):
        fd = os.open(os.path.dirname(os.path.abspath(target)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


async def download(
    client: FilesClient,
    remote: str,
    local: str,
    wait: float,
    progress: Progress = lambda n: None,
    update: bool = False,
) -> Outcome:
    partial = partial_path(local)
    outcome = Outcome(local, 0, "")
    first = True
    retries = 0
    fetched = 0
    shown = 0  # the progress shown so far (it goes back when a partial is started over)

    def advance(n: int) -> None:
        nonlocal shown
        shown += n
        progress(n)

    while True:
        f: Any = None
        try:
            st = await client.stat(remote)
            if st.get("type") != "file":
                raise RemoteError(
                    "is_a_directory",
                    f"remote:{remote} is a directory",
                    "Copy a directory with -r, or name a file inside it.",
                )
            size, etag = int(st["size"]), st.get("etag")
            outcome.size = size
            if first and update:
                skipped = await _same_local(client, remote, local, size)
                if skipped is not None:
                    progress(size)
                    return skipped
            have = await asyncio.to_thread(_size_or_zero, partial)
            digest = hashlib.sha256()
            offset = 0
            if 0 < have <= size:
                theirs = await client.stat(remote, prefix=have)
                ours = await asyncio.to_thread(_hash_prefix, partial, have)
                if ours.hexdigest() == theirs.get("prefix_sha256"):
                    offset, digest = have, ours
            if first:
                outcome.resumed_from = offset
                first = False
            advance(offset - shown)
            f = await asyncio.to_thread(_open_partial, partial, offset)
            writer = _Writer(f, digest, advance)
            try:
                while offset < size:
                    end = min(offset + PIECE, size) - 1
                    before = writer.written
                    await client.get_range(remote, offset, end, etag, writer.write)
                    await writer.drain()
                    got = writer.written - before
                    if got != end - offset + 1:
                        raise RemoteError("unreachable", f"the download of remote:{remote} was cut")
                    offset += got
            finally:
                with contextlib.suppress(Exception):
                    await writer.drain()
                fetched += writer.written
            final = await client.stat(remote, sha256=True)
            outcome.sha256 = digest.hexdigest()
            if final.get("sha256") != outcome.sha256 or final.get("etag") != etag:
                await asyncio.to_thread(f.close)
                f = None
                await asyncio.to_thread(_remove, partial)
                raise RemoteError(
                    "download_mismatch",
                    f"the bytes received differ from remote:{remote} (sha256 "
                    f"{outcome.sha256[:12]}..., the remote's {str(final.get('sha256'))[:12]}...)",
                    "The file changed on the remote while it was read, or the bytes were "
                    "damaged: run the same command again (the target was left as it was).",
                )
            await asyncio.to_thread(_finish, f, partial, local)
            f = None
            outcome.sent_again = max(0, fetched - (size - outcome.resumed_from))
            return outcome
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                await asyncio.to_thread(_close_and_remove, f, partial)
                f = None
            raise local_error(e, local, "writing") from None
        except RemoteError as e:
            retries += 1
            if e.kind == "file_changed" and retries < MAX_RETRIES:
                continue  # the partial no longer matches: the prefix check starts it over
            if not cut(e):
                raise
            outcome.resumes += 1
            if f is not None:
                await asyncio.to_thread(f.close)
                f = None
            await client.wait_back(time.monotonic() + wait, e)
        finally:
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


def _size_or_zero(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _close_and_remove(f: Any, path: str) -> None:
    if f is not None:
        with contextlib.suppress(OSError):
            f.close()
    _remove(path)


async def _same_local(client: FilesClient, remote: str, local: str, size: int) -> Outcome | None:
    """--update: the outcome of a skip when the local file has the same size and sha256."""
    try:
        st = await asyncio.to_thread(os.stat, local)
    except OSError:
        return None
    if st.st_size != size or not stat.S_ISREG(st.st_mode):
        return None
    theirs = (await client.stat(remote, sha256=True)).get("sha256")
    ours = await file_sha256(local)
    return Outcome(local, size, ours, skipped=True) if theirs == ours else None
