"""`/colab/remote/*` on a local Jupyter server: the remote's JSON through its gateway connection.

Real processes throughout: a remote `jupyter server` with the extension, the cloudflared
stand-in and the NVML stand-in (two fake T4s), the relay, and a local gateway-mode server that
serves /colab/remote/* under its own token. The browser's side (the status-bar item) is
tests/test_lab_status_item.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dashboard_kit import start_gpu_tunnel_server
from e2e_kit import http
from relay_env import start_following_relay, start_local

from jupyter_colab_tunnel.local.lab.gateway_reader import gateway_url, refusal_for
from jupyter_colab_tunnel.local.remote_error import RemoteError
from testkit.relay_process import GATEWAY_ARGS

NAMES = ("status", "gpu", "tunnel", "relay")


def problem(response: Any, status: int, reason: str) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body)
    body = response.json()
    assert body["reason"] == reason, body
    assert body["error"]["kind"] == reason
    assert body["error"]["message"], body
    assert body["error"]["hint"], body
    assert body["message"].endswith(body["error"]["hint"])
    return dict(body)


@pytest.mark.e2e
def test_the_remote_through_the_relay_under_the_local_servers_own_auth(
    server_factory: Any, tmp_path: Path
) -> None:
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    remote = start_gpu_tunnel_server(
        tmp_path / "remote",
        traits={"connection_file": str(connection_file), "tunnel_mode": "quick"},
    )
    relay = None
    try:
        first = remote.wait_state("ready")
        relay = start_following_relay(tmp_path, remote.server.token, connection_file)
        local = start_local(server_factory, relay)

        # Each name answers what the remote (or the relay) itself answers.
        status = local.get_json("colab/remote/status")
        assert (
            status["server"]["started_at"]
            == remote.server.get_json("colab/status")["server"]["started_at"]
        )
        assert status["tunnel"]["state"] == "ready"
        gpu = local.get_json("colab/remote/gpu")
        assert gpu["available"] is True
        assert [d["name"] for d in gpu["devices"]] == ["Tesla T4", "Tesla T4"]
        assert [d["memory"]["total"] for d in gpu["devices"]] == [
            d["memory"]["total"] for d in remote.server.get_json("colab/gpu")["devices"]
        ]
        assert local.get_json("colab/remote/tunnel")["url"] == first["url"]
        assert local.get_json("colab/remote/relay")["upstream"] == first["url"]

        # Jupyter's own auth: no local token, no answer (and nothing is fetched).
        for name in NAMES:
            refused = local.request("GET", f"colab/remote/{name}", token=None)
            assert refused.status == 403, (name, refused.status)
            # The browser never holds the remote's nor the relay's token.
            answer = local.request("GET", f"colab/remote/{name}").body.decode()
            assert remote.server.token not in answer
            assert relay.token not in answer
        assert local.request("GET", "colab/remote/kernels").status == 404

        # A tunnel switch: the next read follows the relay to the new URL.
        assert remote.post("restart").status == 200
        after = remote.server.wait_for(
            "colab/tunnel", lambda b: b["state"] == "ready" and b["url"] != first["url"], 30
        )
        relay.wait_status(lambda s: s["upstream"] == after["url"])
        assert local.get_json("colab/remote/tunnel")["url"] == after["url"]

        # The remote's tunnel stopped: said in words, with the relay's own kind and hint.
        assert remote.post("stop").status == 200
        relay.wait_status(lambda s: s["upstream"] is None)
        # The relay holds a request up to its --wait (15 s here) for a live remote.
        gone = local.request("GET", "colab/remote/status", timeout=40)
        assert gone.status == 503, gone.body
        assert gone.json()["reason"] in ("remote_gone", "no_upstream")
        assert "stopped" in json.dumps(local.get_json("colab/remote/relay")["remote_state"])

        # The relay itself gone: a 502 that names it; the local server keeps serving.
        relay.proc.terminate()
        relay.proc.wait(10)
        body = problem(local.request("GET", "colab/remote/gpu"), 502, "connection_refused")
        assert relay.url.split("//")[1] in body["error"]["message"]
        assert local.request("GET", "api/contents").status == 200
    finally:
        if relay is not None:
            relay.stop()
        remote.server.stop()


@pytest.mark.e2e
def test_hidden_where_there_is_no_remote_of_ours(server_factory: Any) -> None:
    # Not in gateway mode: kernels run here.
    plain = server_factory(args=["--ColabTunnelApp.tunnel_mode=off"])
    for name in NAMES:
        problem(plain.request("GET", f"colab/remote/{name}"), 404, "not_gateway_mode")
    # A plain Jupyter gateway (a server without the extension): nothing of ours behind it.
    gateway = server_factory(
        config={"ServerApp": {"jpserver_extensions": {"jupyter_colab_tunnel": False}}}
    )
    unchecked = http(
        "GET", f"{gateway.url}colab/status", headers={"Authorization": f"token {gateway.token}"}
    )
    assert (
        unchecked.status == 404
    )  # no /colab here (the audited request() would hold it to the spec)
    local = server_factory(
        args=[f"--gateway-url={gateway.url.rstrip('/')}", *GATEWAY_ARGS],
        env={"JUPYTER_GATEWAY_AUTH_TOKEN": gateway.token},
    )
    for name in ("status", "gpu", "tunnel"):
        body = problem(local.request("GET", f"colab/remote/{name}"), 404, "no_extension")
        assert gateway.url.rstrip("/") in body["error"]["message"]
    problem(local.request("GET", "colab/remote/relay"), 404, "not_a_relay")
    local.stop()


def test_what_each_gateway_failure_answers() -> None:
    base = "http://127.0.0.1:9"
    cases = {
        "not_found": (404, "no_extension"),
        "remote_gone": (503, "remote_gone"),
        "no_upstream": (503, "no_upstream"),
        "timeout": (504, "timeout"),
        "connection_refused": (502, "connection_refused"),
        "forbidden": (502, "forbidden"),
        "no_tunnel": (502, "no_tunnel"),
    }
    for kind, (status, reason) in cases.items():
        refusal = refusal_for(RemoteError(kind, "said"), "status", base)  # type: ignore[arg-type]
        assert (refusal.status, refusal.problem.kind) == (status, reason), kind
    assert refusal_for(RemoteError("not_found", "x"), "relay", base).problem.kind == "not_a_relay"


def test_the_gateway_url_shown_never_holds_credentials() -> None:
    class Gateway:
        url = "https://user:secret@relay.example:8443/base/?token=abc"

    assert gateway_url(Gateway()) == "https://relay.example:8443/base"
    Gateway.url = ""
    assert gateway_url(Gateway()) is None


def test_the_gateway_is_asked_at_its_url_as_configured_and_named_without_its_credentials() -> None:
    """Credentials in GatewayClient.url reach the gateway (as its kernel requests do); the
    answers and their messages never show them."""
    import asyncio
    import base64

    from tornado import web
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from jupyter_colab_tunnel.local.lab.gateway_reader import LabRefusal, read_remote

    seen: list[str | None] = []

    class Status(web.RequestHandler):
        def get(self) -> None:
            seen.append(self.request.headers.get("Authorization"))
            self.write({"ok": True})

    async def main() -> None:
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        server = HTTPServer(web.Application([(r"/gw/colab/status", Status)]))
        server.add_sockets(sockets)

        class Gateway:
            url = f"http://user:s3cret@127.0.0.1:{port}/gw/"

            def load_connection_args(self) -> dict[str, Any]:
                return {}

        try:
            assert await read_remote(Gateway(), "status") == {"ok": True}
            with pytest.raises(LabRefusal) as refused:
                await read_remote(Gateway(), "tunnel")  # 404 there: no_extension
            assert refused.value.problem.kind == "no_extension"
            assert "s3cret" not in str(refused.value)
            assert f"http://127.0.0.1:{port}/gw" in refused.value.problem.message
        finally:
            server.stop()

    asyncio.run(main())
    assert seen == ["Basic " + base64.b64encode(b"user:s3cret").decode()]
