"""Plain helpers for real servers: a free loopback port, this environment's server, a stop."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jupyter_server_command() -> list[str]:
    """The installed `jupyter-server` script of this environment."""
    script = Path(sys.executable).parent / "jupyter-server"
    if script.exists():
        return [str(script)]
    found = shutil.which("jupyter-server")
    return [found] if found else [sys.executable, "-m", "jupyter_server"]


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
