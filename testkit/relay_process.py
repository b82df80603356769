#!/usr/bin/env python3
"""`jupyter colab-tunnel connect` for tests, with the stand-in's edge in place of DNS.

The remote announces `https://<words>.trycloudflare.com`; the cloudflared stand-in serves that
hostname on a local edge port (testkit/fake_cloudflared.py). This runs the real relay command
with one difference: public tunnel URLs are dialled at the stand-in's edge address, which it
writes into $FAKE_CLOUDFLARED_STATE_DIR/<pid>.json. Everything else is the shipped code.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from jupyter_colab_tunnel.cli import build_parser
from jupyter_colab_tunnel.local.cli import GATEWAY_RETRY, run_connect

# A directory under which the stand-ins of the test write their state (any depth).
EDGE_ROOT_ENV = "RELAY_TEST_EDGE_ROOT"

# The local `jupyter server` in gateway mode, started the way the relay tells users to.
GATEWAY_ARGS = [
    "--ColabTunnelApp.tunnel_mode=off",
    *(f"--GatewayClient.{name}={value}" for name, value in GATEWAY_RETRY.items()),
]


def edge_for(hostname: str, root: Path) -> str | None:
    newest: tuple[float, str] | None = None
    if root.is_dir():
        for path in root.rglob("fake-state/*.json"):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if state.get("hostname") == hostname and state.get("edge"):
                stamp = path.stat().st_mtime
                if newest is None or stamp > newest[0]:
                    newest = (stamp, state["edge"])
    return newest[1] if newest else None


def resolve(url: str) -> str:
    """The stand-in's edge for a public tunnel URL: one look at the stand-ins' state, no wait.

    The relay calls this on its event loop, so it must not block. It need not wait: a stand-in
    writes its hostname and edge before it prints a quick tunnel's URL or registers a named one,
    and the relay dials a URL only once the remote reports the tunnel ready.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return url
    root = os.environ.get(EDGE_ROOT_ENV)
    edge = edge_for(parts.hostname, Path(root)) if root else None
    if edge is None:
        return url  # unknown to the stand-ins: dialled as is (and fails like a dead hostname)
    return edge + parts.path


if __name__ == "__main__":
    # The real command line's parser (argv starts with "connect").
    sys.exit(run_connect(build_parser().parse_args(sys.argv[1:]), resolve=resolve))
