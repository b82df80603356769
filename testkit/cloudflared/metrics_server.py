"""The stand-in's metrics server: /metrics, /ready, /healthcheck, /quicktunnel."""

from __future__ import annotations

import contextlib
import json
import socket
import time

from aiohttp import web

from .constants import BUILD_TIME, GO_VERSION, VERSION
from .listeners import BindError, bind_listener, sock_address
from .output import Logger


class MetricsServer:
    """Part of `Tunnel` (testkit.cloudflared.tunnel), whose state it uses."""

    async def start_metrics(self) -> bool:
        explicit = self.inv.raw("metrics")
        sock: socket.socket | None = None
        if explicit:
            try:
                sock = bind_listener(explicit)
            except BindError as exc:
                reason = f"failed to bind to address ({explicit}): {exc}"
                self.log.error("Error opening metrics server listener", ("error", reason))
                Logger.plain(f"Error opening metrics server listener: {reason}")
                self.finish(1)
                return False
        else:
            for port in range(20241, 20246):
                with contextlib.suppress(BindError):
                    sock = bind_listener(f"localhost:{port}")
                    break
            if sock is None:
                sock = bind_listener("localhost:0")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.metrics_handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self.runners.append(runner)
        await web.SockSite(runner, sock).start()
        self.metrics_address = sock_address(sock)
        self.metrics_started_at = time.monotonic()
        self.log.info(f"Starting metrics server on {self.metrics_address}/metrics")
        self.write_state()
        return True

    # --- metrics server -------------------------------------------------------------------

    def text(self, body: str, status: int = 200) -> web.Response:
        return web.Response(
            status=status, body=body.encode(), content_type="text/plain", charset="utf-8"
        )

    async def metrics_handler(self, request: web.Request) -> web.Response:
        path = request.path
        if path == "/ready":
            count = 1 if self.ready else 0
            status = 200 if count else 503
            body = json.dumps(
                {"status": status, "readyConnections": count, "connectorId": self.connector_id},
                separators=(",", ":"),
            )
            return self.text(body, status)
        if path == "/healthcheck":
            return self.text("OK\n")
        if path == "/quicktunnel":
            name = self.hostname if self.mode == "quick" and self.hostname else ""
            return self.text(json.dumps({"hostname": name}, separators=(",", ":")))
        if path == "/metrics":
            return self.text(self.prometheus())
        return self.text("404 page not found\n", 404)

    def prometheus(self) -> str:
        families: list[tuple[str, str, str, list[tuple[str, float]]]] = [
            (
                "build_info",
                "Build and version information",
                "gauge",
                [
                    (
                        f'{{goversion="{GO_VERSION}",revision="{BUILD_TIME}",type="",'
                        f'version="{VERSION}"}}',
                        1,
                    )
                ],
            ),
            (
                "cloudflared_tunnel_concurrent_requests_per_tunnel",
                "Concurrent requests proxied through each tunnel",
                "gauge",
                [("", self.inflight)],
            ),
            (
                "cloudflared_tunnel_ha_connections",
                "Number of active ha connections",
                "gauge",
                [("", 1)],
            ),
            (
                "cloudflared_tunnel_request_errors",
                "Amount of errors due to proxying",
                "counter",
                [("", self.request_errors)],
            ),
            (
                "cloudflared_tunnel_response_by_code",
                "Count of responses by HTTP status code",
                "counter",
                [(f'{{status_code="{c}"}}', n) for c, n in sorted(self.responses_by_code.items())],
            ),
            (
                "cloudflared_tunnel_total_requests",
                "Amount of requests proxied through all the tunnels",
                "counter",
                [("", self.requests_total)],
            ),
        ]
        lines: list[str] = []
        for name, help_text, kind, samples in families:
            if not samples:
                continue
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)
        return "\n".join(lines) + "\n"
