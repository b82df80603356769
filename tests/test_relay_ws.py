"""The relay's kernel-websocket handling, in-process with real sockets: an upstream tornado
websocket server that goes away and comes back, the relay, and a websocket client.

What the local side sends while the upstream is away is held (bounded) and delivered in order
once it is back; what does not fit is counted and logged, never dropped silently.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
from typing import Any

import pytest
from relay_env import check_relay_body
from tornado import web, websocket
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders
from tornado.netutil import bind_sockets

from jupyter_colab_tunnel.local.relay import Relay, RelaySettings
from jupyter_colab_tunnel.local.upstream import UpstreamTracker
from testkit.waiting import until

RECEIVED: list[str] = []
OPEN: list[websocket.WebSocketHandler] = []


class Echo(websocket.WebSocketHandler):
    """The remote kernel channel: records what arrives, echoes it back."""

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: Any) -> None:
        OPEN.append(self)
        self.write_message(f"hello {self.get_argument('session_id')}")

    def on_message(self, message: str | bytes) -> None:
        assert isinstance(message, str)
        RECEIVED.append(message)
        self.write_message(f"echo {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_upstream(port: int) -> HTTPServer:
    server = HTTPServer(web.Application([(r"/api/kernels/[^/]+/channels", Echo)]))
    server.add_sockets(bind_sockets(port, "127.0.0.1"))
    return server


async def stop_upstream(server: HTTPServer) -> None:
    """Like a tunnel that goes away: no new connections, the open websockets closed."""
    server.stop()
    for handler in OPEN:
        handler.close(1001, "going away")
    OPEN.clear()
    await server.close_all_connections()


async def scenario(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    RECEIVED.clear()
    log = logging.getLogger("test-relay-ws")
    port = free_port()
    upstream = start_upstream(port)
    tracker = UpstreamTracker(log)
    tracker.set_url(f"http://127.0.0.1:{port}")
    settings = RelaySettings(
        local_token="local",
        remote_token=lambda: "remote",
        ws_buffer_messages=3,
        ws_resume_timeout=10.0,
    )
    relay = Relay(settings, tracker, log)
    relay_port = relay.listen(0)
    url = f"ws://127.0.0.1:{relay_port}/api/kernels/k1/channels?session_id=s1"
    client = await websocket.websocket_connect(
        HTTPRequest(url, headers=HTTPHeaders({"Authorization": "token local"}))
    )
    out: dict[str, Any] = {"hello": await client.read_message()}
    client.write_message("before")
    out["before"] = await client.read_message()

    await stop_upstream(upstream)  # the tunnel goes away
    await until(lambda: relay.sockets[("k1", "s1")].conn is None, "the relay saw the outage")
    for i in range(5):  # 3 fit in the hold buffer, 2 do not
        client.write_message(f"held {i}")
    stats = relay.stats
    await until(
        lambda: stats.frames_buffered + stats.frames_dropped == 5, "all 5 frames held or dropped"
    )
    out["dropped"] = relay.stats.frames_dropped
    upstream = start_upstream(port)  # back, at the same address (a named tunnel)
    replies = [await asyncio.wait_for(client.read_message(), 10) for _ in range(4)]
    out["after"] = replies
    out["received"] = list(RECEIVED)
    out["status"] = relay.status()
    client.close()
    await relay.close()
    await stop_upstream(upstream)
    return out


def test_frames_held_during_an_outage_are_delivered_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "test-relay-ws")
    out = asyncio.run(scenario(caplog))
    assert out["hello"] == "hello s1"
    assert out["before"] == "echo before"
    assert out["dropped"] == 2
    # The re-dial carries the same session_id; the held frames follow in order.
    assert out["after"] == ["hello s1", "echo held 0", "echo held 1", "echo held 2"]
    assert out["received"] == ["before", "held 0", "held 1", "held 2"]
    ws = out["status"]["websockets"]
    assert (ws["redials"], ws["frames_buffered"], ws["frames_dropped"]) == (1, 3, 2)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("dropped a" in m and "hold buffer is full" in m for m in messages) == 2
    assert any("3 held frames delivered" in m for m in messages)


async def give_up() -> dict[str, Any]:
    log = logging.getLogger("test-relay-ws")
    port = free_port()
    upstream = start_upstream(port)
    tracker = UpstreamTracker(log)
    tracker.set_url(f"http://127.0.0.1:{port}")
    settings = RelaySettings(local_token="local", remote_token=lambda: None, ws_resume_timeout=0.2)
    relay = Relay(settings, tracker, log)
    relay_port = relay.listen(0)
    client = await websocket.websocket_connect(
        f"ws://127.0.0.1:{relay_port}/api/kernels/k2/channels?session_id=s2&token=local"
    )
    await client.read_message()
    await stop_upstream(upstream)  # and it does not come back
    client.write_message("lost")
    closed = await asyncio.wait_for(client.read_message(), 10)
    # The relay forgets the socket once the close handshake is done.
    await until(lambda: not relay.sockets, "the relay forgot the closed socket")
    out = {
        "closed": closed,
        "code": client.close_code,
        "status": relay.status(),
        "sockets": dict(relay.sockets),
    }
    await relay.close()
    return out


def test_upstream_that_never_returns_closes_the_local_socket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "test-relay-ws")
    out = asyncio.run(give_up())
    # Closed on the local side, so the gateway client reconnects through the relay itself.
    assert (out["closed"], out["code"]) == (None, 1011)
    assert out["status"]["websockets"]["frames_dropped"] == 1
    assert "refused" in out["status"]["last_error"]
    assert out["sockets"] == {}
    assert any("dropped 1 frames held for the upstream" in r.getMessage() for r in caplog.records)


def start_small_upstream(limit: int) -> tuple[HTTPServer, int]:
    """A remote that, like jupyter_server, closes with 1009 on a message over its limit."""
    app = web.Application(
        [(r"/api/kernels/[^/]+/channels", Echo)], websocket_max_message_size=limit
    )
    port = free_port()
    server = HTTPServer(app)
    server.add_sockets(bind_sockets(port, "127.0.0.1"))
    return server, port


async def too_big(relay_limit: int | None) -> dict[str, Any]:
    """A frame over the remote's 1 KiB limit: refused by the relay when it knows the limit
    (relay_limit), else closed by the remote with 1009; either way counted, logged, visible."""
    RECEIVED.clear()
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    log = logging.getLogger("test-relay-ws")
    upstream, port = start_small_upstream(1024)
    tracker = UpstreamTracker(log)
    tracker.set_url(f"http://127.0.0.1:{port}")
    settings = RelaySettings(local_token="local", remote_token=lambda: None)
    if relay_limit is not None:
        settings.ws_max_message = relay_limit
    relay = Relay(settings, tracker, log)
    relay_port = relay.listen(0)
    client = await websocket.websocket_connect(
        f"ws://127.0.0.1:{relay_port}/api/kernels/k3/channels?session_id=s3&token=local"
    )
    out: dict[str, Any] = {"hello": await client.read_message()}
    client.write_message("small")
    out["small"] = await client.read_message()
    client.write_message("x" * 2000)
    out["closed"] = await asyncio.wait_for(client.read_message(), 10)
    out["code"], out["reason"] = client.close_code, client.close_reason
    out["received"] = list(RECEIVED)
    out["status"] = relay.status()
    await relay.close()
    await stop_upstream(upstream)
    gc.collect()  # an unretrieved write future reports itself when collected
    await asyncio.sleep(0)
    out["unretrieved"] = unretrieved
    return out


@pytest.mark.parametrize("relay_limit", [1024, None], ids=["relay-knows", "remote-refuses"])
def test_a_frame_too_big_for_the_remote_is_refused_counted_and_logged(
    relay_limit: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "test-relay-ws")
    out = asyncio.run(too_big(relay_limit))
    assert (out["hello"], out["small"]) == ("hello s3", "echo small")
    # The local side sees why: closed with 1009 and a reason (the gateway client reconnects).
    assert (out["closed"], out["code"]) == (None, 1009)
    assert "message too big" in out["reason"]
    assert out["received"] == ["small"]
    ws = out["status"]["websockets"]
    assert (ws["frames_refused"], ws["frames_dropped"]) == (1, 0)
    refused = [r for r in caplog.records if "refused a" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.WARNING], caplog.text
    if relay_limit is not None:
        assert "a 2000-byte frame from the local side" in refused[0].getMessage()
        assert "at most 1024 bytes" in refused[0].getMessage()
    assert out["unretrieved"] == []
    assert "Task exception was never retrieved" not in caplog.text


class KernelDelete(web.RequestHandler):
    def delete(self, kernel_id: str) -> None:
        self.set_status(204)
        self.finish()


async def stopping(shut_down: bool) -> dict[str, Any]:
    """The relay stopping with a kernel websocket open: new websockets refused, the kernel's
    DELETE still forwarded; it stops once the kernel is shut down (or on a second signal)."""
    log = logging.getLogger("test-relay-ws")
    port = free_port()
    upstream = HTTPServer(
        web.Application(
            [(r"/api/kernels/[^/]+/channels", Echo), (r"/api/kernels/([^/]+)", KernelDelete)]
        )
    )
    upstream.add_sockets(bind_sockets(port, "127.0.0.1"))
    tracker = UpstreamTracker(log)
    tracker.set_url(f"http://127.0.0.1:{port}")
    relay = Relay(RelaySettings(local_token="local", remote_token=lambda: None), tracker, log)
    relay_port = relay.listen(0)
    base = f"127.0.0.1:{relay_port}/api/kernels/k4"
    client = await websocket.websocket_connect(f"ws://{base}/channels?session_id=s4&token=local")
    await client.read_message()
    stop_now = asyncio.Event()
    closing = asyncio.ensure_future(relay.close(grace=30, stop_now=stop_now))
    out: dict[str, Any] = {"closed": await asyncio.wait_for(client.read_message(), 10)}
    out["code"] = client.close_code
    try:
        await websocket.websocket_connect(f"ws://{base}/channels?session_id=s5&token=local")
    except HTTPClientError as e:
        out["refused"] = (e.code, json.loads(e.response.body if e.response else b"{}"))
    http = AsyncHTTPClient(force_instance=True)
    if shut_down:
        r = await http.fetch(f"http://{base}?token=local", method="DELETE", raise_error=False)
        out["delete"] = r.code
    else:
        stop_now.set()  # a second Ctrl-C
    await asyncio.wait_for(closing, 20)
    http.close()
    await stop_upstream(upstream)
    return out


@pytest.mark.parametrize("shut_down", [True, False], ids=["kernel-shut-down", "second-signal"])
def test_a_stopping_relay_still_answers_the_kernel_shutdown(
    shut_down: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "test-relay-ws")
    out = asyncio.run(stopping(shut_down))
    assert (out["closed"], out["code"]) == (None, 1001)
    code, body = out["refused"]
    check_relay_body("Error", body)
    assert (code, body["reason"]) == (503, "relay_stopping")
    assert body["error"]["hint"]
    left = "Stopped before the local JupyterLab shut down kernel(s) k4" in caplog.text
    if shut_down:
        assert out["delete"] == 204
        assert not left
    else:
        assert left
