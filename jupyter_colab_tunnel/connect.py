"""How a local machine connects through the tunnel: through the relay, never with a token in argv.

The user's machine keeps the remote token in a private file, runs the relay
(`jupyter colab-tunnel connect`, which follows the tunnel's URL) and points JupyterLab and the
MCP tools at the relay, with the relay's own token read from its file. The same text is shown
by /colab/tunnel's `connect`, the dashboard, `launch()`/`status` and the relay itself
(local/connect_cli.py builds its JupyterLab command here).
"""

from __future__ import annotations

import shlex
from typing import Any

TOKEN_PLACEHOLDER = "<token>"  # noqa: S105 - a placeholder, not a secret
RELAY_PORT = 18888
RELAY_TOKEN_FILE = "~/.jupyter-colab-tunnel/relay_token"  # noqa: S105 - a path
REMOTE_TOKEN_FILE = "~/.colab-token"  # noqa: S105 - a path, on the user's machine
# Where Colab mounts Drive, and where Google Drive for desktop shows the same folder by default.
COLAB_DRIVE = "/content/drive/MyDrive/"
DESKTOP_DRIVE = "Google Drive/My Drive/"

# The local JupyterLab's gateway client: retry its kernel websocket often and for long, so a
# relay that is itself re-dialling a new tunnel URL is never given up on.
GATEWAY_RETRY: dict[str, float] = {
    "gateway_retry_interval": 0.5,
    "gateway_retry_interval_max": 2.0,
    "gateway_retry_max": 60,
    "connect_timeout": 60.0,
    "request_timeout": 120.0,
}


def gateway_url(tunnel_url: str, base_url: str) -> str:
    return tunnel_url.rstrip("/") + (base_url.rstrip("/") if base_url != "/" else "")


def relay_url(port: int = RELAY_PORT) -> str:
    return f"http://127.0.0.1:{port}"


def _home_path(path: str) -> str:
    """`path` for a shell: `~/` stays unquoted (so the shell expands it), the rest quoted."""
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


def token_file_command(token: str = TOKEN_PLACEHOLDER) -> str:
    """Write the remote token into a private file; `printf` is a shell builtin, so the token is
    in no process's argv. The subshell keeps the umask from changing the user's shell."""
    quoted = "'" + token.replace("'", "'\"'\"'") + "'"
    return f"(umask 077; printf '%s\\n' {quoted} > {REMOTE_TOKEN_FILE})"


def local_connection_file(remote_path: str) -> str:
    """The connection file as the user's machine sees it: a file on Colab's Drive mount is
    shown where Google Drive for desktop syncs it (the exact folder depends on the system)."""
    if remote_path.startswith(COLAB_DRIVE):
        return _home_path("~/" + DESKTOP_DRIVE + remote_path[len(COLAB_DRIVE) :])
    return shlex.quote(f"<your synced copy of {remote_path}>")


def relay_command(gateway: str, connection_file: str | None = None) -> str:
    """The relay, reading the remote token from its file: `--connection-file` follows the
    tunnel's URL across restarts; `--url` is the URL of now."""
    source = (
        f"--connection-file {local_connection_file(connection_file)}"
        if connection_file
        else f"--url {shlex.quote(gateway)}"
    )
    return f"jupyter colab-tunnel connect {source} --token-file {REMOTE_TOKEN_FILE}"


def lab_command(port: int = RELAY_PORT, token_file: str = RELAY_TOKEN_FILE) -> str:
    """JupyterLab in gateway mode through the relay; the relay's token goes in the environment
    (read from its file by the shell), never on the command line."""
    flags = " ".join(f"--GatewayClient.{k}={v}" for k, v in GATEWAY_RETRY.items())
    return (
        f'JUPYTER_GATEWAY_AUTH_TOKEN="$(cat {_home_path(token_file)})" '
        f"jupyter lab --gateway-url={relay_url(port)} {flags}"
    )


def lab_config(port: int = RELAY_PORT, token_file: str = RELAY_TOKEN_FILE) -> str:
    """The same as jupyter_lab_config.py lines: the token is read from the relay's file."""
    lines = [
        "from pathlib import Path",
        f'c.GatewayClient.url = "{relay_url(port)}"',
        f'c.GatewayClient.auth_token = Path("{token_file}").expanduser().read_text().strip()',
        *(f"c.GatewayClient.{k} = {v!r}" for k, v in GATEWAY_RETRY.items()),
    ]
    return "\n".join(lines) + "\n"


def mcp_config() -> dict[str, Any]:
    """MCP servers for an agent on the user's machine, both through the relay: jupyter-mcp-server
    runs code through the local JupyterLab (started as above), `jupyter colab-tunnel mcp` asks
    the remote's /colab/* API through the relay, with the relay's token from its file."""
    return {
        "mcpServers": {
            "jupyter": {
                "command": "uvx",
                "args": ["jupyter-mcp-server@latest"],
                "env": {
                    "JUPYTER_URL": "http://localhost:8888",
                    "JUPYTER_TOKEN": "<local server token>",
                    "ALLOW_IMG_OUTPUT": "true",
                },
            },
            "colab": {
                "command": "jupyter-colab-tunnel",
                "args": ["mcp", "--url", relay_url(), "--token-file", RELAY_TOKEN_FILE],
                "env": {},
            },
        }
    }


def connect_steps(
    gateway: str, token: str = TOKEN_PLACEHOLDER, connection_file: str | None = None
) -> list[tuple[str, str]]:
    """(what, shell line) in the order the user runs them."""
    return [
        ("On your machine: the remote token in a private file", token_file_command(token)),
        (
            "the relay (leave it running: it adds the token"
            + (
                " and follows the tunnel's URL)"
                if connection_file
                else "; after a new tunnel URL, start it again with that URL)"
            ),
            relay_command(gateway, connection_file),
        ),
        (
            "in a second terminal: JupyterLab through the relay (kernels run on the remote)",
            lab_command(),
        ),
    ]


def connect_info(
    tunnel_url: str | None,
    base_url: str,
    token: str = TOKEN_PLACEHOLDER,
    connection_file: str | None = None,
) -> dict[str, Any] | None:
    """What to run on the local machine. `token` is the remote Jupyter server's token (the
    placeholder unless the caller is its owner); `connection_file` the remote's, if any."""
    if not tunnel_url:
        return None
    gw = gateway_url(tunnel_url, base_url)
    steps = connect_steps(gw, token, connection_file)
    return {
        "gateway_url": gw,
        "connection_file": connection_file,
        "command": "\n".join(f"# {what}\n{line}" for what, line in steps),
        "config": lab_config(),
        "mcp": mcp_config(),
    }
