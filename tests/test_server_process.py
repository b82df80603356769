"""The installed package in a real `jupyter server` process, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from server_process import build_wheel

from jupyter_colab_tunnel import __version__

pytestmark = pytest.mark.e2e

REPO = Path(__file__).parent.parent


def test_auto_enabled_and_ok(tmp_path: Path) -> None:
    # An empty user config: only the file the package installed into etc/jupyter enables it.
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path), HOME=str(tmp_path))
    jupyter = Path(sys.executable).parent / "jupyter"
    out = subprocess.run(
        [str(jupyter), "server", "extension", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = out.stdout + out.stderr
    assert "jupyter_colab_tunnel \x1b[32menabled\x1b[0m" in text or (
        "jupyter_colab_tunnel enabled" in text
    ), text
    assert f"jupyter_colab_tunnel {__version__} \x1b[32mOK\x1b[0m" in text or (
        f"jupyter_colab_tunnel {__version__} OK" in text
    ), text


def test_wheel_ships_the_enable_file(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    data = f"jupyter_colab_tunnel-{__version__}.data/data/etc/jupyter/jupyter_server_config.d/"
    assert data + "jupyter_colab_tunnel.json" in names
    assert "jupyter_colab_tunnel/py.typed" in names
    for asset in ("index.html", "dashboard.css", "dashboard.js"):
        assert f"jupyter_colab_tunnel/server/dashboard/{asset}" in names
    with zipfile.ZipFile(wheel).open(data + "jupyter_colab_tunnel.json") as f:
        assert json.load(f) == {
            "ServerApp": {"jpserver_extensions": {"jupyter_colab_tunnel": True}}
        }


def test_real_server_status(server_factory: Any) -> None:
    server = server_factory(args=["--ColabTunnelApp.tunnel_mode=off"])
    assert server.request("GET", "colab/status", token=None).status == 403
    body = server.get_json("colab/status")
    assert body["version"] == __version__
    assert body["server"]["root_dir"] == str(server.root_dir)
    assert body["server"]["auth"] == "token"
    assert body["resources"]["memory"]["total"] > 0


def test_explicitly_enabled_with_base_url(server_factory: Any) -> None:
    server = server_factory(
        base_url="/user/me/",
        args=[
            '--ServerApp.jpserver_extensions={"jupyter_colab_tunnel": True}',
            "--ColabTunnelApp.tunnel_mode=off",
        ],
    )
    assert server.request("GET", "colab/status", token=None).status == 403
    assert server.get_json("colab/status")["server"]["base_url"] == "/user/me/"


def test_invalid_config_still_serves(server_factory: Any) -> None:
    server = server_factory(
        args=["--ColabTunnelApp.tunnel_mode=sideways", "--ColabTunnelApp.max_restarts=-1"]
    )
    assert server.get_json("api/status")
    assert server.get_json("colab/status")["version"] == __version__
    log = server.log()
    assert "Invalid value for ColabTunnelApp.tunnel_mode" in log
    assert "'quick', 'named', 'off'" in log
    assert "Invalid value for ColabTunnelApp.max_restarts" in log
