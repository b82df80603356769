"""The Colab launcher: real `jupyter server` processes with the cloudflared stand-in on PATH."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from server_process import free_port
from tunnel_env import FAST

from jupyter_colab_tunnel.connection_record import accept_record
from jupyter_colab_tunnel.launcher import LaunchError, launch, running
from jupyter_colab_tunnel.problems import HINTS
from testkit import fake_cloudflared

pytestmark = pytest.mark.e2e

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

    def write_record(self, **record: Any) -> None:
        self.state_file.parent.mkdir(mode=0o700, exist_ok=True)
        self.state_file.write_text(json.dumps(record))


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
def lookalike() -> Iterator[psutil.Process]:
    """A live process whose command line looks like a launched server's (on port 8888): what a
    recycled pid, or a user's own server, would look like to a pid-and-command-line check."""
    code = "import time; time.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", code, "-m", "jupyter_server", "--port=8888"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _record_of(process: psutil.Process, **changes: Any) -> dict[str, Any]:
    """A complete record of `process` as if launch() from this environment had started it."""
    record = {
        "pid": process.pid,
        "create_time": process.create_time(),
        "python": {
            "prefix": os.path.realpath(sys.prefix),
            "executable": os.path.realpath(sys.executable),
        },
        "port": 8888,
        "token": "not-a-real-token",
        "log_path": "/nonexistent/server.log",
        "root_dir": "/",
    }
    return {**record, **changes}


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
    # A test that failed before its own stop() must not leave its server behind either.
    servers = [p for p in psutil.Process().children(recursive=True) if _launched_here(p, env)]
    for p in servers:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    leftovers = _stand_ins(env.bin_dir)
    for p in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    assert not leftovers, f"cloudflared stand-ins left behind: {leftovers}"
    assert not servers, f"servers left behind: {servers}"


def _launched_here(proc: psutil.Process, env: LauncherEnv) -> bool:
    try:
        return "jupyter_server" in " ".join(proc.cmdline()) and proc.environ().get("HOME") == str(
            env.home
        )
    except psutil.Error:
        return False


def test_launch_ready_reuse_and_stop(
    launcher_env: LauncherEnv, lookalike: psutil.Process, capsys: Any
) -> None:
    # The recorded pid now names another process (same command line, later creation time):
    # it is neither adopted nor signalled, and a new server is started.
    launcher_env.write_record(**_record_of(lookalike, create_time=lookalike.create_time() - 100))

    port = free_port()
    connection_file = launcher_env.home / "drive" / "colab-tunnel.json"
    conn = launch(
        port=port,
        root_dir=launcher_env.root,
        extra_args=FAST_ARGS,
        timeout=60,
        connection_file=connection_file,
    )
    out = capsys.readouterr().out
    # The connection file for the local relay, and the relay's command.
    # Written off the server's event loop, right after the state change launch() waited for.
    deadline = time.monotonic() + 10
    written = json.loads(connection_file.read_text())
    while written["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.05)
        written = json.loads(connection_file.read_text())
    assert (written["url"], written["state"]) == (conn.gateway_url, "ready")
    assert "token" not in written
    # Signed with the server's token: the relay given that token follows it.
    assert accept_record(connection_file.read_bytes(), conn.token).live_url == conn.gateway_url
    assert "jupyter colab-tunnel connect --connection-file" in out
    assert (conn.state, conn.error, conn.reused, conn.port) == ("ready", None, False, port)
    assert conn.gateway_url is not None
    assert conn.gateway_url.endswith(".trycloudflare.com")
    assert len(conn.token) == 48
    int(conn.token, 16)
    assert f"pid {lookalike.pid} is gone and that pid now belongs to another process" in out
    assert lookalike.is_running()
    # Progress, then what to run on the local machine.
    assert f"[colab-tunnel] Started Jupyter server (pid {conn.pid})" in out
    assert f"[colab-tunnel] tunnel ready {conn.gateway_url}" in out
    # The relay's command, following the connection file the server writes (from
    # /colab/tunnel), with the token in a private file; JupyterLab through the relay.
    assert conn.connection_file == str(connection_file)
    assert f"(umask 077; printf '%s\\n' '{conn.token}' > ~/.colab-token)" in out
    assert (
        "jupyter colab-tunnel connect --connection-file "
        f"'<your synced copy of {connection_file}>' --token-file ~/.colab-token"
    ) in out
    assert "jupyter lab --gateway-url=http://127.0.0.1:18888 " in out
    assert 'c.GatewayClient.url = "http://127.0.0.1:18888"' in out
    assert "c.GatewayClient.request_timeout = 120.0" in out
    assert '"JUPYTER_URL": "http://localhost:8888"' in out
    assert "auth_token=" not in out
    assert str(conn) in out
    markdown = conn._repr_markdown_()
    assert "jupyter colab-tunnel connect --connection-file" in markdown
    assert "auth_token=" not in markdown
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
    # ... and which process it is, started from which Python.
    assert record["create_time"] == pytest.approx(proc.create_time(), abs=1.5)
    assert record["python"]["prefix"] == os.path.realpath(sys.prefix)
    assert record["python"]["executable"] == os.path.realpath(sys.executable)
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
    assert lookalike.is_running()


def test_cli_launch_status_stop(launcher_env: LauncherEnv) -> None:
    port = free_port()
    launched = launcher_env.cli("launch", "--port", str(port), "--timeout", "60", *FAST_ARGS)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "[colab-tunnel] tunnel ready https://" in launched.stdout
    assert "jupyter colab-tunnel connect --url https://" in launched.stdout
    assert "auth_token=" not in launched.stdout
    record = json.loads(launcher_env.state_file.read_text())
    assert record["port"] == port
    assert record["root_dir"] == str(launcher_env.root)  # the cwd by default
    pid = record["pid"]
    assert not _gone(pid)  # the server outlives the command that launched it

    status = launcher_env.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Tunnel: ready  https://" in status.stdout
    assert f"printf '%s\\n' '{record['token']}' > ~/.colab-token" in status.stdout
    assert "jupyter colab-tunnel connect --url https://" in status.stdout
    assert "auth_token=" not in status.stdout
    as_json = launcher_env.cli("status", "--json")
    assert json.loads(as_json.stdout)["state"] == "ready"
    assert f'the token is not in this JSON: it is "token" in {launcher_env.state_file}' in (
        as_json.stderr
    )

    stopped = launcher_env.cli("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"stopped the Jupyter server (pid {pid})" in stopped.stdout
    assert _gone(pid)
    assert _stand_ins(launcher_env.bin_dir) == []
    after = launcher_env.cli("status")
    assert after.returncode == 1
    assert "no server started by `jupyter colab-tunnel launch` is running" in after.stdout
    for reserved in ("9000", "6000"):
        bad = launcher_env.cli("launch", "--port", reserved)
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
    assert "Server: keeps running. Stop it: conn.stop() in Python" in out
    assert "jupyter lab --gateway-url" not in out  # nothing to connect to
    assert f'"token" in {launcher_env.state_file}' in out  # where the hidden token is
    _assert_no_repeats(out)
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


def _assert_no_repeats(out: str) -> None:
    progress = [line for line in out.splitlines() if line.startswith("[colab-tunnel]")]
    assert progress
    assert len(progress) == len(set(progress)), progress


def test_launch_comes_back_at_once_when_the_tunnel_keeps_failing(
    launcher_env: LauncherEnv, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # Offline: every quick-tunnel request fails on DNS (kind `network`, retried with backoff).
    monkeypatch.setenv("FAKE_CLOUDFLARED_FAULT", "dns_failure")
    t0 = time.monotonic()
    launched = launcher_env.cli(
        "launch",
        "--port",
        str(free_port()),
        "--timeout",
        "100",
        "--give-up-after",
        "2",
        *FAST_ARGS,
    )
    assert time.monotonic() - t0 < 90  # not the timeout: the cause was known
    assert launched.returncode == 1, launched.stdout + launched.stderr
    out = launched.stdout
    assert "[colab-tunnel] Stopped waiting: `network` 2 times in a row." in out
    assert "Error: network: failed to request quick Tunnel" in out
    assert f"Hint: {HINTS['network']}" in out
    assert "Server: keeps running, and the tunnel keeps retrying in the background" in out
    assert "`jupyter colab-tunnel stop`" in out
    _assert_no_repeats(out)
    pid = json.loads(launcher_env.state_file.read_text())["pid"]
    assert not _gone(pid)

    # launch() in Python, reusing that server: it also returns at once, with the error.
    conn = launch(timeout=100, give_up_after=3)
    out = capsys.readouterr().out
    assert (conn.pid, conn.reused) == (pid, True)
    assert conn.state in ("starting", "backoff")
    assert conn.error is not None
    assert conn.error.kind == "network"
    assert conn.error.hint == HINTS["network"]
    assert "[colab-tunnel] Stopped waiting: `network` 3 times in a row." in out
    assert "keeps retrying in the background: conn.wait() (or" in out
    _assert_no_repeats(out)
    # Still retrying in the background.
    restarts = conn.status()["restarts"]
    deadline = time.monotonic() + 30
    while conn.status()["restarts"] == restarts and time.monotonic() < deadline:
        time.sleep(0.2)
    assert conn.status()["restarts"] > restarts
    conn.stop()
    assert _gone(pid)


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _interrupt_when(proc: subprocess.Popen[str], marker: str) -> tuple[str, int]:
    """SIGINT `proc` once it printed `marker`; everything it printed, and its exit code."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while not any(marker in line for line in seen):
        assert time.monotonic() < deadline, seen
        with contextlib.suppress(queue.Empty):
            seen.append(lines.get(timeout=0.5))
    time.sleep(0.5)  # well inside the wait
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=30)
    reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    return "".join(seen), code


def test_ctrl_c_during_the_wait_prints_one_line_and_leaves_the_server(
    launcher_env: LauncherEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The quick-tunnel request hangs: the tunnel stays `starting`.
    monkeypatch.setenv("FAKE_CLOUDFLARED_FAULT", "no_url")
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_colab_tunnel.launcher",
            "launch",
            "--port",
            str(free_port()),
            *FAST_ARGS,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=launcher_env.root,
    )
    out, code = _interrupt_when(cli, "tunnel starting")
    assert code == 130, out
    assert "Traceback" not in out
    assert "KeyboardInterrupt" not in out
    stopped = [line for line in out.splitlines() if "Ctrl-C" in line]
    assert len(stopped) == 1, out
    pid = json.loads(launcher_env.state_file.read_text())["pid"]
    assert stopped[0] == (
        f"[colab-tunnel] Stopped waiting (Ctrl-C). The Jupyter server (pid {pid}) is still "
        "running in the background; stop it: conn.stop() in Python, `jupyter colab-tunnel stop` "
        "in a shell."
    )
    assert not _gone(pid)

    # launch() in a Python process (a notebook kernel): it returns the connection instead.
    code_text = (
        "from jupyter_colab_tunnel import launch\n"
        "conn = launch()\n"
        "print('returned', conn.pid, conn.state, flush=True)\n"
    )
    kernel = subprocess.Popen(
        [sys.executable, "-c", code_text],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=launcher_env.root,
    )
    out, code = _interrupt_when(kernel, "Reusing the Jupyter server")
    assert code == 0, out
    assert "Traceback" not in out
    assert [line for line in out.splitlines() if "Ctrl-C" in line] == stopped
    assert f"returned {pid} starting" in out
    assert not _gone(pid)
    stop = launcher_env.cli("stop")
    assert f"stopped the Jupyter server (pid {pid})" in stop.stdout
    assert _gone(pid)


def test_a_server_from_elsewhere_is_neither_adopted_nor_stopped(
    launcher_env: LauncherEnv, lookalike: psutil.Process
) -> None:
    # Another virtual environment started it: left alone, and the record kept for that one.
    other = {"prefix": "/opt/other-venv", "executable": "/opt/other-venv/bin/python"}
    launcher_env.write_record(**_record_of(lookalike, python=other))
    with pytest.raises(LaunchError) as refused:
        launch(quiet=True, timeout=30)
    assert refused.value.kind == "already_running"
    assert "another Python environment (/opt/other-venv)" in refused.value.message
    assert "/opt/other-venv/bin/python -m jupyter_colab_tunnel.launcher stop" in refused.value.hint
    assert running() is None
    status = launcher_env.cli("status")
    assert status.returncode == 1
    assert "started from another Python environment (/opt/other-venv)" in status.stdout
    stop = launcher_env.cli("stop")
    assert stop.returncode == 1
    assert "so it is left alone" in stop.stdout
    assert lookalike.is_running()
    assert launcher_env.state_file.exists()

    # A recycled pid: the record is forgotten, the process it now names is not signalled.
    launcher_env.write_record(**_record_of(lookalike, create_time=lookalike.create_time() - 100))
    stop = launcher_env.cli("stop")
    assert stop.returncode == 0
    assert f"pid {lookalike.pid} is gone and that pid now belongs to another process" in stop.stdout
    assert lookalike.is_running()
    assert not launcher_env.state_file.exists()


def test_jupyter_colab_tunnel_runs_the_console_script(launcher_env: LauncherEnv) -> None:
    """`jupyter colab-tunnel` finds the `jupyter-colab-tunnel` script of this environment."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "jupyter-colab-tunnel").exists():
        pytest.skip("the package's scripts are not installed in this environment")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        [str(bin_dir / "jupyter"), "colab-tunnel", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 1, out.stderr
    assert "no server started by `jupyter colab-tunnel launch` is running" in out.stdout
