"""A remote that stops answering is said to be gone, once, and back once it answers again.

In-process with a real tornado remote that is stopped and started again at the same address,
and end to end: a remote `jupyter server` killed with SIGKILL, whose connection file still says
`ready` (it could not update it), behind a real relay process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from relay_env import check_relay_body, start_relay
from test_relay_ws import free_port
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tunnel_env import TunnelServer

from jupyter_colab_tunnel.local.relay import Relay, RelaySettings, reachability
from jupyter_colab_tunnel.local.upstream import UpstreamTracker


class Kernels(web.RequestHandler):
    def get(self) -> None:
        self.finish({"version": "remote"} if self.request.path == "/api" else {"kernels": 0})


def start_remote(port: int) -> HTTPServer:
    server = HTTPServer(web.Application([(r"/api(?:/kernels)?", Kernels)]))
    server.add_sockets(bind_sockets(port, "127.0.0.1"))
    return server


async def until(condition: Any, what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def gone_and_back() -> dict[str, Any]:
    log = logging.getLogger("test-relay-reach")
    port = free_port()
    remote = start_remote(port)
    tracker = UpstreamTracker(log)
    tracker.set_url(f"http://127.0.0.1:{port}")
    settings = RelaySettings(local_token="local", remote_token=lambda: None, http_wait=0.05)
    # The two fields `connect` adds, so that the status is the documented one.
    relay = Relay(settings, tracker, log, lambda: {"connection_file": None, "remote": None})
    relay_port = relay.listen(0)
    client = AsyncHTTPClient(force_instance=True)

    async def get() -> int:
        r = await client.fetch(
            f"http://127.0.0.1:{relay_port}/api/kernels",
            headers={"Authorization": "token local"},
            raise_error=False,
        )
        return int(r.code)

    out: dict[str, Any] = {"before": await get()}
    remote.stop()  # the remote dies: nothing listens at its address any more
    await remote.close_all_connections()
    out["failed"] = [await get() for _ in range(2)]
    await until(lambda: relay.status()["remote_state"] == "unreachable", "unreachable")
    out["down"] = relay.status()
    out["more"] = [await get() for _ in range(3)]  # no new warning for these
    remote = start_remote(port)  # back at the same address (a named tunnel, a restart)
    await until(lambda: relay.status()["remote_unreachable"] is None, "the remote back")
    out["back"] = relay.status()
    out["after"] = await get()
    client.close()
    await relay.close()
    remote.stop()
    await remote.close_all_connections()
    return out


def test_a_remote_that_stops_answering_is_said_gone_once_and_back_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The relay probes a gone remote every 2 s; the test need not wait that long for "back".
    monkeypatch.setattr(reachability, "PROBE_INTERVAL", 0.05)
    caplog.set_level(logging.INFO, "test-relay-reach")
    out = asyncio.run(gone_and_back())
    assert out["before"] == 200
    assert out["failed"] == [502, 502]
    down = out["down"]
    check_relay_body("RelayStatus", down)
    assert down["remote_unreachable"]["last_error"].startswith("connection_refused")
    assert "restart it on the GPU machine" in down["remote_unreachable"]["hint"]
    assert out["more"] == [502, 502, 502]
    messages = [r.getMessage() for r in caplog.records]
    gone = [m for m in messages if "is unreachable" in m]
    assert len(gone) == 1, messages
    assert "restart it on the GPU machine" in gone[0]
    assert messages.count("The remote answers again") == 1
    assert out["back"]["remote_state"] == "ready"
    assert out["after"] == 200


@pytest.mark.e2e
def test_a_remote_killed_with_sigkill_is_reported_unreachable(
    tunnel_server: Any, tmp_path: Path
) -> None:
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    remote: TunnelServer = tunnel_server(
        traits={"connection_file": str(connection_file), "tunnel_mode": "quick"}
    )
    remote.wait_state("ready")
    token_file = tmp_path / "remote_token"
    token_file.write_text(remote.server.token + "\n")
    token_file.chmod(0o600)
    relay = start_relay(
        tmp_path / "relay",
        ["--connection-file", str(connection_file), "--token-file", str(token_file), "--wait=1"],
        edge_root=tmp_path,
    )
    try:
        assert relay.request("GET", "api/kernels").status == 200
        remote.server.proc.send_signal(signal.SIGKILL)
        remote.server.proc.wait(30)
        assert json.loads(connection_file.read_text())["state"] == "ready"  # it could not say
        deadline = time.monotonic() + 60
        while relay.status()["remote_state"] != "unreachable":
            assert time.monotonic() < deadline, relay.log()[-3000:]
            r = relay.request("GET", "api/kernels")
            assert r.status == 502, r.body
        status = relay.status()
        check_relay_body("RelayStatus", status)
        assert "restart it on the GPU machine" in status["remote_unreachable"]["hint"]
        for _ in range(2):
            assert relay.request("GET", "api/kernels").status == 502
        assert relay.log().count("is unreachable") == 1, relay.log()
    finally:
        relay.stop()
