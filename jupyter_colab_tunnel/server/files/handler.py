"""`<base_url>colab/files/<path>`: files up and down, streamed, resumable and verified.

Jupyter's contents API carries a file as base64 in JSON (a third larger, held whole on both
sides) and its `/files/` route takes no uploads, so `jupyter colab-tunnel cp` talks to this
route instead (docs/files.md has the protocol and the figures). Authorization is Jupyter's own
on the `contents` resource (GET reads, PUT and POST write), decided on the request's head before
any byte of a body is read; the path rules are FileStore's. Bodies are never held whole: a
download is read off the loop in 1 MiB pieces, each written once the client took the last, and
an upload is written as it arrives (PartialUpload).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import os
import re
from typing import Any, cast

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import ensure_async
from tornado import web
from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError

from ...http1 import STREAMED_BODY_LIMIT
from ..handlers import FILES_SETTING, NO_CREDENTIALS, TokenHintMixin, jupyter_refusal
from .hashes import PIECE, Hasher, size_of
from .service import FilesService, read_key
from .store import FilesError, shown
from .upload import PartialUpload

ROUTE = r"/colab/files(?:/(.*))?"
AUTH_RESOURCE = "contents"  # Jupyter's: a read-only or deny-write authorizer applies as is
# A POST (commit, mkdir) carries its arguments in the query: a body is refused unread.
MAX_POST_BODY = 0
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_SHA256 = re.compile(r"[0-9a-f]{64}$")


def parse_range(header: str | None, size: int) -> tuple[int, int]:
    """(first, last) byte of a `Range: bytes=A-B` header (one range), else the whole file."""
    if not header or size == 0:
        return 0, size - 1
    match = _RANGE.match(header.strip())
    if match is None or not (match[1] or match[2]):
        raise FilesError(400, "bad_request", f"Range {header[:80]!r} is not one 'bytes=A-B' range")
    if not match[1]:  # bytes=-N: the last N bytes
        return max(0, size - int(match[2])), size - 1
    first = int(match[1])
    last = min(int(match[2]), size - 1) if match[2] else size - 1
    if first >= size or last < first:
        raise FilesError(
            416, "range_not_satisfiable", f"Range {header[:80]!r} is outside the {size} bytes"
        )
    return first, last


def _read(fd: int, at: int, length: int, hasher: Hasher | None) -> bytes:
    data = os.pread(fd, length, at)
    if hasher is not None:
        hasher.update(data)
    return data


@web.stream_request_body
class FilesHandler(TokenHintMixin, ExtensionHandlerMixin, JupyterHandler):
    """GET a file (Range) or its stat, listing or upload state; PUT bytes; POST commit/mkdir."""

    SUPPORTED_METHODS = ("GET", "PUT", "POST")
    auth_resource = AUTH_RESOURCE

    @property
    def files(self) -> FilesService:
        return cast(FilesService, self.settings[FILES_SETTING])

    async def prepare(self) -> None:  # type: ignore[override]
        self._upload: PartialUpload | None = None
        await super().prepare()
        if self._finished:
            return
        if self.current_user is None:
            raise web.HTTPError(403, NO_CREDENTIALS)
        action = "read" if self.request.method == "GET" else "write"
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403, f"User is not authorized to {action} on resource: contents.")
        try:
            if self.request.method == "PUT":
                await self._start_upload()
            elif self.request.method == "POST" and self._length() > MAX_POST_BODY:
                raise FilesError(400, "bad_request", "a POST here takes no body (see ?op=)")
        except FilesError as e:
            self._refuse(e)

    def _length(self) -> int:
        text = self.request.headers.get("Content-Length", "0")
        return int(text) if text.isdigit() else 0

    def _rel(self) -> str:
        return (self.path_args[0] if self.path_args else None) or ""

    def _int(self, name: str, default: int | None = None) -> int:
        text = self.get_query_argument(name, None)
        if text is None and default is not None:
            return default
        if text is None or not text.isdigit() or len(text) > 18:
            raise FilesError(400, "bad_request", f"?{name}= must be a whole number of bytes")
        return int(text)

    def _op(self, allowed: tuple[str, ...]) -> str:
        op = self.get_query_argument("op", allowed[0])
        if op not in allowed:
            raise FilesError(
                400, "bad_request", f"op={op[:40]!r} is not one of {', '.join(allowed)}"
            )
        return op

    # ----- answers ----------------------------------------------------------------------

    def _json(self, body: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body) + "\n")

    def _refuse(self, error: FilesError) -> None:
        self.files.stats.failures[error.kind] += 1
        self.log.warning(
            "files %s %s -> %d %s: %s",
            self.request.method,
            shown(self._rel()),
            error.status,
            error.kind,
            error.message,
        )
        if self._headers_written:
            self._abandon()
            return
        body = json.loads(error.problem.answer_body())
        body.update(error.extra)
        self.clear()
        self.set_status(error.status)
        self._json(body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Jupyter's own refusals (no token, not authorized, a foreign Host) in the same shape."""
        refusal = jupyter_refusal(status_code, self._reason, kwargs.get("exc_info"))
        self.clear()
        self.set_status(status_code)
        self._json(json.loads(refusal.answer_body()))

    def _abandon(self) -> None:
        """The answer was under way: cut the connection (a short body is the signal left)."""
        if self.request.connection is not None:
            self.request.connection.close()  # type: ignore[attr-defined]
        if not self._finished:
            self.finish()

    # ----- GET --------------------------------------------------------------------------

    async def get(self, *args: str) -> None:
        if self._finished:
            return
        rel = self._rel()
        try:
            op = self._op(("content", "stat", "list", "upload"))
            if op == "stat":
                prefix = self._int("prefix") if self.get_query_argument("prefix", None) else None
                sha256 = self.get_query_argument("sha256", "") in ("1", "true")
                self._json(await self.files.stat(rel, sha256, prefix))
            elif op == "list":
                recursive = self.get_query_argument("recursive", "") in ("1", "true")
                self._json(await self.files.listing(rel, recursive))
            elif op == "upload":
                self._json(await self.files.upload_state(rel))
            else:
                await self._send_file(rel)
        except FilesError as e:
            self._refuse(e)

    async def _send_file(self, rel: str) -> None:
        files = self.files
        entry, path = await files.run(files.store.file, rel)
        wanted = self.request.headers.get("If-Match")
        if wanted and wanted.strip() not in ("*", entry.etag):
            raise FilesError(412, "file_changed", f"{shown(entry.path)} changed (its ETag differs)")
        ranged = "Range" in self.request.headers
        first, last = parse_range(self.request.headers.get("Range"), entry.size)
        try:
            fd = await files.run(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise FilesError(404, "path_not_found", f"{shown(entry.path)}: {e.strerror}") from None
        key = read_key(path, entry.etag)
        # A download read from the start, or where the last one stopped, is hashed on the way.
        hasher = files.book.take(key, first)
        if hasher is None and first == 0:
            hasher = hashlib.sha256()
        self.set_status(206 if ranged and entry.size else 200)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("ETag", entry.etag)
        self.set_header("Content-Length", str(last + 1 - first))
        if ranged and entry.size:
            self.set_header("Content-Range", f"bytes {first}-{last}/{entry.size}")
        at = first  # bytes sent up to here
        read_to = first  # bytes read (and hashed) up to here: one piece ahead of `at`
        ahead: asyncio.Future[bytes] | None = None
        try:
            piece = await files.run(_read, fd, at, min(PIECE, last + 1 - at), hasher)
            read_to += len(piece)
            while piece:
                at += len(piece)
                ahead = (
                    asyncio.ensure_future(
                        files.run(_read, fd, at, min(PIECE, last + 1 - at), hasher)
                    )
                    if at <= last
                    else None
                )
                self.write(piece)
                files.stats.bytes_sent += len(piece)
                await self.flush()  # the next piece goes once the client took this one
                piece = await ahead if ahead is not None else b""
                ahead = None
                read_to += len(piece)
            if at <= last:  # the file shrank under us
                self._abandon()
                return
            self.finish()
        except StreamClosedError:
            return  # the client left; it resumes from what it holds
        finally:
            if ahead is not None:  # the client left while the next piece was read: let it end
                with contextlib.suppress(Exception):
                    read_to += len(await ahead)
            await files.run(os.close, fd)
            if hasher is not None:
                # What the hash covers is what was read, not what the client took: a download
                # resumed where this one stopped continues it only if the two are the same.
                if read_to == entry.size:
                    files.book.remember(path, entry.etag, hasher.hexdigest())
                else:
                    files.book.keep(key, read_to, hasher)

    # ----- PUT: bytes into the partial --------------------------------------------------

    async def _start_upload(self) -> None:
        files = self.files
        rel = self._rel()
        offset = self._int("offset")
        norm, _, partial = await files.run(files.store.upload_target, rel)
        current = await files.run(size_of, partial)
        upload = PartialUpload(files, norm, partial, offset)
        await upload.open(current)
        self._upload = upload
        # Nothing of the body is held, and a large piece may take its time on a slow line.
        connection = cast(HTTP1Connection, self.request.connection)
        connection.set_max_body_size(STREAMED_BODY_LIMIT)
        connection.set_body_timeout(None)  # type: ignore[arg-type]
        # The body in pieces of up to 1 MiB rather than tornado's 64 KiB: 16 times fewer
        # Python calls per byte. This connection's own parameters: the server's are shared.
        connection.params = copy.copy(connection.params)
        connection.params.chunk_size = PIECE
        connection.stream.read_chunk_size = PIECE

    async def data_received(self, chunk: bytes) -> None:
        if self._upload is not None:
            await self._upload.feed(chunk)

    async def put(self, *args: str) -> None:
        upload = self._upload
        if self._finished or upload is None:
            return
        try:
            received = await upload.finish()
        except FilesError as e:
            self._refuse(e)
            return
        self._json({"path": upload.rel, "received": received})

    def on_connection_close(self) -> None:
        if self._upload is not None:
            # What arrived is written and kept for the resumed upload.
            closing = asyncio.ensure_future(self._upload.close())
            self.files.closing.add(closing)
            closing.add_done_callback(self.files.closing.discard)
        super().on_connection_close()

    # ----- POST: commit, mkdir ----------------------------------------------------------

    async def post(self, *args: str) -> None:
        if self._finished:
            return
        rel = self._rel()
        try:
            op = self._op(("commit", "mkdir"))
            if op == "mkdir":
                self._json(await self.files.mkdir(rel))
                return
            size = self._int("size")
            sha256 = self.get_query_argument("sha256", "").lower()
            if not _SHA256.match(sha256):
                raise FilesError(400, "bad_request", "?sha256= must be 64 hexadecimal digits")
            self._json(await self.files.commit(rel, size, sha256))
        except FilesError as e:
            self._refuse(e)


def files_handlers() -> list[tuple[str, type[web.RequestHandler]]]:
    return [(ROUTE, FilesHandler)]
