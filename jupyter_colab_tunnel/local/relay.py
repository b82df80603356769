"""A 127.0.0.1 HTTP + WebSocket relay to the remote Jupyter server that follows its URL.

Built on tornado (already a dependency of jupyter_server): its HTTP/1.1 connection class over
kept-alive streams forwards REST requests (pool.py; tornado's `SimpleAsyncHTTPClient` would open a
TCP and TLS connection per request), and `websocket_connect` dials kernel websockets; both verify
TLS with the system trust store. A separate proxy library would add a dependency without solving
the part that matters here: keeping a local kernel websocket open while its upstream is
re-dialled to a new URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tornado import httputil, web, websocket
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from ..timefmt import iso_utc
from .failures import Failure, classify_exception, classify_status
from .pool import KeepAliveClient, Response, UpstreamError
from .upstream import Upstream, UpstreamTracker

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# Not forwarded in either direction: they describe one hop, or carry the local credentials.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "authorization", "cookie", "origin"}
NOT_RETURNED = HOP_BY_HOP | {"content-length", "set-cookie"}
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})

MAX_WS_MESSAGE = 512 * 1024 * 1024


@dataclass
class RelaySettings:
    local_token: str
    remote_token: Callable[[], str | None]
    extra_headers: dict[str, str] = field(default_factory=dict)
    allowed_origins: frozenset[str] = frozenset()
    # How long an HTTP request waits for a live upstream during a switch or an outage.
    http_wait: float = 20.0
    connect_timeout: float = 10.0
    request_timeout: float = 120.0
    # How long a local kernel websocket stays open while its upstream is re-dialled.
    ws_resume_timeout: float = 60.0
    ws_buffer_messages: int = 1000
    ws_buffer_bytes: int = 32 * 1024 * 1024
    ping_interval: float = 30.0
    ca_certs: str | None = field(default_factory=lambda: os.environ.get("SSL_CERT_FILE") or None)


@dataclass
class RelayStats:
    requests: int = 0
    errors: int = 0
    ws_open: int = 0
    ws_total: int = 0
    ws_redials: int = 0
    ws_replaced: int = 0
    frames_buffered: int = 0
    frames_dropped: int = 0


class Relay:
    """The relay: settings, the upstream tracker, the live kernel sockets, and the server."""

    def __init__(
        self,
        settings: RelaySettings,
        tracker: UpstreamTracker,
        log: logging.Logger,
        status_extra: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.settings = settings
        self.tracker = tracker
        self.log = log
        self.stats = RelayStats()
        self.started_at = time.time()
        self.port = 0
        self.sockets: dict[tuple[str, str], KernelSocket] = {}
        self.client = KeepAliveClient(settings.ca_certs)
        self._server: HTTPServer | None = None
        self._status_extra = status_extra

    # ----- life cycle ---------------------------------------------------------------------

    def application(self) -> web.Application:
        return web.Application(
            [
                (r"/relay/status", StatusHandler, {"relay": self}),
                (r"/(?:.*/)?api/kernels/([^/]+)/channels", KernelSocket, {"relay": self}),
                (r"/.*", ProxyHandler, {"relay": self}),
            ],
            websocket_max_message_size=MAX_WS_MESSAGE,
            log_function=self._log_request,
        )

    def _log_request(self, handler: web.RequestHandler) -> None:
        """Access log without the query: a client may pass the local token as ?token=."""
        request = handler.request
        status = handler.get_status()
        if request.path == "/relay/status" and status < 400:
            return  # polled by tools; counted in the status itself
        self.log.info(
            "%d %s %s %.1f ms",
            status,
            request.method,
            request.path,
            1000.0 * request.request_time(),
        )

    def listen(self, port: int) -> int:
        """Bind 127.0.0.1:port (0: any free port) and serve; return the port."""
        sockets = bind_sockets(port, address="127.0.0.1")
        self._server = HTTPServer(self.application(), xheaders=False)
        self._server.add_sockets(sockets)
        self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.stop()
        for sock in list(self.sockets.values()):
            sock.shutdown("the relay is stopping")
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.close_all_connections(), 2)
        self.client.close()

    # ----- shared request policy ----------------------------------------------------------

    def refusal(self, request: httputil.HTTPServerRequest) -> tuple[int, str, str] | None:
        """(status, reason, message) when a local request is not allowed, else None."""
        host = _hostname(request.host or "")
        if host not in LOOPBACK_HOSTS:
            return (
                403,
                "host_not_allowed",
                f"Host {request.host!r} is not a loopback name: the relay answers only "
                "127.0.0.1, localhost and [::1] (protection against DNS rebinding).",
            )
        origin = request.headers.get("Origin")
        if origin is not None and not self.origin_allowed(origin):
            return (
                403,
                "origin_not_allowed",
                f"Cross-origin request from {origin!r} refused. Allow it with "
                "--allow-origin if a page there must use the relay.",
            )
        if not self.token_ok(request):
            return (
                403,
                "bad_local_token",
                "Missing or wrong relay token: send 'Authorization: token <token>' with the "
                "token from the relay's --local-token-file.",
            )
        return None

    def origin_allowed(self, origin: str) -> bool:
        own = {f"http://{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]")}
        return origin in own or origin in self.settings.allowed_origins

    def token_ok(self, request: httputil.HTTPServerRequest) -> bool:
        given = ""
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("token", "bearer"):
            given = value.strip()
        if not given:
            given = _query_value(request.query, "token") or ""
        return bool(given) and hmac.compare_digest(
            given.encode(), self.settings.local_token.encode()
        )

    def upstream_headers(self, request: httputil.HTTPServerRequest) -> httputil.HTTPHeaders:
        drop = NOT_FORWARDED | _connection_tokens(request.headers)
        headers = httputil.HTTPHeaders()
        for name, value in request.headers.get_all():
            if name.lower() not in drop:
                headers.add(name, value)
        for name, value in self.settings.extra_headers.items():
            headers[name] = value
        token = self.settings.remote_token()
        if token:
            headers["Authorization"] = f"token {token}"
        return headers

    async def kernel_connections(self, upstream: Upstream, kernel_id: str) -> int | None:
        """How many websockets the remote counts on a kernel (GET /api/kernels/<id>), or None."""
        headers = httputil.HTTPHeaders({"Accept": "application/json"})
        for name, value in self.settings.extra_headers.items():
            headers[name] = value
        token = self.settings.remote_token()
        if token:
            headers["Authorization"] = f"token {token}"
        try:
            response = await self.client.fetch(
                f"{upstream.dial}/api/kernels/{kernel_id}",
                "GET",
                headers,
                None,
                self.settings.connect_timeout,
                self.settings.connect_timeout,
            )
            count = json.loads(response.body).get("connections") if response.code == 200 else None
        except (UpstreamError, ValueError, AttributeError):
            return None
        return count if isinstance(count, int) else None

    def upstream_url(self, upstream: Upstream, uri: str, ws: bool = False) -> str:
        """The remote URL for a local path+query, without the local token."""
        parts = urlsplit(uri)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, True) if k != "token"])
        url = upstream.dial + parts.path + (f"?{query}" if query else "")
        if ws:
            url = "ws" + url.removeprefix("http")
        return url

    def fail(self, failure: Failure) -> None:
        self.stats.errors += 1
        self.tracker.record_error(f"{failure.reason}: {failure.message}")

    def status(self) -> dict[str, Any]:
        up = self.tracker.current
        s = self.stats
        return {
            "upstream": up.url if up else None,
            "since": iso_utc(self.tracker.since),
            "remote_state": self.tracker.state,
            "switches": self.tracker.switches,
            "last_error": self.tracker.last_error,
            "last_error_at": iso_utc(self.tracker.last_error_at),
            "started_at": iso_utc(self.started_at),
            "requests": s.requests,
            "errors": s.errors,
            "websockets": {
                "open": s.ws_open,
                "total": s.ws_total,
                "redials": s.ws_redials,
                "replaced": s.ws_replaced,
                "frames_buffered": s.frames_buffered,
                "frames_dropped": s.frames_dropped,
            },
            **self._status_extra(),
        }


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _query_value(query: str, name: str) -> str | None:
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k == name:
            return v
    return None


def _connection_tokens(headers: httputil.HTTPHeaders) -> set[str]:
    return {t.strip().lower() for t in headers.get("Connection", "").split(",") if t.strip()}


async def close_upstream(
    conn: websocket.WebSocketClientConnection, code: int, reason: str, timeout: float = 2.0
) -> None:
    """Close an upstream websocket and wait (bounded) until the remote has closed it too."""
    conn.close(code, reason)

    async def drained() -> None:
        while await conn.read_message() is not None:
            pass

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(drained(), timeout)


def error_body(status: int, reason: str, message: str, hint: str = "") -> str:
    """The JSON of the relay's own errors: `message` and `reason`, as jupyter_server writes."""
    return json.dumps({"status": status, "reason": reason, "message": message, "hint": hint})


class _RelayHandler(web.RequestHandler):
    relay: Relay

    def initialize(self, relay: Relay) -> None:
        self.relay = relay

    def send_error_json(self, status: int, reason: str, message: str, hint: str = "") -> None:
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(error_body(status, reason, message, hint))

    def refuse_if_needed(self) -> bool:
        refused = self.relay.refusal(self.request)
        if refused is None:
            return False
        status, reason, message = refused
        self.relay.log.warning("Refused %s %s: %s", self.request.method, self.request.path, reason)
        self.send_error_json(status, reason, message)
        return True

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(error_body(status_code, self._reason, self._reason))


class StatusHandler(_RelayHandler):
    async def get(self) -> None:
        if self.refuse_if_needed():
            return
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self.relay.status()))


class ProxyHandler(_RelayHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def compute_etag(self) -> None:
        return None  # the remote's ETag and 304 answers pass through untouched

    async def get(self) -> None:
        await self.forward()

    async def head(self) -> None:
        await self.forward()

    async def post(self) -> None:
        await self.forward()

    async def delete(self) -> None:
        await self.forward()

    async def patch(self) -> None:
        await self.forward()

    async def put(self) -> None:
        await self.forward()

    async def options(self) -> None:
        await self.forward()

    async def forward(self) -> None:
        if self.refuse_if_needed():
            return
        relay = self.relay
        relay.stats.requests += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + relay.settings.http_wait
        method = self.request.method or "GET"
        failure: Failure | None = None
        while True:
            upstream = await relay.tracker.wait_live(deadline)
            if upstream is None:
                break
            response, failure = await self._send(upstream, method)
            if response is not None:
                self._relay_response(response)
                return
            assert failure is not None
            if not failure.unsent or loop.time() >= deadline:
                break
            # The request never reached the remote: wait for a new URL (or a moment) and resend.
            await relay.tracker.wait_change(upstream, min(0.25, deadline - loop.time()))
        if failure is None:
            state = relay.tracker.state
            failure = Failure(
                "no_upstream",
                f"the remote has no live tunnel URL (its state: {state})",
                "Wait for the remote's tunnel to become ready; see GET /relay/status.",
                503,
                True,
            )
        relay.fail(failure)
        relay.log.warning(
            "%s %s -> %d %s: %s",
            method,
            self.request.path,
            failure.status,
            failure.reason,
            failure.message,
        )
        self.send_error_json(failure.status, failure.reason, failure.message, failure.hint)

    async def _send(
        self, upstream: Upstream, method: str
    ) -> tuple[Response | None, Failure | None]:
        relay = self.relay
        url = relay.upstream_url(upstream, self.request.uri or "/")
        body = self.request.body if (method in WITH_BODY or self.request.body) else None
        try:
            response = await relay.client.fetch(
                url,
                method,
                relay.upstream_headers(self.request),
                body,
                relay.settings.connect_timeout,
                relay.settings.request_timeout,
            )
        except UpstreamError as e:
            failure = classify_exception(e.cause, upstream.url)
            return None, dataclasses.replace(failure, unsent=e.connecting)
        edge = classify_status(response.code, response.body, upstream.url)
        if edge is not None:
            return None, edge
        return response, None

    def _relay_response(self, response: Response) -> None:
        self.set_status(response.code, response.reason)
        self._headers = httputil.HTTPHeaders()  # drop tornado's defaults (Server, Content-Type)
        drop = NOT_RETURNED | _connection_tokens(response.headers)
        for name, value in response.headers.get_all():
            if name.lower() not in drop:
                self.add_header(name, value)
        if response.code in (204, 304) or self.request.method == "HEAD":
            self.finish()
        else:
            self.finish(response.body)


class KernelSocket(websocket.WebSocketHandler):
    """A local kernel websocket with one upstream that is re-dialled when it drops or moves.

    The upstream is dialled with the same path and query (session_id), so the remote replays what
    the kernel sent meanwhile; what the local side sends meanwhile is held here, in order.
    """

    relay: Relay

    def initialize(self, relay: Relay) -> None:
        self.relay = relay
        self.key: tuple[str, str] = ("", "")
        self.conn: websocket.WebSocketClientConnection | None = None
        self.buffer: deque[str | bytes] = deque()
        self.buffered_bytes = 0
        self.local_closed = False
        self.opened = False
        self.retired = False
        self.reader: asyncio.Task[None] | None = None
        self.settled = asyncio.Event()  # set once prepare() has its upstream (or gave up)
        self.upstream: Upstream | None = None
        self._unlisten: Callable[[], None] | None = None

    # ----- handshake ----------------------------------------------------------------------

    async def prepare(self) -> None:
        relay = self.relay
        refused = relay.refusal(self.request)
        if refused is not None:
            status, reason, message = refused
            relay.log.warning("Refused websocket %s: %s", self.request.path, reason)
            self._send_error(status, reason, message)
            return
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            return  # not a websocket request: tornado's handshake answers 400
        kernel_id = self.path_args[0] if self.path_args else ""
        session = _query_value(self.request.query, "session_id") or ""
        self.key = (kernel_id, session)
        older = relay.sockets.get(self.key) if session else None
        if session:
            relay.sockets[self.key] = self
        if older is not None:
            # One upstream per kernel and session: two share one ZMQ identity at the remote and
            # one of them goes dead. Close the older there first, then dial the newer.
            relay.stats.ws_replaced += 1
            relay.log.info("Kernel %s session %s: a newer connection replaces the older", *self.key)
            await older.retire()
        loop = asyncio.get_running_loop()
        try:
            conn, failure = await self._dial(loop.time() + relay.settings.http_wait)
            if self.retired:
                # Replaced while dialling (JupyterLab's refused v1-protocol attempt, left open
                # by the gateway client): this upstream must not reach the remote next to the
                # newer one. Nobody reads this socket; refusing it makes no one reconnect.
                if conn is not None:
                    await self._release(conn, reading=False)
                self._send_error(
                    409, "replaced", "a newer connection to this kernel session replaced this one"
                )
                return
            if conn is None:
                self._forget()
                assert failure is not None
                relay.fail(failure)
                self._send_error(failure.status, failure.reason, failure.message, failure.hint)
                return
            self.conn = conn
        finally:
            self.settled.set()

    def _send_error(self, status: int, reason: str, message: str, hint: str = "") -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(error_body(status, reason, message, hint))

    def check_origin(self, origin: str) -> bool:
        return self.relay.origin_allowed(origin)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        chosen = self.conn.selected_subprotocol if self.conn is not None else None
        return chosen if chosen in subprotocols else None

    def open(self, *args: str, **kwargs: str) -> None:
        relay = self.relay
        if self.retired:  # replaced during the handshake
            self.close(1000, "replaced by a newer connection to the same kernel session")
            return
        self.opened = True
        relay.stats.ws_open += 1
        relay.stats.ws_total += 1
        self._unlisten = relay.tracker.listen(self._on_switch)
        self.reader = asyncio.ensure_future(self._read_upstream())

    # ----- local -> upstream --------------------------------------------------------------

    def on_message(self, message: str | bytes) -> None:
        conn = self.conn
        # A closing upstream would swallow the frame: hold it for the next one instead.
        if conn is not None and conn.protocol is not None and not conn.protocol.is_closing():
            try:
                conn.write_message(message, binary=isinstance(message, bytes))
                return
            except websocket.WebSocketClosedError:
                pass
        self.conn = None  # the reader re-dials when the old upstream's close arrives
        self._hold(message)

    def _hold(self, message: str | bytes) -> None:
        s = self.relay.settings
        size = len(message)
        if (
            len(self.buffer) >= s.ws_buffer_messages
            or self.buffered_bytes + size > s.ws_buffer_bytes
        ):
            self.relay.stats.frames_dropped += 1
            self.relay.log.warning(
                "Kernel %s: dropped a %d-byte frame from the local side: the hold buffer is full "
                "(%d frames) while the upstream is re-dialled",
                self.key[0],
                size,
                len(self.buffer),
            )
            return
        self.buffer.append(message)
        self.buffered_bytes += size
        self.relay.stats.frames_buffered += 1

    # ----- upstream -> local --------------------------------------------------------------

    async def _read_upstream(self) -> None:
        try:
            while not self.local_closed and not self.retired:
                conn = self.conn
                message = await conn.read_message() if conn is not None else None
                if message is not None:
                    try:
                        await self.write_message(message, binary=isinstance(message, bytes))
                    except websocket.WebSocketClosedError:
                        break
                    continue
                if self.local_closed or self.retired:
                    break
                if conn is not None:
                    if self.conn is conn:
                        self.conn = None
                    self.relay.log.info(
                        "Kernel %s: upstream websocket closed (%s); re-dialling",
                        self.key[0],
                        conn.close_reason or conn.close_code or "dropped",
                    )
                if not await self._resume():
                    break
        except Exception:
            self.relay.log.exception("Kernel %s: relaying failed", self.key[0])
        finally:
            if not self.local_closed and not self.retired:
                # The gateway client reconnects, through the relay, when its socket closes.
                self.close(1011, "upstream lost")

    async def _resume(self) -> bool:
        """Re-dial until a new upstream is up; deliver the held frames. False: gave up."""
        relay = self.relay
        loop = asyncio.get_running_loop()
        started = loop.time()
        conn, failure = await self._dial(started + relay.settings.ws_resume_timeout)
        if conn is None or self.local_closed or self.retired:
            if conn is not None:
                conn.close()
            if failure is not None:
                relay.fail(failure)
            if self.buffer:
                relay.stats.frames_dropped += len(self.buffer)
                relay.log.warning(
                    "Kernel %s: dropped %d frames held for the upstream: %s",
                    self.key[0],
                    len(self.buffer),
                    failure.message if failure else "the local socket closed",
                )
            self.buffer.clear()
            self.buffered_bytes = 0
            return False
        relay.stats.ws_redials += 1
        held = len(self.buffer)
        # No await between the flush and the switch to the new upstream: order is kept.
        while self.buffer:
            message = self.buffer.popleft()
            conn.write_message(message, binary=isinstance(message, bytes))
        self.buffered_bytes = 0
        self.conn = conn
        relay.log.info(
            "Kernel %s: upstream resumed on %s after %.2f s (%d held frames delivered)",
            self.key[0],
            self.upstream.url if self.upstream else "?",
            loop.time() - started,
            held,
        )
        return True

    async def _dial(
        self, deadline: float
    ) -> tuple[websocket.WebSocketClientConnection | None, Failure | None]:
        relay = self.relay
        loop = asyncio.get_running_loop()
        failure: Failure | None = None
        delay = 0.1
        while not self.local_closed and not self.retired:
            upstream = await relay.tracker.wait_live(deadline)
            if upstream is None:
                break
            url = relay.upstream_url(upstream, self.request.uri or "/", ws=True)
            request = HTTPRequest(
                url,
                headers=relay.upstream_headers(self.request),
                connect_timeout=relay.settings.connect_timeout,
                request_timeout=relay.settings.connect_timeout,
                validate_cert=True,
                ca_certs=relay.settings.ca_certs,
            )
            protocols = [
                p.strip()
                for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                if p.strip()
            ]
            try:
                conn = await websocket.websocket_connect(
                    request,
                    subprotocols=protocols or None,
                    ping_interval=relay.settings.ping_interval,
                    max_message_size=MAX_WS_MESSAGE,
                )
            except HTTPClientError as e:
                body = e.response.body if e.response is not None else b""
                failure = classify_status(e.code, body or b"", upstream.url)
                if failure is None:
                    if e.code == 599:
                        failure = classify_exception(e, upstream.url)
                    else:
                        # The remote Jupyter server itself refused (403 token, 404 kernel).
                        return None, Failure(
                            "remote_refused",
                            f"the remote answered {e.code} to the kernel websocket",
                            "403: check the remote token; 404: the kernel no longer exists.",
                            e.code,
                            False,
                        )
            except Exception as e:
                failure = classify_exception(e, upstream.url)
            else:
                self.upstream = upstream
                return conn, None
            if loop.time() >= deadline:
                break
            await relay.tracker.wait_change(upstream, min(delay, deadline - loop.time()))
            delay = min(delay * 2, 1.0)
        if failure is None:
            failure = Failure(
                "no_upstream",
                f"the remote has no live tunnel URL (its state: {relay.tracker.state})",
                "Wait for the remote's tunnel to become ready; see GET /relay/status.",
                503,
                True,
            )
        return None, failure

    def _on_switch(self, old: Upstream | None, new: Upstream | None) -> None:
        """A new URL: close the upstream on the old one; the reader re-dials the new one."""
        conn = self.conn
        if conn is not None and new is not None and self.upstream != new:
            self.conn = None
            conn.close(1001, "the relay follows the remote's new URL")

    # ----- closing ------------------------------------------------------------------------

    async def retire(self) -> None:
        """Replaced by a newer connection: close the upstream (waiting for it), then the local."""
        self.retired = True
        if not self.settled.is_set():
            # Still dialling: let that finish (it then closes its upstream) before the newer
            # one dials, so that the two never reach the remote together.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.settled.wait(), self.relay.settings.connect_timeout + 5)
        conn, self.conn = self.conn, None
        if conn is not None:
            await self._release(conn, reading=self.reader is not None)
        if not self.local_closed:
            self.close(1000, "replaced by a newer connection to the same kernel session")

    async def _release(self, conn: websocket.WebSocketClientConnection, reading: bool) -> None:
        """Close an upstream that a newer connection replaces, and wait (bounded) until the
        remote no longer counts it: the remote then buffers the kernel's channels for the
        session and hands them to the newer one ("Restoring connection"). Two upstreams at the
        remote at once share one ZMQ identity, and the newer can end up dead."""
        relay, upstream = self.relay, self.upstream
        before = await relay.kernel_connections(upstream, self.key[0]) if upstream else None
        reason = "replaced by a newer connection"
        if reading and self.reader is not None:
            conn.close(1000, reason)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.reader), 2)
        else:
            await close_upstream(conn, 1000, reason)
        if upstream is None or not before:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while loop.time() < deadline:
            now = await relay.kernel_connections(upstream, self.key[0])
            if now is None or now < before:
                return
            await asyncio.sleep(0.02)
        relay.log.warning(
            "Kernel %s: the remote still counts the replaced websocket after 3 s", self.key[0]
        )

    def shutdown(self, reason: str) -> None:
        self.retired = True
        if self.conn is not None:
            self.conn.close(1001, reason)
        if not self.local_closed:
            self.close(1001, reason)

    def on_close(self) -> None:
        self.local_closed = True
        relay = self.relay
        if self.opened:
            relay.stats.ws_open -= 1
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close(1000, "the local client closed")
        if self.buffer:
            relay.stats.frames_dropped += len(self.buffer)
            relay.log.warning(
                "Kernel %s: dropped %d frames held for the upstream: the local socket closed",
                self.key[0],
                len(self.buffer),
            )
            self.buffer.clear()
        self._forget()

    def on_connection_close(self) -> None:
        # Also called for a handshake that never completed (on_close is not): drop the upstream.
        super().on_connection_close()
        if self.ws_connection is None:
            self.local_closed = True
            conn, self.conn = self.conn, None
            if conn is not None:
                conn.close(1000)
            self._forget()

    def _forget(self) -> None:
        if self.relay.sockets.get(self.key) is self:
            del self.relay.sockets[self.key]
