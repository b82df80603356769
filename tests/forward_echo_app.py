"""A small web app for the forward route's tests, run on its own loop in a thread: it echoes
what it received (method, path, query, headers, a digest of the body), streams server-sent
events and large downloads, and echoes websocket messages. It records every request it sees."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tornado import web, websocket
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

CHUNK = 1024 * 1024
PATTERN = bytes(range(256)) * (CHUNK // 256)


def pattern_digest(size: int) -> str:
    """The sha256 of what /download?size= sends (PATTERN repeated, cut at size)."""
    digest = hashlib.sha256()
    left = size
    while left > 0:
        digest.update(PATTERN[: min(CHUNK, left)])
        left -= CHUNK
    return digest.hexdigest()


@dataclass
class EchoApp:
    port: int = 0
    seen: list[str] = field(default_factory=list)  # "METHOD path" of every request
    loop: asyncio.AbstractEventLoop | None = None
    release: asyncio.Event | None = None  # lets /sse send its last event
    sse_left: int = 0  # event streams whose client went away
    ws_closed: list[tuple[int | None, str | None]] = field(default_factory=list)  # code, reason

    def let_sse_end(self) -> None:
        assert self.loop is not None
        assert self.release is not None
        self.loop.call_soon_threadsafe(self.release.set)


@web.stream_request_body
class Echo(web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, app: EchoApp) -> None:
        self.app = app

    def prepare(self) -> None:
        self.app.seen.append(f"{self.request.method} {self.request.path}")
        self.digest = hashlib.sha256()
        self.size = 0
        self.chunks = 0
        self.request.connection.set_max_body_size(1 << 40)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)
        self.chunks += 1

    def _answer(self) -> None:
        status = self.get_query_argument("status", None)
        if status is not None:
            self.set_status(int(status), self.get_query_argument("reason", None))
        self.set_header("Content-Type", "application/json")
        self.set_cookie("app_session", "s1")
        self.finish(
            json.dumps(
                {
                    "method": self.request.method,
                    "uri": self.request.uri,
                    "path": self.request.path,
                    "query": self.request.query,
                    "headers": [list(h) for h in self.request.headers.get_all()],
                    "size": self.size,
                    "sha256": self.digest.hexdigest(),
                }
            )
        )

    get = post = put = patch = delete = options = lambda self, *a: self._answer()

    def head(self, *args: str) -> None:
        self.set_header("Content-Length", "1234")
        self.finish()


class Events(web.RequestHandler):
    def initialize(self, app: EchoApp) -> None:
        self.app = app

    async def get(self) -> None:
        self.app.seen.append(f"GET {self.request.path}")
        assert self.app.release is not None
        self.app.release.clear()  # each stream waits for its own let_sse_end()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.write("data: first\n\n")
        await self.flush()
        assert self.app.release is not None
        await self.app.release.wait()
        self.write("data: last\n\n")

    def on_connection_close(self) -> None:
        self.app.sse_left += 1


class Download(web.RequestHandler):
    async def get(self) -> None:
        size = int(self.get_query_argument("size"))
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(size))
        left = size
        while left > 0:
            self.write(PATTERN[: min(CHUNK, left)])
            left -= CHUNK
            await self.flush()


class Cut(web.RequestHandler):
    """Promises 1000 bytes, sends 10, and closes the connection (an app that crashed)."""

    async def get(self) -> None:
        self.set_header("Content-Length", "1000")
        self.write(b"0123456789")
        await self.flush()
        assert self.request.connection is not None
        self.request.connection.close()  # type: ignore[attr-defined]
        self._finished = True


class Socket(websocket.WebSocketHandler):
    def initialize(self, app: EchoApp) -> None:
        self.app = app

    def prepare(self) -> None:
        self.app.seen.append(f"WS {self.request.path}")

    @property
    def max_message_size(self) -> int:
        return 64 * 1024 * 1024

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return "echo.v2" if "echo.v2" in subprotocols else None

    def on_close(self) -> None:
        self.app.ws_closed.append((self.close_code, self.close_reason))

    async def on_message(self, message: str | bytes) -> None:
        if message == "uri?":
            await self.write_message(self.request.uri or "")
            return
        if message == "close-me":
            self.close(4001, "asked to")
            return
        await self.write_message(message, binary=isinstance(message, bytes))


@contextmanager
def running_echo_app() -> Iterator[EchoApp]:
    app = EchoApp()
    ready = threading.Event()
    stop: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            app.loop = asyncio.get_running_loop()
            app.release = asyncio.Event()
            kwargs = {"app": app}
            application = web.Application(
                [
                    (r"/sse", Events, kwargs),
                    (r"/download", Download),
                    (r"/cut", Cut),
                    (r"/ws", Socket, kwargs),
                    (r"/.*", Echo, kwargs),
                ]
            )
            sockets = bind_sockets(0, "127.0.0.1")
            app.port = sockets[0].getsockname()[1]
            server = HTTPServer(application, max_body_size=1 << 40)
            server.add_sockets(sockets)
            done = asyncio.Event()
            stop["done"] = done
            ready.set()
            await done.wait()
            server.stop()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield app
    finally:
        assert app.loop is not None
        app.loop.call_soon_threadsafe(stop["done"].set)
        thread.join(10)
