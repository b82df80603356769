"""What /colab/files does, apart from HTTP: stat, list, the state of an upload, commit, mkdir.

Every disk call runs on the service's own small thread pool, so that hashing a large file
neither blocks the event loop nor takes the threads Jupyter's own handlers use.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .hashes import HashBook, hash_prefix, size_of
from .store import Entry, FilesError, FileStore, disk_error, shown

T = TypeVar("T")
WORKERS = 4
EMPTY_SHA256 = hashlib.sha256().hexdigest()


@dataclasses.dataclass
class FilesStats:
    bytes_received: int = 0
    bytes_sent: int = 0
    uploads: int = 0
    failures: Counter[str] = dataclasses.field(default_factory=Counter)


def partial_key(partial: str) -> tuple[str, ...]:
    return ("partial", partial)


def read_key(path: str, etag: str) -> tuple[str, ...]:
    return ("read", path, etag)


class FilesService:
    def __init__(self, root: str, allow_hidden: Callable[[], bool]) -> None:
        self.store = FileStore(root, allow_hidden)
        self.book = HashBook()
        self.busy: set[str] = set()  # partial files a request is writing or committing
        self.stats = FilesStats()
        self.closing: set[asyncio.Future[None]] = set()  # cut uploads still writing what came
        # Partials being flushed to the disk after their last PUT; a commit waits for its own.
        self.syncing: dict[str, Awaitable[None]] = {}
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="colab-files")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ----- reads ------------------------------------------------------------------------

    async def stat(self, rel: str, sha256: bool, prefix: int | None) -> dict[str, Any]:
        entry, path = await self.run(self.store.stat, rel)
        body = entry.as_dict()
        del body["name"]
        if not entry.path:
            body["root"] = self.store.root
        if entry.kind != "file":
            return body
        if prefix is not None:
            if prefix > entry.size:
                raise FilesError(
                    400,
                    "bad_request",
                    f"prefix={prefix} is beyond the end of {shown(entry.path)} ({entry.size} bytes)",
                )
            hasher = await self._hash(path, prefix, shown(entry.path))
            # A download resumed at `prefix` continues this hash instead of reading it again.
            self.book.keep(read_key(path, entry.etag), prefix, hasher.copy())
            body.update(prefix=prefix, prefix_sha256=hasher.hexdigest())
        if sha256:
            body["sha256"] = await self.digest(entry, path)
        return body

    async def digest(self, entry: Entry, path: str) -> str:
        known = self.book.digest(path, entry.etag)
        if known is not None:
            return known
        hexdigest: str = (await self._hash(path, entry.size, shown(entry.path))).hexdigest()
        after, _ = await self.run(self.store.stat, entry.path)
        if after.etag != entry.etag:
            raise FilesError(
                409, "file_changed", f"{shown(entry.path)} changed while it was being hashed"
            )
        self.book.remember(path, entry.etag, hexdigest)
        return hexdigest

    async def _hash(self, path: str, length: int, what: str) -> Any:
        try:
            return await self.run(hash_prefix, path, length)
        except OSError as e:
            raise disk_error(e, what) from None

    async def listing(self, rel: str, recursive: bool) -> dict[str, Any]:
        top, entries, truncated = await self.run(self.store.listing, rel, recursive)
        return {
            "path": top.path,
            "type": "directory",
            "entries": [_without_etag(e) for e in entries],
            "truncated": truncated,
        }

    # ----- uploads ----------------------------------------------------------------------

    async def upload_state(self, rel: str) -> dict[str, Any]:
        norm, _, partial = await self.run(self.store.upload_target, rel)
        received = await self.run(size_of, partial)
        digest = self.book.peek(partial_key(partial), received)
        if digest is None and partial not in self.busy:
            hasher = await self._hash(partial, received, shown(norm))
            self.book.keep(partial_key(partial), received, hasher)
            digest = hasher.hexdigest()
        return {"path": norm, "received": received, "sha256": digest or ""}

    async def commit(self, rel: str, size: int, sha256: str) -> dict[str, Any]:
        norm, target, partial = await self.run(self.store.upload_target, rel)
        if partial in self.busy:
            raise FilesError(
                409, "upload_busy", f"{shown(norm)} is still being received by another request"
            )
        self.busy.add(partial)
        try:
            return await self._commit(norm, target, partial, size, sha256)
        finally:
            self.busy.discard(partial)

    async def _commit(
        self, norm: str, target: str, partial: str, size: int, sha256: str
    ) -> dict[str, Any]:
        syncing = self.syncing.pop(partial, None)
        if syncing is not None:
            try:
                await syncing
            except OSError as e:  # a write the disk could not keep after all
                await self.run(_remove, partial)
                raise disk_error(e, shown(norm)) from None
        exists = await self.run(os.path.lexists, partial)
        received = await self.run(size_of, partial)
        if received < size:
            raise FilesError(
                409,
                "upload_offset_mismatch",
                f"{shown(norm)}: {received} of {size} bytes have arrived",
                received=received,
            )
        hasher = self.book.take(partial_key(partial), received)
        digest = (
            hasher.hexdigest()
            if hasher is not None
            else (await self._hash(partial, received, shown(norm))).hexdigest()
            if exists
            else EMPTY_SHA256
        )
        if received != size or digest != sha256:
            await self.run(_remove, partial)
            self.stats.failures["upload_mismatch"] += 1
            raise FilesError(
                422,
                "upload_mismatch",
                f"{shown(norm)}: {received} bytes with sha256 {digest[:12]}... arrived, the "
                f"client sent {size} bytes with sha256 {sha256[:12]}...; the partial upload "
                "was removed",
            )
        try:
            await self.run(_put_in_place, partial, target, exists)
        except OSError as e:
            await self.run(_remove, partial)
            raise disk_error(e, shown(norm)) from None
        entry, path = await self.run(self.store.stat, norm)
        self.book.remember(path, entry.etag, digest)
        self.stats.uploads += 1
        body = entry.as_dict()
        del body["name"]
        return {**body, "sha256": digest}

    async def mkdir(self, rel: str) -> dict[str, Any]:
        entry = await self.run(self.store.mkdir, rel)
        body = entry.as_dict()
        del body["name"]
        return body


def _without_etag(entry: Entry) -> dict[str, Any]:
    body = entry.as_dict()
    del body["etag"]
    return body


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _put_in_place(partial: str, target: str, exists: bool) -> None:
    """fsync the partial, give it an existing target's permission bits (a new one keeps the
    umask's, set when the partial was created), rename it over the target."""
    if not exists:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        mode: int | None = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
        if mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(partial, target)
