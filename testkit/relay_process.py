#!/usr/bin/env python3
"""`jupyter colab-tunnel connect` for tests: the shipped command, in a process that can reach the
cloudflared stand-in's public names.

The remote announces `https://<words>.trycloudflare.com`; the stand-in serves that hostname on
a local TLS edge (testkit/fake_cloudflared.py). With $RELAY_TEST_EDGE_ROOT set (the directory
under which the test's stand-ins write their state), this process trusts the session's test CA
(SSL_CERT_FILE: only that CA, whatever the machine's environment named) and looks those names
up with testkit/edge_dns.py's resolver; then it runs the real command line. The relay itself is
the shipped code, dialling the public URL with TLS verified.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Run as a script, its directory is on sys.path but not the repository's: testkit is found
# through it (an installed, not editable, package has no testkit).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_colab_tunnel.local.connect_cli import GATEWAY_RETRY
from testkit import edge_dns

# A directory under which the stand-ins of the test write their state (any depth).
EDGE_ROOT_ENV = edge_dns.EDGE_ROOT_ENV

# The local `jupyter server` in gateway mode, started the way the relay tells users to.
GATEWAY_ARGS = [
    "--ColabTunnelApp.tunnel_mode=off",
    *(f"--GatewayClient.{name}={value}" for name, value in GATEWAY_RETRY.items()),
]


def reach_the_stand_ins() -> None:
    """Trust the test CA and look the stand-ins' names up at their edge, when a test said
    where they are; before any client is made (SSL_CERT_FILE is read when one is)."""
    if os.environ.get(EDGE_ROOT_ENV):
        edge_dns.trust_test_ca()
        edge_dns.install()


if __name__ == "__main__":
    from jupyter_colab_tunnel.cli import build_parser
    from jupyter_colab_tunnel.local.connect_cli import run_connect

    reach_the_stand_ins()
    # The real command line's parser (argv starts with "connect").
    sys.exit(run_connect(build_parser().parse_args(sys.argv[1:])))
