#!/usr/bin/env python3
"""`jupyter colab-tunnel cp` for tests, with the stand-in's edge in place of DNS.

The same as testkit/relay_process.py for the relay: the real cp command, except that a public
tunnel URL (`https://<words>.trycloudflare.com`, from --url or the connection file) is dialled
at the cloudflared stand-in's edge (found under $RELAY_TEST_EDGE_ROOT).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script, its directory is on sys.path but not the repository's: testkit is found
# through it (an installed, not editable, package has no testkit).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_colab_tunnel.local.files.cp_cli import configure_cp_parser, run_cp
from testkit.relay_process import resolve

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="jupyter colab-tunnel cp")
    configure_cp_parser(parser)
    sys.exit(run_cp(parser.parse_args(sys.argv[1:]), resolve=resolve))
