"""`jupyter colab-tunnel` as a new user meets it: --version, typos, a port already taken.

Run as the real command (`python -m jupyter_colab_tunnel.launcher`, which runs
jupyter_colab_tunnel.cli as the `jupyter-colab-tunnel` script does) in a throw-away HOME, so nothing real is started or reused.
"""

from __future__ import annotations

import ast
import importlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_colab_tunnel import __version__, cli
from jupyter_colab_tunnel.launcher import cli as launcher_cli
from jupyter_colab_tunnel.launcher.launching import LaunchOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).parent.parent


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_colab_tunnel.launcher", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(home)},
        check=False,
    )


@pytest.mark.e2e  # a real `jupyter colab-tunnel` process
def test_version(tmp_path: Path) -> None:
    done = run(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"jupyter colab-tunnel {__version__}\n"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["launch", "--prot", "9"], "--prot"),
        (["launch", "--prot=9"], "--prot"),
        (["connect", "--urll", "https://x.example"], "--urll"),
        (["connect", "--urll=x", "--token-file", "f"], "--urll"),
        (["status", "--jsno"], "--jsno"),
        (["mcp", "--urll", "x"], "--urll"),
        (["ports", "--urll", "x"], "--urll"),
    ],
)
def test_a_mistyped_option_shows_its_subcommands_usage(
    tmp_path: Path, args: list[str], option: str
) -> None:
    done = run(tmp_path, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    command = args[0]
    assert done.stderr.startswith(f"usage: jupyter colab-tunnel {command} ")
    assert done.stderr.rstrip().endswith(
        f"jupyter colab-tunnel {command}: error: unrecognized arguments: {option}"
    )
    # The words after the option are never echoed: they may be a mistyped secret.
    for value in ("9", "x.example", "=x"):
        if value in " ".join(args):
            assert value not in done.stderr.splitlines()[-1]
    assert not (tmp_path / ".jupyter-colab-tunnel" / "server.json").exists()


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[LaunchOptions]:
    calls: list[LaunchOptions] = []

    def start_and_wait(options: LaunchOptions) -> Any:
        calls.append(options)

        class Done:
            error = None

        return Done()

    monkeypatch.setattr(launcher_cli, "start_and_wait", start_and_wait)
    return calls


def test_jupyter_servers_own_options_still_pass_through(launched: list[LaunchOptions]) -> None:
    extra = ["--ServerApp.ip=127.0.0.1", "--no-browser", "--debug", "-y", "--log-level", "DEBUG"]
    assert cli.main(["launch", "--quiet", *extra]) == 0
    assert launched[0].extra_args == extra


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.e2e
def test_a_taken_port_is_explained_in_the_command_lines_words(
    tmp_path: Path, taken_port: int
) -> None:
    done = run(tmp_path, "launch", "--port", str(taken_port), "--quiet")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        f"[colab-tunnel] port {taken_port} is already in use on 127.0.0.1: pick another "
        "--port, or leave --port out to pick a free one\n"
    )
    assert "port=None" not in done.stderr


# ----- one root ---------------------------------------------------------------------------------


def test_the_script_runs_the_command_lines_root() -> None:
    with (REPO / "pyproject.toml").open("rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    module, _, name = scripts["jupyter-colab-tunnel"].partition(":")
    assert getattr(importlib.import_module(module), name) is cli.main


def string_literals() -> list[str]:
    """Every string literal in the package (an f-string's literal parts, each on its own)."""
    found = []
    for path in (REPO / "jupyter_colab_tunnel").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append(node.value)
    return found


def test_each_subcommands_words_are_written_once() -> None:
    literals = string_literals()
    for command in cli.SUBCOMMANDS:
        for words in (command.help, command.description):
            if words is None:
                continue
            start = words[:40]  # within the first literal part of an f-string
            assert sum(start in literal for literal in literals) == 1, (command.name, start)
        help_text = cli.build_parser().format_help()
        assert command.help in " ".join(help_text.split()), command.name
