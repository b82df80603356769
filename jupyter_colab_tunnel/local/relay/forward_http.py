"""HTTP through a forwarded port: any method, bodies streamed both ways, nothing held whole.

The upstream exchange is opened once the request's headers are allowed (`prepare`), the body is
sent to it piece by piece as it arrives (`data_received`, awaited: backpressure on the local
client), then the answer is written to the local client piece by piece, each flushed before the
next is read (a server-sent event reaches the client as the app produces it).

A request that never left (no live URL, connect failed) is tried again within the relay's
http_wait; once a byte of it may have reached the remote it is never sent again, unless it has
no body and its method is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

from tornado import httputil, web
from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError

from ... import http1
from ...http1 import IDEMPOTENT, Exchange, UpstreamError
from ..failures import Failure, classify_exception, classify_status, no_upstream
from ..upstream import Upstream
from . import rules
from .proxy import lost_request

if TYPE_CHECKING:
    from .forward import Forward

# Methods a forwarded app may use: HTTP's own and WebDAV's (tornado dispatches by name).
METHODS = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
)
# The methods whose body may come without a Content-Length (http1's client sends it chunked).
CHUNKED_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Statuses that Cloudflare's edge answers itself (no tunnel, a broken origin connection); the
# body of such an answer is read (up to EDGE_BODY_LIMIT) to tell the edge's from the app's own.
EDGE_STATUSES = frozenset({502, 503, 504, 530})
EDGE_BODY_LIMIT = 64 * 1024


@web.stream_request_body
class ForwardHandler(web.RequestHandler):
    SUPPORTED_METHODS = METHODS
    forward: Forward

    def initialize(self, forward: Forward) -> None:
        self.forward = forward
        self._exchange: Exchange | None = None
        self._upstream: Upstream | None = None
        self._in_flight = False
        self._body_seen = False
        self._held: bytearray | None = None  # an answer that may be the edge's, being read
        self._head: tuple[int, str, httputil.HTTPHeaders] | None = None
        self._deadline = 0.0
        self._gone = False  # the local client closed its connection
        self._active: Exchange | None = None  # the exchange whose answer is being read

    def compute_etag(self) -> None:
        return None  # the app's ETag and 304 answers pass through untouched

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # tornado's own errors (an unsupported method) in the relay's shape
        rules.write_error(self, status_code, self._reason, self._reason)

    # ----- the request ----------------------------------------------------------------------

    async def prepare(self) -> None:
        forward = self.forward
        refused = forward.refusal(self.request)
        if refused is not None:
            forward.answer_error(self, *refused)
            return  # its body is never read
        method = self.request.method or "GET"
        if self._chunked() and method not in CHUNKED_METHODS:
            # http1's client frames a body of unknown length for these methods only.
            forward.answer_error(
                self,
                411,
                "bad_request",
                f"a {method} with a chunked body (no Content-Length) cannot be forwarded",
                "Send the body with a Content-Length, or use POST, PUT or PATCH.",
            )
            return
        forward.stats.requests += 1
        forward.stats.http_open += 1
        self._in_flight = True
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + forward.relay.settings.http_wait
        self._exchange = await self._open()

    def _chunked(self) -> bool:
        return "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()

    def _content_length(self) -> int | None:
        length = self.request.headers.get("Content-Length")
        ok = length is not None and length.isdigit() and not self._chunked()
        return int(length) if ok and length is not None else None

    def _has_body(self) -> bool:
        return bool(self._content_length()) or self._chunked()

    async def _open(self) -> Exchange | None:
        """The exchange with the remote route, its head sent; None: answered with a failure."""
        forward = self.forward
        relay = forward.relay
        loop = asyncio.get_running_loop()
        failure: Failure | None = None
        while True:
            upstream = await relay.tracker.wait_live(self._deadline)
            if upstream is None or self._gone:
                break
            try:
                exchange = await relay.client.open(
                    forward.route_url(upstream.url, self.request.path),
                    self.request.method or "GET",
                    forward.hop_headers(self.request),
                    relay.settings.connect_timeout,
                    self._content_length(),
                )
            except UpstreamError as e:
                failure = classify_exception(e.cause, upstream.url)  # nothing left: try again
            else:
                self._upstream = upstream
                return exchange
            if loop.time() >= self._deadline:
                break
            await relay.tracker.wait_change(upstream, min(0.25, self._deadline - loop.time()))
        self._fail(relay.life.failure(failure or no_upstream(relay.tracker.state)))
        return None

    async def data_received(self, chunk: bytes) -> None:
        exchange = self._exchange
        if exchange is None or self._finished:
            return  # answered already (a failure): the rest is discarded
        self._body_seen = True
        try:
            await exchange.send(chunk)
        except UpstreamError as e:
            self._exchange = None
            self._lost(e)
            return
        self.forward.stats.bytes_in += len(chunk)

    # Every method ends the same way: the answer, streamed back.
    async def get(self, *args: str) -> None:
        await self._answer()

    head = post = put = delete = patch = options = get
    propfind = proppatch = mkcol = copy = move = lock = unlock = report = search = get

    async def _answer(self) -> None:
        method = self.request.method or "GET"
        while (exchange := self._exchange) is not None and not self._finished and not self._gone:
            self._exchange = None
            self._active = exchange
            try:
                await exchange.respond(self, self.forward.relay.settings.request_timeout)
            except StreamClosedError:
                return  # the local client went away: the upstream exchange is closed
            except UpstreamError as e:
                if self._gone:
                    return  # closed here, because the local client went away
                if e.answered or self._head is not None:
                    self._cut(e)
                    return
                # A kept connection that the remote had closed: a bodiless idempotent request
                # never reached it and is opened again on a new one.
                stale = exchange.reused and not self._has_body() and method in IDEMPOTENT
                if stale and isinstance(e.cause, StreamClosedError):
                    self._exchange = await self._open()
                    continue
                self._lost(e)
                return
            if self._held is None:
                self.finish()
                return
            upstream = self._upstream
            if not self._edge_answer():
                return
            # The edge's "no tunnel" to a bodiless request: tried again on a new URL.
            left = self._deadline - asyncio.get_running_loop().time()
            await self.forward.relay.tracker.wait_change(upstream, min(0.25, left))
            self._exchange = await self._open()

    # ----- the answer (the exchange's sink) -------------------------------------------------

    async def response_started(self, code: int, reason: str, headers: httputil.HTTPHeaders) -> None:
        self._head = (code, reason, headers)
        length = headers.get("Content-Length", "")
        small = not length.isdigit() or int(length) <= EDGE_BODY_LIMIT
        if code in EDGE_STATUSES and small:
            self._held = bytearray()  # the edge's or the app's: decided on its body
            return
        self._start(code, reason, headers)
        if "Content-Length" not in headers:
            # A stream (server-sent events, chunked): its head goes now, so that the client
            # sees the answer start. An answer of known length sends its head with its body.
            await self.flush()

    async def response_data(self, chunk: bytes) -> None:
        if self._held is not None:
            self._held += chunk
            if len(self._held) <= EDGE_BODY_LIMIT:
                return
            chunk, self._held = bytes(self._held), None  # too big for an edge page: the app's
            assert self._head is not None
            self._start(*self._head)
        self.write(chunk)
        await self.flush()
        self.forward.stats.bytes_out += len(chunk)

    def _start(self, code: int, reason: str, headers: httputil.HTTPHeaders) -> None:
        self.set_status(code, reason)
        self._headers = httputil.HTTPHeaders()  # drop tornado's defaults (Server, Content-Type)
        drop = http1.HOP_BY_HOP | http1.connection_tokens(headers)
        for name, value in headers.get_all():
            if name.lower() not in drop:
                self.add_header(name, value)
        # Each piece goes out as it is flushed: with Nagle's algorithm on (tornado's default
        # until a response finishes) a piece after the head waits for the client's delayed ACK,
        # about 40 ms, which holds a server-sent event back.
        self.request.connection.stream.set_nodelay(True)  # type: ignore[union-attr]

    def _edge_answer(self) -> bool:
        """A held 5xx answer, now whole: the edge's becomes a failure (True: try again), the
        app's own is passed on unchanged."""
        held, self._held = bytes(self._held or b""), None
        assert self._head is not None
        assert self._upstream is not None
        code, reason, headers = self._head
        failure = classify_status(code, held, self._upstream.url)
        if failure is None:
            self._start(code, reason, headers)
            self.forward.stats.bytes_out += len(held)
            self.finish(held)
            return False
        self._head = None
        in_time = asyncio.get_running_loop().time() < self._deadline
        if failure.reason == "no_tunnel" and not self._has_body() and in_time:
            self.forward.relay.tracker.record_error(f"{failure.reason}: {failure.message}")
            return True
        if failure.reason != "no_tunnel" and self.request.method not in IDEMPOTENT:
            failure = dataclasses.replace(failure, unsent=False)
        self._fail(failure)
        return False

    # ----- failures -------------------------------------------------------------------------

    def _fail(self, failure: Failure) -> None:
        self.forward.relay.fail(failure)
        self.forward.answer_error(
            self, failure.status, failure.reason, failure.message, failure.hint
        )

    def _lost(self, e: UpstreamError) -> None:
        """No answer came (or the body could not be sent) after the request left."""
        url = self._upstream.url if self._upstream else "?"
        failure = classify_exception(e.cause, url)
        method = self.request.method or "GET"
        if self._body_seen or method not in IDEMPOTENT:
            failure = lost_request(method, self.request.path, url, failure)
        self._fail(failure)

    def _cut(self, e: UpstreamError) -> None:
        """The answer broke off after it started: the local client must see it cut too."""
        forward = self.forward
        forward.stats.errors += 1
        forward.log.warning(
            "forward %d: the answer to %s %s was cut: %s",
            forward.spec.local,
            self.request.method,
            rules.clip(self.request.path),
            e,
        )
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):
            connection.close()
        self._finished = True  # nothing more can be written; tornado must not try
        self.on_finish()

    # ----- the local side ---------------------------------------------------------------------

    def on_finish(self) -> None:
        if self._in_flight:
            self._in_flight = False
            self.forward.stats.http_open -= 1

    def on_connection_close(self) -> None:
        self._gone = True
        # Stop the exchange at once (an idle event stream would otherwise hold it open until
        # the app writes again).
        for exchange in (self._exchange, self._active):
            if exchange is not None:
                exchange.close()
        self._exchange = self._active = None
        with contextlib.suppress(Exception):
            super().on_connection_close()
        self.on_finish()
