"""The local side's one way to make a request (issue 22, item 4), against a real tornado server
that says which TCP connection each request came on: `ColabClient` and the relay's start check
keep their connection (one round trip a request, not a TCP and a TLS handshake each), a client
follows whichever loop runs it, and the blocking request (`ColabClientSync`, `launch()`'s
`get_json`) never follows a redirect with the token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from jupyter_colab_tunnel.http1 import KeepAliveClient
from jupyter_colab_tunnel.launcher.server import get_json
from jupyter_colab_tunnel.local.check import check_remote
from jupyter_colab_tunnel.local.client import ColabClient, ColabClientSync, RemoteError

TOKEN = "s3cret-t0ken"


class Seen:
    """What the server saw: the client port of each request, its Authorization header."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.auth: list[str | None] = []


def app(seen: Seen) -> web.Application:
    class Status(web.RequestHandler):
        def get(self) -> None:
            stream = self.request.connection.stream  # type: ignore[union-attr]
            seen.ports.append(stream.socket.getpeername()[1])
            seen.auth.append(self.request.headers.get("Authorization"))
            self.finish({"ok": True})

    class Missing(web.RequestHandler):
        def get(self) -> None:
            stream = self.request.connection.stream  # type: ignore[union-attr]
            seen.ports.append(stream.socket.getpeername()[1])
            self.set_status(404)
            self.finish({"message": "no such route"})

    class Moved(web.RequestHandler):
        def get(self) -> None:
            self.redirect("/elsewhere/colab/status")

    return web.Application(
        [
            (r"/colab/status", Status),
            (r"/plain/api/kernelspecs", Status),
            (r"/elsewhere/colab/status", Status),
            (r"/moved/.*", Moved),
            (r"/.*", Missing),
        ]
    )


@pytest.fixture
def server(io_loop: Any) -> Iterator[tuple[str, Seen]]:
    """On the loop the tests run on (pytest-jupyter's)."""
    seen = Seen()
    sockets = bind_sockets(0, "127.0.0.1")
    http = HTTPServer(app(seen))
    http.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}", seen
    http.stop()
    io_loop.run_sync(http.close_all_connections)


async def test_the_client_keeps_its_connection(server: tuple[str, Seen]) -> None:
    url, seen = server
    client = ColabClient(url, TOKEN)
    for _ in range(3):
        assert await client.status() == {"ok": True}
    assert len(seen.ports) == 3
    assert len(set(seen.ports)) == 1, seen.ports  # one connection for the three
    assert seen.auth == [f"token {TOKEN}"] * 3
    await client.aclose()
    await client.status()
    assert seen.ports[-1] != seen.ports[0]  # closed: a new connection


async def test_a_client_follows_whichever_loop_runs_it(server: tuple[str, Seen]) -> None:
    """One client, asked from two event loops in turn (as a notebook's asyncio.run does):
    each loop gets connections of its own, and both answer."""
    url, seen = server
    client = ColabClient(url, TOKEN)
    before = len(seen.ports)

    def in_a_new_loop() -> Any:
        return asyncio.run(client.status())

    # The server runs on this test's loop: the client's loops run in a thread meanwhile.
    assert [await asyncio.to_thread(in_a_new_loop) for _ in range(2)] == [{"ok": True}] * 2
    assert len(seen.ports) == before + 2


async def test_the_start_check_asks_twice_on_one_connection(server: tuple[str, Seen]) -> None:
    """A plain Jupyter server (no /colab/*): the check asks /colab/status, then
    /api/kernelspecs, on the connection it already has."""
    url, seen = server
    client = KeepAliveClient()
    try:
        result = await check_remote(client, f"{url}/plain", {"Authorization": f"token {TOKEN}"})
    finally:
        client.close()
    assert (result.ok, result.kind) == (True, "gateway_only")
    assert len(seen.ports) == 2
    assert len(set(seen.ports)) == 1, seen.ports


async def test_the_blocking_request_never_follows_a_redirect(server: tuple[str, Seen]) -> None:
    """The token goes only where it was sent: a redirect is an answer, not a new request."""
    url, seen = server
    status, body = await asyncio.to_thread(get_json, f"{url}/moved/x", TOKEN, 10)
    assert status == 302
    assert body is None  # tornado's redirect has no JSON
    with pytest.raises(RemoteError) as e:
        await asyncio.to_thread(ColabClientSync(f"{url}/moved/", TOKEN).status)
    assert (e.value.kind, e.value.status) == ("redirected", 302)
    assert TOKEN not in str(e.value)
    assert seen.auth == []  # nothing reached the redirect's target
    assert json.dumps(e.value.as_dict()).count(TOKEN) == 0
