"""A stack for `connect --forward` tests: an app, a stand-in of the remote's port route in front
of it, the cloudflared stand-in in front of that, and a real relay process with --forward.

The route stand-in does what the remote's `/colab/forward/<port>/...` must (forwarding.py): it
checks the Jupyter token, unwraps the envelope, and streams HTTP (http1's exchange) and pumps
websockets to the app on 127.0.0.1:<port>, so these tests hold the relay's side alone. The app
and the route run on one event loop in a thread of the test process; the tunnel and the relay
are real processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay_env import RelayProcess, start_relay
from server_process import free_port
from tornado import httputil, web, websocket
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.routing import Matcher, PathMatches, Rule

from jupyter_colab_tunnel import forwarding
from jupyter_colab_tunnel.connection_record import connection_record, write_connection_file
from jupyter_colab_tunnel.http1 import KeepAliveClient
from jupyter_colab_tunnel.local.relay.forward_http import METHODS
from testkit import fake_cloudflared
from testkit.processes import stop_process

REMOTE_TOKEN = "remote-forward-token-5e1b"
HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}
WS_OWN = {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"}
HOP_WS = HOP | WS_OWN | {"sec-websocket-protocol"}


# ----- the app --------------------------------------------------------------------------------


@web.stream_request_body
class Echo(web.RequestHandler):
    """Any method: what the app saw (headers the hop must not show it, the body's hash)."""

    SUPPORTED_METHODS = METHODS

    def prepare(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def data_received(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)

    def get(self, *args: str) -> None:
        h = self.request.headers
        self.set_header("Set-Cookie", "app_session=1; Path=/")
        body = {
            "method": self.request.method,
            "path": self.request.path,
            "query": self.request.query,
            "host": h.get("Host"),
            "authorization": h.get("Authorization"),
            "cookie": h.get("Cookie"),
            "origin": h.get("Origin"),
            "enveloped": sorted(k for k in h if k.lower().startswith("x-colab-forward")),
            "size": self.size,
            "sha256": self.digest.hexdigest(),
            "chunked": "chunked" in h.get("Transfer-Encoding", ""),
        }
        self.finish(json.dumps(body))

    head = post = put = delete = patch = options = propfind = get


class Events(web.RequestHandler):
    """Server-sent events: one now, the next only once the test releases ?gate=NAME."""

    async def get(self) -> None:
        app: App = self.settings["app"]
        gate = app.gates.setdefault(self.get_argument("gate", ""), asyncio.Event())
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.write("data: first\n\n")
        await self.flush()
        await gate.wait()
        self.write("data: second\n\n")
        self.finish()


def mib(i: int) -> bytes:
    """The i-th MiB of a download (distinct pieces, so a lost or repeated one shows)."""
    return hashlib.sha256(str(i).encode()).digest() * (1 << 15)


class Download(web.RequestHandler):
    """?mib=N MiB, streamed a MiB at a time, each flushed before the next."""

    async def get(self) -> None:
        count = int(self.get_argument("mib"))
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(count << 20))
        for i in range(count):
            self.write(mib(i))
            await self.flush()
        self.finish()


class Own503(web.RequestHandler):
    def get(self) -> None:
        self.set_status(503)
        self.finish({"app": "warming up"})


class EchoSocket(websocket.WebSocketHandler):
    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return "v2.echo" if "v2.echo" in subprotocols else None

    async def on_message(self, message: str | bytes) -> None:
        if message == "close-4001":
            self.close(4001, "asked to")
            return
        await self.write_message(message, binary=isinstance(message, bytes))


# ----- the remote route stand-in --------------------------------------------------------------


class _Upgrade(Matcher):
    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        return PathMatches(forwarding.ROUTE).match(request)


def raw_target(request: httputil.HTTPServerRequest) -> tuple[str, str]:
    """The port and the app's path as sent (tornado's path_args are percent-decoded)."""
    m = re.fullmatch(forwarding.ROUTE, request.path)
    assert m is not None
    return m.group(1), m.group(2) or "/"


def _authorized(handler: web.RequestHandler) -> bool:
    return handler.request.headers.get("Authorization") == f"token {REMOTE_TOKEN}"


@web.stream_request_body
class Route(web.RequestHandler):
    SUPPORTED_METHODS = METHODS

    async def prepare(self) -> None:
        app: App = self.settings["app"]
        if not _authorized(self):
            self.set_status(403)
            self.finish({"message": "no token"})
            return
        app.hosts.append(self.request.headers.get("Host", ""))
        port, path = raw_target(self.request)
        headers, query = forwarding.unwrap(self.request.headers, self.request.query, "x")
        out = httputil.HTTPHeaders()
        for name, value in headers.get_all():
            if name.lower() not in HOP:
                out.add(name, value)
        length = self.request.headers.get("Content-Length")
        url = f"http://127.0.0.1:{port}{path}" + (f"?{query}" if query else "")
        self.exchange = await app.client.open(
            url, self.request.method or "GET", out, 5, int(length) if length else None
        )

    async def data_received(self, chunk: bytes) -> None:
        await self.exchange.send(chunk)

    async def get(self, *args: str) -> None:
        await self.exchange.respond(self, 30)
        self.finish()

    head = post = put = delete = patch = options = propfind = get

    async def response_started(self, code: int, reason: str, headers: httputil.HTTPHeaders) -> None:
        self.set_status(code, reason)
        self._headers = httputil.HTTPHeaders()
        for name, value in headers.get_all():
            if name.lower() not in HOP - {"content-length"}:
                self.add_header(name, value)
        await self.flush()

    async def response_data(self, chunk: bytes) -> None:
        self.write(chunk)
        await self.flush()


class RouteSocket(websocket.WebSocketHandler):
    async def prepare(self) -> None:
        self.conn: websocket.WebSocketClientConnection | None = None
        if not _authorized(self):
            self.set_status(403)
            self.finish({"message": "no token"})
            return
        headers, query = forwarding.unwrap(self.request.headers, self.request.query, "x")
        out = httputil.HTTPHeaders()
        for name, value in headers.get_all():
            if name.lower() not in HOP_WS:
                out.add(name, value)
        port, path = raw_target(self.request)
        protocols = [
            p.strip()
            for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        self.conn = await websocket.websocket_connect(
            f"ws://127.0.0.1:{port}{path}" + (f"?{query}" if query else ""),
            subprotocols=protocols or None,
            max_message_size=forwarding.FORWARD_MAX_MESSAGE,
        )

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return self.conn.selected_subprotocol if self.conn is not None else None

    def open(self, *args: str) -> None:
        self.pump = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        assert self.conn is not None
        while (message := await self.conn.read_message()) is not None:
            await self.write_message(message, binary=isinstance(message, bytes))
        code = self.conn.close_code
        self.close(code if code not in (None, 1005, 1006) else 1011, self.conn.close_reason)

    async def on_message(self, message: str | bytes) -> None:
        if self.conn is not None:
            await self.conn.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self.conn is not None:
            self.conn.close(self.close_code or 1000, self.close_reason)


class ColabStatus(web.RequestHandler):
    def get(self) -> None:
        self.finish({"tunnel": {"state": "ready"}})


@dataclass
class App:
    """The app and the route stand-in, served from a thread's event loop."""

    app_port: int = 0
    route_port: int = 0
    hosts: list[str] = field(default_factory=list)  # the hop's Host of each routed request
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    client: KeepAliveClient = field(init=False)

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._serve())
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10)

    async def _serve(self) -> None:
        self.client = KeepAliveClient()
        settings: dict[str, Any] = {"app": self, "websocket_max_message_size": 1 << 30}
        app = web.Application(
            [
                (r"/ws", EchoSocket),
                (r"/events", Events),
                (r"/own503", Own503),
                (r"/download", Download),
                (r"/.*", Echo),
            ],
            **settings,
        )
        route = web.Application(
            [
                Rule(_Upgrade(), RouteSocket),
                Rule(PathMatches(forwarding.ROUTE), Route),
                (r"/colab/status", ColabStatus),
            ],
            **settings,
        )
        for target, attr in ((app, "app_port"), (route, "route_port")):
            sockets = bind_sockets(0, "127.0.0.1")
            HTTPServer(target, max_body_size=1 << 40).add_sockets(sockets)
            setattr(self, attr, sockets[0].getsockname()[1])

    def release_events(self, gate: str) -> None:
        def release() -> None:
            self.gates.setdefault(gate, asyncio.Event()).set()

        self.loop.call_soon_threadsafe(release)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


# ----- the tunnel and the relay ---------------------------------------------------------------


@dataclass
class Tunnel:
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        stop_process(self.proc, 10)


def start_tunnel(root: Path, name: str, origin_port: int) -> Tunnel:
    """The cloudflared stand-in in front of the route; its state where the relay finds it."""
    state = root / name / "fake-state"
    state.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNNEL_", "FAKE_CLOUDFLARED"))}
    env[fake_cloudflared.STATE_DIR_ENV] = str(state)
    proc = subprocess.Popen(
        [
            sys.executable,
            fake_cloudflared.__file__,
            "tunnel",
            "--no-autoupdate",
            "--metrics",
            "127.0.0.1:0",
            "--url",
            f"http://127.0.0.1:{origin_port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        path = state / f"{proc.pid}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        if data.get("url") and data.get("edge") and data.get("ready"):
            return Tunnel(proc, data["url"])
        assert proc.poll() is None, f"the cloudflared stand-in exited {proc.returncode}"
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the cloudflared stand-in never became ready")


@dataclass
class Stack:
    root: Path
    app: App
    tunnels: list[Tunnel]
    relay: RelayProcess
    local: int
    connection_file: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.local}"

    def point_at(self, url: str | None, state: str = "ready") -> None:
        record = connection_record(url, state, "/", REMOTE_TOKEN)
        write_connection_file(self.connection_file, record)

    def forward_status(self) -> dict[str, Any]:
        forwards = self.relay.status()["forwards"]
        assert len(forwards) == 1, forwards
        return dict(forwards[0])

    def stop(self) -> None:
        self.relay.stop()
        for tunnel in self.tunnels:
            tunnel.stop()
        self.app.stop()


def start_stack(root: Path, wait: float = 2.0) -> Stack:
    app = App()
    app.start()
    tunnel = start_tunnel(root, "tunnel0", app.route_port)
    token_file = root / "remote_token"
    token_file.write_text(REMOTE_TOKEN)
    token_file.chmod(0o600)
    local = free_port()
    stack = Stack(root, app, [tunnel], None, local, root / "connection.json")  # type: ignore[arg-type]
    stack.point_at(tunnel.url)
    stack.relay = start_relay(
        root / "relay",
        [
            f"--connection-file={stack.connection_file}",
            f"--token-file={token_file}",
            f"--forward={local}:{app.app_port}",
            f"--wait={wait}",
        ],
        edge_root=root,
    )
    return stack


def stack_fixture(root: Path) -> Iterator[Stack]:
    stack = start_stack(root)
    try:
        yield stack
    finally:
        stack.stop()
