"""A forwarded port's answers when the remote route, or Cloudflare's edge in front of it, says no.

A real relay with one --forward (in-process, on loopback ports) in front of a stand-in that
answers as the edge (530 / error 1033, its 502 page) or as the route and the app behind it do
(their own 5xx, a refused websocket with a problem body, a 403 without the token): the edge's
answers become the relay's Error bodies (a bodiless GET tried again meanwhile, a POST never),
the remote's own pass through unchanged, and the hop carries the remote token and the
enveloped request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from relay_env import check_relay_body
from tornado import web, websocket
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from jupyter_colab_tunnel.local.relay import Relay, RelaySettings
from jupyter_colab_tunnel.local.relay.forward import ForwardSpec
from jupyter_colab_tunnel.local.upstream import UpstreamTracker

LOG = logging.getLogger("test-relay-forward")
REMOTE = "remote-token-forward-77"
BIG = b"x" * (100 * 1024)
PROBLEM = {
    "message": "nothing listens on port 7000. Hint: listening: 6006 tensorboard",
    "reason": "port_not_listening",
    "error": {"kind": "port_not_listening", "message": "m", "hint": "6006 tensorboard"},
}


class Upstream(web.RequestHandler):
    """The edge and the route, by the app path's last segment."""

    SUPPORTED_METHODS = ("GET", "POST")

    def get(self, what: str) -> None:
        seen: list[dict[str, Any]] = self.settings["seen"]
        seen.append(
            {
                "method": self.request.method,
                "uri": self.request.uri,
                "headers": dict(self.request.headers.get_all()),
            }
        )
        if self.request.headers.get("Authorization") != f"token {REMOTE}":
            self.set_status(403)
            self.finish({"message": "route: no token"})
        elif what == "edge530":
            self.set_status(530)
            self.finish("error code: 1033")
        elif what == "edge502":
            self.set_status(502)
            self.finish("error code: 502")
        elif what == "app502":
            self.set_status(502)
            self.finish({"app": "its own bad gateway"})
        elif what == "big503":
            self.set_status(503)
            self.finish(BIG)
        elif what == "ws-refused":
            self.set_status(502)
            self.finish(PROBLEM)
        else:
            self.finish({"ok": True})

    post = get


class Stream(web.RequestHandler):
    """An event stream that sends one event, then nothing: only its client's leaving ends it."""

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.write("data: one\n\n")
        await self.flush()
        await self.settings["left"].wait()

    def on_connection_close(self) -> None:
        self.settings["left"].set()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def forward_to(upstream: str, token: str = REMOTE) -> AsyncIterator[str]:
    """A relay whose remote is `upstream`, with --forward <free>:7000; yields the forward's
    base URL."""
    tracker = UpstreamTracker(LOG)
    tracker.set_url(upstream)
    settings = RelaySettings(
        local_token="local",
        remote_token=lambda: token,
        extra_headers={"CF-Access-Client-Id": "access-id"},
        http_wait=0.3,
    )
    relay = Relay(settings, tracker, LOG)
    relay.listen(0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = int(s.getsockname()[1])
    relay.add_forward(ForwardSpec(local, 7000))
    try:
        yield f"http://127.0.0.1:{local}"
    finally:
        await relay.close()


@contextlib.asynccontextmanager
async def stand_in() -> AsyncIterator[tuple[str, list[dict[str, Any]], asyncio.Event]]:
    """The stand-in's URL, the requests it saw, and an event set when a Stream's client left."""
    seen: list[dict[str, Any]] = []
    left = asyncio.Event()
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(
        web.Application(
            [(r"/colab/forward/7000/stream", Stream), (r"/colab/forward/7000/(.*)", Upstream)],
            seen=seen,
            left=left,
        )
    )
    server.add_sockets(sockets)
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}", seen, left
    finally:
        server.stop()


async def fetch(url: str, **kw: Any) -> HTTPResponse:
    client = AsyncHTTPClient(force_instance=True)
    try:
        return await client.fetch(HTTPRequest(url, **kw), raise_error=False)
    finally:
        client.close()


async def test_the_hop_carries_the_token_the_envelope_and_no_query() -> None:
    async with stand_in() as (remote, seen, _), forward_to(remote) as base:
        r = await fetch(
            f"{base}/ok?token=apps&q=1", headers={"Authorization": "Bearer app", "Cookie": "a=b"}
        )
        assert r.code == 200
        hop = seen[-1]
        assert hop["uri"] == "/colab/forward/7000/ok"  # the query travels enveloped
        h = hop["headers"]
        assert h["Authorization"] == f"token {REMOTE}"
        assert h["Cf-Access-Client-Id"] == "access-id"
        assert h["X-Colab-Forward-Query"] == "token=apps&q=1"
        assert h["X-Colab-Forward-Authorization"] == "Bearer app"
        assert h["X-Colab-Forward-Cookie"] == "a=b"
        assert h["X-Colab-Forward-Host"] == base.removeprefix("http://")
        assert "Cookie" not in h


async def test_the_edges_answers_become_the_relays_errors() -> None:
    async with stand_in() as (remote, seen, _), forward_to(remote) as base:
        r = await fetch(f"{base}/edge530")
        assert r.code == 502
        body = json.loads(r.body)
        check_relay_body("Error", body)
        assert body["reason"] == "no_tunnel"
        assert len(seen) > 1  # a bodiless GET is tried again within http_wait
        seen.clear()
        r = await fetch(f"{base}/edge502", method="POST", body=b"once")
        assert r.code == 502
        assert json.loads(r.body)["reason"] == "bad_gateway"
        assert len(seen) == 1  # a POST is never sent twice


async def test_the_remotes_own_answers_pass_unchanged() -> None:
    async with stand_in() as (remote, _, _), forward_to(remote) as base:
        r = await fetch(f"{base}/app502")
        assert r.code == 502
        assert json.loads(r.body) == {"app": "its own bad gateway"}
        r = await fetch(f"{base}/big503")
        assert r.code == 503
        assert r.body == BIG  # too large for an edge page: streamed on unread
    async with stand_in() as (remote, _, _), forward_to(remote, token="wrong") as base:
        r = await fetch(f"{base}/x")
        assert r.code == 403
        assert json.loads(r.body) == {"message": "route: no token"}


async def test_a_refused_websocket_answers_the_routes_problem() -> None:
    async with stand_in() as (remote, _, _), forward_to(remote) as base:
        with pytest.raises(HTTPClientError) as refused:
            await websocket.websocket_connect(f"ws{base.removeprefix('http')}/ws-refused")
        assert refused.value.code == 502
        assert refused.value.response is not None
        assert json.loads(refused.value.response.body) == PROBLEM


async def test_nothing_at_the_remote_is_a_connection_error(closed_port: int) -> None:
    async with forward_to(f"http://127.0.0.1:{closed_port}") as base:
        r = await fetch(f"{base}/x")
        assert r.code == 502
        body = json.loads(r.body)
        check_relay_body("Error", body)
        assert body["reason"] == "connection_refused"
        with pytest.raises(HTTPClientError) as refused:
            await websocket.websocket_connect(f"ws{base.removeprefix('http')}/ws")
        assert refused.value.code == 502


async def test_a_client_leaving_an_idle_stream_ends_the_exchange_upstream() -> None:
    """The upstream of an event stream that has gone quiet is let go as soon as the local
    client leaves, not when the app next writes (which may be never)."""
    async with stand_in() as (remote, _, left), forward_to(remote) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        got = b""
        while b"data: one" not in got:
            got += await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
        await asyncio.wait_for(left.wait(), 10)


async def test_a_websocket_is_refused_like_http_before_any_dial() -> None:
    async with stand_in() as (remote, seen, _), forward_to(remote) as base:
        ws_base = f"ws{base.removeprefix('http')}"
        for url, headers, status, reason in (
            (f"{ws_base}/ws", {"Host": "evil.example"}, 403, "host_not_allowed"),
            (f"{ws_base}/a/%2e%2e/ws", {}, 400, "forward_path_refused"),
        ):
            with pytest.raises(HTTPClientError) as refused:
                await websocket.websocket_connect(HTTPRequest(url, headers=headers))
            assert refused.value.code == status
            assert refused.value.response is not None
            body = json.loads(refused.value.response.body)
            check_relay_body("Error", body)
            assert body["reason"] == reason
        assert seen == []  # nothing was dialled
