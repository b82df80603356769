"""Forwarded ports end to end (issue 19's "Done when"), one machine standing in for both sides.

Remote side: a real `jupyter server` with the extension and the cloudflared stand-in (a quick
tunnel), a real TensorBoard with scalars of ours, and testkit/forward_app.py (server-sent events,
big downloads and uploads, a websocket echo). Local side: a real relay process
(`jupyter colab-tunnel connect --forward LOCAL:REMOTE`, reaching the stand-in's TLS edge by its
public name: testkit/relay_process.py),
headless Chromium, curl, plain HTTP and websocket clients. One stack for the module: each test
leaves it serving (the tunnel restart and the outage put it back).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path
from typing import Any

import pytest
import websocket
from e2e_kit import RssPeak, http
from relay_env import RelayProcess, check_relay_body, start_relay
from server_process import Response, free_port
from tunnel_env import TunnelServer, start_tunnel_server

from testkit import forward_app, headless, tensorboard_run
from testkit.forward_app import ForwardApp
from testkit.tensorboard_run import TensorBoard

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MiB = 1024 * 1024
BIG = 200 * MiB
WS_MESSAGE = 16 * MiB + 7
RSS_BOUND = 64 * 1000 * 1000  # 64 MB


@dataclass
class Stack:
    remote: TunnelServer
    relay: RelayProcess
    app: ForwardApp
    board: TensorBoard
    app_local: int  # --forward app_local:app.port
    board_local: int  # --forward board_local:board.port
    refused_local: int  # --forward refused_local:<the Jupyter server's own port>
    workdir: Path

    def local(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    @property
    def app_url(self) -> str:
        return self.local(self.app_local)

    def app_seen(self) -> int:
        """Requests the app answered (read directly, not through the forward)."""
        return int(http("GET", self.app.url + "/seen").json()["requests"])

    def route(self, port: int, path: str) -> str:
        """The remote route, dialled directly on the remote server (no tunnel, no relay)."""
        return f"{self.remote.server.url}colab/forward/{port}{path}"


def wait_answering(url: str, relay: RelayProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if relay.proc.poll() is not None:
            raise AssertionError(f"relay exited {relay.proc.returncode}:\n{relay.log()[-3000:]}")
        try:
            last = http("GET", url, timeout=10)
            if last.status == 200:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 200: {last}\n{relay.log()[-3000:]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("forward")
    started: list[Any] = []
    try:
        app = forward_app.start(workdir / "app")
        started.append(app)
        tensorboard_run.write_scalars(workdir / "logs")
        board = tensorboard_run.start(workdir / "tensorboard", workdir / "logs", free_port())
        started.append(board)
        connection_file = workdir / "drive" / "colab-tunnel.json"
        remote = start_tunnel_server(
            workdir / "remote",
            traits={"connection_file": str(connection_file), "tunnel_mode": "quick"},
        )
        started.append(remote.server)
        remote.wait_state("ready")
        token_file = workdir / "remote_token"
        token_file.write_text(remote.server.token + "\n")
        token_file.chmod(0o600)
        app_local, board_local, refused_local = free_port(), free_port(), free_port()
        relay = start_relay(
            workdir / "relay",
            [
                "--connection-file",
                str(connection_file),
                "--token-file",
                str(token_file),
                # A request waits this long for a live remote before the outage answer.
                "--wait=3",
                "--forward",
                f"{app_local}:{app.port}",
                "--forward",
                f"{board_local}:{board.port}",
                "--forward",
                f"{refused_local}:{remote.server.port}",
            ],
            edge_root=workdir,
        )
        started.append(relay)
        stack = Stack(
            remote, relay, app, board, app_local, board_local, refused_local, workdir=workdir
        )
        wait_answering(stack.app_url + "/echo", relay)
        yield stack
    finally:
        for part in reversed(started):
            with contextlib.suppress(Exception):
                part.stop()


# ----- clients ----------------------------------------------------------------------------------


def read_event(resp: HTTPResponse) -> dict[str, str]:
    """One server-sent event (its fields), read line by line as it arrives."""
    fields: dict[str, str] = {}
    while True:
        line = resp.readline()
        if not line:
            raise AssertionError(f"the stream ended inside an event: {fields}")
        text = line.decode().rstrip("\r\n")
        if not text:
            if fields:
                return fields
            continue
        name, _, value = text.partition(":")
        fields[name] = value.lstrip(" ")


def stream_download(url: str) -> tuple[int, str, dict[str, str]]:
    """GET url, hashing the body as it comes; (size, sha256, headers)."""
    parts = url.split("/", 3)
    host, port = parts[2].split(":")
    conn = HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request("GET", "/" + parts[3])
        resp = conn.getresponse()
        assert resp.status == 200, (resp.status, resp.read()[:500])
        digest, size = hashlib.sha256(), 0
        while chunk := resp.read(MiB):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest(), dict(resp.getheaders())
    finally:
        conn.close()


def stream_upload(port: int, size: int, chunked: bool = False) -> tuple[Any, str]:
    """PUT forward_app's deterministic body to /upload through a local port, streamed from a
    generator (never whole in memory here); (the app's answer, the expected sha256)."""
    conn = HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/octet-stream"}
    if not chunked:
        headers["Content-Length"] = str(size)
    try:
        conn.request(
            "PUT",
            "/upload",
            body=forward_app.iter_body(size),
            headers=headers,
            encode_chunked=chunked,
        )
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body[:500])
        return json.loads(body), forward_app.expected_sha256(size)
    finally:
        conn.close()


def restart_tunnel(stack: Stack) -> str:
    """POST restart; once the new tunnel is ready and the relay follows it, its URL."""
    before = stack.remote.tunnel()
    r = stack.remote.post("restart")
    assert r.status == 200, r.body
    after = stack.remote.server.wait_for(
        "colab/tunnel", lambda b: b["state"] == "ready" and b["pid"] != before["pid"], timeout=30
    )
    assert after["url"] != before["url"]  # a quick tunnel: a new hostname
    stack.relay.wait_status(lambda s: s["upstream"] == after["url"], timeout=30)
    return str(after["url"])


# ----- the tests ------------------------------------------------------------------------------


def test_tensorboard_in_a_browser_before_and_after_a_tunnel_restart(stack: Stack) -> None:
    relay_pid = stack.relay.proc.pid
    page = stack.local(stack.board_local) + "/"
    # The tag as the page shows it (TensorBoard breaks it at the "/" over two lines).
    shown = f"document.body && document.body.innerText.replace(/\\s/g, '').includes({tensorboard_run.TAG!r})"

    def loads_scalars(browser: headless.Chromium) -> None:
        browser.requests.clear()
        browser.responses.clear()
        browser.navigate(page)
        browser.wait_for(shown, timeout=60)
        # The scalars themselves come through the forward, not only the page and the tags.
        deadline = time.monotonic() + 30
        while not (
            series := [r for r in browser.responses if "/timeseries/timeSeries" in r["url"]]
        ):
            assert time.monotonic() < deadline, browser.requests
            browser.pump(0.1)
        assert all(r["status"] == 200 for r in series), series
        elsewhere = [u for u in browser.requests if not u.startswith(page)]
        assert not elsewhere, elsewhere

    def board_requests() -> int:
        forwards = stack.relay.status()["forwards"]
        return int(next(f["requests"] for f in forwards if f["local"] == stack.board_local))

    app_ws = f"ws://127.0.0.1:{stack.app_local}/ws"
    with headless.Chromium(stack.workdir / "chromium") as browser:
        browser.send("Network.setCacheDisabled", cacheDisabled=True)  # each load goes out
        loads_scalars(browser)
        # An app's websocket open across the switch: closed cleanly (1012), so the app reconnects.
        ws = websocket.create_connection(app_ws, timeout=60)
        try:
            ws.send("before")
            assert ws.recv() == "before"
            old_url = stack.relay.status()["upstream"]
            new_url = restart_tunnel(stack)
            assert new_url != old_url
            opcode, data = ws.recv_data(control_frame=True)
        finally:
            ws.close()
        assert opcode == websocket.ABNF.OPCODE_CLOSE, (opcode, data)
        assert int.from_bytes(data[:2], "big") == 1012, data
        served = board_requests()
        loads_scalars(browser)
        assert board_requests() > served  # through the forward, now on the new URL
        assert stack.relay.status()["upstream"] == new_url
    again = websocket.create_connection(app_ws, timeout=60)
    try:
        again.send("after")
        assert again.recv() == "after"
    finally:
        again.close()
    forward = next(f for f in stack.relay.status()["forwards"] if f["local"] == stack.app_local)
    assert forward["websockets_closed_on_switch"] >= 1, forward
    # Nothing local was restarted: the same relay process, still running.
    assert stack.relay.proc.pid == relay_pid
    assert stack.relay.proc.poll() is None


def test_server_sent_events_arrive_as_they_are_produced(stack: Stack) -> None:
    gate = uuid.uuid4().hex
    conn = HTTPConnection("127.0.0.1", stack.app_local, timeout=30)
    try:
        conn.request("GET", f"/events?n=3&gate={gate}", headers={"Accept": "text/event-stream"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type", "").startswith("text/event-stream")
        # The app holds events 1 and 2 until the gate opens: event 0 must come alone, now.
        assert read_event(resp) == {"id": "0", "event": "tick", "data": "event 0"}
        released = http("POST", f"{stack.app_url}/release/{gate}")
        assert released.status == 204, released
        assert read_event(resp)["data"] == "event 1"
        assert read_event(resp)["data"] == "event 2"
        assert resp.read() == b""  # then the stream ends
    finally:
        conn.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_n_prints_events_as_they_come(stack: Stack) -> None:
    gate = uuid.uuid4().hex
    with subprocess.Popen(
        ["curl", "-N", "-s", f"{stack.app_url}/events?n=2&gate={gate}"],
        stdout=subprocess.PIPE,
    ) as curl:
        assert curl.stdout is not None
        lines = [curl.stdout.readline() for _ in range(4)]  # event 0, before the gate opens
        assert b"data: event 0\n" in lines, lines
        assert curl.poll() is None  # the stream is still open
        assert http("POST", f"{stack.app_url}/release/{gate}").status == 204
        rest, _ = curl.communicate(timeout=30)
    assert b"data: event 1\n" in rest
    assert curl.returncode == 0


def test_app_sees_its_own_headers_never_the_token(stack: Stack) -> None:
    token = stack.remote.server.token
    r = http(
        "POST",
        f"{stack.app_url}/echo?q=1&token=app-own",
        body=b"hello",
        headers={
            "Host": f"localhost:{stack.app_local}",
            "Authorization": "Bearer sk-app-key",
            "Cookie": "app_session=abc",
            "Origin": f"http://localhost:{stack.app_local}",
        },
    )
    assert r.status == 200, r.body
    assert token not in r.body.decode()
    seen = r.json()
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo"
    assert seen["query"] == "q=1&token=app-own"  # the app's query, whole, its `token` too
    assert seen["body_size"] == 5
    assert headers["host"] == f"localhost:{stack.app_local}"
    assert headers["authorization"] == "Bearer sk-app-key"
    assert headers["cookie"] == "app_session=abc"
    assert headers["origin"] == f"http://localhost:{stack.app_local}"
    assert not [k for k in headers if k.startswith("x-colab-forward")], headers

    cookie = http("GET", f"{stack.app_url}/cookie")
    assert cookie.status == 200
    assert forward_app.COOKIE in cookie.headers.get("Set-Cookie", ""), cookie.headers
    moved = http("GET", f"{stack.app_url}/redirect")
    assert moved.status == 302
    assert moved.headers["Location"] == "/echo?from=redirect"

    # The route used directly, with Jupyter's token in the query: the app never gets it.
    direct = http("GET", stack.route(stack.app.port, f"/echo?a=1&token={token}"))
    assert direct.status == 200, direct.body
    assert token not in direct.body.decode()
    assert direct.json()["query"] == "a=1"


def test_websocket_carries_16_mib_messages_both_kinds(stack: Stack) -> None:
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{stack.app_local}/ws", subprotocols=["echo.v1"], timeout=120
    )
    pids = {"relay": stack.relay.proc.pid, "jupyter server": stack.remote.server.pid}
    try:
        assert ws.getsubprotocol() == "echo.v1"  # the app's choice, accepted locally
        with RssPeak(pids) as rss:
            binary = b"".join(forward_app.iter_body(WS_MESSAGE))
            ws.send_binary(binary)
            back = ws.recv()
            assert isinstance(back, bytes)
            assert hashlib.sha256(back).hexdigest() == hashlib.sha256(binary).hexdigest()
            del binary, back
            text = "ü" * (WS_MESSAGE // 2)
            ws.send(text)
            echoed = ws.recv()
            assert isinstance(echoed, str)
            assert len(echoed) == len(text)
            assert echoed == text
        # Each message is held whole once per hop: reported, not bounded (the issue bounds
        # the streamed transfers).
        print(f"RSS growth during 16 MiB websocket echoes: {rss.growth()}")
        ws.send("small")
        assert ws.recv() == "small"
    finally:
        ws.close()


def test_big_download_and_upload_whole_with_bounded_memory(stack: Stack) -> None:
    pids = {
        "relay": stack.relay.proc.pid,
        "jupyter server": stack.remote.server.pid,
        # The tunnel streams bodies both ways too, as the real cloudflared does.
        "cloudflared stand-in": stack.remote.tunnel()["pid"],
    }
    with RssPeak(pids) as rss:
        size, digest, headers = stream_download(f"{stack.app_url}/download?size={BIG}")
        assert size == BIG
        assert digest == forward_app.expected_sha256(BIG)
        assert headers.get("Content-Length") == str(BIG)
        answer, expected = stream_upload(stack.app_local, BIG)
        assert answer == {"size": BIG, "sha256": expected}
    growth = rss.growth()
    status = stack.relay.status()
    check_relay_body("RelayStatus", status)
    forward = next(f for f in status["forwards"] if f["local"] == stack.app_local)
    assert forward["remote"] == stack.app.port
    assert forward["bytes_in"] >= BIG, forward
    assert forward["bytes_out"] >= BIG, forward
    print(f"RSS growth during 200 MiB down + 200 MiB up: {growth}")
    assert all(grew < RSS_BOUND for grew in growth.values()), growth

    # The chunked forms, smaller: a chunked answer and a chunked upload, whole.
    size, digest, headers = stream_download(
        f"{stack.app_url}/download?size={5 * MiB + 3}&chunked=1"
    )
    assert (size, digest) == (5 * MiB + 3, forward_app.expected_sha256(5 * MiB + 3))
    answer, expected = stream_upload(stack.app_local, 3 * MiB + 1, chunked=True)
    assert answer == {"size": 3 * MiB + 1, "sha256": expected}


def refused(r: Response, status: int, reason: str) -> dict[str, Any]:
    assert r.status == status, (r.status, r.body)
    body: dict[str, Any] = r.json()
    assert body["reason"] == reason, body
    assert body["error"]["kind"] == reason
    assert body["error"]["hint"], body
    check_relay_body("Error", body)
    return body


def test_refusals(stack: Stack) -> None:
    before = stack.app_seen()

    # A non-loopback Host at the local forward (DNS rebinding): refused before the remote.
    rebound = http("GET", f"{stack.app_url}/echo", headers={"Host": "attacker.example.com"})
    refused(rebound, 403, "host_not_allowed")
    for host in ("localhost", f"127.0.0.1:{stack.app_local}", f"[::1]:{stack.app_local}"):
        assert http("GET", f"{stack.app_url}/echo", headers={"Host": host}).status == 200, host
    assert stack.app_seen() == before + 3  # only the three loopback ones reached the app

    # The remote route wants the Jupyter token: HTTP and websocket alike.
    no_token = http("GET", stack.route(stack.app.port, "/echo"))
    assert no_token.status == 403, no_token
    wrong = http(
        "GET", stack.route(stack.app.port, "/echo"), headers={"Authorization": "token nope"}
    )
    assert wrong.status == 403, wrong
    ws_route = stack.route(stack.app.port, "/ws").replace("http://", "ws://", 1)
    with pytest.raises(websocket.WebSocketBadStatusException) as handshake:
        websocket.create_connection(ws_route, timeout=30)
    assert handshake.value.status_code in (401, 403)
    assert stack.app_seen() == before + 3

    # A refused port: the Jupyter server's own, through a forward and on the route directly.
    refused(http("GET", stack.local(stack.refused_local) + "/api/status"), 403, "port_not_allowed")
    token = {"Authorization": f"token {stack.remote.server.token}"}
    direct = http("GET", stack.route(stack.remote.server.port, "/api/status"), headers=token)
    refused(direct, 403, "port_not_allowed")

    # Nothing listens there: 502, and the hint names what does listen ("6006 tensorboard"),
    # our app among them unless the list was cut at its length (a busy machine).
    silent = http("GET", stack.route(free_port(), "/"), headers=token)
    hint = refused(silent, 502, "port_not_listening")["error"]["hint"]
    listed = re.findall(r"\b(\d+) [^\s,.]+", hint)
    assert listed, hint
    assert str(stack.app.port) in listed or len(listed) >= 20, hint


def test_stopped_tunnel_answers_503_then_forwards_again(stack: Stack) -> None:
    before = stack.app_seen()
    assert stack.remote.post("stop").status == 200
    try:
        stack.relay.wait_status(lambda s: s["upstream"] is None)
        r = http("GET", f"{stack.app_url}/echo")
        body = refused(r, 503, "no_upstream")
        assert "stopped" in body["message"], body
        assert stack.remote.server.token not in r.body.decode()
        assert stack.app_seen() == before  # not reached some other way
    finally:
        assert stack.remote.post("start").status == 200
    url = stack.remote.wait_state("ready")["url"]
    stack.relay.wait_status(lambda s: s["upstream"] == url, timeout=30)
    assert http("GET", f"{stack.app_url}/echo").status == 200
    assert stack.app_seen() == before + 1
