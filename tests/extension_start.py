"""A real ServerApp that loads and starts the extension, in a fresh interpreter: what the
extension's start imports (or leaves for later) is seen there, not in the test process, where
other tests have already imported everything."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import asyncio, sys
{before}
from jupyter_server.serverapp import ServerApp

async def serve():
    app = ServerApp()
    app.initialize(
        argv=[
            "--ServerApp.jpserver_extensions={{'jupyter_colab_tunnel': True}}",
            "--ColabTunnelApp.tunnel_mode=off",
            "--port=0",
            "--no-browser",
        ],
        new_httpserver=True,
    )
    await app._post_start()
    assert "jupyter_colab_tunnel.server.app" in sys.modules
{after}
    await app._cleanup()

asyncio.run(serve())
"""


def run_started(tmp_path: Path, before: str = "", after: str = "") -> list[str]:
    """Run `before` (module level), then start a server with the extension (tunnel off) and run
    `after` inside its loop (`app` is the ServerApp; `await` works); return what it printed."""
    code = SCRIPT.format(
        before=textwrap.dedent(before), after=textwrap.indent(textwrap.dedent(after), "    ")
    )
    dirs = {name: tmp_path / name for name in ("config", "data", "runtime")}
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()
