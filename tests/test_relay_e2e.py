"""The relay end to end: remote server + stand-in tunnel -> relay process -> local gateway server.

Real processes throughout: the remote `jupyter server` with the extension and the cloudflared
stand-in writing a connection file, the relay (`jupyter colab-tunnel connect`, reaching the
stand-in's TLS edge by its public name: testkit/relay_process.py) and a local `jupyter server` in
gateway mode whose kernel websocket must survive tunnel switches.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import websocket
from e2e_kit import KernelChannel, fixed_port, kernel_channel, start_kernel, ws_url
from relay_env import (
    RelayProcess,
    relay_command,
    start_following_relay,
    start_local,
    start_relay,
    write_secret,
)
from server_process import ServerProcess, free_port
from tunnel_env import NAMED_HOST, TunnelServer, named_tunnel_env

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    remote: TunnelServer
    relay: RelayProcess
    local: ServerProcess
    connection_file: Path


@pytest.fixture
def stack(tunnel_server: Any, server_factory: Any, tmp_path: Path) -> Iterator[Stack]:
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    remote: TunnelServer = tunnel_server(
        traits={"connection_file": str(connection_file), "tunnel_mode": "quick"}
    )
    remote.wait_state("ready")
    relay = start_following_relay(tmp_path, remote.server.token, connection_file)
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
    assert body["url"] == tunnel["url"]
    assert body["gateway_url"] == tunnel["url"]
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

        old_url = stack.remote.tunnel()["url"]
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


def test_named_tunnel_restart_same_url(
    tunnel_server: Any, server_factory: Any, tmp_path: Path
) -> None:
    """A named tunnel keeps its URL: the relay (given --url) re-dials the same address."""
    remote_port, edge_port = free_port(), free_port()
    env = named_tunnel_env(remote_port, edge_port)
    with fixed_port(remote_port):
        remote: TunnelServer = tunnel_server(env=env, traits={"public_hostname": NAMED_HOST})
    first = remote.wait_state("ready")
    # The remote token from the environment this time (JUPYTER_COLAB_TUNNEL_TOKEN).
    relay = start_relay(
        tmp_path / "relay",
        ["--url", f"http://127.0.0.1:{edge_port}"],
        env={"JUPYTER_COLAB_TUNNEL_TOKEN": remote.server.token},
    )
    try:
        local = start_local(server_factory, relay)
        kernel_id = start_kernel(local)
        with kernel_channel(local, kernel_id) as channel:
            assert channel.execute("x = 41; print(x)").stdout == "41\n"
            assert remote.post("restart").status == 200
            run = channel.execute("print(x + 1)", timeout=60)
            assert (run.status, run.stdout) == ("ok", "42\n")
        again = remote.tunnel()
        assert again["pid"] != first["pid"]
        assert again["url"] == first["url"]
        assert relay.status()["websockets"]["redials"] >= 1
    finally:
        relay.stop()


def test_replaced_remote_with_the_same_token(
    tunnel_server: Any, server_factory: Any, tmp_path: Path
) -> None:
    """A new runtime (a new remote server, same token, same connection file): new kernels work
    through the same relay and the same local server."""
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    token = "same-token-kept-in-colab-secrets-0123456789"
    traits = {"connection_file": str(connection_file), "tunnel_mode": "quick"}
    first: TunnelServer = tunnel_server(traits=traits, token=token)
    first.wait_state("ready")
    token_file = write_secret(tmp_path / "remote_token", token)
    relay = start_relay(
        tmp_path / "relay",
        ["--connection-file", str(connection_file), "--token-file", str(token_file)],
        edge_root=tmp_path,
    )
    try:
        local = start_local(server_factory, relay)
        kernel_id = start_kernel(local)
        with kernel_channel(local, kernel_id) as channel:
            assert channel.execute("print(1)").stdout == "1\n"
        first.server.stop()
        second: TunnelServer = tunnel_server(traits=traits, token=token)
        url = second.wait_state("ready")["url"]
        relay.wait_status(lambda s: s["upstream"] == url)
        new_kernel = start_kernel(local)
        assert [k["id"] for k in second.server.get_json("api/kernels")] == [new_kernel]
        with kernel_channel(local, new_kernel) as channel:
            assert channel.execute("print(6 * 7)").stdout == "42\n"
    finally:
        relay.stop()


def drain(ws: websocket.WebSocket) -> None:
    """Read until the socket closes (raises) or stays silent for its timeout."""
    for _ in range(1000):
        ws.recv()


def test_one_upstream_per_kernel_session(stack: Stack) -> None:
    """A newer local connection with the same session replaces the older, on both sides."""
    kernel_id = start_kernel(stack.local)
    url = ws_url(stack.relay.url) + f"/api/kernels/{kernel_id}/channels"
    headers = {"Authorization": f"token {stack.relay.token}"}
    older = KernelChannel(url, headers=headers)
    assert older.execute("print('older')").stdout == "older\n"
    newer = KernelChannel.__new__(KernelChannel)
    newer.session = older.session
    newer.ws = websocket.create_connection(
        f"{url}?session_id={older.session}",
        header=[f"{k}: {v}" for k, v in headers.items()],
        timeout=30,
    )
    try:
        assert newer.execute("print('newer')").stdout == "newer\n"
        # The older local socket was closed by the relay.
        older.ws.settimeout(10)
        with pytest.raises((websocket.WebSocketConnectionClosedException, OSError)):
            drain(older.ws)
        remote = stack.remote.server.get_json(f"api/kernels/{kernel_id}")
        assert remote["connections"] == 1  # only the newer one reaches the remote
        assert stack.relay.status()["websockets"]["replaced"] == 1
    finally:
        newer.close()
        older.close()


def test_relay_refuses_bad_token_host_and_origin(stack: Stack) -> None:
    relay = stack.relay
    for token in (None, "wrong-token"):
        r = relay.request("GET", "api/kernels", token=token)
        assert r.status == 403, r.body
        assert r.json()["reason"] == "bad_local_token"
        assert "--local-token-file" in r.json()["message"]
    assert relay.request("GET", "api/kernels?token=" + relay.token, token=None).status == 200
    evil = relay.request("GET", "api/kernels", headers={"Host": "evil.example.com"})
    assert (evil.status, evil.json()["reason"]) == (403, "host_not_allowed")
    for host in (f"localhost:{relay.port}", f"127.0.0.1:{relay.port}"):
        assert relay.request("GET", "api/kernels", headers={"Host": host}).status == 200
    cross = relay.request("GET", "api/kernels", headers={"Origin": "https://evil.example.com"})
    assert (cross.status, cross.json()["reason"]) == (403, "origin_not_allowed")
    same = relay.request("GET", "api/kernels", headers={"Origin": relay.url})
    assert same.status == 200
    kernel_id = start_kernel(stack.local)
    channels = ws_url(relay.url) + f"/api/kernels/{kernel_id}/channels"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(channels, timeout=10)
    assert refused.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as cross_ws:
        websocket.create_connection(
            channels,
            header=[f"Authorization: token {relay.token}"],
            origin="https://evil.example.com",
            timeout=10,
        )
    assert cross_ws.value.status_code == 403
    assert relay.status()["websockets"]["total"] == 0  # refused before any upstream dial


def test_relay_listens_on_loopback_and_keeps_the_remote_token_secret(stack: Stack) -> None:
    relay, secret = stack.relay, stack.remote.server.token
    listening = [
        c.laddr
        for c in psutil.Process(relay.proc.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening, "the relay listens nowhere"
    assert {addr.ip for addr in listening} == {"127.0.0.1"}
    assert {addr.port for addr in listening} == {relay.port}
    kernel_id = start_kernel(stack.local)
    with kernel_channel(stack.local, kernel_id) as channel:
        assert channel.execute("print(2)").stdout == "2\n"
    bodies = [
        relay.request("GET", "relay/status").body,
        relay.request("GET", "api/kernels").body,
        relay.request("GET", "api/kernels", token="wrong").body,
    ]
    assert " ".join(psutil.Process(relay.proc.pid).cmdline()).count(secret) == 0
    for text in (relay.log(), relay.output(), *(b.decode() for b in bodies)):
        assert secret not in text
        assert relay.token not in text  # nor the relay's own token
    assert oct(relay.token_file.stat().st_mode & 0o777) == oct(0o600)
    printed = relay.output()
    assert 'JUPYTER_GATEWAY_AUTH_TOKEN="$(cat ' in printed
    assert "c.GatewayClient.gateway_retry_max = 60" in printed


def test_outage_answers_json_then_recovers(stack: Stack, tmp_path: Path) -> None:
    remote = stack.remote
    assert remote.post("stop").status == 200
    stack.relay.wait_status(lambda s: s["upstream"] is None)
    started = time.monotonic()
    r = stack.relay.request("GET", "api/kernels")
    waited = time.monotonic() - started
    assert r.status == 503, r.body
    body = r.json()
    assert body["reason"] == "no_upstream"
    assert "stopped" in body["message"]
    assert 10 < waited < 40  # it waited (--wait=15) for a live upstream, then answered
    # Started again (a new URL): served again, nothing restarted locally.
    assert remote.post("start").status == 200
    url = remote.wait_state("ready")["url"]
    stack.relay.wait_status(lambda s: s["upstream"] == url)
    assert stack.relay.request("GET", "api/kernels").status == 200
    assert stack.local.get_json("api/kernelspecs")["kernelspecs"]

    # A relay whose remote does not listen at all: 502, cause and hint.
    dead = start_relay(tmp_path / "dead", ["--url", f"http://127.0.0.1:{free_port()}", "--wait=1"])
    try:
        r = dead.request("GET", "api/kernels")
        assert r.status == 502, r.body
        assert r.json()["reason"] == "connection_refused"
        assert r.json()["error"]["hint"]
        assert "refused" in dead.status()["last_error"]
    finally:
        dead.stop()


def test_check_mode(stack: Stack, server_factory: Any, tmp_path: Path) -> None:
    def check(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_COLAB")}
        full_env.update(env or {})
        done = subprocess.run(
            relay_command(["--check", *args]),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode, done.stdout + done.stderr

    remote = stack.remote.server
    direct = remote.url.rstrip("/")
    ok = check(["--url", direct], env={"JUPYTER_COLAB_TUNNEL_TOKEN": remote.token})
    assert ok[0] == 0, ok
    assert "remote check: OK (ok)" in ok[1]
    wrong = check(["--url", direct], env={"JUPYTER_COLAB_TUNNEL_TOKEN": "wrong"})
    assert wrong[0] == 1, wrong
    assert "refused the token (403)" in wrong[1]
    plain: ServerProcess = server_factory(
        args=['--ServerApp.jpserver_extensions={"jupyter_colab_tunnel": False}']
    )
    gateway_only = check(
        ["--url", plain.url.rstrip("/")], env={"JUPYTER_COLAB_TUNNEL_TOKEN": plain.token}
    )
    assert gateway_only[0] == 0, gateway_only
    assert "without jupyter-colab-tunnel: it still works as a gateway" in gateway_only[1]
    refused = check(["--url", f"http://127.0.0.1:{free_port()}"])
    assert refused[0] == 1
    assert "connection refused" in refused[1]
    bad_file = tmp_path / "broken.json"
    bad_file.write_text("{not json")
    broken = check(["--connection-file", str(bad_file)])
    assert broken[0] == 1
    assert "not JSON" in broken[1]
