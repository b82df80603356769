"""`Tunnel`: one run of the stand-in: its state file, faults, signals and startup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import ssl
import sys
import time
import uuid
from collections.abc import Awaitable
from typing import Any, NoReturn

import aiohttp
from aiohttp import web
from yarl import URL

from .cli import Invocation, fault_seconds
from .constants import EDGE_PORT_ENV, EDGE_TLS_ENV, STATE_DIR_ENV
from .edge import Edge, Origin
from .golang import parse_go_duration
from .listeners import bind_listener
from .metrics_server import MetricsServer
from .output import Logger, die_by_signal
from .registration import Registration


def edge_tls_context() -> ssl.SSLContext | None:
    """The edge's TLS side, when the session made it a certificate (testkit/edge_tls.py)."""
    directory = os.environ.get(EDGE_TLS_ENV)
    if not directory:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(
        pathlib.Path(directory) / "edge.pem", pathlib.Path(directory) / "edge-key.pem"
    )
    return context


class Tunnel(Registration, MetricsServer, Edge):
    def __init__(self, inv: Invocation, log: Logger, faults: dict[str, str], start: float):
        self.inv = inv
        self.log = log
        self.faults = faults
        self.start = start
        self.mode = "quick" if inv.action == "quick" else "named"
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[int] = self.loop.create_future()
        self.connector_id = str(uuid.uuid4())
        self.connection_id = str(uuid.uuid4())
        self.hostname: str | None = None
        self.public_hostname = ""
        self.protocol = inv.get("protocol") or "auto"
        if self.protocol == "auto":
            self.protocol = "quic"
        self.origin: Origin | None = None
        self.host_header = inv.raw("http-host-header")
        self.token_seen = False
        self.url_printed_at: float | None = None
        self.registered_at: float | None = None
        self.metrics_started_at: float | None = None
        self.metrics_address: str | None = None
        self.edge_port: int | None = None
        self.edge_tls_port: int | None = None
        self.registered = False
        self.ready = False
        self.stalled = False
        self.shutting_down = False
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.ws_tasks: set[asyncio.Task[Any]] = set()
        self.background: set[asyncio.Task[Any]] = set()
        self.session: aiohttp.ClientSession | None = None
        self.runners: list[web.AppRunner] = []
        self.grace_ns = parse_go_duration(inv.get("grace-period") or "30s")
        self.state_dir = os.environ.get(STATE_DIR_ENV) or None
        self.requests_total = 0
        self.request_errors = 0
        self.responses_by_code: dict[int, int] = {}

    # --- plumbing -------------------------------------------------------------------------

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def finish(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)

    async def forever(self) -> NoReturn:
        while True:
            await asyncio.sleep(3600)

    def write_state(self) -> None:
        if not self.state_dir:
            return
        state = {
            "pid": os.getpid(),
            "argv": sys.argv,
            "mode": self.mode,
            "hostname": self.hostname,
            "url": f"https://{self.hostname}" if self.hostname else None,
            "edge": f"http://127.0.0.1:{self.edge_port}" if self.edge_port else None,
            # The same edge over TLS with a certificate for the public names (testkit/edge_tls.py):
            # where testkit/edge_dns.py sends those names.
            "edge_tls": f"https://127.0.0.1:{self.edge_tls_port}" if self.edge_tls_port else None,
            "metrics": self.metrics_address,
            "token_seen": self.token_seen,
            "url_printed_at": self.url_printed_at,
            "registered_at": self.registered_at,
            "ready": self.ready,
        }
        path = pathlib.Path(self.state_dir) / f"{os.getpid()}.json"
        tmp = path.with_name(f".{os.getpid()}.json.tmp")
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, path)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    async def sleep_until(self, since_start: float) -> None:
        await asyncio.sleep(max(0.0, since_start - self.elapsed()))

    # --- startup --------------------------------------------------------------------------

    def make_origin(self, url_text: str | None) -> Origin | None:
        if not url_text:
            return None
        if "://" not in url_text:
            url_text = "http://" + url_text
        base = URL(url_text)
        ctx: ssl.SSLContext | bool = True
        if self.inv.get_bool("no-tls-verify"):
            ctx = False
        elif self.inv.get("origin-ca-pool"):
            with contextlib.suppress(OSError, ssl.SSLError):
                ctx = ssl.create_default_context(cafile=self.inv.get("origin-ca-pool"))
        return Origin(base, ctx)

    async def run(self) -> None:
        self.spawn(self.fault_timers())
        if self.mode == "quick":
            await self.run_quick()
        else:
            await self.run_named()

    async def fault_timers(self) -> None:
        tasks: list[Awaitable[Any]] = []
        if "crash_after" in self.faults:
            tasks.append(self.crash(fault_seconds(self.faults, "crash_after", 0.0)))
        if "exit_clean_after" in self.faults:
            tasks.append(self.exit_clean(fault_seconds(self.faults, "exit_clean_after", 0.0)))
        if tasks:
            await asyncio.gather(*tasks)

    async def crash(self, after: float) -> None:
        await self.sleep_until(after)
        reason = f"fake cloudflared crash (crash_after={self.faults['crash_after']})"
        self.log.error("Initiating shutdown", ("error", reason))
        sig_name = self.faults.get("crash_signal", "").upper()
        if sig_name:
            if not sig_name.startswith("SIG"):
                sig_name = "SIG" + sig_name
            sig = getattr(signal, sig_name, signal.SIGKILL)
            die_by_signal(int(sig))
        Logger.plain(reason)
        try:
            code = int(self.faults.get("crash_code") or "1")
        except ValueError:
            code = 1
        self.finish(code)

    async def exit_clean(self, after: float) -> None:
        await self.sleep_until(after)
        self.shutting_down = True
        self.log.info("Initiating graceful shutdown due to signal terminated ...")
        await self.stop_lines()
        self.finish(0)

    async def start_edge(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=timeout,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{tail:.*}", self.edge_handler)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            max_line_size=65536,
            max_field_size=65536,
            max_headers=1024,
        )
        await runner.setup()
        self.runners.append(runner)
        try:
            port = int(os.environ.get(EDGE_PORT_ENV) or "0")
        except ValueError:
            port = 0
        sock = bind_listener(f"127.0.0.1:{port}")
        self.edge_port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        tls = await asyncio.to_thread(edge_tls_context)  # files: off the loop
        if tls is not None:
            tls_sock = bind_listener("127.0.0.1:0")
            self.edge_tls_port = tls_sock.getsockname()[1]
            await web.SockSite(runner, tls_sock, ssl_context=tls).start()

    def install_signal_handlers(self) -> None:
        if "ignore_sigterm" in self.faults:
            return
        for sig, name in ((signal.SIGTERM, "terminated"), (signal.SIGINT, "interrupt")):
            self.loop.add_signal_handler(sig, self.on_signal, sig, name)

    def on_signal(self, sig: int, name: str) -> None:
        if self.shutting_down:
            die_by_signal(sig)
        self.shutting_down = True
        for s in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(s, die_by_signal, int(s))
        self.spawn(self.graceful(name))

    async def graceful(self, name: str) -> None:
        self.log.info(f"Initiating graceful shutdown due to signal {name} ...")
        if self.registered and self.inflight:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.idle.wait(), self.grace_ns / 1e9)
        await self.stop_lines()
        self.finish(0)

    async def stop_lines(self) -> None:
        if self.metrics_started_at is not None:
            since = time.monotonic() - self.metrics_started_at
            if since < 0.5:
                await asyncio.sleep(max(0.0, 0.47 - since))
        self.ready = False
        self.log.info("Tunnel server stopped")
        if self.metrics_started_at is not None:
            self.log.info("Metrics server stopped")
