"""Is one cloudflared's tunnel up? Its metrics server answers: /ready and /quicktunnel.

`HealthWatch.run` decides, the supervisor acts: it reports what it learns through the
supervisor's callbacks and returns the reason to restart cloudflared (no URL in time, or a
stall) if it finds one.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Protocol

from ..problems import Problem
from .clock import Clock, wait_event

# A health check that got no answer in this long counts as unreachable.
HEALTH_TIMEOUT = 2.0
# Consecutive unready checks after being ready before the tunnel counts as stalled.
STALL_CHECKS = 3
# Unready checks in a row, after being ready, before the state says so (one may be a blip).
LOST_CHECKS = 2


@dataclass(frozen=True)
class Readiness:
    ready: bool
    connections: int


class Probe(Protocol):
    """Questions to a metrics server at `address` (host:port); None when it does not answer."""

    async def readiness(self, address: str) -> Readiness | None: ...

    async def quick_hostname(self, address: str) -> str | None: ...


class HttpProbe:
    """The metrics server over HTTP, as cloudflared serves it."""

    async def readiness(self, address: str) -> Readiness | None:
        got = await self._get(address, "/ready")
        if got is None:
            return None
        code, body = got
        n = body.get("readyConnections", 0) if isinstance(body, dict) else 0
        connections = n if isinstance(n, int) else 0
        return Readiness(code == 200 and connections >= 1, connections)

    async def quick_hostname(self, address: str) -> str | None:
        got = await self._get(address, "/quicktunnel")
        if got is None or not isinstance(got[1], dict):
            return None
        hostname = got[1].get("hostname")
        return hostname if isinstance(hostname, str) and hostname else None

    async def _get(self, address: str, path: str) -> tuple[int, Any] | None:
        # Imported on first use: tornado's HTTP client stays out of the server's start-up.
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        try:
            r = await AsyncHTTPClient().fetch(
                f"http://{address}{path}",
                request_timeout=HEALTH_TIMEOUT,
                connect_timeout=HEALTH_TIMEOUT,
                raise_error=False,
            )
        except (OSError, HTTPClientError, asyncio.TimeoutError):
            return None
        if r.code == 599:
            return None
        try:
            return r.code, json.loads(r.body or b"null")
        except ValueError:
            return r.code, None


class Watched(Protocol):
    """The supervisor's view of the one child being watched."""

    @property
    def metrics(self) -> str | None: ...  # the metrics address, once cloudflared logged it

    @property
    def url(self) -> str | None: ...  # the tunnel URL, once known

    @property
    def ready_since(self) -> float | None: ...  # monotonic, once it was first ready

    def confirmed_url(self, url: str) -> None: ...

    def readiness(self, connections: int, ready: bool) -> None: ...

    def lost(self) -> None: ...  # ready before, now unready twice in a row


@dataclass
class HealthWatch:
    mode: str
    url_timeout: float
    interval: float
    clock: Clock
    probe: Probe
    # Set by the supervisor when a line brought news (URL, metrics address, registration).
    wake: asyncio.Event

    async def run(self, child: Watched) -> Problem:
        """Watch until cancelled (the child exited), or return why cloudflared must restart."""
        deadline = self.clock.monotonic() + self.url_timeout
        confirmed = False
        strikes = 0
        while True:
            self.wake.clear()
            have_tunnel = (child.url if self.mode == "quick" else child.metrics) is not None
            if not have_tunnel and self.clock.monotonic() >= deadline:
                what = "URL" if self.mode == "quick" else "connection"
                return Problem(
                    "url_timeout",
                    f"no tunnel {what} from cloudflared within {self.url_timeout:g}s",
                )
            address = child.metrics
            if address is not None:
                if self.mode == "quick" and not confirmed:
                    hostname = await self.probe.quick_hostname(address)
                    if hostname is not None:
                        confirmed = True
                        child.confirmed_url(f"https://{hostname}")
                got = await self.probe.readiness(address)
                if got is not None:
                    child.readiness(got.connections, got.ready)
                if got is not None and got.ready:
                    strikes = 0
                elif child.ready_since is not None:
                    # Was ready, now unready or unreachable: one miss may be a blip, three in
                    # a row is a stalled tunnel that cloudflared is not recovering.
                    strikes += 1
                    if strikes >= STALL_CHECKS:
                        return Problem(
                            "stalled",
                            f"the tunnel was ready, then unready or unreachable for "
                            f"{STALL_CHECKS} health checks",
                        )
                    if strikes >= LOST_CHECKS:
                        child.lost()
            timeout = self.interval
            if not have_tunnel:
                timeout = min(timeout, max(0.0, deadline - self.clock.monotonic()))
            await wait_event(self.clock, self.wake, timeout)
