"""The relay end to end: remote server + stand-in tunnel -> relay process -> local gateway server.

Real processes throughout: the remote `jupyter server` with the extension and the cloudflared
stand-in writing a connection file, the relay (`jupyter colab-tunnel connect`, with the
stand-in's edge in place of DNS: tests/relay_process.py) and a local `jupyter server` in gateway
mode whose kernel websocket must survive tunnel switches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_kit import kernel_channel, start_kernel
from relay_env import RelayProcess, start_relay
from server_process import ServerProcess
from tunnel_env import TunnelServer

pytestmark = pytest.mark.e2e

# The local server's gateway client, as the relay prints it (cli.GATEWAY_RETRY).
GATEWAY_ARGS = [
    "--ColabTunnelApp.tunnel_mode=off",
    "--GatewayClient.request_timeout=60",
    "--GatewayClient.gateway_retry_interval=0.5",
    "--GatewayClient.gateway_retry_interval_max=2.0",
    "--GatewayClient.gateway_retry_max=60",
]


@dataclass
class Stack:
    remote: TunnelServer
    relay: RelayProcess
    local: ServerProcess
    connection_file: Path


def write_secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def start_local(server_factory: Any, relay: RelayProcess, wait: bool = True) -> ServerProcess:
    local: ServerProcess = server_factory(
        args=[f"--gateway-url={relay.url}", *GATEWAY_ARGS],
        # The relay's token, as the printed command passes it (not on the command line).
        env={"JUPYTER_GATEWAY_AUTH_TOKEN": relay.token},
        wait=wait,
    )
    return local


@pytest.fixture
def stack(tunnel_server: Any, server_factory: Any, tmp_path: Path) -> Iterator[Stack]:
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    remote: TunnelServer = tunnel_server(
        traits={"connection_file": str(connection_file), "tunnel_mode": "quick"}
    )
    remote.wait_state("ready")
    token_file = write_secret(tmp_path / "remote_token", remote.server.token)
    relay = start_relay(
        tmp_path / "relay",
        ["--connection-file", str(connection_file), "--token-file", str(token_file)],
        edge_state_dirs=[remote.state_dir],
    )
    try:
        local = start_local(server_factory, relay)
        yield Stack(remote, relay, local, connection_file)
    finally:
        relay.stop()


def restart_tunnel(remote: TunnelServer) -> tuple[str, str]:
    """POST restart; return (old URL, new URL) once the new tunnel is ready."""
    before = remote.tunnel()
    r = remote.post("restart")
    assert r.status == 200, r.body
    after = remote.server.wait_for(
        "colab/tunnel",
        lambda b: b["state"] == "ready" and b["pid"] != before["pid"],
        timeout=30,
    )
    return before["url"], after["url"]


def test_connection_file_is_written(stack: Stack) -> None:
    body = json.loads(stack.connection_file.read_text())
    tunnel = stack.remote.tunnel()
    assert body["url"] == tunnel["url"] and body["gateway_url"] == tunnel["url"]
    assert body["state"] == "ready"
    assert body["updated_at"].endswith("Z")
    assert "token" not in body  # only with connection_file_token = True
    assert stack.connection_file.stat().st_mode & 0o777 == 0o600


def test_kernel_survives_tunnel_switches(stack: Stack) -> None:
    remote, relay, local = stack.remote, stack.relay, stack.local
    kernel_id = start_kernel(local)
    assert [k["id"] for k in remote.server.get_json("api/kernels")] == [kernel_id]
    with kernel_channel(local, kernel_id) as channel:
        run = channel.execute("x = 41; runs = 0; print('set')")
        assert (run.status, run.stdout) == ("ok", "set\n")

        old_url, _ = stack.remote.tunnel()["url"], None
        r = remote.post("restart")
        assert r.status == 200, r.body
        # Sent while the old tunnel is gone and the new one is not ready yet: held by the
        # relay, delivered on the new upstream, run once, its output delivered back.
        during = channel.execute("runs += 1; print(x + 1)", timeout=60)
        assert (during.status, during.stdout) == ("ok", "42\n")
        new = remote.wait_state("ready")
        assert new["url"] != old_url

        after = channel.execute("print(runs, x + 1)")
        assert (after.status, after.stdout) == ("ok", "1 42\n")

        # Two more switches, the websocket opened before them still in use.
        for _ in range(2):
            old, new_url = restart_tunnel(remote)
            assert new_url != old
            relay.wait_status(lambda s, u=new_url: s["upstream"] == u)
            run = channel.execute("x += 1; print(x)", timeout=60)
            assert run.status == "ok", run
    status = relay.status()
    assert status["switches"] >= 3, status
    assert status["websockets"]["redials"] >= 3, status
    assert status["websockets"]["frames_dropped"] == 0, status
    assert "Upstream" in relay.log()
    # Nothing restarted: the same kernel on the remote, the local server never restarted.
    assert [k["id"] for k in remote.server.get_json("api/kernels")] == [kernel_id]
    assert local.proc.poll() is None
