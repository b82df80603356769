#!/usr/bin/env python3
"""`jupyter colab-tunnel cp` for tests: the shipped command, in a process that can reach the
cloudflared stand-in's public names.

The same as testkit/relay_process.py for the relay: with $RELAY_TEST_EDGE_ROOT set, the
session's test CA is trusted (SSL_CERT_FILE) and the name of a public tunnel URL
(`https://<words>.trycloudflare.com`, from --url or the connection file) is looked up at the
stand-in's TLS edge; the rest is the real cp, dialling that URL with TLS verified.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script, its directory is on sys.path but not the repository's: testkit is found
# through it (an installed, not editable, package has no testkit).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_colab_tunnel.local.files.cp_cli import configure_cp_parser, run_cp
from testkit.relay_process import reach_the_stand_ins

if __name__ == "__main__":
    reach_the_stand_ins()
    parser = argparse.ArgumentParser(prog="jupyter colab-tunnel cp")
    configure_cp_parser(parser)
    sys.exit(run_cp(parser.parse_args(sys.argv[1:])))
