"""`connect --forward` end to end: a real remote `jupyter server` with the extension (its
/colab/forward route), the cloudflared stand-in it supervises, and a real relay with --forward,
in front of a small app on the remote's side (tests/forward_env.py's, on a loopback port).

The app is reached at 127.0.0.1:LOCAL as if it ran here, before and after a tunnel restart
(new URL), without restarting the relay: a forwarded websocket open across the restart is
closed with 1012 and the next one reaches the app through the new URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from forward_env import App
from relay_env import RelayProcess, start_relay
from server_process import free_port
from tornado import websocket
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tunnel_env import TunnelServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def app() -> Iterator[App]:
    a = App()
    a.start()
    try:
        yield a
    finally:
        a.stop()


async def fetch(request: HTTPRequest | str) -> HTTPResponse:
    client = AsyncHTTPClient(force_instance=True, max_body_size=1 << 30)
    try:
        return await client.fetch(request, raise_error=False)
    finally:
        client.close()


def start(tunnel_server: Any, app: App, tmp_path: Path) -> tuple[TunnelServer, RelayProcess, int]:
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    remote: TunnelServer = tunnel_server(
        traits={"connection_file": str(connection_file), "tunnel_mode": "quick"}
    )
    remote.wait_state("ready")
    token_file = tmp_path / "remote_token"
    token_file.write_text(remote.server.token + "\n")
    token_file.chmod(0o600)
    local = free_port()
    relay = start_relay(
        tmp_path / "relay",
        [
            f"--connection-file={connection_file}",
            f"--token-file={token_file}",
            f"--forward={local}:{app.app_port}",
            "--wait=2",  # how long a request waits for a live URL before its 503
        ],
        edge_root=tmp_path,
    )
    return remote, relay, local


async def test_a_forwarded_app_works_through_a_real_remote_and_a_tunnel_restart(
    tunnel_server: Any, app: App, tmp_path: Path
) -> None:
    remote, relay, local = start(tunnel_server, app, tmp_path)
    base = f"http://127.0.0.1:{local}"
    try:
        assert f"Forwarding {base}/ -> remote port {app.app_port}" in relay.output()
        body = os.urandom(1 << 20)
        r = await fetch(
            HTTPRequest(
                f"{base}/a/b?token=apps-own", method="POST", body=body, headers={"Cookie": "c=1"}
            )
        )
        assert r.code == 200, r.body
        seen = json.loads(r.body)
        assert seen["path"] == "/a/b"
        assert seen["query"] == "token=apps-own"
        assert seen["host"] == f"127.0.0.1:{local}"
        assert seen["cookie"] == "c=1"
        assert seen["authorization"] is None  # the Jupyter token never reaches the app
        assert seen["sha256"] == hashlib.sha256(body).hexdigest()
        assert remote.server.token.encode() not in r.body

        # Server-sent events: the first arrives while the stream is still open.
        chunks: asyncio.Queue[bytes] = asyncio.Queue()
        answer = asyncio.ensure_future(
            fetch(HTTPRequest(f"{base}/events?gate=e2e", streaming_callback=chunks.put_nowait))
        )
        assert b"data: first" in await asyncio.wait_for(chunks.get(), 30)
        assert not answer.done()
        app.release_events("e2e")
        assert (await asyncio.wait_for(answer, 30)).code == 200

        ws_url = f"ws://127.0.0.1:{local}/ws"
        conn = await websocket.websocket_connect(
            ws_url, subprotocols=["v2.echo"], max_message_size=1 << 30
        )
        assert conn.selected_subprotocol == "v2.echo"
        big = os.urandom(16 << 20)
        await conn.write_message(big, binary=True)
        back = await asyncio.wait_for(conn.read_message(), 60)
        assert isinstance(back, bytes)
        assert hashlib.sha256(back).digest() == hashlib.sha256(big).digest()

        # A tunnel restart: a new URL, followed without restarting anything local.
        before = remote.tunnel()
        assert remote.post("restart").status == 200
        after = remote.server.wait_for(
            "colab/tunnel",
            lambda b: b["state"] == "ready" and b["pid"] != before["pid"],
            timeout=30,
        )
        assert after["url"] != before["url"]
        assert await asyncio.wait_for(conn.read_message(), 30) is None
        assert conn.close_code == 1012
        relay.wait_status(lambda s: s["upstream"] == after["url"].rstrip("/"))
        r = await fetch(f"{base}/after")
        assert r.code == 200, r.body
        again = await websocket.websocket_connect(ws_url)
        await again.write_message("after the restart")
        assert await again.read_message() == "after the restart"
        again.close()
        forward = relay.status()["forwards"][0]
        assert forward["websockets_closed_on_switch"] == 1
        assert forward["errors"] == 0, relay.log()[-3000:]

        # The tunnel stopped: the forward answers 503, it does not reach the app another way.
        assert remote.post("stop").status == 200
        relay.wait_status(lambda s: s["upstream"] is None)
        r = await fetch(f"{base}/after")
        assert r.code == 503, r.body
        assert json.loads(r.body)["reason"] == "no_upstream"
    finally:
        relay.stop()
