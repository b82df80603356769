"""One file up: resumed from what the remote holds, streamed in PUTs of at most `Where.piece`, then
committed with its size and sha256 (see transfer.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncGenerator
from typing import Any

from ..client import RemoteError
from .answers import PutCut, cut
from .remote import FilesClient
from .transfer import (
    BLOCK,
    BUSY_DELAY,
    MAX_RETRIES,
    CutCounter,
    Outcome,
    Progress,
    file_sha256,
    hash_prefix,
    local_error,
)


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
    if not left:
        return
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


def _read_whole(path: str) -> tuple[bytes, str]:
    with open(path, "rb") as f:
        data = f.read()
    return data, hashlib.sha256(data).hexdigest()


# A file this small is sent whole at once: asking the remote what it holds first would cost
# a round trip to save less than it.
FRESH_SIZE = 256 * 1024


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
    cuts = CutCounter()
    busy_until: float | None = None  # another PUT to the target is still arriving: until then
    sent = [0]
    shown = 0  # the progress shown so far (it goes back when the remote kept less)

    def advance(n: int) -> None:
        nonlocal shown
        shown += n
        progress(n)

    while True:
        try:
            if first and size <= FRESH_SIZE:
                # Read, hashed and sent whole: no question first (PUT ?offset=0 starts any old
                # partial over) and one thread hop. A cut goes on the general way below.
                first = False
                data, sha256 = await asyncio.to_thread(_read_whole, local)
                await client.put_bytes(remote, data)
                sent[0] += len(data)
                advance(len(data))
                outcome.size, outcome.sha256 = len(data), sha256
                await client.commit(remote, len(data), sha256)
                return outcome
            state = await client.upload_state(remote)
            received = int(state.get("received") or 0)
            offset, digest = 0, hashlib.sha256()
            if 0 < received <= size:
                digest = await asyncio.to_thread(hash_prefix, local, received)
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
                if size == 0 < received:  # PUT ?offset=0 empties a partial an older upload left
                    await client.put_range(remote, 0, 0, _pieces(f, digest, 0, sent, advance))
                while offset < size:
                    length = min(client.where.piece, size - offset)
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
            refused = await client.refusal(remote) if isinstance(e, PutCut) else None
            if refused is not None:
                raise refused from None
            if cut(e):
                cuts.cut(shown, e)
                outcome.resumes += 1
                await client.wait_back(time.monotonic() + wait, e)
            elif e.kind == "upload_offset_mismatch" and retries < MAX_RETRIES:
                pass  # the remote holds less than we thought: ask again
            elif e.kind == "upload_busy" and time.monotonic() < (
                busy_until := busy_until or time.monotonic() + max(wait, BUSY_DELAY)
            ):
                # The remote has not yet seen the end of a PUT cut on our side.
                await asyncio.sleep(BUSY_DELAY)
            else:
                raise


async def _same_remote(client: FilesClient, local: str, remote: str, size: int) -> Outcome | None:
    """--update: the outcome of a skip when the remote file has the same size and sha256
    (a small file's asked at once; a large one's only when the sizes are equal)."""
    try:
        st = await client.stat(remote, sha256=size <= FRESH_SIZE)
    except RemoteError as e:
        if e.kind == "path_not_found":
            return None
        raise
    if st.get("type") != "file" or st.get("size") != size:
        return None
    theirs = st.get("sha256") or (await client.stat(remote, sha256=True)).get("sha256")
    ours = await file_sha256(local)
    return Outcome(remote, size, ours, skipped=True) if theirs == ours else None
