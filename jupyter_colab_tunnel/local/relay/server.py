"""The relay itself: its settings, counters, the upstream tracker, live kernel sockets, and the
HTTP server on 127.0.0.1 that routes to the proxy and kernel-socket handlers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tornado import httputil, web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from ...timefmt import iso_utc
from ..failures import Failure
from ..pool import KeepAliveClient, UpstreamError
from ..upstream import Upstream, UpstreamTracker
from . import rules
from .kernel_socket import MAX_WS_MESSAGE, KernelSocket
from .proxy import MAX_FORWARDED_BODY, ProxyHandler, StatusHandler

MAX_HEADER_SIZE = 64 * 1024


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
    # Bounds on a local client: its request headers (and a kept connection's idle wait), its body.
    header_timeout: float = 20.0
    body_timeout: float = 120.0
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
                (rules.KERNEL_CHANNELS_ROUTE, KernelSocket, {"relay": self}),
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
        # Kernel websockets and failures are worth a line; JupyterLab's polling is not.
        level = logging.INFO if status == 101 or status >= 400 else logging.DEBUG
        self.log.log(
            level,
            "%d %s %s %.1f ms",
            status,
            request.method,
            rules.clip(request.path),
            1000.0 * request.request_time(),
        )

    def listen(self, port: int) -> int:
        """Bind 127.0.0.1:port (0: any free port) and serve; return the port."""
        sockets = bind_sockets(port, address="127.0.0.1")
        s = self.settings
        self._server = HTTPServer(
            self.application(),
            xheaders=False,
            # Slow or idle clients cannot pin the relay: the headers of each request (a kept
            # connection's wait included) must arrive within header_timeout, a body within
            # body_timeout. A body is read only once its headers are allowed (proxy.py).
            idle_connection_timeout=s.header_timeout,
            body_timeout=s.body_timeout,
            max_header_size=MAX_HEADER_SIZE,
            max_body_size=MAX_FORWARDED_BODY,
        )
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

    def refusal(
        self, request: httputil.HTTPServerRequest, check_token: bool = True
    ) -> tuple[int, str, str] | None:
        s = self.settings
        return rules.refusal(request, self.port, s.local_token, s.allowed_origins, check_token)

    def origin_allowed(self, origin: str) -> bool:
        return rules.origin_allowed(origin, self.port, self.settings.allowed_origins)

    def upstream_headers(
        self, request: httputil.HTTPServerRequest | None = None
    ) -> httputil.HTTPHeaders:
        return rules.remote_headers(
            self.settings.extra_headers, self.settings.remote_token(), request
        )

    async def kernel_connections(self, upstream: Upstream, kernel_id: str) -> int | None:
        """How many websockets the remote counts on a kernel (GET /api/kernels/<id>), or None."""
        try:
            response = await self.client.fetch(
                f"{upstream.dial}/api/kernels/{kernel_id}",
                "GET",
                self.upstream_headers(),
                None,
                self.settings.connect_timeout,
                self.settings.connect_timeout,
            )
            count = json.loads(response.body).get("connections") if response.code == 200 else None
        except (UpstreamError, ValueError, AttributeError):
            return None
        return count if isinstance(count, int) else None

    def upstream_url(self, upstream: Upstream, uri: str, ws: bool = False) -> str:
        return rules.upstream_url(upstream.dial, uri, ws)

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
