#!/usr/bin/env python3
"""A small web app of our own to forward (`connect --forward`), the way a user's app would be.

`python -m testkit.forward_app --port N` serves on 127.0.0.1:N (0: any free port) and prints
`forward_app listening on http://127.0.0.1:<port>` once it accepts connections (tests wait on
that line; `start()` does). What it serves, each piece for one thing a forward must carry:

- `GET /events?n=N&gate=G`: server-sent events. Event 0 goes out at once; events 1..N-1 only
  once `POST /release/G` arrived (without `gate`, all at once). A test proves "the first event
  arrives before the stream ends" by reading it before it releases the gate: no timing.
- `GET /download?size=N[&chunked=1]`: a deterministic streamed body (`body_block(i)` in 64 KiB
  blocks, each written and flushed in turn: backpressure), with Content-Length or chunked.
  `expected_sha256(size)` is its digest.
- `POST|PUT /upload`: a streamed request body (never held whole); answers `{"size", "sha256"}`.
- `/ws`: a websocket echo, text and binary, messages up to `MAX_MESSAGE`.
- `/echo` (any method): the method, path, query, headers and body size it received, as JSON.
- `/cookie`: sets `app_session` (Set-Cookie); `/redirect`: 302 to `/echo?from=redirect`.
- `GET /`: a small page naming the app (`TITLE`).
- `GET /seen`: `{"requests": N}`, how many requests (any path but this one) it has answered:
  tests prove a refused request never reached the app.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.processes import stop_process

BLOCK = 64 * 1024
# Each block starts with its index, so a lost, repeated or reordered block changes the digest.
_PATTERN = bytes(range(256)) * (BLOCK // 256)
MAX_MESSAGE = 1 << 30
TITLE = "forward-app test page"
READY = "forward_app listening on http://127.0.0.1:"
COOKIE = "app_session"


def body_block(index: int, length: int = BLOCK) -> bytes:
    return (index.to_bytes(8, "big") + _PATTERN[8:])[:length]


def iter_body(size: int) -> Any:
    index = 0
    while size > 0:
        length = min(BLOCK, size)
        yield body_block(index, length)
        size -= length
        index += 1


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for block in iter_body(size):
        digest.update(block)
    return digest.hexdigest()


# ----- the app (tornado, imported only where it runs) -----------------------------------------


def make_app() -> Any:
    from tornado import web, websocket

    gates: dict[str, asyncio.Event] = {}
    seen = {"requests": 0}

    def count(handler: web.RequestHandler) -> None:
        if handler.request.path != "/seen":
            seen["requests"] += 1

    class Seen(web.RequestHandler):
        def get(self) -> None:
            self.finish(seen)

    def gate(name: str) -> asyncio.Event:
        return gates.setdefault(name, asyncio.Event())

    class Page(web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(f"<!doctype html><title>{TITLE}</title><h1 id=title>{TITLE}</h1>")

    class Events(web.RequestHandler):
        async def get(self) -> None:
            n = int(self.get_query_argument("n", "3"))
            name = self.get_query_argument("gate", "")
            self.set_header("Content-Type", "text/event-stream")
            self.set_header("Cache-Control", "no-cache")
            for i in range(n):
                if i == 1 and name:
                    await gate(name).wait()
                    gates.pop(name, None)
                self.write(f"id: {i}\nevent: tick\ndata: event {i}\n\n")
                await self.flush()
            self.finish()

    class Release(web.RequestHandler):
        def post(self, name: str) -> None:
            gate(name).set()
            self.set_status(204)
            self.finish()

    class Download(web.RequestHandler):
        async def get(self) -> None:
            size = int(self.get_query_argument("size", "0"))
            self.set_header("Content-Type", "application/octet-stream")
            if self.get_query_argument("chunked", "") not in ("1", "true"):
                self.set_header("Content-Length", str(size))
            for block in iter_body(size):
                self.write(block)
                await self.flush()
            self.finish()

    @web.stream_request_body
    class Upload(web.RequestHandler):
        def prepare(self) -> None:
            self.request.connection.set_max_body_size(1 << 40)  # type: ignore[union-attr]
            self.size = 0
            self.digest = hashlib.sha256()

        def data_received(self, chunk: bytes) -> None:
            self.size += len(chunk)
            self.digest.update(chunk)

        def answer(self) -> None:
            self.finish({"size": self.size, "sha256": self.digest.hexdigest()})

        post = put = answer

    class Echo(web.RequestHandler):
        SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

        def answer(self) -> None:
            self.set_header("Content-Type", "application/json")
            self.finish(
                json.dumps(
                    {
                        "method": self.request.method,
                        "path": self.request.path,
                        "query": self.request.query,
                        "headers": [[k, v] for k, v in self.request.headers.get_all()],
                        "body_size": len(self.request.body or b""),
                    }
                )
            )

        get = head = post = put = patch = delete = options = answer

    class Cookie(web.RequestHandler):
        def get(self) -> None:
            self.set_cookie(COOKIE, "s3ss10n", path="/", httponly=True)
            self.finish({"cookie": COOKIE})

    class Redirect(web.RequestHandler):
        def get(self) -> None:
            self.redirect("/echo?from=redirect", status=302)

    class Echoes(websocket.WebSocketHandler):
        def check_origin(self, origin: str) -> bool:
            return True  # an app on loopback; the forward decides who reaches it

        def select_subprotocol(self, subprotocols: list[str]) -> str | None:
            return "echo.v1" if "echo.v1" in subprotocols else None

        async def on_message(self, message: str | bytes) -> None:
            await self.write_message(message, binary=isinstance(message, bytes))

    return web.Application(
        [
            (r"/", Page),
            (r"/events", Events),
            (r"/release/([^/]+)", Release),
            (r"/download", Download),
            (r"/upload", Upload),
            (r"/echo", Echo),
            (r"/cookie", Cookie),
            (r"/redirect", Redirect),
            (r"/ws", Echoes),
            (r"/seen", Seen),
        ],
        websocket_max_message_size=MAX_MESSAGE,
        log_function=count,
    )


async def serve(port: int) -> None:
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    sockets = bind_sockets(port, "127.0.0.1")
    server = HTTPServer(make_app(), max_body_size=1 << 40, idle_connection_timeout=3600)
    server.add_sockets(sockets)
    print(READY + str(sockets[0].getsockname()[1]), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.forward_app")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))
    return 0


# ----- the app as a child process, for tests and benchmarks -----------------------------------


@dataclass
class ForwardApp:
    proc: subprocess.Popen[bytes]
    port: int
    out_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc, 5)


def start(workdir: Path, port: int = 0, timeout: float = 30.0) -> ForwardApp:
    """Run the app as its own process; return once it accepts connections."""
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = workdir / "forward_app.out"
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "testkit.forward_app", f"--port={port}"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out_path.read_text(errors="replace")
        if READY in text:
            found = int(text.split(READY, 1)[1].split()[0])
            return ForwardApp(proc, found, out_path)
        if proc.poll() is not None:
            raise RuntimeError(f"forward_app exited {proc.returncode}:\n{text[-2000:]}")
        time.sleep(0.02)
    with contextlib.suppress(Exception):
        proc.kill()
    raise RuntimeError(f"forward_app did not start in {timeout}s")


if __name__ == "__main__":
    sys.exit(main())
