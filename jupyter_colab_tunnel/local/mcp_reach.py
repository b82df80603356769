"""colab_tunnel_action's way back after a stop or restart cut the connection that carried it:
whether a failure is such a cut, and the remote's snapshot once it answers again (or a
`tunnel_cut` tool error that says what happened and what to do)."""

from __future__ import annotations

import time

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from ..states import TunnelAction
from .client import ColabClient, JSONObject, RemoteError
from .mcp_errors import tool_error


def cut_mid_request(error: RemoteError) -> bool:
    """Whether the connection broke after the request was sent, as when the tunnel it went
    through stops (refused, DNS and TLS failures happen before anything is sent); through the
    local relay, its upstream_lost_request says the same."""
    return error.kind in ("unreachable", "timeout", "bad_gateway", "upstream_lost_request")


def cut_off(error: RemoteError) -> bool:
    """Whether a failure looks like the tunnel being away (while it restarts); through the
    local relay, that is its no_upstream until the remote writes the new URL."""
    return error.unreachable or error.kind in ("no_tunnel", "bad_gateway", "no_upstream")


async def reach_again(
    client: ColabClient,
    action: TunnelAction,
    cut: RemoteError,
    deadline: float,
    interval: float,
) -> JSONObject:
    """After a stop/restart cut our own connection: the snapshot once the remote answers
    again (a restart behind a stable address), else a ToolError that explains the cut."""
    last = cut
    while action == "restart" and time.monotonic() < deadline:
        await anyio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        try:
            return await client.tunnel()
        except RemoteError as e:
            if not cut_off(e):
                raise ToolError(str(e)) from None
            last = e
    if action == "stop":
        hint = (
            "The tunnel is stopped, so nothing reaches the remote through it any more. Start "
            'it again from the remote machine itself: POST {"action": "start"} to '
            "http://127.0.0.1:<port>/colab/tunnel there with the server's token (e.g. with "
            "curl in a notebook cell), or restart the Jupyter server."
        )
    else:
        hint = (
            "The remote restarts the tunnel anyway. A quick tunnel comes back under a NEW URL: "
            "read it on the remote (`jupyter colab-tunnel status`) and point this MCP server "
            "at it; the local relay follows the URL by itself, and a named tunnel keeps it."
        )
    raise tool_error(
        "tunnel_cut",
        f"the {action} request went through the tunnel it {action}s, so its answer was lost, "
        f"and the remote did not answer again in time ({last.kind}: {last.message})",
        hint,
    )
