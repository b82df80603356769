"""`jupyter colab-tunnel ports`: a real command against a real server, straight and through a
real relay; its table, its JSON and its errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from relay_env import start_relay

from jupyter_colab_tunnel.local.ports_cli import table


def run_cli(args: list[str], env: dict[str, str] | None = None) -> Any:
    code = "import sys\nfrom jupyter_colab_tunnel.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    full_env = {k: v for k, v in os.environ.items() if k != "JUPYTER_COLAB_TUNNEL_TOKEN"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, "ports", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def secret_file(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def listener() -> Iterator[int]:
    """A listening port of this (test) process, as an app on the remote would hold one."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def row(out: str, port: int) -> str:
    return next(line for line in out.splitlines() if line.split()[:1] == [str(port)])


def test_ports_straight_at_the_server(server_factory: Any, tmp_path: Path, listener: int) -> None:
    server = server_factory()
    token = secret_file(tmp_path / "token", server.token)
    run = run_cli(["--url", server.url, "--token-file", str(token)])
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].split() == [
        "PORT",
        "PROCESS",
        "KERNEL",
        "COMMAND",
        "CONNECT",
        "WITH",
    ]
    mine = row(run.stdout, listener)
    assert f"({os.getpid()})" in mine
    assert mine.endswith(f"--forward {listener}")
    served = row(run.stdout, server.port)
    assert f"({server.pid})" in served
    assert server.token not in run.stdout + run.stderr
    # --json: the body as the endpoint gives it.
    raw = run_cli(["--url", server.url, "--json"], env={"JUPYTER_COLAB_TUNNEL_TOKEN": server.token})
    assert raw.returncode == 0, raw.stderr
    ports = {p["port"]: p for p in json.loads(raw.stdout)["ports"]}
    assert ports[listener]["pid"] == os.getpid()
    assert ports[listener]["forward"] == f"--forward {listener}"
    assert server.token not in raw.stdout


def test_ports_through_a_relay(server_factory: Any, tmp_path: Path, listener: int) -> None:
    server = server_factory()
    relay = start_relay(
        tmp_path / "relay",
        ["--url", server.url],
        env={"JUPYTER_COLAB_TUNNEL_TOKEN": server.token},
    )
    try:
        run = run_cli(["--url", relay.url, "--token-file", str(relay.token_file)])
        assert run.returncode == 0, run.stderr + relay.log()
        assert row(run.stdout, listener).endswith(f"--forward {listener}")
        assert server.token not in run.stdout
        # The relay's token is not the remote's: the remote token at the relay is refused.
        wrong = run_cli(["--url", relay.url], env={"JUPYTER_COLAB_TUNNEL_TOKEN": server.token})
        assert wrong.returncode == 1
        assert wrong.stdout == ""
        assert "Hint:" in wrong.stderr
        assert server.token not in wrong.stderr
    finally:
        relay.stop()


def test_errors_name_the_cause_and_a_hint(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory()
    wrong = secret_file(tmp_path / "wrong", "not-" + server.token)
    run = run_cli(["--url", server.url, "--token-file", str(wrong)])
    assert run.returncode == 1
    assert run.stderr.startswith("[colab-tunnel ports] forbidden:")
    assert "Hint:" in run.stderr
    assert "not-" + server.token not in run.stderr
    # Nothing listens there.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    run = run_cli(["--url", f"http://127.0.0.1:{port}/"], env={"JUPYTER_COLAB_TUNNEL_TOKEN": "t"})
    assert run.returncode == 1
    assert "connection_refused" in run.stderr
    assert "Hint:" in run.stderr
    # No token; a token on the command line (never echoed).
    run = run_cli(["--url", server.url])
    assert run.returncode == 2
    assert "--token-file" in run.stderr
    run = run_cli(["--url", server.url, "--token", "s3cret-on-argv"])
    assert run.returncode == 2
    assert "s3cret-on-argv" not in run.stderr


def test_table_shows_refusals_and_hidden_processes() -> None:
    body = {
        "ports": [
            {
                "port": 8080,
                "pid": None,
                "name": None,
                "cmdline": None,
                "kernel_id": None,
                "forwardable": False,
                "refused": "Colab's own port",
                "forward": "--forward 8080",
            },
            {
                "port": 6006,
                "pid": 42,
                "name": "tensorboard",
                "cmdline": "tensorboard --logdir runs " + "x" * 100,
                "kernel_id": "0f1e2d3c-aaaa-bbbb-cccc-000000000000",
                "forwardable": True,
                "refused": None,
                "forward": "--forward 6006",
            },
        ]
    }
    text = table(body)
    assert row(text, 8080).endswith("refused: Colab's own port")
    assert "? (not visible)" in row(text, 8080)
    tb = row(text, 6006)
    assert "tensorboard (42)" in tb
    assert "0f1e2d3c" in tb
    assert "…" in tb
    assert tb.endswith("--forward 6006")
    assert "connect" in text.splitlines()[-1]
    assert "No TCP port" in table({"ports": []})
