"""One PUT's bytes into a partial file: written and hashed off the loop as they arrive.

The body comes in tornado's small chunks; they are gathered into pieces of about 1 MiB, and a
piece is written (and hashed) in a worker thread while the next one is received: the socket and
the disk work at once, and a slow disk slows the sender (backpressure) instead of filling
memory. When the connection is cut, what arrived is still written, so that a resumed upload
sends only the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os

from .hashes import PIECE, Hasher, hash_prefix
from .service import FilesService, partial_key
from .store import FilesError, disk_error, shown


def _open_at(partial: str, offset: int) -> int:
    """The partial open for writing, cut to `offset` (a repeated PUT replaces what follows)."""
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        if os.fstat(fd).st_size != offset:
            os.ftruncate(fd, offset)
    except OSError:
        os.close(fd)
        raise
    return fd


def _write(fd: int, offset: int, data: bytes, hasher: Hasher) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
    hasher.update(data)


def _sync_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


class PartialUpload:
    """The partial file of one PUT, from `offset` on."""

    def __init__(self, service: FilesService, rel: str, partial: str, offset: int) -> None:
        self.service = service
        self.rel = rel
        self.partial = partial
        self.offset = offset  # bytes on disk (and hashed) once pending writes are done
        self.received = 0  # body bytes of this request
        self.failure: FilesError | None = None
        self._fd = -1
        self._hasher: Hasher = hashlib.sha256()
        self._chunks: list[bytes] = []
        self._gathered = 0
        self._pending: asyncio.Future[None] | None = None
        self._closed = False

    async def open(self, current: int) -> None:
        """Claim the partial (one writer at a time) and continue its hash at `offset`."""
        service = self.service
        if self.partial in service.busy:
            raise FilesError(
                409, "upload_busy", f"{shown(self.rel)} is still being received by another request"
            )
        if self.offset > current:
            raise FilesError(
                409,
                "upload_offset_mismatch",
                f"{shown(self.rel)}: offset {self.offset}, but {current} bytes have arrived",
                received=current,
            )
        service.busy.add(self.partial)
        try:
            hasher = service.book.take(partial_key(self.partial), self.offset)
            if hasher is None:
                hasher = await service.run(hash_prefix, self.partial, self.offset)
            self._hasher = hasher
            self._fd = await service.run(_open_at, self.partial, self.offset)
        except OSError as e:
            service.busy.discard(self.partial)
            self._closed = True
            raise disk_error(e, shown(self.rel)) from None
        except BaseException:
            service.busy.discard(self.partial)
            self._closed = True
            raise

    async def feed(self, chunk: bytes) -> None:
        if self.failure is not None or self._closed:
            return  # the rest of a failed body is read and dropped; the error is the answer
        self.received += len(chunk)
        self.service.stats.bytes_received += len(chunk)
        self._chunks.append(chunk)
        self._gathered += len(chunk)
        if self._gathered >= PIECE:
            await self._write_gathered()

    async def _write_gathered(self) -> None:
        if self._pending is not None:
            await self._settle()
        if self.failure is not None or not self._chunks:
            return
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._gathered = 0
        at = self.offset
        self.offset += len(data)
        self._pending = asyncio.ensure_future(
            self.service.run(_write, self._fd, at, data, self._hasher)
        )

    async def _settle(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            await pending
        except OSError as e:
            self.failure = disk_error(e, shown(self.rel))
            self.service.stats.failures[self.failure.kind] += 1
            await self._discard()

    async def finish(self) -> int:
        """Write the rest; the bytes the partial holds. Raises the failure, if any."""
        await self._write_gathered()
        await self._settle()
        await self.close()
        if self.failure is not None:
            raise self.failure
        return self.offset

    async def close(self) -> None:
        """Keep what arrived (a cut connection) and let the next request continue it."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            await self._write_gathered()
            await self._settle()
        self._closed = True
        if self._fd >= 0:
            # Flushed to the disk in the background while the client sends its next piece, so
            # that the commit's fsync finds nothing left to write (it would wait ~0.1 s a 200 MB).
            syncing = self.service.run(_sync_and_close, self._fd)
            self.service.syncing[self.partial] = syncing
            self._fd = -1
        if self.failure is None:
            self.service.book.keep(partial_key(self.partial), self.offset, self._hasher)
        self.service.busy.discard(self.partial)

    async def _discard(self) -> None:
        """A full disk: the partial goes (nothing half-written stays behind)."""
        self._chunks.clear()
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        self.service.book.forget(partial_key(self.partial))
        with contextlib.suppress(OSError):
            await self.service.run(os.unlink, self.partial)
