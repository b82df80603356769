"""Stopping the relay while the local JupyterLab (gateway mode) still runs.

Real processes: a remote `jupyter server`, the relay, and a local `jupyter server` in gateway
mode started with the flags the relay prints, with a kernel and an open kernel websocket. The
documented order is JupyterLab first, then the relay; the other order must not leave the local
server hanging on SIGTERM.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_kit import kernel_channel, start_kernel
from relay_env import start_local, start_relay
from server_process import ServerProcess

pytestmark = pytest.mark.e2e


def test_relay_stopped_before_the_local_server(server_factory: Any, tmp_path: Path) -> None:
    remote: ServerProcess = server_factory()
    relay = start_relay(
        tmp_path / "relay",
        ["--url", remote.url.rstrip("/")],
        env={"JUPYTER_COLAB_TUNNEL_TOKEN": remote.token},
    )
    try:
        local = start_local(server_factory, relay)
        kernel_id = start_kernel(local)
        with kernel_channel(local, kernel_id) as channel:
            run = channel.execute("print('up')")
            assert (run.status, run.stdout) == ("ok", "up\n")
            # The wrong order: the relay first (SIGTERM), then the local server.
            relay.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
            while "Stopping" not in relay.log():
                assert relay.proc.poll() is None, relay.log()
                assert time.monotonic() < deadline, relay.log()
                time.sleep(0.05)
            started = time.monotonic()
            code = local.stop(timeout=60)
            local_took = time.monotonic() - started
        assert relay.proc.wait(30) == 0, relay.log()
    finally:
        relay.stop()
    # Not killed: it shut its kernel down through the relay and exited.
    assert code == 0, (code, local.log()[-3000:])
    assert local_took < 15, local.log()[-3000:]
    assert remote.get_json("api/kernels") == []
    assert "answering the local JupyterLab's kernel shutdown" in relay.log()
    assert "Stopped before the local JupyterLab shut down" not in relay.log()
