"""The relay itself: its settings, counters, the upstream tracker, live kernel sockets, and the
HTTP server on 127.0.0.1 that routes to the proxy and kernel-socket handlers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tornado import httputil, web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from ...http1 import KeepAliveClient, UpstreamError
from ...timefmt import iso_utc
from ..bounded_wait import event_set, finished_within
from ..failures import Failure
from ..upstream import Upstream, UpstreamTracker
from . import rules
from .forward import Forward, ForwardSpec
from .kernel_socket import MAX_WS_MESSAGE, KernelSocket
from .life import RemoteLife
from .proxy import LINGER_BYTES, MAX_FORWARDED_BODY, ProxyHandler, StatusHandler
from .reachability import Reachability

KERNEL_SHUTDOWN = re.compile(r"/api/kernels/([^/]+)/?$")
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
    # The largest kernel message the remote accepts: jupyter_server leaves tornado's default
    # websocket_max_message_size (10 MiB); a larger frame is refused here, counted and logged.
    ws_max_message: int = 10 * 1024 * 1024
    ping_interval: float = 30.0
    # Bounds on a local client: its request headers (and a kept connection's idle wait), its body.
    header_timeout: float = 20.0
    body_timeout: float = 120.0
    # A remote unreachable behind a dead tunnel this long is "gone" (connect --gone-after).
    gone_after: float = 60.0
    # How often the remote's GET /colab/status `life` is read; 0: never (`connect` reads it
    # once a minute: LIFE_INTERVAL).
    life_interval: float = 0.0
    # Whether a connection file is followed (a new runtime is then picked up by itself).
    follows_file: bool = False
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
    frames_refused: int = 0


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
        self.reachability = Reachability(self)
        self.life = RemoteLife(self)
        self.stopping = False
        self._last_request = time.monotonic()
        self._shut_down: set[str] = set()  # kernels the local side shut down (DELETE)
        self.forwards: list[Forward] = []  # connect --forward: one listener each

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
        self._last_request = time.monotonic()
        shut = KERNEL_SHUTDOWN.search(request.path) if request.method == "DELETE" else None
        if shut is not None and status < 500:  # 204, or 404: the kernel is gone either way
            self._shut_down.add(shut.group(1))
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
            # body_timeout. A body is read only once its headers are allowed (proxy.py), which
            # answers one over MAX_FORWARDED_BODY itself, after reading on for LINGER_BYTES:
            # tornado's own limit must leave it that room.
            idle_connection_timeout=s.header_timeout,
            body_timeout=s.body_timeout,
            max_header_size=MAX_HEADER_SIZE,
            max_body_size=MAX_FORWARDED_BODY + LINGER_BYTES,
        )
        self._server.add_sockets(sockets)
        self.port = int(sockets[0].getsockname()[1])
        self.life.start()
        return self.port

    def add_forward(self, spec: ForwardSpec) -> Forward:
        """Listen on 127.0.0.1:spec.local for the remote's port spec.remote. Raises OSError."""
        forward = Forward(self, spec)
        forward.listen()
        self.forwards.append(forward)
        return forward

    async def close(self, grace: float = 0.0, stop_now: asyncio.Event | None = None) -> None:
        """Stop: no new kernel websockets, the open ones closed. With `grace`, HTTP is still
        answered meanwhile, until the local side has shut down the kernels whose websockets
        were open (a JupyterLab stopped after the relay sends DELETE /api/kernels/<id>, and
        jupyter_server hangs on its SIGTERM if that fails) and has been quiet for a second,
        `grace` seconds at most, or until `stop_now` is set (a second Ctrl-C)."""
        self.stopping = True
        kernels = {kernel_id for kernel_id, _ in self.sockets}
        for sock in list(self.sockets.values()):
            sock.shutdown("the relay is stopping")
        if grace > 0 and kernels and self._server is not None:
            self.log.info(
                "Stopping: kernel websockets closed; answering the local JupyterLab's kernel "
                "shutdown for up to %g s (stop JupyterLab before the relay; Ctrl-C again to "
                "stop now)",
                grace,
            )
            await self._drain(kernels, grace, stop_now or asyncio.Event())
        for forward in self.forwards:
            await forward.close()
        if self._server is not None:
            self._server.stop()
            await finished_within(self._server.close_all_connections(), 2)
        await self.reachability.close()
        await self.life.close()
        self.client.close()

    async def _drain(self, kernels: set[str], grace: float, stop_now: asyncio.Event) -> None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not stop_now.is_set():
            if kernels <= self._shut_down and time.monotonic() - self._last_request >= 1.0:
                return
            await event_set(stop_now, 0.1)
        left = kernels - self._shut_down
        if left:
            self.log.warning(
                "Stopped before the local JupyterLab shut down kernel(s) %s: if it is stopping "
                "now and hangs, start the relay again and stop JupyterLab again",
                ", ".join(sorted(left)),
            )

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
                f"{upstream.url}/api/kernels/{kernel_id}",
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
        return rules.upstream_url(upstream.url, uri, ws)

    def fail(self, failure: Failure) -> None:
        self.stats.errors += 1
        self.tracker.record_error(f"{failure.reason}: {failure.message}")
        self.reachability.failed(failure)

    def _remote_state(self) -> str:
        if self.life.gone is not None:
            return "gone"
        return "unreachable" if self.reachability.down else self.tracker.state

    def status(self) -> dict[str, Any]:
        up = self.tracker.current
        s = self.stats
        return {
            "upstream": up.url if up else None,
            "since": iso_utc(self.tracker.since),
            # The connection file's word, unless the relay found that nothing answers there.
            "remote_state": self._remote_state(),
            "remote_unreachable": self.reachability.status(),
            "remote_gone": self.life.gone.as_dict() if self.life.gone else None,
            "remote_life": self.life.status(),
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
                "frames_refused": s.frames_refused,
            },
            "forwards": [forward.status() for forward in self.forwards],
            **self._status_extra(),
        }
