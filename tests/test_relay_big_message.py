"""A kernel message larger than the remote accepts, end to end: refused with a logged, counted
error the client sees, never lost in silence.

Real processes: a remote `jupyter server` (its kernel websocket limit is tornado's 10 MiB
unless its tornado_settings say otherwise) behind a relay process, and a websocket client
speaking the kernel protocol through the relay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import websocket
from relay_env import start_relay
from server_process import ServerProcess

from testkit.kernel_channel import KernelChannel, ws_url

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


def channel(relay: Any, kernel_id: str) -> KernelChannel:
    return KernelChannel(
        ws_url(relay.url) + f"/api/kernels/{kernel_id}/channels",
        headers={"Authorization": f"token {relay.token}"},
        origin=relay.url,
    )


def close_frame(ch: KernelChannel, timeout: float = 30.0) -> tuple[int, str]:
    """Read until the relay closes the socket; (code, reason)."""
    ch.ws.settimeout(timeout)
    while True:
        opcode, data = ch.ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big"), data[2:].decode()


@pytest.mark.parametrize(
    ("remote_limit", "size"),
    [(None, 11 * MIB), (64 * 1024, 100 * 1024)],
    ids=["over-jupyter-default", "over-a-smaller-remote-limit"],
)
def test_a_message_too_big_for_the_remote_is_refused_and_counted(
    remote_limit: int | None, size: int, server_factory: Any, tmp_path: Path
) -> None:
    args = []
    if remote_limit is not None:  # the remote's own, smaller limit: the relay learns it by 1009
        args = [f'--ServerApp.tornado_settings={{"websocket_max_message_size": {remote_limit}}}']
    remote: ServerProcess = server_factory(args=args)
    relay = start_relay(
        tmp_path / "relay",
        ["--url", remote.url.rstrip("/")],
        env={"JUPYTER_COLAB_TUNNEL_TOKEN": remote.token},
    )
    try:
        r = relay.request("POST", "api/kernels", body={"name": "python3"})
        assert r.status == 201, r.body
        kernel_id = r.json()["id"]
        with channel(relay, kernel_id) as ch:
            assert ch.execute("print('small')").stdout == "small\n"
            ch.send("execute_request", {"code": "#" + "x" * size, "silent": False})
            code, reason = close_frame(ch)
        assert code == 1009
        assert "message too big" in reason
        ws = relay.status()["websockets"]
        assert (ws["frames_refused"], ws["frames_dropped"]) == (1, 0)
        assert relay.log().count(f"Kernel {kernel_id}: refused a") == 1, relay.log()
        # The kernel and the relay go on: a new connection runs the next cell.
        with channel(relay, kernel_id) as ch:
            assert ch.execute("print('after')").stdout == "after\n"
    finally:
        relay.stop()
    assert "Task exception was never retrieved" not in relay.log()
