"""`connect --forward`: the remote's ports at 127.0.0.1, through the relay (issue 19, local side).

A real relay process with --forward, behind it the real cloudflared stand-in, and behind that a
stand-in of the remote's port route in front of a small app (tests/forward_env.py): every method
and its body, a chunked upload, server-sent events as they come, websockets (text, binary,
16 MiB, subprotocol, close codes), the refusals (Host, escaping path), the app's own 5xx, the
counters of /relay/status, a taken local port, no tunnel URL (503), and a URL switch.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from e2e_kit import http
from forward_env import REMOTE_TOKEN, Stack, mib, start_stack, start_tunnel
from relay_env import check_relay_body, relay_command
from tornado import websocket
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from jupyter_colab_tunnel.cli import build_parser
from jupyter_colab_tunnel.local import connect_cli as cli
from jupyter_colab_tunnel.local.relay.forward import ForwardSpec, ForwardSpecError, parse_forwards

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory.mktemp("forward"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    s = start_stack(tmp_path)
    try:
        yield s
    finally:
        s.stop()


async def fetch(request: HTTPRequest | str, **kw: Any) -> HTTPResponse:
    """One request with a client of its own (on the test's loop); errors are answers."""
    client = AsyncHTTPClient(force_instance=True, max_body_size=1 << 30)
    try:
        return await client.fetch(request, raise_error=False, **kw)
    finally:
        client.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def ws(stack: Stack, path: str = "/ws", **kw: Any) -> websocket.WebSocketClientConnection:
    return await websocket.websocket_connect(
        f"ws://127.0.0.1:{stack.local}{path}", max_message_size=1 << 30, **kw
    )


# ----- the flag -------------------------------------------------------------------------------


def test_forward_values_are_parsed_and_checked() -> None:
    assert ForwardSpec.parse("6006") == ForwardSpec(6006, 6006)
    assert ForwardSpec.parse("16006:6006") == ForwardSpec(16006, 6006)
    for bad in ("", "abc", "0", "70000", "1:0", "65536:1", "1:2:3", "-1"):
        with pytest.raises(ForwardSpecError, match="--forward"):
            ForwardSpec.parse(bad)
    with pytest.raises(ForwardSpecError, match="given twice"):
        parse_forwards(["6006", "6006:7860"], 8765)
    with pytest.raises(ForwardSpecError, match="relay's own"):
        parse_forwards(["8765:6006"], 8765)
    assert parse_forwards(["6006", "7861:7860"], 8765) == [
        ForwardSpec(6006, 6006),
        ForwardSpec(7861, 7860),
    ]


@pytest.mark.parametrize(
    ("values", "said"),
    [(["0"], "between 1 and 65535"), (["7000", "7000"], "given twice"), (["x"], "[LOCAL:]REMOTE")],
)
def test_a_bad_forward_is_a_usage_error(
    values: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["connect", "--url", "http://127.0.0.1:9", *(f"--forward={v}" for v in values)]
    assert cli.run_connect(build_parser().parse_args(argv)) == 2
    err = capsys.readouterr().err
    assert said in err
    assert "--forward" in err


def test_a_taken_local_port_fails_at_start_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        relay_port = port + 1 if port < 65535 else port - 1
        proc = subprocess.run(
            relay_command(
                [
                    "--url=http://127.0.0.1:9",
                    f"--port={relay_port}",
                    f"--local-token-file={tmp_path / 'token'}",
                    f"--forward={port}:6006",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(tmp_path)},
        )
    assert proc.returncode == 2, proc
    assert f"127.0.0.1:{port}" in proc.stderr
    assert "choose another LOCAL port" in proc.stderr
    assert "listening on" not in proc.stdout  # it never served
    with socket.socket() as probe:  # nothing left listening on the relay's own port either
        assert probe.connect_ex(("127.0.0.1", relay_port)) != 0


# ----- HTTP -----------------------------------------------------------------------------------


async def test_every_method_and_its_body_reach_the_app_as_sent(stack: Stack) -> None:
    assert f"Forwarding http://127.0.0.1:{stack.local}/ -> remote port" in stack.relay.output()
    body = os.urandom(300_000)
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"):
        sent = body if method in ("POST", "PUT", "PATCH", "DELETE", "PROPFIND") else None
        r = await fetch(
            HTTPRequest(
                f"{stack.base}/a/b%20c/?q=1&token=app-own&x=%2F",
                method=method,
                body=sent,
                allow_nonstandard_methods=True,
                headers={
                    "Cookie": "app=cookie",
                    "Authorization": "Bearer sk-app",
                    "Origin": f"{stack.base}",
                },
            )
        )
        assert r.code == 200, (method, r.code, r.body[:300])
        seen = json.loads(r.body)
        assert seen["method"] == method
        assert seen["path"] == "/a/b%20c/"
        assert seen["query"] == "q=1&token=app-own&x=%2F"  # the app's own token= kept
        assert seen["host"] == f"127.0.0.1:{stack.local}"
        assert seen["authorization"] == "Bearer sk-app"  # the app's, never the Jupyter token
        assert seen["cookie"] == "app=cookie"
        assert seen["origin"] == stack.base
        assert seen["enveloped"] == []
        assert seen["size"] == (len(sent) if sent else 0)
        assert seen["sha256"] == sha(sent or b"")
        assert r.headers.get_list("Set-Cookie") == ["app_session=1; Path=/"]
        assert REMOTE_TOKEN.encode() not in r.body
    head = await fetch(f"{stack.base}/a", method="HEAD")
    assert head.code == 200
    assert head.body == b""
    assert int(head.headers["Content-Length"]) > 0


async def test_a_chunked_upload_streams_through(stack: Stack) -> None:
    pieces = [os.urandom(64 * 1024) for _ in range(64)]

    async def produce(write: Any) -> None:
        for piece in pieces:
            await write(piece)

    r = await fetch(HTTPRequest(f"{stack.base}/upload", method="POST", body_producer=produce))
    assert r.code == 200, r.body
    seen = json.loads(r.body)
    assert seen["size"] == 64 * 64 * 1024
    assert seen["sha256"] == sha(b"".join(pieces))


def test_a_chunked_body_on_another_method_is_refused_411(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", stack.local), timeout=20) as sock:
        sock.sendall(
            f"DELETE /x HTTP/1.1\r\nHost: 127.0.0.1:{stack.local}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411"), answer
    problem = json.loads(body)
    check_relay_body("Error", problem)
    assert "Content-Length" in problem["error"]["hint"]


async def test_server_sent_events_arrive_as_produced(stack: Stack) -> None:
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    answer = asyncio.ensure_future(
        fetch(HTTPRequest(f"{stack.base}/events?gate=sse", streaming_callback=chunks.put_nowait))
    )
    first = await asyncio.wait_for(chunks.get(), 20)
    assert b"data: first" in first
    assert not answer.done()  # the app has not sent the second event: the stream is open
    status = stack.forward_status()
    assert status["open_connections"] >= 1, status
    check_relay_body("RelayStatus", stack.relay.status())
    stack.app.release_events("sse")
    r = await asyncio.wait_for(answer, 20)
    assert r.code == 200
    assert r.headers["Content-Type"] == "text/event-stream"
    rest = b""
    while not chunks.empty():
        rest += chunks.get_nowait()
    assert b"data: second" in rest


class PeakRss:
    """The largest resident size of a process while a transfer runs (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.base = self.peak = self.proc.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(5)

    @property
    def growth(self) -> int:
        return self.peak - self.base


async def test_a_large_download_and_upload_pass_with_bounded_relay_memory(stack: Stack) -> None:
    count = 128
    digest = hashlib.sha256()
    with PeakRss(stack.relay.proc.pid) as rss:
        r = await fetch(
            HTTPRequest(
                f"{stack.base}/download?mib={count}",
                streaming_callback=digest.update,
                request_timeout=300,
            )
        )
    assert r.code == 200
    expected = hashlib.sha256(b"".join(mib(i) for i in range(count))).hexdigest()
    assert digest.hexdigest() == expected
    assert rss.growth < 64 << 20, f"the relay grew {rss.growth >> 20} MiB on a download"

    async def produce(write: Any) -> None:
        for i in range(count):
            await write(mib(i))

    with PeakRss(stack.relay.proc.pid) as rss:
        r = await fetch(
            HTTPRequest(
                f"{stack.base}/upload",
                method="PUT",
                body_producer=produce,
                headers={"Content-Length": str(count << 20)},
                request_timeout=300,
            )
        )
    assert r.code == 200, r.body
    assert json.loads(r.body)["sha256"] == expected
    assert rss.growth < 64 << 20, f"the relay grew {rss.growth >> 20} MiB on an upload"


async def test_the_apps_own_5xx_passes_unchanged(stack: Stack) -> None:
    r = await fetch(f"{stack.base}/own503")
    assert r.code == 503
    assert json.loads(r.body) == {"app": "warming up"}


def test_a_foreign_host_and_an_escaping_path_are_refused(stack: Stack) -> None:
    before = len(stack.app.hosts)
    r = http("GET", f"{stack.base}/", headers={"Host": "evil.example"})
    assert r.status == 403, r.body
    assert r.json()["reason"] == "host_not_allowed"
    check_relay_body("Error", r.json())
    for host in ("localhost", f"localhost:{stack.local}", "[::1]", f"127.0.0.1:{stack.local}"):
        assert http("GET", f"{stack.base}/ok", headers={"Host": host}).status == 200, host
    for path in ("/a/../../api/contents", "/a/%2e%2e/%2e%2e/api", "/a/%252e%252e/x", "/a\\..\\b"):
        r = http("GET", f"{stack.base}{path}")
        assert r.status == 400, (path, r.body)
        assert r.json()["reason"] == "forward_path_refused"
        check_relay_body("Error", r.json())
    assert len(stack.app.hosts) == before + 4  # only the four allowed requests were routed
    assert stack.forward_status()["errors"] >= 5


# ----- websockets -----------------------------------------------------------------------------


async def test_websockets_carry_text_binary_16mib_and_close_codes(stack: Stack) -> None:
    conn = await ws(stack, "/ws?room=1", subprotocols=["v1.other", "v2.echo"])
    assert conn.selected_subprotocol == "v2.echo"
    await conn.write_message("hello")
    assert await conn.read_message() == "hello"
    await conn.write_message(b"\x00\x01binary", binary=True)
    assert await conn.read_message() == b"\x00\x01binary"
    big = os.urandom(16 * 1024 * 1024)
    await conn.write_message(big, binary=True)
    back = await asyncio.wait_for(conn.read_message(), 60)
    assert isinstance(back, bytes)
    assert sha(back) == sha(big)
    status = stack.forward_status()
    assert status["websockets_open"] == 1, status
    assert status["open_connections"] >= 1
    assert status["bytes_in"] >= len(big)
    assert status["bytes_out"] >= len(big)
    await conn.write_message("close-4001")
    assert await conn.read_message() is None
    assert conn.close_code == 4001
    assert conn.close_reason == "asked to"
    stack.relay.wait_status(lambda s: s["forwards"][0]["websockets_open"] == 0)


# ----- the tunnel's URL -----------------------------------------------------------------------


async def test_no_tunnel_url_answers_503_for_http_and_websockets(own_stack: Stack) -> None:
    own_stack.point_at(None, "stopped")
    own_stack.relay.wait_status(lambda s: s["upstream"] is None)
    r = await fetch(f"{own_stack.base}/x")
    assert r.code == 503, r.body
    body = json.loads(r.body)
    assert body["reason"] == "no_upstream"
    check_relay_body("Error", body)
    with pytest.raises(HTTPClientError) as refused:  # an HTTP answer, not a broken handshake
        await ws(own_stack)
    assert refused.value.code == 503
    assert refused.value.response is not None
    assert json.loads(refused.value.response.body)["reason"] == "no_upstream"
    status = own_stack.forward_status()
    assert status["errors"] >= 2, status
    assert status["open_connections"] == 0


async def test_a_url_switch_closes_forwarded_websockets_1012_and_moves_requests(
    own_stack: Stack,
) -> None:
    conn = await ws(own_stack)
    await conn.write_message("before")
    assert await conn.read_message() == "before"
    first = own_stack.tunnels[0]
    second = start_tunnel(own_stack.root, "tunnel1", own_stack.app.route_port)
    own_stack.tunnels.append(second)
    own_stack.point_at(second.url)
    assert await asyncio.wait_for(conn.read_message(), 20) is None
    assert conn.close_code == 1012, (conn.close_code, conn.close_reason)
    first.stop()  # nothing can reach the app through the old URL any more
    r = await fetch(f"{own_stack.base}/after")
    assert r.code == 200, r.body
    new_host = re.sub(r"^https://", "", second.url)
    assert own_stack.app.hosts[-1] == new_host
    again = await ws(own_stack)  # the app's page reconnects, to the new URL
    await again.write_message("after")
    assert await again.read_message() == "after"
    status = own_stack.forward_status()
    assert status["websockets_closed_on_switch"] == 1
    assert status["websockets_open"] == 1
    # Stopping the relay closes the forwarded websocket (1012) and the forward's listener.
    own_stack.relay.stop()
    assert await asyncio.wait_for(again.read_message(), 20) is None
    assert again.close_code == 1012
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", own_stack.local)) != 0


def test_a_client_that_leaves_mid_stream_frees_its_connection(stack: Stack) -> None:
    """A browser tab closed on an event stream: the forward lets go of it (and of the
    exchange upstream) at once, without an error in the log."""
    with socket.create_connection(("127.0.0.1", stack.local), timeout=20) as sock:
        sock.sendall(
            f"GET /events?gate=left HTTP/1.1\r\nHost: 127.0.0.1:{stack.local}\r\n\r\n".encode()
        )
        got = b""
        while b"data: first" not in got:
            got += sock.recv(65536)
        stack.relay.wait_status(lambda s: s["forwards"][0]["open_connections"] == 1)
    stack.relay.wait_status(lambda s: s["forwards"][0]["open_connections"] == 0)
    stack.app.release_events("left")
    log = stack.relay.log()
    assert "Traceback" not in log
    assert "Uncaught" not in log
