"""The Colab launcher: real `jupyter server` processes with the cloudflared stand-in on PATH."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fake_cloudflared
import psutil
import pytest
from server_process import free_port
from tunnel_env import FAST

from jupyter_colab_tunnel.launcher import (
    Connection,
    LaunchError,
    launch,
    pick_port,
    running,
)
from jupyter_colab_tunnel.problems import HINTS

FAST_ARGS = [f"--ColabTunnelApp.{name}={value}" for name, value in FAST.items()]


@dataclass
class LauncherEnv:
    home: Path
    bin_dir: Path
    fake_state: Path
    root: Path

    @property
    def state_file(self) -> Path:
        return self.home / ".jupyter-colab-tunnel" / "server.json"

    def edge(self, cloudflared_pid: int) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                edge = json.loads((self.fake_state / f"{cloudflared_pid}.json").read_text())["edge"]
                if edge:
                    return str(edge)
            time.sleep(0.02)
        raise AssertionError(f"the stand-in {cloudflared_pid} wrote no edge address")

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """`jupyter colab-tunnel ARGS`, as the module (the script may not be installed here)."""
        return subprocess.run(
            [sys.executable, "-m", "jupyter_colab_tunnel.launcher", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )


def _stand_ins(bin_dir: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            cmd = p.info["cmdline"] or []
            if p.info["status"] != psutil.STATUS_ZOMBIE and str(bin_dir / "cloudflared") in cmd:
                found.append(p)
    return found


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def launcher_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LauncherEnv]:
    """HOME in tmp, the stand-in first on PATH; every server launched is stopped at teardown."""
    env = LauncherEnv(
        home=tmp_path / "home",
        bin_dir=tmp_path / "bin",
        fake_state=tmp_path / "fake-state",
        root=tmp_path / "root",
    )
    for d in (env.home, env.fake_state, env.root):
        d.mkdir()
    fake_cloudflared.install(env.bin_dir)
    for key in list(os.environ):
        if key.startswith(("JUPYTER_", "TUNNEL_", "COLAB_", "FAKE_CLOUDFLARED_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(env.home))
    monkeypatch.setenv("PATH", f"{env.bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLOUDFLARED_STATE_DIR", str(env.fake_state))
    yield env
    conn = running()
    if conn is not None:
        conn.stop()
    leftovers = _stand_ins(env.bin_dir)
    for p in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    assert not leftovers, f"cloudflared stand-ins left behind: {leftovers}"


def test_launch_ready_reuse_and_stop(launcher_env: LauncherEnv, capsys: Any) -> None:
    # A record of a server that is gone is not "running": a new one is started.
    dead = subprocess.Popen(["true"])
    dead.wait()
    launcher_env.state_file.parent.mkdir(mode=0o700)
    stale = {"pid": dead.pid, "port": 1, "token": "x", "log_path": "/x", "root_dir": "/"}
    launcher_env.state_file.write_text(json.dumps(stale))

    port = free_port()
    conn = launch(port=port, root_dir=launcher_env.root, extra_args=FAST_ARGS, timeout=60)
    out = capsys.readouterr().out
    assert (conn.state, conn.error, conn.reused, conn.port) == ("ready", None, False, port)
    assert conn.gateway_url is not None
    assert conn.gateway_url.endswith(".trycloudflare.com")
    assert len(conn.token) == 48
    int(conn.token, 16)
    # Progress, then what to run on the local machine.
    assert f"[colab-tunnel] Started Jupyter server (pid {conn.pid})" in out
    assert f"[colab-tunnel] tunnel ready {conn.gateway_url}" in out
    assert (
        f"jupyter lab --gateway-url={conn.gateway_url} --GatewayClient.auth_token={conn.token}"
        in out
    )
    assert f'c.GatewayClient.url = "{conn.gateway_url}"' in out
    assert "c.GatewayClient.request_timeout = 120.0" in out
    assert '"JUPYTER_URL": "http://localhost:8888"' in out
    assert str(conn) in out
    markdown = conn._repr_markdown_()
    assert f"--GatewayClient.auth_token={conn.token}" in markdown
    assert "```json" in markdown

    body = conn.status()
    assert body["state"] == "ready"
    assert body["connect"]["gateway_url"] == conn.gateway_url
    # The server: loopback only, started in root_dir, the token not on its command line.
    proc = psutil.Process(conn.pid)
    cmdline = proc.cmdline()
    assert cmdline[:3] == [sys.executable, "-m", "jupyter_server"]
    assert "--ip=127.0.0.1" in cmdline
    assert ("--allow-root" in cmdline) == (os.geteuid() == 0)
    assert conn.token not in " ".join(cmdline)
    assert proc.cwd() == str(launcher_env.root)
    assert os.getsid(conn.pid) == conn.pid  # its own session: a kernel's Ctrl-C does not reach it
    # The record holds the token: owner-only.
    record = json.loads(launcher_env.state_file.read_text())
    assert (record["pid"], record["port"], record["token"]) == (conn.pid, port, conn.token)
    assert stat.S_IMODE(launcher_env.state_file.stat().st_mode) == 0o600
    # Reachable through the tunnel with the token.
    edge = launcher_env.edge(body["pid"])
    req = urllib.request.Request(
        f"{edge}/api/status", headers={"Authorization": f"token {conn.token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200

    again = launch(quiet=True)
    assert capsys.readouterr().out == ""
    assert (again.pid, again.token, again.gateway_url) == (conn.pid, conn.token, conn.gateway_url)
    assert again.reused
    assert [p.pid for p in _stand_ins(launcher_env.bin_dir)] == [body["pid"]]
    with pytest.raises(LaunchError) as conflict:
        launch(port=free_port(), quiet=True)
    assert conflict.value.kind == "already_running"

    conn.stop()
    assert _gone(conn.pid)
    assert not psutil.pid_exists(conn.pid)  # reaped: no zombie left in this process
    assert _gone(body["pid"])
    assert not launcher_env.state_file.exists()
    assert running() is None


def test_cli_launch_status_stop(launcher_env: LauncherEnv) -> None:
    port = free_port()
    launched = launcher_env.cli("launch", "--port", str(port), "--timeout", "60", *FAST_ARGS)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "[colab-tunnel] tunnel ready https://" in launched.stdout
    assert "--GatewayClient.auth_token=" in launched.stdout
    record = json.loads(launcher_env.state_file.read_text())
    assert record["port"] == port
    assert record["root_dir"] == str(launcher_env.root)  # the cwd by default
    pid = record["pid"]
    assert not _gone(pid)  # the server outlives the command that launched it

    status = launcher_env.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Tunnel: ready  https://" in status.stdout
    assert f"--GatewayClient.auth_token={record['token']}" in status.stdout
    as_json = launcher_env.cli("status", "--json")
    assert json.loads(as_json.stdout)["state"] == "ready"

    stopped = launcher_env.cli("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"stopped the Jupyter server (pid {pid})" in stopped.stdout
    assert _gone(pid)
    assert _stand_ins(launcher_env.bin_dir) == []
    after = launcher_env.cli("status")
    assert after.returncode == 1
    assert "no server started by `jupyter colab-tunnel launch` is running" in after.stdout
    bad = launcher_env.cli("launch", "--port", "9000")
    assert bad.returncode == 1
    assert "reserved on Colab" in bad.stderr


def test_missing_cloudflared_is_classified_quickly(launcher_env: LauncherEnv, capsys: Any) -> None:
    t0 = time.monotonic()
    conn = launch(
        port=free_port(),
        extra_args=[*FAST_ARGS, "--ColabTunnelApp.cloudflared_path=/nope"],
        timeout=60,
    )
    elapsed = time.monotonic() - t0
    out = capsys.readouterr().out
    assert elapsed < 20, elapsed  # it does not wait for the timeout
    assert conn.state == "failed"
    assert conn.error is not None
    assert conn.error.kind == "binary_unavailable"
    assert "/nope" in conn.error.message
    assert conn.error.hint == HINTS["binary_unavailable"]
    assert f"Hint: {HINTS['binary_unavailable']}" in out
    assert "jupyter lab --gateway-url" not in out  # nothing to connect to
    # The server is left running to be inspected; stop() ends it.
    assert conn.status()["error"]["kind"] == "binary_unavailable"
    conn.stop()
    assert _gone(conn.pid)


def test_server_that_cannot_start_raises(launcher_env: LauncherEnv) -> None:
    with pytest.raises(LaunchError) as exited:
        launch(port=free_port(), extra_args=["--no-such-flag"], quiet=True, timeout=60)
    assert exited.value.kind == "server_exited"
    assert "unrecognized arguments: --no-such-flag" in exited.value.message
    assert running() is None
    with pytest.raises(LaunchError) as missing:
        launch(root_dir=launcher_env.root / "missing", quiet=True)
    assert missing.value.kind == "bad_root_dir"


def test_pick_port_skips_taken_and_reserved_ports() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert pick_port(None, start=port) != port
        with pytest.raises(LaunchError) as busy:
            pick_port(port)
        assert busy.value.kind == "port_in_use"
    assert pick_port(None, start=8080) != 8080
    assert pick_port(None, start=9000) != 9000
    for reserved in (8080, 9000):
        with pytest.raises(ValueError, match="reserved on Colab"):
            pick_port(reserved)


def test_launch_is_exported_lazily() -> None:
    code = (
        "import sys, jupyter_colab_tunnel as j\n"
        "assert 'jupyter_colab_tunnel.launcher' not in sys.modules\n"
        "from jupyter_colab_tunnel import launch\n"
        "from jupyter_colab_tunnel.launcher import launch as direct\n"
        "assert launch is direct\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_connection_without_tunnel_shows_no_connect_command() -> None:
    conn = Connection(port=8888, token="t" * 48, pid=1, log_path="/x.log", root_dir="/content")
    conn.state = "off"
    text = str(conn)
    assert "Tunnel: off" in text
    assert "--gateway-url" not in text
    assert "t" * 48 not in text  # the token is shown only with something to connect to


def test_ready_named_tunnel_without_url_says_what_is_missing() -> None:
    conn = Connection(port=8888, token="t" * 48, pid=1, log_path="/x.log", root_dir="/content")
    conn.state = "ready"
    assert "set --ColabTunnelApp.public_hostname" in str(conn)
    assert "set --ColabTunnelApp.public_hostname" in conn._repr_markdown_()
    assert "--gateway-url" not in str(conn)
