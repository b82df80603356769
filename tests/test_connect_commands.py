"""What the remote shows a user to run on their machine (connect.py): safe to copy and correct.

The commands are run as a user would run them: the token line in a real bash, the relay and MCP
lines through the real command-line parsers, the config through traitlets' Config.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_colab_tunnel.cli import build_parser
from jupyter_colab_tunnel.connect import (
    GATEWAY_RETRY,
    TOKEN_PLACEHOLDER,
    connect_info,
    connect_steps,
    gateway_url,
    lab_command,
)
from jupyter_colab_tunnel.launcher.connection import Connection
from jupyter_colab_tunnel.local import connect_cli as relay_cli
from jupyter_colab_tunnel.local import connect_options

URL = "https://a-b-c.trycloudflare.com"
TOKEN = "0123456789abcdef0123456789abcdef0123456789abcdef"


def _everything(info: dict[str, Any]) -> str:
    return repr(info)


def test_gateway_url_joins_the_base_url() -> None:
    assert gateway_url(URL, "/") == URL
    assert gateway_url(URL + "/", "/u/x/") == URL + "/u/x"
    assert connect_info(None, "/") is None


@pytest.mark.parametrize("connection_file", [None, "/content/drive/MyDrive/colab-tunnel.json"])
def test_no_token_on_any_command_line(connection_file: str | None) -> None:
    info = connect_info(URL, "/", TOKEN, connection_file)
    assert info is not None
    assert "--GatewayClient.auth_token" not in _everything(info)
    assert "auth_token=" not in info["command"]
    assert "--token " not in info["command"]
    assert "--token=" not in info["command"]
    # The token is written by the shell's own printf (no process gets it in its argv), and
    # appears on no other line.
    lines = [ln for ln in info["command"].splitlines() if not ln.startswith("#")]
    with_token = [ln for ln in lines if TOKEN in ln]
    assert with_token == [f"(umask 077; printf '%s\\n' '{TOKEN}' > ~/.colab-token)"]
    # The server's own /colab/tunnel never knows the token: the placeholder.
    served = connect_info(URL, "/", connection_file=connection_file)
    assert served is not None
    assert TOKEN not in _everything(served)
    assert TOKEN_PLACEHOLDER in served["command"]


def test_the_token_line_writes_a_private_file_in_a_real_shell(tmp_path: Path) -> None:
    token = "it's a $(secret) `with` \\ quotes"
    info = connect_info(URL, "/", token)
    assert info is not None
    first = info["command"].splitlines()[1]
    home = tmp_path / "home"
    home.mkdir()
    marker = tmp_path / "ran"
    shell = subprocess.run(
        ["bash", "-c", f"{first}\numask > {marker}"],
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert shell.returncode == 0, shell.stderr
    written = home / ".colab-token"
    assert written.read_text() == token + "\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    # The umask is the subshell's: the user's shell keeps its own.
    assert marker.read_text().strip() != "0077"
    # The builtin printf, not /usr/bin/printf: no process has the token in its argv.
    kind = subprocess.run(["bash", "-c", "type -t printf"], capture_output=True, text=True)
    assert kind.stdout.strip() == "builtin"


def _relay_args(line: str) -> Any:
    words = shlex.split(line)
    assert words[:3] == ["jupyter", "colab-tunnel", "connect"]
    return build_parser().parse_args(words[2:])


def test_the_relay_line_is_a_valid_connect_command() -> None:
    info = connect_info(URL, "/jct/", TOKEN)
    assert info is not None
    args = _relay_args(info["command"].splitlines()[3])
    assert (args.url, args.connection_file) == (URL + "/jct", None)
    assert args.token_file == "~/.colab-token"


def test_with_a_connection_file_the_relay_follows_it() -> None:
    info = connect_info(URL, "/", TOKEN, "/content/drive/MyDrive/my runs/colab-tunnel.json")
    assert info is not None
    assert info["connection_file"] == "/content/drive/MyDrive/my runs/colab-tunnel.json"
    relay = info["command"].splitlines()[3]
    assert "--url" not in relay
    # Where Google Drive for desktop shows the same file; the shell expands ~ and keeps spaces.
    assert relay.startswith("jupyter colab-tunnel connect --connection-file ~/'Google Drive/")
    args = _relay_args(relay.replace("~/", "/home/me/", 1))
    assert args.connection_file == "/home/me/Google Drive/My Drive/my runs/colab-tunnel.json"
    elsewhere = connect_info(URL, "/", TOKEN, "/srv/state/colab-tunnel.json")
    assert elsewhere is not None
    args = _relay_args(elsewhere["command"].splitlines()[3])
    assert args.connection_file == "<your synced copy of /srv/state/colab-tunnel.json>"


def test_the_jupyterlab_line_is_the_one_the_relay_prints() -> None:
    info = connect_info(URL, "/", TOKEN)
    assert info is not None
    lab = info["command"].splitlines()[5]
    assert lab == lab_command()
    assert lab.startswith(
        'JUPYTER_GATEWAY_AUTH_TOKEN="$(cat ~/.jupyter-colab-tunnel/relay_token)" '
        "jupyter lab --gateway-url=http://127.0.0.1:18888 "
    )
    for name, value in GATEWAY_RETRY.items():
        assert f"--GatewayClient.{name}={value}" in lab
    printed = relay_cli.local_instructions(18888, "/home/me/.jupyter-colab-tunnel/relay_token")
    assert lab_command(18888, "/home/me/.jupyter-colab-tunnel/relay_token") in printed
    assert connect_options.DEFAULT_PORT == 18888
    assert connect_options.DEFAULT_LOCAL_TOKEN_FILE == "~/.jupyter-colab-tunnel/relay_token"


def test_the_config_reads_the_relays_token_from_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".jupyter-colab-tunnel").mkdir()
    (tmp_path / ".jupyter-colab-tunnel" / "relay_token").write_text("relay-secret\n")
    info = connect_info(URL, "/", TOKEN)
    assert info is not None
    c: Any = Config()
    exec(info["config"], {"c": c})  # what users paste into jupyter_lab_config.py
    assert c.GatewayClient.url == "http://127.0.0.1:18888"
    assert c.GatewayClient.auth_token == "relay-secret"
    assert c.GatewayClient.request_timeout == 120.0
    assert c.GatewayClient.connect_timeout == 60.0
    assert c.GatewayClient.gateway_retry_max == 60


def test_the_mcp_config_goes_through_the_relay() -> None:
    info = connect_info(URL, "/", TOKEN)
    assert info is not None
    servers = info["mcp"]["mcpServers"]
    assert servers["jupyter"]["env"]["JUPYTER_URL"] == "http://localhost:8888"
    colab = servers["colab"]
    assert colab["command"] == "jupyter-colab-tunnel"
    args = build_parser().parse_args(colab["args"])
    assert (args.command, args.url) == ("mcp", "http://127.0.0.1:18888")
    assert args.token_file == "~/.jupyter-colab-tunnel/relay_token"
    assert TOKEN not in repr(servers)


def test_the_connection_shows_the_same_steps_as_the_api() -> None:
    conn = Connection(
        port=8888,
        token=TOKEN,
        pid=1,
        log_path="/x.log",
        root_dir="/content",
        state="ready",
        gateway_url=URL,
        connection_file="/content/drive/MyDrive/colab-tunnel.json",
    )
    text, markdown = str(conn), conn._repr_markdown_()
    for _, line in connect_steps(URL, TOKEN, conn.connection_file):
        assert f"    {line}" in text
        assert line in markdown
    assert "--GatewayClient.auth_token" not in text + markdown
    assert "follows the tunnel's URL through the connection file" in text
