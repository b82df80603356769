"""Load from a separate process, so that its client work never delays the measuring client.

    python -m benchmarks.hammer PORT TOKEN PATH CONCURRENCY SECONDS

Prints one JSON line: completed requests, errors, elapsed seconds, latency median (ms).
"""

from __future__ import annotations

import json
import statistics
import sys

from benchmarks.clients import concurrent


def main(argv: list[str]) -> int:
    port, token, path, concurrency, seconds = argv
    (block,) = concurrent(int(port), token, [(path, float(seconds))], int(concurrency), 0.0)
    print(
        json.dumps(
            {
                "completed": len(block.latencies_ms),
                "errors": block.errors,
                "elapsed_s": block.elapsed_s,
                "median_ms": statistics.median(block.latencies_ms) if block.latencies_ms else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
