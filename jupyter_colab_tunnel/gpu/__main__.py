"""Smoke check on any machine: ``python -m jupyter_colab_tunnel.gpu [--no-processes]``."""

from __future__ import annotations

import argparse
import json

from ..runtime import RuntimeProbe, tpu_type
from .reader import NvmlReader


def main(argv: list[str] | None = None) -> int:
    """Print this machine's GPU sample as JSON; exit 0 even without a GPU (the JSON says why)."""
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_colab_tunnel.gpu", description="Print an NVML GPU sample."
    )
    parser.add_argument("--no-processes", action="store_true", help="skip per-process queries")
    args = parser.parse_args(argv)
    reader = NvmlReader(tpu_type=tpu_type(RuntimeProbe()))
    try:
        result = reader.sample(processes=not args.no_processes)
    finally:
        reader.shutdown()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
