"""Shared fixtures: an in-process server with the extension, and real `jupyter server` processes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from traitlets.config import Config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

sys.path.insert(0, str(Path(__file__).parent))

from server_process import ServerProcess, start_server  # noqa: E402
from tunnel_env import TunnelServer, start_tunnel_server  # noqa: E402


@pytest.fixture
def colab_config() -> dict[str, Any]:
    """ColabTunnelApp settings for the in-process server; tests override it.

    The tunnel is off by default here: in-process servers do not listen on a socket, so a
    tunnel to them could not forward anything. Tunnel tests use real server processes.
    """
    return {"tunnel_mode": "off"}


@pytest.fixture
def jp_server_config(colab_config: dict[str, Any]) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_colab_tunnel": True}},
            "ColabTunnelApp": colab_config,
        }
    )


@pytest.fixture
def colab_app(jp_serverapp: Any, jp_asyncio_loop: Any) -> Any:
    """The running ColabTunnelApp, after the server's post-start hooks ran."""
    jp_asyncio_loop.run_until_complete(jp_serverapp._post_start())
    return jp_serverapp.extension_manager.extension_points["jupyter_colab_tunnel"].app


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Start real `jupyter server` processes; every one is stopped and reaped at teardown."""
    started: list[ServerProcess] = []

    def factory(**kwargs: Any) -> ServerProcess:
        kwargs.setdefault("workdir", tmp_path / f"server{len(started)}")
        server = start_server(**kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def tunnel_server(tmp_path: Path) -> Iterator[Any]:
    """Start real servers with the cloudflared stand-in; at teardown none may be left."""
    started: list[TunnelServer] = []

    def factory(**kwargs: Any) -> TunnelServer:
        ts = start_tunnel_server(tmp_path / f"tunnel{len(started)}", **kwargs)
        started.append(ts)
        return ts

    yield factory
    leftovers: list[int] = []
    for ts in started:
        ts.server.stop()
        for pid in ts.alive_spawned():
            leftovers.append(pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
    assert not leftovers, f"cloudflared stand-ins left behind: {leftovers}"
