"""The forward route `/colab/forward/<port>/...` of a real `jupyter server`, to a real app."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openapi_check
import psutil
import pytest
from forward_echo_app import CHUNK, PATTERN, EchoApp, pattern_digest, running_echo_app
from server_process import ServerProcess, start_server
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_colab_tunnel import forwarding
from testkit.processes import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def app() -> Iterator[EchoApp]:
    with running_echo_app() as echo:
        yield echo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(
        tmp_path_factory.mktemp("forward"),
        args=["--ColabTunnelApp.tunnel_mode=off"],
        base_url="/base/",
    )
    yield started
    started.stop()
    # Every failure above was an answer: none escaped as an uncaught error (whose log line
    # would also quote the request's URI, token and all).
    assert "Traceback" not in started.log(), started.log()[-4000:]


def route(server: ServerProcess, port: int, rest: str) -> str:
    return f"{server.base_url}colab/forward/{port}{rest}"


def exchange(
    server: ServerProcess,
    method: str,
    target: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    token: bool = True,
    chunked: bool = False,
) -> tuple[int, dict[str, str], list[tuple[str, str]], bytes]:
    """One request with http.client (keeps the path exactly as written): status, headers,
    all header pairs, body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"token {server.token}"
    conn.request(method, target, body=body, headers=hdrs, encode_chunked=chunked)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), r.getheaders(), data


def open_get(
    server: ServerProcess, target: str
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """A GET with the token whose answer is read as the test goes (a stream, a cut answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", target, headers={"Authorization": f"token {server.token}"})
    return conn, conn.getresponse()


def problem(body: bytes) -> dict[str, Any]:
    """The route's error body, held to docs/openapi.yaml's ForwardError."""
    document = json.loads(body)
    openapi_check.schema_validator("ForwardError").validate(document)
    assert set(document) >= {"message", "reason", "error"}
    assert set(document["error"]) == {"kind", "message", "hint"}
    assert document["reason"] == document["error"]["kind"]
    return dict(document["error"])


def app_saw_token(server: ServerProcess, echo: dict[str, Any]) -> bool:
    return server.token in json.dumps(echo)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_each_method_reaches_the_app_with_its_path_and_body_and_never_the_token(
    server: ServerProcess, app: EchoApp, method: str
) -> None:
    body = b"x" * 100_000 if method not in ("GET", "OPTIONS") else None
    target = route(server, app.port, f"/echo/a%2Fb/c?x=1&token={server.token}&y=%20")
    status, headers, pairs, data = exchange(server, method, target, body)
    assert status == 200, data
    echo = json.loads(data)
    assert echo["method"] == method
    assert echo["path"] == "/echo/a%2Fb/c"  # no prefix, percent-encoding as sent
    assert echo["query"] == "x=1&y=+"
    assert echo["size"] == (len(body) if body else 0)
    if body:
        assert echo["sha256"] == hashlib.sha256(body).hexdigest()
    sent = {k.lower(): v for k, v in echo["headers"]}
    assert "authorization" not in sent
    assert "cookie" not in sent
    assert sent["host"] == f"127.0.0.1:{app.port}"
    assert not app_saw_token(server, echo)
    # The app's own answer: its cookie and length kept, none of Jupyter's headers added.
    cookies = [v for k, v in pairs if k.lower() == "set-cookie"]
    assert cookies == ["app_session=s1; Path=/"]  # the app's; never Jupyter's login cookie
    assert headers["Content-Length"] == str(len(data))
    assert "Content-Security-Policy" not in headers
    assert server.token not in server.log()


def test_the_apps_status_and_reason_pass_through(server: ServerProcess, app: EchoApp) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(
        "POST",
        route(server, app.port, "/echo?status=418&reason=Short+And+Stout"),
        body=b"{}",
        headers={"Authorization": f"token {server.token}"},
    )
    r = conn.getresponse()
    assert (r.status, r.reason) == (418, "Short And Stout")
    assert json.loads(r.read())["method"] == "POST"
    conn.close()


def test_a_client_close_code_reaches_the_app(server: ServerProcess, app: EchoApp) -> None:
    closed = len(app.ws_closed)

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{server.port}" + route(server, app.port, "/ws")
        ws = await websocket_connect(
            HTTPRequest(url, headers={"Authorization": f"token {server.token}"})
        )
        await ws.write_message("ping")
        assert await ws.read_message() == "ping"
        ws.close(4002, "done here")
        assert await ws.read_message() is None

    asyncio.run(scenario())
    deadline = time.monotonic() + 10
    while len(app.ws_closed) == closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.ws_closed[closed:] == [(4002, "done here")]


def test_head_keeps_the_apps_content_length(server: ServerProcess, app: EchoApp) -> None:
    status, headers, _, data = exchange(server, "HEAD", route(server, app.port, "/echo"))
    assert (status, headers["Content-Length"], data) == (200, "1234", b"")


def test_the_relays_envelope_is_unwrapped_for_the_app(server: ServerProcess, app: EchoApp) -> None:
    local = {"Host": "localhost:6006", "Authorization": "Bearer sk-app", "Cookie": "gr=1"}
    headers = dict(forwarding.envelop(_headers(local), "q=local").get_all())
    status, _, _, data = exchange(server, "GET", route(server, app.port, "/echo"), headers=headers)
    assert status == 200, data
    echo = json.loads(data)
    sent = {k.lower(): v for k, v in echo["headers"]}
    assert sent["host"] == "localhost:6006"
    assert sent["authorization"] == "Bearer sk-app"
    assert sent["cookie"] == "gr=1"
    assert echo["query"] == "q=local"
    assert not any(k.lower().startswith("x-colab-forward") for k in sent)
    assert not app_saw_token(server, echo)


def test_cloudflare_access_credentials_of_the_hop_stay_with_the_route(
    server: ServerProcess, app: EchoApp
) -> None:
    hop = {
        "CF-Access-Client-Id": "id.access",
        "CF-Access-Client-Secret": "access-secret",
        "Cf-Access-Jwt-Assertion": "eyJ.jwt",
        "X-App-Header": "kept",
    }
    status, _, _, data = exchange(server, "GET", route(server, app.port, "/echo"), headers=hop)
    assert status == 200, data
    sent = {k.lower(): v for k, v in json.loads(data)["headers"]}
    assert not [k for k in sent if k.startswith("cf-access-")]
    assert sent["x-app-header"] == "kept"


def _headers(values: dict[str, str]) -> Any:
    from tornado.httputil import HTTPHeaders

    return HTTPHeaders(values)


def test_a_chunked_upload_is_streamed_through(server: ServerProcess, app: EchoApp) -> None:
    pieces = [os.urandom(50_000) for _ in range(20)]
    status, _, _, data = exchange(
        server, "POST", route(server, app.port, "/upload"), iter(pieces), chunked=True
    )
    assert status == 200, data
    echo = json.loads(data)
    assert echo["size"] == sum(map(len, pieces))
    assert echo["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def _expect_continue(server: ServerProcess, target: str, token: bool) -> tuple[bytes, bytes]:
    """An upload as curl sends one over 1 MiB: `Expect: 100-continue`, then the body only once
    the server said so. Returns the first answer, then (if it was 100) the final one."""
    body = b"y" * 2_000_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        auth = f"Authorization: token {server.token}\r\n" if token else ""
        sock.sendall(
            (
                f"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{auth}"
                f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
            ).encode()
        )
        reader = sock.makefile("rb")
        first = reader.readline()
        if not first.startswith(b"HTTP/1.1 100"):
            return first, b""
        reader.readline()  # the blank line after the interim answer
        sock.sendall(body)
        return first, reader.readline()


def test_an_upload_that_waits_for_100_continue_gets_it_only_when_let_in(
    server: ServerProcess, app: EchoApp
) -> None:
    first, final = _expect_continue(server, route(server, app.port, "/upload"), token=True)
    assert first.startswith(b"HTTP/1.1 100")
    assert final.startswith(b"HTTP/1.1 200")
    before = list(app.seen)
    first, _ = _expect_continue(server, route(server, app.port, "/upload"), token=False)
    assert first.startswith(b"HTTP/1.1 403")  # refused on the head: the body is never asked for
    first, _ = _expect_continue(server, route(server, 9000, "/upload"), token=True)
    assert first.startswith(b"HTTP/1.1 403")
    assert app.seen == before


def test_the_first_event_arrives_before_the_stream_ends(
    server: ServerProcess, app: EchoApp
) -> None:
    conn, r = open_get(server, route(server, app.port, "/sse"))
    assert r.status == 200
    assert r.getheader("Content-Type") == "text/event-stream"
    first = r.readline() + r.readline()  # the app is still holding the stream open
    assert first == b"data: first\n\n"
    app.let_sse_end()
    assert r.read() == b"data: last\n\n"
    conn.close()


def test_an_event_stream_whose_client_leaves_ends_at_the_app(
    server: ServerProcess, app: EchoApp
) -> None:
    left = app.sse_left
    conn, r = open_get(server, route(server, app.port, "/sse"))
    assert r.readline() + r.readline() == b"data: first\n\n"
    r.close()
    conn.close()
    deadline = time.monotonic() + 10
    while app.sse_left == left and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.sse_left == left + 1  # the route closed its side: the app stopped streaming
    status, _, _, _ = exchange(server, "GET", route(server, app.port, "/echo"))
    assert status == 200


def test_a_chunked_body_without_framing_for_its_method_is_refused(
    server: ServerProcess, app: EchoApp
) -> None:
    before = list(app.seen)
    # One write of head and body: the route answers on the head and closes, and a client still
    # writing a second piece would see a broken pipe instead of the answer.
    raw = (
        f"DELETE {route(server, app.port, '/x')} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: token {server.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n0\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(raw)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        status, data = answer.status, answer.read()
    assert status == 411, data
    assert problem(data)["kind"] == "bad_request"
    assert app.seen == before


def test_websocket_carries_text_binary_16_mib_subprotocol_and_close_code(
    server: ServerProcess, app: EchoApp
) -> None:
    async def scenario() -> None:
        url = f"ws://127.0.0.1:{server.port}" + route(server, app.port, "/ws?k=v")
        request = HTTPRequest(url, headers={"Authorization": f"token {server.token}"})
        ws = await websocket_connect(
            request, subprotocols=["other", "echo.v2"], max_message_size=64 * 1024 * 1024
        )
        assert ws.selected_subprotocol == "echo.v2"
        await ws.write_message("hello")
        assert await ws.read_message() == "hello"
        await ws.write_message(b"\x00\xff" * 10, binary=True)
        assert await ws.read_message() == b"\x00\xff" * 10
        big = os.urandom(16 * 1024 * 1024)
        await ws.write_message(big, binary=True)
        back = await ws.read_message()
        assert isinstance(back, bytes)
        assert hashlib.sha256(back).digest() == (hashlib.sha256(big).digest())
        await ws.write_message("close-me")
        assert await ws.read_message() is None
        assert (ws.close_code, ws.close_reason) == (4001, "asked to")

    asyncio.run(scenario())


def test_websocket_with_the_token_in_the_query_keeps_it_from_the_app(
    server: ServerProcess, app: EchoApp
) -> None:
    """Browsers cannot send headers on a websocket: `?token=` works, and stays with Jupyter."""

    async def scenario() -> str:
        url = f"ws://127.0.0.1:{server.port}" + route(
            server, app.port, f"/ws?a=1&token={server.token}"
        )
        ws = await websocket_connect(url)
        await ws.write_message("uri?")
        uri = await ws.read_message()
        ws.close()
        assert isinstance(uri, str)
        return uri

    assert asyncio.run(scenario()) == "/ws?a=1"
    assert server.token not in server.log()


def test_no_token_is_refused_before_the_app_hears_of_it(
    server: ServerProcess, app: EchoApp
) -> None:
    before = list(app.seen)
    for method, body in (("GET", None), ("POST", b"data")):
        status, _, _, data = exchange(
            server, method, route(server, app.port, "/echo/secret"), body, token=False
        )
        assert status == 403, data
        error = problem(data)
        assert error["kind"] == "forbidden"
        assert "token" in error["message"]

    async def handshake() -> int:
        url = f"ws://127.0.0.1:{server.port}" + route(server, app.port, "/ws")
        with pytest.raises(HTTPClientError) as refused:
            await websocket_connect(url)
        return refused.value.code

    assert asyncio.run(handshake()) == 403
    for wrong in (
        {"Authorization": "token not-the-token"},
        {"Cookie": "username-127-0-0-1=forged; _xsrf=forged"},
    ):
        status, _, _, _ = exchange(
            server, "GET", route(server, app.port, "/echo"), headers=wrong, token=False
        )
        assert status == 403
    assert app.seen == before


def test_the_authorizer_decides_per_method_before_the_app_hears_of_it(
    server_factory: Any, app: EchoApp
) -> None:
    here = str(Path(__file__).parent)
    denying = server_factory(
        args=[
            "--ServerApp.authorizer_class=deny_write_authorizer.DenyWriteAuthorizer",
            "--ColabTunnelApp.tunnel_mode=off",
        ],
        env={"PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))},
    )
    status, _, _, _ = exchange(denying, "GET", route(denying, app.port, "/echo/read"))
    assert status == 200
    before = list(app.seen)
    status, _, _, data = exchange(
        denying, "POST", route(denying, app.port, "/echo/write"), b"x" * 1000
    )
    assert status == 403, data
    assert problem(data)["message"].startswith(
        "User is not authorized to write on resource: colab."
    )
    assert app.seen == before
    assert "DenyWriteAuthorizer: write on colab -> False" in denying.log()


@pytest.mark.parametrize("which", ["server", "colab", "outside"])
def test_refused_ports(server: ServerProcess, which: str) -> None:
    port = {"server": server.port, "colab": 9000, "outside": 80}[which]
    status, headers, _, data = exchange(server, "GET", route(server, port, "/"))
    assert status == 403, data
    assert "Set-Cookie" not in headers  # no login cookie of Jupyter's on the route's answers
    error = problem(data)
    assert error["kind"] == "port_not_allowed"
    assert str(port) in error["message"]


def test_nothing_listening_names_what_does(server: ServerProcess, app: EchoApp) -> None:
    status, _, _, data = exchange(server, "GET", route(server, free_port(), "/x"))
    assert status == 502, data
    error = problem(data)
    assert error["kind"] == "port_not_listening"
    assert f"{app.port} " in error["hint"]

    async def handshake() -> tuple[int, dict[str, Any]]:
        url = f"ws://127.0.0.1:{server.port}" + route(server, free_port(), "/ws")
        request = HTTPRequest(url, headers={"Authorization": f"token {server.token}"})
        with pytest.raises(HTTPClientError) as refused:
            await websocket_connect(request)
        assert refused.value.response is not None
        return refused.value.code, problem(refused.value.response.body)

    code, error = asyncio.run(handshake())
    assert (code, error["kind"]) == (502, "port_not_listening")


@pytest.mark.parametrize("rest", ["/a/../../api/status", "/a/%2e%2e/x", "/a%5cb", "/%252e%252e/"])
def test_a_path_that_leaves_the_route_is_refused(
    server: ServerProcess, app: EchoApp, rest: str
) -> None:
    before = list(app.seen)
    status, _, _, data = exchange(server, "GET", route(server, app.port, rest))
    assert status == 400, data
    assert problem(data)["kind"] == "forward_path_refused"
    assert app.seen == before


def test_an_answer_the_app_breaks_off_is_cut_for_the_client_too(
    server: ServerProcess, app: EchoApp
) -> None:
    conn, r = open_get(server, route(server, app.port, "/cut"))
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead) as cut:
        r.read()
    assert cut.value.partial == b"0123456789"  # never passed off as the whole answer
    conn.close()
    status, _, _, _ = exchange(server, "GET", route(server, app.port, "/echo"))
    assert status == 200


def test_an_app_that_answers_a_websocket_handshake_with_http_is_a_502(
    server: ServerProcess, app: EchoApp
) -> None:
    async def handshake() -> tuple[int, dict[str, Any]]:
        url = f"ws://127.0.0.1:{server.port}" + route(server, app.port, "/not-a-socket")
        request = HTTPRequest(url, headers={"Authorization": f"token {server.token}"})
        with pytest.raises(HTTPClientError) as refused:
            await websocket_connect(request)
        assert refused.value.response is not None
        return refused.value.code, problem(refused.value.response.body)

    code, error = asyncio.run(handshake())
    assert (code, error["kind"]) == (502, "forward_failed")
    assert "handshake" in error["message"]


def test_the_server_keeps_serving_after_failures(server: ServerProcess, app: EchoApp) -> None:
    exchange(server, "GET", route(server, free_port(), "/"))
    status, _, _, _ = exchange(server, "GET", route(server, app.port, "/echo"))
    assert status == 200
    assert server.proc.poll() is None


BIG = 200 * 1024 * 1024


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_200_mib_download_and_upload_stream_with_bounded_memory(
    server: ServerProcess, app: EchoApp
) -> None:
    # Warm up (the route's first use imports and allocates what every later one reuses).
    exchange(server, "GET", route(server, app.port, "/download?size=1048576"))
    before = _rss(server.pid)
    peak = before
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.request(
        "GET",
        route(server, app.port, f"/download?size={BIG}"),
        headers={"Authorization": f"token {server.token}"},
    )
    r = conn.getresponse()
    assert r.status == 200
    digest = hashlib.sha256()
    got = 0
    while chunk := r.read(CHUNK):
        digest.update(chunk)
        got += len(chunk)
        if got % (20 * CHUNK) < CHUNK:
            peak = max(peak, _rss(server.pid))
    conn.close()
    assert got == BIG
    assert digest.hexdigest() == pattern_digest(BIG)

    def upload() -> Iterator[bytes]:
        nonlocal peak
        for i in range(BIG // CHUNK):
            if i % 20 == 0:
                peak = max(peak, _rss(server.pid))
            yield PATTERN

    status, _, _, data = exchange(
        server,
        "PUT",
        route(server, app.port, "/upload"),
        upload(),
        headers={"Content-Length": str(BIG)},
    )
    assert status == 200, data
    assert json.loads(data)["sha256"] == pattern_digest(BIG)
    peak = max(peak, _rss(server.pid))
    assert peak - before < 64 * 1024 * 1024, f"server RSS grew {(peak - before) >> 20} MiB"


def test_an_upload_over_jupyters_body_limit_passes(server_factory: Any, app: EchoApp) -> None:
    """Jupyter's server-wide max_body_size (512 MiB by default) would cut a multi-GB upload:
    the route lifts it for its own requests only (here a server limited to 1 MiB)."""
    small = server_factory(
        args=["--ColabTunnelApp.tunnel_mode=off", "--ServerApp.max_body_size=1048576"]
    )
    body = os.urandom(8 * 1024 * 1024)
    for chunked in (False, True):
        payload: Any = (
            [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] if chunked else body
        )
        status, _, _, data = exchange(
            small, "POST", route(small, app.port, "/upload"), payload, chunked=chunked
        )
        assert status == 200, data
        assert json.loads(data)["sha256"] == hashlib.sha256(body).hexdigest()
    # Jupyter's own API keeps the server's limit (it cuts the connection).
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        exchange(small, "PUT", f"{small.base_url}api/contents/big.txt", body)


def test_the_running_tunnels_metrics_port_is_refused(tunnel_server: Any) -> None:
    """cloudflared's metrics server (it can report and stop the tunnel) is never forwarded:
    the port is the one the running cloudflared said, read at each request."""
    ts = tunnel_server()
    ts.wait_state("ready")
    logs = "\n".join(ts.tunnel(logs=1000)["logs"])
    found = re.search(r"Starting metrics server on 127\.0\.0\.1:(\d+)", logs)
    assert found, logs
    metrics = int(found.group(1))
    status, _, _, data = exchange(ts.server, "GET", route(ts.server, metrics, "/ready"))
    assert status == 403, data
    error = problem(data)
    assert error["kind"] == "port_not_allowed"
    assert "metrics" in error["message"]
