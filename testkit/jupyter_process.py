"""A real `jupyter server` process, started one way for tests and benchmarks alike.

Isolated directories under a work directory (HOME, config, data, runtime), a token, a free
loopback port, the log in a file; stopped with everything it started. tests/server_process.py
adds audited, contract-checked requests; benchmarks/servers.py adds timings and plain requests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from testkit.processes import jupyter_server_command

# Settings of the machine's own Jupyter, tunnel or Colab that must not reach a test server.
FOREIGN_ENV = ("JUPYTER_", "TUNNEL_", "COLAB_")


def server_env(
    workdir: Path,
    config_dir: Path,
    *,
    drop: Sequence[str] = FOREIGN_ENV,
    path_prepend: Sequence[Path] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """This environment without `drop`'s prefixes, its Jupyter directories under workdir;
    `path_prepend` before PATH; `extra` last (it wins)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop))}
    env.update(
        HOME=str(workdir),
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_DATA_DIR=str(workdir / "data"),
        JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    if path_prepend:
        env["PATH"] = os.pathsep.join([*map(str, path_prepend), env.get("PATH", "")])
    env.update(extra or {})
    return env


def server_argv(
    port: int,
    token: str,
    root_dir: Path,
    *,
    base_url: str = "/",
    command: Sequence[str] | None = None,
    args: Sequence[str] = (),
) -> list[str]:
    """`jupyter server` on 127.0.0.1:port only, no browser, no port retries; `args` last."""
    return [
        *(command or jupyter_server_command()),
        f"--port={port}",
        "--port-retries=0",
        "--ip=127.0.0.1",
        "--no-browser",
        f"--ServerApp.root_dir={root_dir}",
        f"--ServerApp.base_url={base_url}",
        f"--IdentityProvider.token={token}",
        *(["--allow-root"] if os.geteuid() == 0 else []),
        *args,
    ]


def spawn_logged(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start argv with stdout and stderr into log_path, no stdin."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            list(argv),
            cwd=str(cwd),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop_server(
    proc: subprocess.Popen[bytes],
    sig: int = signal.SIGTERM,
    timeout: float = 15.0,
    children: Sequence[psutil.Process] = (),
) -> int | None:
    """Send sig and wait (SIGKILL after `timeout`); then kill any of `children` still alive
    after 3 s (a leftover, which tests report elsewhere). Returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(list(children), timeout=3)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return proc.returncode
