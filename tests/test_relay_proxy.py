"""The relay's HTTP proxy with real sockets: exactly-once delivery, the forwarded paths, bounds
on unauthenticated and slow clients, and CORS for --allow-origin pages.

The relay runs in-process on its own event loop thread (so the test talks to it with plain
blocking clients and raw sockets); the remote is a counting tornado server in the same loop, a
real `jupyter server` behind a cuttable TCP forwarder, or both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psutil
import pytest
from e2e_kit import http
from relay_env import check_relay_body, start_relay
from server_process import Response, ServerProcess
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from jupyter_colab_tunnel.local.relay import Relay, RelaySettings, proxy
from jupyter_colab_tunnel.local.upstream import UpstreamTracker

LOG = logging.getLogger("test-relay-proxy")
LOCAL = "local-secret"
REMOTE = "remote-secret-token-0123456789"
T = TypeVar("T")


# ----- a relay on its own loop ----------------------------------------------------------------


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapped() -> T:
            return fn()

        return self.run(wrapped())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Counting:
    """The remote: counts what arrives; `plan` says how the next requests are answered."""

    posts: list[str] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)
    options: int = 0
    plan: list[str] = field(default_factory=list)  # "drop", "edge502", "no_tunnel"; then "ok"
    streams: list[Any] = field(default_factory=list)
    server: HTTPServer | None = None
    port: int = 0

    def answer(
        self, handler: web.RequestHandler, arrived: Callable[[], None], ok: Callable[[], None]
    ) -> None:
        self.streams.append(handler.request.connection.stream)  # type: ignore[union-attr]
        how = self.plan.pop(0) if self.plan else "ok"
        if how != "no_tunnel":  # Cloudflare's 530/1033 comes from its edge, the remote saw none
            arrived()
        if how == "drop":  # processed, then the connection is lost before the answer
            handler.request.connection.stream.close()  # type: ignore[union-attr]
        elif how == "edge502":
            handler.set_status(502)
            handler.finish("error code: 502")
        elif how == "no_tunnel":
            handler.set_status(530)
            handler.finish("error code: 1033")
        else:
            ok()

    def cut(self) -> None:
        """Close every connection from the remote's side, as an idle timeout does."""
        for stream in self.streams:
            stream.close()
        self.streams.clear()


class CountingHandler(web.RequestHandler):
    def initialize(self, remote: Counting) -> None:
        self.remote = remote

    def check_xsrf_cookie(self) -> None:
        pass

    def get(self, *args: str) -> None:
        self.remote.answer(
            self,
            lambda: self.remote.gets.append(self.request.path),
            lambda: self.finish({"kernels": []}),
        )

    def post(self, *args: str) -> None:
        self.remote.answer(
            self,
            lambda: self.remote.posts.append(self.request.body.decode()),
            lambda: (self.set_status(201), self.finish({"id": "k"})),
        )

    def options(self, *args: str) -> None:
        self.remote.options += 1
        self.finish()


def start_counting() -> Counting:
    remote = Counting()
    app = web.Application([(r"/.*", CountingHandler, {"remote": remote})])
    sockets = bind_sockets(0, "127.0.0.1")
    remote.server = HTTPServer(app)
    remote.server.add_sockets(sockets)
    remote.port = int(sockets[0].getsockname()[1])
    return remote


@dataclass
class Env:
    loop: LoopThread
    relay: Relay
    tracker: UpstreamTracker

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.relay.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = LOCAL,
    ) -> Response:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs.setdefault("Authorization", f"token {token}")
        return http(method, self.url + path, body=body, headers=hdrs, timeout=30)

    def point_at(self, url: str | None) -> None:
        self.loop.call(lambda: self.tracker.set_url(url))


@contextlib.contextmanager
def relay_env(remote_token: str = REMOTE, **settings: Any) -> Iterator[Env]:
    loop = LoopThread()

    def make() -> tuple[Relay, UpstreamTracker]:
        tracker = UpstreamTracker(LOG)
        relay = Relay(
            RelaySettings(local_token=LOCAL, remote_token=lambda: remote_token, **settings),
            tracker,
            LOG,
        )
        relay.listen(0)
        return relay, tracker

    relay, tracker = loop.call(make)
    try:
        yield Env(loop, relay, tracker)
    finally:
        loop.run(relay.close())
        loop.stop()


@pytest.fixture
def counting() -> Iterator[tuple[Env, Counting]]:
    with relay_env(http_wait=5.0) as env:
        remote = env.loop.call(start_counting)
        env.point_at(f"http://127.0.0.1:{remote.port}")
        yield env, remote


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----- item 3: no request is sent twice -------------------------------------------------------


def test_a_post_lost_after_it_was_sent_is_never_sent_again(counting: tuple[Env, Counting]) -> None:
    env, remote = counting
    assert env.request("GET", "/api/kernels").status == 200  # a kept connection to reuse
    remote.plan = ["drop"]  # like `restart`: the tunnel carrying the answer goes away
    r = env.request("POST", "/colab/tunnel", body={"action": "restart"})
    assert r.status == 502, r.body
    body = r.json()
    check_relay_body("Error", body)
    assert body["reason"] == "upstream_lost_request"
    assert "may or may not have" in body["message"]
    assert "before retrying" in body["error"]["hint"]
    assert remote.posts == ['{"action": "restart"}']  # exactly once
    assert env.relay.status()["errors"] == 1


def test_every_post_arrives_once_across_stale_connections_switches_and_outages(
    counting: tuple[Env, Counting],
) -> None:
    env, remote = counting
    sent = 0
    for i in range(5):  # the remote closed the kept connection while it was idle
        assert env.request("GET", "/api/kernels").status == 200
        env.loop.call(remote.cut)
        r = env.request("POST", "/api/kernels", body={"n": i})
        sent += 1
        assert r.status == 201, r.body
    # Cloudflare's 502 from a broken origin connection: the request may have been processed.
    remote.plan = ["edge502"]
    r = env.request("POST", "/api/kernels", body={"n": "edge"})
    sent += 1
    assert (r.status, r.json()["reason"]) == (502, "bad_gateway")
    # Cloudflare's 530/1033: no tunnel behind the name, so it never arrived: sent again.
    remote.plan = ["no_tunnel"]
    r = env.request("POST", "/api/kernels", body={"n": "1033"})
    sent += 1
    assert r.status == 201, r.body
    # An outage, then a switch: held, then delivered once to the new upstream.
    other = env.loop.call(start_counting)
    for during in (None, f"http://127.0.0.1:{closed_port()}"):
        env.point_at(during)
        result: list[Response] = []
        thread = threading.Thread(
            target=lambda out=result: out.append(
                env.request("POST", "/api/kernels", body={"n": "out"})
            )
        )
        thread.start()
        deadline = time.monotonic() + 10
        while env.relay.stats.requests < sent + 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        env.point_at(f"http://127.0.0.1:{other.port}")
        thread.join(30)
        sent += 1
        assert result[0].status == 201, result[0].body
        env.point_at(f"http://127.0.0.1:{remote.port}")
    assert len(remote.posts) + len(other.posts) == sent
    assert len(set(remote.posts + other.posts)) == len(remote.posts + other.posts) - 1  # "out" x2
    assert other.posts == ['{"n": "out"}', '{"n": "out"}']


def test_an_idempotent_request_is_sent_again_after_a_lost_answer(
    counting: tuple[Env, Counting],
) -> None:
    env, remote = counting
    assert env.request("GET", "/api/kernels").status == 200
    remote.plan = ["drop"]
    r = env.request("GET", "/api/kernelspecs")
    assert r.status == 200, r.body
    assert remote.gets == ["/api/kernels", "/api/kernelspecs", "/api/kernelspecs"]


class Forwarder:
    """A TCP hop between the relay and a real server that can lose connections, as a tunnel
    does: cut() closes them all (idle ones go stale); lose_next_answer drops the next answer."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.lose_next_answer = False
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]
        saw_post = asyncio.Event()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if up and data.startswith(b"POST "):
                        saw_post.set()
                    if not up and saw_post.is_set() and self.lose_next_answer:
                        self.lose_next_answer = False
                        break  # processed by the server; its answer never arrives
                    dst.write(data)
                    await dst.drain()
            writer.close()
            up_writer.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    def cut(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()


def test_kernel_start_through_the_relay_never_starts_two_kernels(server_factory: Any) -> None:
    server: ServerProcess = server_factory()
    with relay_env(remote_token=server.token, http_wait=5.0) as env:
        fwd = Forwarder(server.port)
        env.loop.run(fwd.start())
        env.point_at(f"http://127.0.0.1:{fwd.port}")
        started = 0
        try:
            for _ in range(2):
                assert env.request("GET", "/api/kernels").status == 200
                env.loop.call(fwd.cut)  # the kept connection is stale now
                r = env.request("POST", "/api/kernels", body={"name": "python3"})
                assert r.status == 201, r.body
                started += 1
            assert env.request("GET", "/api/kernelspecs").status == 200
            fwd.lose_next_answer = True
            r = env.request("POST", "/api/kernels", body={"name": "python3"})
            assert (r.status, r.json()["reason"]) == (502, "upstream_lost_request")
            started += 1  # started once, its answer lost
            kernels = server.request("GET", "api/kernels").json()
            assert len(kernels) == started, kernels
        finally:
            for kernel in server.request("GET", "api/kernels").json():
                server.request("DELETE", f"api/kernels/{kernel['id']}")


# ----- item 4: the remote token stays remote --------------------------------------------------

PATHS = [
    "/",
    "/lab",
    "/lab/tree/x.ipynb",
    "/doc",
    "/tree",
    "/login",
    "/logout",
    "/no/such/page",
    "/api",
    "/api/status",
    "/api/contents",
    "/api/sessions",
    "/api/terminals",
    "/api/me",
    "/static/lab/index.html",
    "/files/x",
    "/api/kernels",
    "/api/kernels/nope",
    "/api/kernelspecs",
    "/api/kernelspecs/python3",
    "/kernelspecs/python3/logo-64x64.png",
    "/colab",
    "/colab/",
    "/colab/status",
    "/colab/tunnel",
    "/colab/dashboard.js",
    "/api/kernels/../../lab",
    "/api/kernels/%2e%2e/%2e%2e/lab",
    "/api/kernels%2f..%2f..%2flab",
    "/colab/..%2flab",
    "/x/api/kernels/k/channels",
    "/lab/api/kernels/k/channels",
]


def test_the_remote_token_never_comes_back(server_factory: Any) -> None:
    server: ServerProcess = server_factory()
    token = server.token
    with relay_env(remote_token=token) as env:
        env.point_at(server.url.rstrip("/"))
        seen: dict[str, int] = {}
        for path in PATHS:
            for method, query in (("GET", ""), ("GET", f"?token={LOCAL}"), ("POST", "")):
                r = env.request(method, path + query, body=b"{}" if method == "POST" else None)
                text = f"{r.status} {r.headers} {r.body!r}"
                assert token not in text, (method, path, text[:500])
                if method == "GET" and not query:
                    seen[path] = r.status
                    if path == "/api/kernels/nope":  # the remote's HTML 404, with its token
                        assert (r.status, r.json()["reason"]) == (502, "remote_token_withheld")
                    elif r.status == 404:
                        body = r.json()
                        check_relay_body("Error", body)
                        assert body["reason"] == "not_forwarded", (path, body)
                        assert "/api/kernels" in body["message"]
        # What the local side needs still goes through.
        assert seen["/api/kernels"] == 200
        assert seen["/api/kernelspecs"] == 200
        assert seen["/kernelspecs/python3/logo-64x64.png"] == 200
        assert seen["/colab/status"] == 200
        assert seen["/colab/"] == 200
        forwarded = {p for p, s in seen.items() if s != 404}
        assert forwarded == {
            "/api/kernels",
            "/api/kernels/nope",
            "/api/kernelspecs",
            "/api/kernelspecs/python3",
            "/kernelspecs/python3/logo-64x64.png",
            "/colab",
            "/colab/",
            "/colab/status",
            "/colab/tunnel",
            "/colab/dashboard.js",
        }, seen


# ----- item 5: bounded before authenticated ---------------------------------------------------


def read_answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def test_an_unauthenticated_body_is_never_read(counting: tuple[Env, Counting]) -> None:
    env, remote = counting
    with socket.create_connection(("127.0.0.1", env.relay.port)) as sock:
        # Headers only: a relay that read the body first would wait for 95 MB that never come.
        sock.sendall(
            b"POST /api/kernels HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 95000000\r\nContent-Type: application/json\r\n\r\n"
        )
        answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 403 "), answer
    with socket.create_connection(("127.0.0.1", env.relay.port)) as sock:
        sock.sendall(
            b"POST /api/kernels HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: token " + LOCAL.encode() + b"\r\n"
            b"Content-Length: 95000000\r\n\r\n"
        )
        answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert remote.posts == []


def test_a_body_just_over_the_cap_is_read_on_and_answered(counting: tuple[Env, Counting]) -> None:
    """The real cap, not a patched one: the server's own body limit must leave room for the
    bounded read-on, else tornado cuts the connection and the client never sees the 413."""
    env, remote = counting
    size = proxy.MAX_FORWARDED_BODY + 1024 * 1024
    with socket.create_connection(("127.0.0.1", env.relay.port)) as sock:
        sock.sendall(
            b"POST /api/kernels HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: token " + LOCAL.encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % size
        )
        piece = b"x" * (1024 * 1024)
        for _ in range(size // len(piece)):
            sock.sendall(piece)
        answer = read_answer(sock, timeout=60)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert remote.posts == []


def test_a_chunked_body_over_the_cap_is_refused(
    counting: tuple[Env, Counting], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, remote = counting
    monkeypatch.setattr(proxy, "MAX_FORWARDED_BODY", 100_000)
    r = env.request("POST", "/api/kernels", body=iter([b"x" * 60_000] * 3))  # type: ignore[arg-type]
    assert r.status == 413, r.body
    body = r.json()
    check_relay_body("Error", body)
    assert body["reason"] == "body_too_large"
    assert remote.posts == []
    assert env.request("POST", "/api/kernels", body=b"x" * 90_000).status == 201


def test_slow_and_idle_clients_are_cut_off() -> None:
    with relay_env(header_timeout=1.0) as env:
        idle: list[socket.socket] = []
        try:
            for _ in range(100):
                s = socket.create_connection(("127.0.0.1", env.relay.port))
                s.sendall(b"GET /relay/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                idle.append(s)
            stop = threading.Event()

            def trickle(sockets: list[socket.socket]) -> None:  # one header byte at a time
                while not stop.wait(0.1):
                    for s in sockets:
                        with contextlib.suppress(OSError):
                            s.send(b"X")

            trickler = threading.Thread(target=trickle, args=(idle[:10],))
            trickler.start()
            # The relay still answers meanwhile.
            assert env.request("GET", "/relay/status").status == 200
            start = time.monotonic()
            for s in idle:
                s.settimeout(max(0.1, start + 10 - time.monotonic()))
                try:
                    while s.recv(4096):
                        pass
                except TimeoutError:
                    pytest.fail("the relay kept a slow client's connection open")
                except OSError:
                    pass  # reset: closed too
            stop.set()
            trickler.join()
            assert time.monotonic() - start < 10
            assert env.request("GET", "/relay/status").status == 200
        finally:
            for s in idle:
                s.close()


def test_unauthenticated_large_posts_do_not_grow_the_relay(tmp_path: Any) -> None:
    relay = start_relay(tmp_path / "relay", ["--url", f"http://127.0.0.1:{closed_port()}"])
    try:
        proc = psutil.Process(relay.proc.pid)
        before = proc.memory_info().rss
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                with contextlib.suppress(psutil.Error):
                    peak[0] = max(peak[0], proc.memory_info().rss)

        def flood(answers: list[bytes]) -> None:
            chunk = b"x" * (1 << 20)
            with socket.create_connection(("127.0.0.1", relay.port)) as s:
                s.sendall(
                    b"POST /api/kernels HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Length: 95000000\r\n\r\n"
                )
                with contextlib.suppress(OSError):
                    for _ in range(90):
                        s.sendall(chunk)
                answers.append(read_answer(s))

        sampler = threading.Thread(target=sample)
        sampler.start()
        answers: list[bytes] = []
        floods = [threading.Thread(target=flood, args=(answers,)) for _ in range(4)]
        for t in floods:
            t.start()
        for t in floods:
            t.join(120)
        done.set()
        sampler.join()
        growth = peak[0] - before
        assert growth < 30 * 2**20, f"relay RSS grew by {growth / 2**20:.0f} MiB"
        assert relay.request("GET", "relay/status").status == 200
    finally:
        relay.stop()


# ----- item 9: a REST preflight from an --allow-origin page -----------------------------------


def test_allowed_origin_gets_a_preflight_and_cors_headers() -> None:
    origin = "https://x.example"
    with relay_env(allowed_origins=frozenset({origin}), http_wait=5.0) as env:
        remote = env.loop.call(start_counting)
        env.point_at(f"http://127.0.0.1:{remote.port}")
        ask = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        r = env.request("OPTIONS", "/api/kernels", headers=ask, token=None)
        assert r.status == 204, r.body
        assert r.headers["Access-Control-Allow-Origin"] == origin
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        assert "Content-Type" in r.headers["Access-Control-Allow-Headers"]
        assert "Origin" in r.headers["Vary"]
        assert remote.options == 0  # answered by the relay
        r = env.request("OPTIONS", "/relay/status", headers=ask, token=None)
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == origin
        r = env.request("GET", "/relay/status", headers={"Origin": origin})
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == origin
        r = env.request("POST", "/api/kernels", body={"n": 1}, headers={"Origin": origin})
        assert r.status == 201
        assert r.headers["Access-Control-Allow-Origin"] == origin
        r = env.request("GET", "/api/kernels", headers={"Origin": origin}, token=None)
        assert r.status == 403
        assert r.headers["Access-Control-Allow-Origin"] == origin
        for other in ("https://evil.example", "null"):
            r = env.request("OPTIONS", "/api/kernels", headers={**ask, "Origin": other}, token=None)
            assert (r.status, r.json()["reason"]) == (403, "origin_not_allowed")
            assert "Access-Control-Allow-Origin" not in r.headers
        assert remote.posts == ['{"n": 1}']


# ----- the remote's echo of a bad value -------------------------------------------------------


def test_the_remote_bounds_what_it_echoes(server_factory: Any) -> None:
    server: ServerProcess = server_factory()
    huge = json.dumps({"action": "y" * 200_000}).encode()
    r = server.request("POST", "colab/tunnel", body=huge)
    assert r.status == 413, r.body[:300]
    assert len(r.body) < 1000
    long = {"action": "z" * 20_000}
    r = server.request("POST", "colab/tunnel", body=long)
    assert r.status == 400
    message = r.json()["message"]
    assert "zzzz" in message
    assert len(message) < 300, message[:400]
    r = server.request("POST", "colab/tunnel", body={"action": "start", "w" * 5000: 1})
    assert r.status == 400
    assert len(r.body) < 600, r.body[:700]
    log = server.log()
    for letter in "yzw":
        assert letter * 200 not in log
    # Transfer-Encoding: chunked, no Content-Length: refused past the cap all the same.
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            b"POST /colab/tunnel HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: token " + server.token.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        piece = b"y" * 32768
        for _ in range(4):  # read on (discarded) past the cap: the answer, not a reset
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        s.sendall(b"0\r\n\r\n")
        assert read_answer(s).startswith(b"HTTP/1.1 413 ")


def test_forwarded_paths_are_one_allow_list() -> None:
    from jupyter_colab_tunnel.local.relay import rules

    yes = ["/api/kernels", "/api/kernels/k/restart", "/api/kernelspecs", "/colab/status"]
    no = [
        "/",
        "/lab",
        "/api/kernelsx",
        "/api/sessions",
        "/kernelspecs",
        "/colabx",
        "/api/kernels/../contents",
        "/api/kernels/%2E%2E/contents",
        "/colab//status",
        "/colab/%2fstatus",
        "/colab\\..\\lab",
    ]
    assert [p for p in yes if not rules.forwarded(p)] == []
    assert [p for p in no if rules.forwarded(p)] == []
    message = rules.not_forwarded_message("/lab" + "x" * 500)
    assert len(message) < 600
    assert "/api/kernelspecs/*" in message
