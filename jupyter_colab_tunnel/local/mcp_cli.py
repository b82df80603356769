"""`jupyter colab-tunnel mcp --url URL [--token-file PATH]`: the MCP tools over stdio.

The MCP SDK is imported only when the command runs (it is the optional extra ``[mcp]``), so
that the rest of the command line works without it. The token comes from --token-file, else
from $JUPYTER_COLAB_TUNNEL_TOKEN: never from the command line, where every user can read it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..client import REQUEST_TIMEOUT, ColabClient, RemoteError
from .secret_file import exposure_warning

TOKEN_ENV = "JUPYTER_COLAB_TUNNEL_TOKEN"  # noqa: S105 (the variable's name)
PREFIX = "[colab-tunnel mcp]"
INSTALL_HINT = (
    "`jupyter colab-tunnel mcp` needs the MCP SDK, an optional extra. Install it on this "
    "(local) machine with:\n    pip install 'jupyter-colab-tunnel[mcp]'\n"
    "(until the first release on PyPI: pip install 'jupyter-colab-tunnel[mcp] @ "
    "git+https://github.com/jupyter-colab-tunnel/jupyter-colab-tunnel')"
)


class _RefuseToken(argparse.Action):
    """--token VALUE is an error that does not repeat VALUE (it would land in logs)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error(
            "the token is not taken on the command line, where other users can read it "
            f"(ps): use --token-file PATH or ${TOKEN_ENV}"
        )


HELP = "serve MCP tools (status, GPU, tunnel, ports, files) for AI agents over stdio"
DESCRIPTION = (
    "Serve MCP tools over stdio for an AI agent: colab_status, colab_gpu, colab_tunnel, "
    "colab_tunnel_action, colab_wait_gpu_memory, colab_ports, colab_upload, colab_download and "
    "colab_list, each asking the remote server's /colab/* "
    f"API. The token is read from --token-file, else from ${TOKEN_ENV}."
)


def add_mcp_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `mcp` subcommand to an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser("mcp", help=HELP)
    configure_mcp_parser(parser)
    return parser


def configure_mcp_parser(parser: argparse.ArgumentParser) -> None:
    """The `mcp` subcommand's description and options."""
    parser.description = DESCRIPTION
    add_remote_options(parser, "seconds for each request to the remote")


def add_remote_options(parser: argparse.ArgumentParser, timeout_help: str) -> None:
    """--url, --token-file and --timeout of a command that asks the remote's /colab/* API
    (`mcp`, `ports`); a token on the command line is refused."""
    # No prefixes: `--token SECRET` must not be taken for --token-file.
    parser.allow_abbrev = False
    parser.add_argument(
        "--url",
        required=True,
        help="the tunnel URL (with the remote token) or the local relay (with its token)",
    )
    parser.add_argument("--token-file", help=f"a file holding the token (default: ${TOKEN_ENV})")
    parser.add_argument("--token", nargs="?", action=_RefuseToken, help=argparse.SUPPRESS)
    parser.add_argument(
        "--timeout",
        type=float,
        default=REQUEST_TIMEOUT,
        help=f"{timeout_help} (default: {REQUEST_TIMEOUT:g})",
    )


def remote_token(args: argparse.Namespace) -> str:
    """The token of add_remote_options' arguments, once they are checked; _UsageError if not."""
    token = read_token(args.token_file)
    if not args.timeout > 0:
        raise _UsageError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    return token


class _UsageError(Exception):
    pass


def read_token(token_file: str | None) -> str:
    """The token from the file, else from the environment; _UsageError when there is none."""
    if token_file:
        path = os.path.expanduser(token_file)
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise _UsageError(f"cannot read the token file {path}: {reason}") from None
        if not token:
            raise _UsageError(f"the token file {path} is empty")
        warning = exposure_warning(path)
        if warning:
            print(f"{PREFIX} warning: {warning}", file=sys.stderr)
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise _UsageError(
            f"no token: pass --token-file PATH or set ${TOKEN_ENV} (the remote Jupyter "
            "server's token for a tunnel URL, the relay's token for the relay)"
        )
    return token


def run_mcp(args: argparse.Namespace) -> int:
    """Run the stdio MCP server; 0 when the client hung up, non-zero on a usage error."""
    try:
        client = ColabClient(args.url, remote_token(args), timeout=args.timeout)
    except (_UsageError, RemoteError) as e:
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
