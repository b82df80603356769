"""How a local client connects through the tunnel: gateway URL, command, MCP config."""

from __future__ import annotations

from typing import Any

TOKEN_PLACEHOLDER = "<token>"  # noqa: S105 - a placeholder, not a secret


def gateway_url(tunnel_url: str, base_url: str) -> str:
    return tunnel_url.rstrip("/") + (base_url.rstrip("/") if base_url != "/" else "")


def connect_info(
    tunnel_url: str | None, base_url: str, token: str = TOKEN_PLACEHOLDER
) -> dict[str, Any] | None:
    """What to run on the local machine. `token` is the remote Jupyter server's token."""
    if not tunnel_url:
        return None
    gw = gateway_url(tunnel_url, base_url)
    return {
        "gateway_url": gw,
        "command": f"jupyter lab --gateway-url={gw} --GatewayClient.auth_token={token}",
        "config": (
            f'c.GatewayClient.url = "{gw}"\n'
            f'c.GatewayClient.auth_token = "{token}"\n'
            "c.GatewayClient.request_timeout = 120.0\n"
            "c.GatewayClient.connect_timeout = 60.0\n"
        ),
        # jupyter-mcp-server talks to the *local* server (started with the command above),
        # whose kernels then run on this remote machine.
        "mcp": {
            "mcpServers": {
                "jupyter": {
                    "command": "uvx",
                    "args": ["jupyter-mcp-server@latest"],
                    "env": {
                        "JUPYTER_URL": "http://localhost:8888",
                        "JUPYTER_TOKEN": "<local server token>",
                        "ALLOW_IMG_OUTPUT": "true",
                    },
                }
            }
        },
    }
