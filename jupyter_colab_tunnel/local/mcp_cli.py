"""`jupyter colab-tunnel mcp --url URL [--token-file PATH]`: the MCP tools over stdio.

The MCP SDK is imported only when the command runs (it is the optional extra ``[mcp]``), so
that the rest of the command line works without it. The token comes from --token-file, else
from $JUPYTER_COLAB_TUNNEL_TOKEN: never from the command line, where every user can read it.
"""

from __future__ import annotations

import argparse
import sys

from ..subcommand import Subcommand
from .cli_input import TOKEN_ENV, UsageError, add_remote_options, remote_token
from .client import ColabClient, RemoteError

PREFIX = "[colab-tunnel mcp]"
INSTALL_HINT = (
    "`jupyter colab-tunnel mcp` needs the MCP SDK, an optional extra. Install it on this "
    "(local) machine with:\n    pip install 'jupyter-colab-tunnel[mcp]'\n"
    "(until the first release on PyPI: pip install 'jupyter-colab-tunnel[mcp] @ "
    "git+https://github.com/jupyter-colab-tunnel/jupyter-colab-tunnel')"
)
HELP = "serve MCP tools (status, GPU, tunnel, ports, files) for AI agents over stdio"
DESCRIPTION = (
    "Serve MCP tools over stdio for an AI agent: colab_status, colab_gpu, colab_tunnel, "
    "colab_tunnel_action, colab_wait_gpu_memory, colab_ports, colab_upload, colab_download and "
    "colab_list, each asking the remote server's /colab/* "
    f"API. The token is read from --token-file, else from ${TOKEN_ENV}."
)


def configure_mcp_parser(parser: argparse.ArgumentParser) -> None:
    add_remote_options(parser, "seconds for each request to the remote")


def run_mcp(args: argparse.Namespace) -> int:
    """Run the stdio MCP server; 0 when the client hung up, non-zero on a usage error."""
    try:
        client = ColabClient(args.url, remote_token(args, PREFIX), timeout=args.timeout)
    except (UsageError, RemoteError) as e:
        print(f"{PREFIX} {e}", file=sys.stderr)
        return 2
    try:
        from .mcp import serve_stdio
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("mcp", "pydantic", "anyio"):
            raise
        print(f"{PREFIX} {INSTALL_HINT}\n({e})", file=sys.stderr)
        return 1
    try:
        serve_stdio(client)
    except KeyboardInterrupt:
        return 130
    return 0


MCP = Subcommand("mcp", HELP, DESCRIPTION, configure_mcp_parser, lambda args, rest: run_mcp(args))
