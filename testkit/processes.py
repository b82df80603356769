"""Plain helpers for starting real servers: a free loopback port, this environment's server."""

from __future__ import annotations

import shutil
import socket
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
