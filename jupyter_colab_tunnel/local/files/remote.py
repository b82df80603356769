"""The client of the remote's /colab/files route (docs/files.md, docs/openapi.yaml), at the
remote that where.py finds.

Requests go over `http1.KeepAliveClient` (one round trip each on a kept connection; bodies
streamed both ways). The token travels only in the `Authorization` header: never in a URL, a
log line or an error. Every failure is a `client.RemoteError` with a problems.py kind; `cut()`
says which ones mean "the remote is away for now" (wait for it, then resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import AsyncGenerator, Awaitable, Callable

from tornado import httputil

from ...http1 import KeepAliveClient, UpstreamError
from ...states import UNKNOWN
from ..client import JSONObject, RemoteError
from ..failures import no_answer
from .answers import RESTARTING_KINDS, PutCut, answer, cut
from .where import ConnectionFile, Where

ROUTE = "colab/files/"
CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 60.0
# A whole-file sha256 on the remote reads the file: allow for a multi-GB one.
HASH_TIMEOUT = 600.0
# The head of a PUT's answer comes once the remote has written the piece.
PUT_ANSWER_TIMEOUT = 120.0
POLL_INTERVAL = 0.5
MAX_ERROR_BODY = 64 * 1024


def quote_path(path: str) -> str:
    return urllib.parse.quote(path, safe="/")


class _Sink:
    """A streamed answer: a 2xx body goes to `write`; an error body is kept (bounded)."""

    def __init__(self, write: Callable[[bytes], Awaitable[None]], ok: tuple[int, ...]) -> None:
        self.write = write
        self.ok = ok
        self.code = 0
        self.headers = httputil.HTTPHeaders()
        self.error_body = bytearray()

    async def response_started(self, code: int, reason: str, headers: httputil.HTTPHeaders) -> None:
        self.code, self.headers = code, headers

    async def response_data(self, chunk: bytes) -> None:
        if self.code in self.ok:
            await self.write(chunk)
        elif len(self.error_body) < MAX_ERROR_BODY:
            self.error_body += chunk[: MAX_ERROR_BODY - len(self.error_body)]


class FilesClient:
    """The operations of /colab/files/{path} (`path` relative to the root, '/'-separated)."""

    def __init__(self, where: Where, ca_certs: str | None = None) -> None:
        self.where = where
        self.http = KeepAliveClient(ca_certs)
        self.interrupted = False
        # Told when a wait for the remote begins (the failure, the seconds it may take).
        self.on_wait: Callable[[RemoteError, float], None] = lambda error, seconds: None

    def close(self) -> None:
        self.http.close()

    def interrupt(self) -> None:
        """Ctrl-C: no request starts any more. (tornado reads an answer's body in a callback
        of its own, which takes a cancellation for a dropped connection: a transfer would
        then resume as after a cut. Every request checks this first.)"""
        self.interrupted = True

    def _check(self) -> None:
        if self.interrupted:
            raise asyncio.CancelledError

    # ----- where -------------------------------------------------------------------------

    async def start(self, wait: float = 0.0) -> JSONObject:
        """Find the remote (a connection file: read it) and check that it takes the token:
        the root's stat. A remote in the middle of a tunnel restart (no live URL yet, the relay
        or the edge saying so) is waited for up to `wait` seconds; one that nothing answers
        for, or that refuses, is a RemoteError at once."""
        try:
            if isinstance(self.where, ConnectionFile):
                await self.where.refresh()
                if not self.where.base:
                    raise self._no_record()
            return await self.stat("")
        except RemoteError as e:
            if e.kind not in RESTARTING_KINDS or wait <= 0:
                raise
            await self.wait_back(time.monotonic() + wait, e)
            return await self.stat("")

    def _no_record(self) -> RemoteError:
        where = self.where
        assert isinstance(where, ConnectionFile)
        if where.refused is not None:
            e = where.refused
            return RemoteError(e.kind, f"connection file {where.path}: {e.message}", e.hint)
        state = where.info.state if where.info is not None else UNKNOWN
        return RemoteError(
            "no_upstream",
            f"the connection file {where.path} names no live tunnel URL (state: {state})",
            "Wait for the remote's tunnel to become ready (raise --wait), or check the file.",
        )

    async def wait_back(self, deadline: float, last: RemoteError) -> None:
        """Wait until the remote answers again (re-reading the connection file for a new URL),
        until `deadline` (time.monotonic()); raises the last failure when it does not."""
        self.on_wait(last, max(0.0, deadline - time.monotonic()))
        while True:
            self._check()
            await self.where.refresh()
            if self.where.base:
                try:
                    await self.stat("")
                    return
                except RemoteError as e:
                    if not cut(e):
                        raise
                    last = e
            elif isinstance(self.where, ConnectionFile):
                last = self._no_record()
            if time.monotonic() >= deadline:
                raise last
            await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))

    # ----- requests ----------------------------------------------------------------------

    def _url(self, path: str, query: dict[str, str] | None) -> str:
        url = self.where.base + ROUTE + quote_path(path)
        return url + ("?" + urllib.parse.urlencode(query) if query else "")

    def _headers(self, extra: dict[str, str] | None = None) -> httputil.HTTPHeaders:
        headers = httputil.HTTPHeaders({"Accept": "application/json", **(extra or {})})
        if self.where.token:
            headers["Authorization"] = f"token {self.where.token}"
        return headers

    async def _json(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> JSONObject:
        self._check()
        url = self._url(path, query)
        try:
            response = await self.http.fetch(
                url,
                method,
                self._headers(),
                b"" if method in ("POST", "PUT") else None,
                CONNECT_TIMEOUT,
                timeout,
            )
        except UpstreamError as e:
            raise RemoteError.from_problem(no_answer(e, url, timeout), url=url) from None
        return answer(response.code, response.headers, response.body, url, method)

    async def stat(self, path: str, sha256: bool = False, prefix: int | None = None) -> JSONObject:
        query = {"op": "stat"}
        if sha256:
            query["sha256"] = "1"
        if prefix is not None:
            query["prefix"] = str(prefix)
        return await self._json(
            "GET", path, query, HASH_TIMEOUT if sha256 or prefix else REQUEST_TIMEOUT
        )

    async def list(self, path: str, recursive: bool = False) -> JSONObject:
        query = {"op": "list", **({"recursive": "1"} if recursive else {})}
        return await self._json("GET", path, query)

    async def upload_state(self, path: str) -> JSONObject:
        return await self._json("GET", path, {"op": "upload"})

    async def commit(self, path: str, size: int, sha256: str) -> JSONObject:
        query = {"op": "commit", "size": str(size), "sha256": sha256}
        return await self._json("POST", path, query, HASH_TIMEOUT)

    async def mkdir(self, path: str) -> JSONObject:
        return await self._json("POST", path, {"op": "mkdir"})

    async def put_range(
        self, path: str, offset: int, length: int, pieces: AsyncGenerator[bytes, None]
    ) -> JSONObject:
        """PUT ?offset= with a body of `length` bytes taken from `pieces` as they come."""
        self._check()
        query = {"offset": str(offset)}
        url = self._url(path, query)
        headers = self._headers({"Content-Type": "application/octet-stream"})
        sink = _Sink(_ignore, ())  # the whole answer is kept as error_body (a small JSON)
        sending = True
        try:
            exchange = await self.http.open(
                url, "PUT", headers, CONNECT_TIMEOUT, content_length=length
            )
            async with contextlib.aclosing(pieces):  # its read ahead ends before the file
                async for piece in pieces:
                    await exchange.send(piece)
            sending = False
            await exchange.respond(sink, PUT_ANSWER_TIMEOUT)
        except UpstreamError as e:
            error = RemoteError.from_problem(no_answer(e, url), url=url)
            # Cut while the body was going out: maybe a cut, maybe the remote's refusal (it
            # answers before reading the body, then closes): PutCut lets the caller ask.
            raise (PutCut.of(error) if sending else error) from None
        return answer(sink.code, sink.headers, bytes(sink.error_body), url, "PUT")

    async def put_bytes(self, path: str, data: bytes) -> JSONObject:
        """PUT ?offset=0 with a small body given whole (a small file's one request)."""
        self._check()
        query = {"offset": "0"}
        url = self._url(path, query)
        headers = self._headers({"Content-Type": "application/octet-stream"})
        try:
            response = await self.http.fetch(
                url, "PUT", headers, data, CONNECT_TIMEOUT, PUT_ANSWER_TIMEOUT
            )
        except UpstreamError as e:
            raise RemoteError.from_problem(no_answer(e, url), url=url) from None
        return answer(response.code, response.headers, response.body, url, "PUT")

    async def get_whole(self, path: str) -> tuple[bytes, str | None]:
        """A small file's bytes and ETag in one GET (held whole: the caller knows it is small)."""
        self._check()
        url = self._url(path, None)
        headers = self._headers({"Accept": "application/octet-stream"})
        try:
            response = await self.http.fetch(
                url, "GET", headers, None, CONNECT_TIMEOUT, REQUEST_TIMEOUT
            )
        except UpstreamError as e:
            raise RemoteError.from_problem(no_answer(e, url), url=url) from None
        if response.code != 200:
            answer(response.code, response.headers, response.body, url, "GET")
            raise RemoteError("bad_response", f"GET {url} answered {response.code}", url=url)
        return response.body, response.headers.get("ETag")

    async def refusal(self, path: str) -> RemoteError | None:
        """After a PUT cut mid-body: the remote's own refusal of a PUT to `path` (forbidden,
        is_a_directory, disk_full, ...), asked with an empty PUT where it stands; None when it
        takes one (the cut was a cut)."""
        try:
            received = int((await self.upload_state(path)).get("received") or 0)
            await self.put_range(path, received, 0, _no_pieces())
        except RemoteError as e:
            return None if cut(e) else e
        return None

    async def get_range(
        self,
        path: str,
        start: int,
        end: int,
        etag: str | None,
        write: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """GET bytes start..end (inclusive) with If-Match; each piece goes to `write`."""
        self._check()
        url = self._url(path, None)
        extra = {"Range": f"bytes={start}-{end}", "Accept": "application/octet-stream"}
        if etag:
            extra["If-Match"] = etag
        sink = _Sink(write, (200, 206))
        try:
            exchange = await self.http.open(url, "GET", self._headers(extra), CONNECT_TIMEOUT)
            await exchange.respond(sink, REQUEST_TIMEOUT)
        except UpstreamError as e:
            raise RemoteError.from_problem(no_answer(e, url), url=url) from None
        if sink.code not in (200, 206):
            answer(sink.code, sink.headers, bytes(sink.error_body), url, "GET")
        if sink.code == 200 and start != 0:  # a server that ignored the Range
            raise RemoteError(
                "bad_response", f"GET {url} ignored the Range header", status=200, url=url
            )


async def _ignore(chunk: bytes) -> None:
    pass


async def _no_pieces() -> AsyncGenerator[bytes, None]:
    return
    yield b""  # an async generator that yields nothing
