"""The streamed exchange of http1.KeepAliveClient against a real tornado server: the answer is
handed on while it is produced, a body is sent while it is produced, connections are kept."""

from __future__ import annotations

import asyncio
import hashlib

from tornado import httputil, web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from jupyter_colab_tunnel.forwarding import envelop, escapes, route_path, unwrap
from jupyter_colab_tunnel.http1 import KeepAliveClient, UpstreamError


class _Sink:
    def __init__(self) -> None:
        self.code = 0
        self.headers = httputil.HTTPHeaders()
        self.chunks: list[bytes] = []
        self.first = asyncio.Event()

    async def response_started(self, code: int, reason: str, headers: httputil.HTTPHeaders) -> None:
        self.code, self.headers = code, headers

    async def response_data(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.first.set()


async def _serve(app: web.Application) -> tuple[HTTPServer, int]:
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    return server, int(sockets[0].getsockname()[1])


def test_answer_is_handed_on_as_it_is_produced() -> None:
    release = asyncio.Event()

    class Events(web.RequestHandler):
        async def get(self) -> None:
            self.set_header("Content-Type", "text/event-stream")
            self.write("data: first\n\n")
            await self.flush()
            await release.wait()  # the rest only once the client has the first event
            self.write("data: second\n\n")

    async def scenario() -> list[bytes]:
        server, port = await _serve(web.Application([(r"/", Events)]))
        client = KeepAliveClient()
        sink = _Sink()
        exchange = await client.open(f"http://127.0.0.1:{port}/", "GET", httputil.HTTPHeaders(), 5)
        reading = asyncio.ensure_future(exchange.respond(sink, 5))
        await asyncio.wait_for(sink.first.wait(), 10)
        assert not reading.done()
        release.set()
        await asyncio.wait_for(reading, 10)
        client.close()
        server.stop()
        return sink.chunks

    chunks = asyncio.run(scenario())
    assert b"".join(chunks) == b"data: first\n\ndata: second\n\n"


def test_body_is_sent_in_pieces_and_connection_kept() -> None:
    seen: list[int] = []

    @web.stream_request_body
    class Upload(web.RequestHandler):
        def prepare(self) -> None:
            self.digest = hashlib.sha256()

        def data_received(self, chunk: bytes) -> None:
            self.digest.update(chunk)

        def post(self) -> None:
            seen.append(id(self.request.connection.stream))  # type: ignore[attr-defined]
            self.finish(self.digest.hexdigest())

    pieces = [bytes([i]) * 100_000 for i in range(20)]

    async def scenario() -> tuple[list[str], int]:
        server, port = await _serve(web.Application([(r"/", Upload)]))
        client = KeepAliveClient()
        answers = []
        for length in (None, sum(map(len, pieces))):  # chunked, then with a Content-Length
            exchange = await client.open(
                f"http://127.0.0.1:{port}/", "POST", httputil.HTTPHeaders(), 5, length
            )
            for piece in pieces:
                await exchange.send(piece)
            sink = _Sink()
            await exchange.respond(sink, 5)
            assert sink.code == 200
            answers.append(b"".join(sink.chunks).decode())
        reused = len(set(seen))
        client.close()
        server.stop()
        return answers, reused

    answers, connections = asyncio.run(scenario())
    assert answers == [hashlib.sha256(b"".join(pieces)).hexdigest()] * 2
    assert connections == 1  # the second request went on the kept connection


def test_no_answer_in_time_is_an_upstream_error() -> None:
    class Slow(web.RequestHandler):
        async def get(self) -> None:
            await asyncio.sleep(30)

    async def scenario() -> str:
        server, port = await _serve(web.Application([(r"/", Slow)]))
        client = KeepAliveClient()
        exchange = await client.open(f"http://127.0.0.1:{port}/", "GET", httputil.HTTPHeaders(), 5)
        try:
            await exchange.respond(_Sink(), 0.2)
        except UpstreamError as e:
            return str(e)
        finally:
            client.close()
            server.stop()
        return "answered"

    assert "no answer in 0.2 s" in asyncio.run(scenario())


def test_refused_connection_is_unsent() -> None:
    async def scenario() -> UpstreamError:
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        sockets[0].close()  # nothing listens there now
        try:
            await KeepAliveClient().open(
                f"http://127.0.0.1:{port}/", "GET", httputil.HTTPHeaders(), 5
            )
        except UpstreamError as e:
            return e
        raise AssertionError("connected")

    error = asyncio.run(scenario())
    assert error.connecting


# ----- the envelope of a forwarded request ----------------------------------------------------


def test_envelope_carries_the_apps_headers_and_query_past_the_hop() -> None:
    local = httputil.HTTPHeaders(
        {
            "Host": "127.0.0.1:6006",
            "Origin": "http://127.0.0.1:6006",
            "Authorization": "Bearer sk-app",
            "Cookie": "session=abc",
            "Accept": "text/html",
            "X-Colab-Forward-Host": "evil.example",  # only the relay writes these
        }
    )
    sent = envelop(local, "token=app&x=1")
    assert "Authorization" not in sent
    assert "Host" not in sent
    assert "Cookie" not in sent
    sent["Authorization"] = "token jupyter-secret"  # the hop's own, added by the relay
    sent["Host"] = "abc.trycloudflare.com"
    sent["Cookie"] = "username-x=jupyter"
    app, query = unwrap(sent, "", "127.0.0.1:6006")
    assert app["Authorization"] == "Bearer sk-app"
    assert app["Host"] == "127.0.0.1:6006"
    assert app["Origin"] == "http://127.0.0.1:6006"
    assert app["Cookie"] == "session=abc"
    assert app["Accept"] == "text/html"
    assert app.get_list("Host") == ["127.0.0.1:6006"]
    assert query == "token=app&x=1"
    assert "jupyter-secret" not in str(list(app.get_all()))


def test_the_hops_own_headers_never_reach_the_app() -> None:
    sent = envelop(httputil.HTTPHeaders({"X-Api-Key": "the apps"}), "")
    sent["X-Proxy-Auth"] = "relay's --headers-file secret"
    sent["X-Colab-Forward-Hop"] = "X-Proxy-Auth"
    app, _ = unwrap(sent, "", "127.0.0.1:6006")
    assert "X-Proxy-Auth" not in app
    assert "X-Colab-Forward-Hop" not in app
    assert app["X-Api-Key"] == "the apps"


def test_route_used_directly_keeps_jupyters_token_from_the_app() -> None:
    hop = httputil.HTTPHeaders({"Authorization": "token jupyter-secret", "Host": "x.example"})
    app, query = unwrap(hop, "token=jupyter-secret&step=3", "127.0.0.1:6006")
    assert query == "step=3"
    assert "Authorization" not in app
    assert app["Host"] == "127.0.0.1:6006"


def test_paths_that_leave_the_route_are_found() -> None:
    for bad in (
        "/../api/kernels",
        "/a/..",
        "/%2e%2e/api",
        "/%252e%252e/x",
        "/a\\b",
        "/a%5cb",
        "/.",
    ):
        assert escapes(bad), bad
    for good in ("/", "/data/plugin/scalars/tags", "/file=a%2Fb", "/v1/chat/completions", "/a..b"):
        assert not escapes(good), good
    assert route_path(6006, "/x") == "/colab/forward/6006/x"
