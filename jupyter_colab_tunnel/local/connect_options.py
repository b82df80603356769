"""`jupyter colab-tunnel connect`'s words and options (the relay that runs them: local/connect_cli.py)."""

from __future__ import annotations

import argparse

from ..connect import RELAY_PORT, RELAY_TOKEN_FILE
from .cli_input import TOKEN_ENV

# The port, token file and JupyterLab command are shared with what the remote shows (connect.py).
DEFAULT_PORT = RELAY_PORT
HEADERS_ENV = "JUPYTER_COLAB_TUNNEL_HEADERS"
DEFAULT_LOCAL_TOKEN_FILE = RELAY_TOKEN_FILE

HELP = "run a local relay (127.0.0.1) to the remote that follows its tunnel URL"
DESCRIPTION = (
    "Relay 127.0.0.1:PORT to the remote Jupyter server, adding its token. With "
    "--connection-file, a new tunnel URL is followed without restarting anything. "
    "Runs until Ctrl-C / SIGTERM."
)


def add_connect_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the remote's URL (tunnel URL plus any base_url)")
    where.add_argument(
        "--connection-file", help="the JSON file the remote writes (ColabTunnelApp.connection_file)"
    )
    parser.add_argument(
        "--token-file",
        help=f"file holding the remote Jupyter token (else ${TOKEN_ENV}, else the connection file)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"local port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--local-token-file",
        default=DEFAULT_LOCAL_TOKEN_FILE,
        help=(
            "the relay's own token: read from this file, or generated and written there (0600) "
            f"(default {DEFAULT_LOCAL_TOKEN_FILE})"
        ),
    )
    parser.add_argument(
        "--headers-file",
        help=(
            "JSON object of extra headers for the remote, e.g. Cloudflare Access "
            f"CF-Access-Client-Id/Secret (else ${HEADERS_ENV})"
        ),
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="a browser origin allowed to call the relay (repeatable; default: none)",
    )
    parser.add_argument(
        "--check", action="store_true", help="check the remote once, print the verdict, exit"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=20.0,
        help="seconds a request waits for a live remote during a switch (default 20)",
    )
    parser.add_argument(
        "--resume-timeout",
        type=float,
        default=60.0,
        help="seconds a kernel websocket is held open while its remote is re-dialled (default 60)",
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=10 * 1024 * 1024,
        help=(
            "bytes: the largest kernel message the remote accepts (its "
            "ServerApp.tornado_settings websocket_max_message_size; default 10 MiB, "
            "jupyter_server's); a larger one is refused with a logged error"
        ),
    )
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=10.0,
        help=(
            "on Ctrl-C / SIGTERM with kernel websockets open: seconds the relay still answers "
            "the local JupyterLab's kernel shutdown (default 10; stop JupyterLab first)"
        ),
    )
    parser.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="[LOCAL:]REMOTE",
        help="the remote's 127.0.0.1:REMOTE at http://127.0.0.1:LOCAL/ here, like ssh -L "
        "(LOCAL defaults to REMOTE; repeatable)",
    )
    parser.add_argument(
        "--gone-after",
        type=float,
        default=60.0,
        help=(
            "seconds a remote may stay unreachable behind a dead tunnel (Cloudflare 530/1033, "
            "a quick tunnel's name that no longer resolves, connection refused) before the "
            "relay says that the runtime is gone and closes its kernel websockets (default 60)"
        ),
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=120.0,
        help="seconds for one request to the remote (default 120)",
    )
