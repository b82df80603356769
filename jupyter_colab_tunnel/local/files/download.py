"""One file down: into a hidden partial beside the target, resumed when the remote's prefix
hash says the partial is this file's beginning, renamed onto the target only when the remote's
sha256 equals the running one (see transfer.py)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..client import RemoteError
from .answers import cut
from .remote import FilesClient
from .transfer import (
    BLOCK,
    MAX_RETRIES,
    CutCounter,
    Outcome,
    Progress,
    file_sha256,
    hash_prefix,
    local_error,
    partial_path,
)


class _Writer:
    """Writes and hashes on one thread of its own, one write queued while the next comes. The
    answer's pieces (often smaller than they could be) are gathered to BLOCK first: one thread
    hand-off per MiB, not one per socket read. One thread keeps the writes in order even when
    a wait for one is given up (Ctrl-C cancels it, the write still runs): `drain` then waits
    behind every write queued so far."""

    def __init__(self, f: Any, digest: Any, progress: Progress) -> None:
        self.f, self.digest, self.progress = f, digest, progress
        self.pending: asyncio.Future[None] | None = None
        self.written = 0
        self._blocks: list[bytes] = []
        self._gathered = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="cp-download")
        # A failed write (a full disk): tornado, whose callback this runs in, would take it for
        # a dropped connection, so it is kept here and raised after the answer ends. No write
        # runs after one failed.
        self.error: OSError | None = None

    def _write(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            self.f.write(data)
        except OSError as e:
            self.error = e
            return
        self.digest.update(data)

    def _queue(self, data: bytes) -> asyncio.Future[None]:
        return asyncio.get_running_loop().run_in_executor(self._thread, self._write, data)

    async def write(self, block: bytes) -> None:
        if self.error is not None:
            raise self.error
        self._blocks.append(block)
        self._gathered += len(block)
        self.written += len(block)
        self.progress(len(block))
        if self._gathered >= BLOCK:
            await self._hand_off()

    async def _hand_off(self) -> None:
        data = b"".join(self._blocks)
        self._blocks.clear()
        self._gathered = 0
        before, self.pending = self.pending, self._queue(data)
        if before is not None:
            await before  # at most one write waits behind the one under way
        if self.error is not None:
            raise self.error

    async def drain(self) -> None:
        """Everything given so far is written (and hashed), or the write error is raised."""
        if self._blocks and self.error is None:
            await self._hand_off()
        await self._queue(b"")  # behind every write queued so far, awaited or not
        self.pending = None
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self._thread.shutdown(wait=False)


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
    size_hint: int | None = None,
) -> Outcome:
    """`size_hint`: the size a listing gave, for a small file's shorter way."""
    partial = partial_path(local)
    if size_hint is not None and size_hint <= SMALL_WHOLE and not update:
        try:
            small = await _small(client, remote, local, partial)
        except RemoteError as e:
            if not cut(e):
                raise
            small = None  # the general way below waits for the remote
        if small is not None:
            progress(small.size)
            return small
    outcome = Outcome(local, 0, "")
    first = True
    retries = 0
    cuts = CutCounter()
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
                ours = await asyncio.to_thread(hash_prefix, partial, have)
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
                    end = min(offset + client.where.piece, size) - 1
                    before = writer.written
                    try:
                        await client.get_range(remote, offset, end, etag, writer.write)
                    except RemoteError:
                        if writer.error is not None:
                            raise writer.error from None
                        raise
                    await writer.drain()
                    got = writer.written - before
                    if got != end - offset + 1:
                        raise RemoteError("unreachable", f"the download of remote:{remote} was cut")
                    offset += got
            finally:
                with contextlib.suppress(Exception):
                    await writer.drain()
                writer.close()
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
            cuts.cut(shown, e)
            outcome.resumes += 1
            if f is not None:
                await asyncio.to_thread(f.close)
                f = None
            await client.wait_back(time.monotonic() + wait, e)
        finally:
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


# A file this small comes in one GET, checked, written and renamed in one thread hop: two
# requests instead of three (the stat that gives the ETag comes with the bytes).
SMALL_WHOLE = 256 * 1024


async def _small(client: FilesClient, remote: str, local: str, partial: str) -> Outcome | None:
    """A small file down in two requests; None when it changed meanwhile (the general way
    then starts over)."""
    data, etag = await client.get_whole(remote)
    final = await client.stat(remote, sha256=True)
    sha256 = hashlib.sha256(data).hexdigest()
    if final.get("sha256") != sha256 or final.get("etag") != etag:
        return None
    try:
        await asyncio.to_thread(_write_whole, partial, local, data)
    except OSError as e:
        await asyncio.to_thread(_remove, partial)
        raise local_error(e, local, "writing") from None
    return Outcome(local, len(data), sha256)


def _write_whole(partial: str, target: str, data: bytes) -> None:
    with open(partial, "wb") as f:
        f.write(data)
        _finish(f, partial, target)


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
