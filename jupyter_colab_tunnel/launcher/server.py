"""The server process: start `jupyter server` in the background, ask it, stop it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from .. import http_sync
from ..server.autostart import LAUNCHED_ENV
from . import record as rec
from .errors import LaunchError
from .poll import poll

STOP_TIMEOUT = 15.0
# The server's small JSON answers (status, tunnel); a bound, not an expectation.
MAX_ANSWER = 16 * 1024 * 1024

# Servers started by this process, kept so that stop() can reap them (no zombie in a kernel).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def base_url_of(extra_args: Sequence[str]) -> str:
    """The base URL that `jupyter server` options set, as '/' or '/path/'."""
    base = "/"
    for arg in extra_args:
        for flag in ("--ServerApp.base_url=", "--base-url="):
            if arg.startswith(flag):
                base = arg[len(flag) :]
    return "/" + base.strip("/") + "/" if base.strip("/") else "/"


def spawn(
    *,
    port: int,
    token: str,
    root_dir: str,
    base_url: str,
    tunnel_mode: str | None,
    log_path: str,
    extra_args: Sequence[str],
    env: Mapping[str, str] | None,
) -> rec.ServerRecord:
    """Start the server from this Python, in its own session, on loopback; its record."""
    if not os.path.isdir(root_dir):
        raise LaunchError("bad_root_dir", f"root_dir {root_dir} is not a directory")
    argv = [
        sys.executable,
        "-m",
        "jupyter_server",
        f"--port={port}",
        "--port-retries=0",  # we announce this port: never let it move to another
        "--ip=127.0.0.1",  # the tunnel is the way in; nothing listens on other interfaces
        "--no-browser",
        f"--ServerApp.root_dir={root_dir}",
        # Enabled explicitly: a user config that leaves the extension off must not win here.
        "--ServerApp.jpserver_extensions=jupyter_colab_tunnel=True",
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")  # Colab runs everything as root
    if tunnel_mode is not None:
        argv.append(f"--ColabTunnelApp.tunnel_mode={tunnel_mode}")
    argv += extra_args
    child_env = {**os.environ, **(env or {})}
    # Through the environment: argv is visible to every user (ps).
    child_env["JUPYTER_TOKEN"] = token
    child_env[LAUNCHED_ENV] = "1"  # autostart="auto" starts the tunnel of a launched server
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        os.chmod(log_path, 0o600)
        proc = subprocess.Popen(
            argv,
            cwd=root_dir,  # kernels started without a path run in the server's cwd
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the cell, a kernel restart and its Ctrl-C
        )
    _CHILDREN[proc.pid] = proc
    return rec.new_record(
        proc.pid,
        port=port,
        token=token,
        log_path=log_path,
        root_dir=root_dir,
        base_url=base_url,
    )


def exited(pid: int, create_time: float | None, port: int) -> bool:
    """The server is no longer running (a child of ours is reaped on the way)."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        _CHILDREN.pop(pid, None)
        return True
    return not rec.is_process(pid, create_time, port)


def get_json(url: str, token: str, timeout: float) -> tuple[int, Any]:
    """(status, JSON body) of a GET with the token; status 0 when nothing answered."""
    # Only ever http://127.0.0.1:<port>/... built by this package: no proxy.
    headers = {"Authorization": f"token {token}"}
    try:
        status, _, raw = http_sync.request(
            url, headers=headers, timeout=timeout, max_body=MAX_ANSWER, direct=True
        )
    except (OSError, ValueError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            text = f.read()[-20000:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop(pid: int, create_time: float | None, port: int, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM the server (it stops cloudflared and its kernels), SIGKILL after `timeout`.

    Only the very process that was started: a pid that now names another process is left
    alone. Returns whether there was a server to stop.
    """
    proc = _CHILDREN.pop(pid, None)
    if not rec.is_process(pid, create_time, port):
        if proc is not None:
            proc.poll()  # reap it if it exited
        return False
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, proc, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, proc, 5.0)
    # Kernels and cloudflared normally go with the server; never leave one behind.
    _, alive = psutil.wait_procs(children, timeout=3)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    return True


def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    if proc is not None:  # our child: reap it
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    return poll(lambda: _gone(pid) or None, time.monotonic() + timeout, 0.05) is not None


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
