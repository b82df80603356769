"""End to end: a local gateway server and a browser drive a remote kernel through the tunnel.

Real `jupyter server` processes on both sides, real HTTP and kernel websockets; only cloudflared
is the stand-in, whose local edge listener stands in for DNS of the public URL.
"""

from __future__ import annotations

import re
import urllib.request
from typing import Any
from urllib.parse import urlparse

import psutil
import pytest
import websocket
from e2e_kit import (
    Browser,
    fixed_port,
    http,
    kernel_channel,
    start_kernel,
    wait_until_listening,
)
from server_process import ServerProcess, free_port
from tunnel_env import NAMED_HOST, TunnelServer, named_tunnel_env

pytestmark = pytest.mark.e2e


def gateway_args(edge: str, token: str | None) -> list[str]:
    """The seed workflow's `--gateway-url=... --GatewayClient.auth_token=...`, on a server."""
    args = [
        f"--gateway-url={edge}",
        # The extension is installed here too; the local side runs no tunnel.
        "--ColabTunnelApp.tunnel_mode=off",
        "--GatewayClient.request_timeout=60",
    ]
    if token is not None:
        args.append(f"--GatewayClient.auth_token={token}")
    return args


def ready_remote(tunnel_server: Any, **kwargs: Any) -> tuple[TunnelServer, dict[str, Any], str]:
    """A remote server whose tunnel is ready; its /colab/tunnel body and its edge address."""
    ts: TunnelServer = tunnel_server(**kwargs)
    body = ts.wait_state("ready")
    edge = ts.fake_state(body["pid"])["edge"]
    assert edge, body
    return ts, body, edge


def proxied_responses(ts: TunnelServer, pid: int) -> dict[int, float]:
    """Responses the stand-in proxied, by status code (its Prometheus counter)."""
    metrics = ts.fake_state(pid)["metrics"]
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.findall(r'cloudflared_tunnel_response_by_code\{status_code="(\d+)"\} (\S+)', text)
    return {int(code): float(n) for code, n in found}


def remote_kernel_ids(ts: TunnelServer) -> list[str]:
    return [k["id"] for k in ts.server.get_json("api/kernels")]


def test_local_gateway_runs_kernel_on_remote(tunnel_server: Any, server_factory: Any) -> None:
    ts, body, edge = ready_remote(tunnel_server)
    local: ServerProcess = server_factory(args=gateway_args(edge, ts.server.token))

    # Kernelspecs come from the remote; a kernel started through the local server lives there.
    specs = local.get_json("api/kernelspecs")
    assert "python3" in specs["kernelspecs"]
    kernel_id = start_kernel(local)
    assert remote_kernel_ids(ts) == [kernel_id]
    assert [k["id"] for k in local.get_json("api/kernels")] == [kernel_id]

    with kernel_channel(local, kernel_id) as channel:
        run = channel.execute("print(6*7)")
        assert (run.status, run.stdout, run.error) == ("ok", "42\n", None)
        # A kernel started without a path (as gateway clients do) runs in the remote server's
        # working directory (its root dir when started there, as on Colab): the remote's files.
        where = channel.execute("import os; print(os.getcwd())")
        assert where.stdout.strip() == psutil.Process(ts.server.pid).cwd() == str(ts.server.workdir)
        assert where.stdout.strip() != psutil.Process(local.pid).cwd()
        # The remote kernel has a websocket client (the local server's), through the tunnel.
        remote = ts.server.get_json(f"api/kernels/{kernel_id}")
        assert remote["connections"] == 1
    responses = proxied_responses(ts, body["pid"])
    assert responses.get(101, 0) >= 1  # the kernel websocket went through the edge
    assert responses.get(201, 0) >= 1  # and so did the kernel start

    # Shutting the kernel down through the local server removes it on the remote.
    assert local.request("DELETE", f"api/kernels/{kernel_id}", timeout=30).status == 204
    assert remote_kernel_ids(ts) == []


def test_browser_straight_to_the_tunnel(tunnel_server: Any) -> None:
    ts, body, edge = ready_remote(tunnel_server)
    host = urlparse(body["url"]).hostname
    assert host
    browser = Browser(edge=edge, host=host)

    assert browser.request("GET", "/api/kernels").status == 403  # not logged in yet
    login = browser.login(ts.server.token)
    assert login.status == 302, login.body[:500]
    assert any(name.startswith("username-") for name in browser.cookies), browser.cookies
    assert browser.request("GET", "/api/kernels").json() == []

    # XSRF is kept: a cookie-authenticated write without the X-XSRFToken header is refused.
    no_xsrf = browser.request("POST", "/api/kernels", body={}, headers={"X-XSRFToken": ""})
    assert no_xsrf.status == 403
    created = browser.request("POST", "/api/kernels", body={"name": "python3"})
    assert created.status == 201, created.body
    kernel_id = created.json()["id"]
    assert [k["id"] for k in browser.request("GET", "/api/kernels").json()] == [kernel_id]

    with browser.kernel_channel(kernel_id) as channel:  # Origin: https://<tunnel host>
        run = channel.execute("print(6*7)")
        assert (run.status, run.stdout) == ("ok", "42\n")

    # A page on another site cannot open the kernel with the user's cookie.
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        browser.kernel_channel(kernel_id, origin="https://evil.example.com")
    assert refused.value.status_code == 403


@pytest.mark.parametrize("token", ["wrong-token", None], ids=["wrong", "missing"])
def test_bad_remote_token_is_refused_and_reported(
    tunnel_server: Any, server_factory: Any, token: str | None
) -> None:
    ts, _, edge = ready_remote(tunnel_server)
    headers = {"Authorization": f"token {token}"} if token else {}
    assert http("GET", f"{edge}/api/kernels", headers=headers).status == 403
    assert http("POST", f"{edge}/api/kernels", body={}, headers=headers).status == 403

    local: ServerProcess = server_factory(args=gateway_args(edge, token), wait=False)
    wait_until_listening(local)
    r = local.request("POST", "api/kernels", body={"name": "python3"}, timeout=60)
    assert r.status == 403, (r.status, r.body)
    # jupyter_server puts its unformatted template ("[%s] %s") in the JSON message; the
    # filled-in one, with the remote's reason and the gateway URL, is in its log. For a POST
    # the remote's XSRF check speaks first: a token it does not accept is no token at all.
    assert r.json()["message"].startswith("Error from Gateway:"), r.body
    gateway = f"Exception while attempting to connect to Gateway server url '{edge}'"
    log = local.log()
    assert (
        "403 POST /api/kernels (127.0.0.1): Error from Gateway: "
        f"['_xsrf' argument missing from POST] {gateway}"
    ) in log
    # Even the local /api/status fails: it asks the remote for its kernels.
    status = local.request("GET", "api/status")
    assert status.status == 403
    assert status.json()["message"].startswith("Error from Gateway:")
    assert f"403 GET /api/status (127.0.0.1): Error from Gateway: [Forbidden] {gateway}" in (
        local.log()
    )
    assert remote_kernel_ids(ts) == []


def test_named_tunnel_restart_keeps_the_local_client_working(
    tunnel_server: Any, server_factory: Any
) -> None:
    remote_port, edge_port = free_port(), free_port()
    assert remote_port != edge_port
    env = named_tunnel_env(remote_port, edge_port)
    with fixed_port(remote_port):
        ts, first, edge = ready_remote(
            tunnel_server, env=env, traits={"public_hostname": NAMED_HOST}
        )
    assert ts.server.port == remote_port
    assert (first["mode"], first["url"]) == ("named", f"https://{NAMED_HOST}")
    assert edge == f"http://127.0.0.1:{edge_port}"

    local: ServerProcess = server_factory(args=gateway_args(edge, ts.server.token))
    kernel_id = start_kernel(local)
    with kernel_channel(local, kernel_id) as channel:
        assert channel.execute("x = 6*7; print(x)").stdout == "42\n"

        r = ts.post("restart")
        assert r.status == 200, r.body
        again = ts.server.wait_for(
            "colab/tunnel", lambda b: b["state"] == "ready" and b["pid"] != first["pid"]
        )
        assert again["url"] == first["url"]
        assert ts.fake_state(again["pid"])["edge"] == edge
        assert ts.alive_spawned() == [again["pid"]]

        # The same client connection, the same kernel (x survived): the local server
        # reconnected its websocket to the remote through the new cloudflared.
        run = channel.execute_eventually("print(x)")
        assert (run.status, run.stdout) == ("ok", "42\n")
    assert remote_kernel_ids(ts) == [kernel_id]
    assert proxied_responses(ts, again["pid"]).get(101, 0) >= 1
