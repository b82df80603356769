"""`jupyter colab-tunnel ports --url URL [--token-file PATH] [--json]`: the remote's listening
ports, and the `--forward` flag that puts each at 127.0.0.1 on this machine.

It asks GET /colab/ports through the local relay (its URL and the relay's token) or straight at
the tunnel URL (with the remote token); the token is taken as `mcp` takes it (--token-file,
else $JUPYTER_COLAB_TUNNEL_TOKEN), never from the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..subcommand import Subcommand
from .cli_input import TOKEN_ENV, UsageError, add_remote_options, remote_token
from .client import ColabClientSync, RemoteError

PREFIX = "[colab-tunnel ports]"
HELP = "list the remote's listening ports and the --forward flag that reaches each"
DESCRIPTION = (
    "List the TCP ports listening on the remote machine (TensorBoard, Gradio, a model server, "
    "...): the process, the kernel that started it, its command line (secrets dropped) and the "
    "flag to add to `jupyter colab-tunnel connect` to reach it at 127.0.0.1 here. --url is the "
    "local relay (with its token) or the tunnel URL (with the remote token); the token is read "
    f"from --token-file, else from ${TOKEN_ENV}."
)
COMMAND_WIDTH = 60


def configure_ports_parser(parser: argparse.ArgumentParser) -> None:
    add_remote_options(parser, "seconds for the request")
    parser.add_argument("--json", action="store_true", help="print GET /colab/ports as JSON")


def table(body: dict[str, Any]) -> str:
    """The ports as a table: PORT, PROCESS, KERNEL, COMMAND, and the flag or the refusal."""
    ports = body.get("ports") or []
    if not ports:
        return "No TCP port listens on the remote's loopback address."
    rows = [("PORT", "PROCESS", "KERNEL", "COMMAND", "CONNECT WITH")]
    for p in ports:
        process = f"{p.get('name') or '?'} ({p['pid']})" if p.get("pid") else "? (not visible)"
        command = p.get("cmdline") or ""
        if len(command) > COMMAND_WIDTH:
            command = command[: COMMAND_WIDTH - 1] + "…"
        use = p.get("forward") or f"--forward {p['port']}"
        if p.get("forwardable") is False:
            use = f"refused: {p.get('refused') or 'not allowed'}"
        kernel = str(p.get("kernel_id") or "-")[:8]
        rows.append((str(p["port"]), process, kernel, command, use))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
    lines.append("")
    lines.append("Add a flag to `jupyter colab-tunnel connect ...` to reach the port at 127.0.0.1.")
    return "\n".join(line.rstrip() for line in lines)


def run_ports(args: argparse.Namespace) -> int:
    """Print the ports; 0 on success, 1 when the remote failed, 2 on a usage error."""
    try:
        client = ColabClientSync(args.url, remote_token(args, PREFIX), timeout=args.timeout)
    except (UsageError, RemoteError) as e:
        print(f"{PREFIX} {e}", file=sys.stderr)
        return 2
    try:
        body = client.ports()
    except RemoteError as e:
        print(f"{PREFIX} {e}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2) if args.json else table(body))
    return 0


PORTS = Subcommand(
    "ports", HELP, DESCRIPTION, configure_ports_parser, lambda args, rest: run_ports(args)
)
