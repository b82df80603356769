"""python -m benchmarks [--quick] [--json PATH] [--markdown PATH] [--only SUITE,...] [--keep]"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    endpoints,
    files,
    flood,
    forward,
    lab,
    metrics,
    peers,
    relay,
    request_paths,
    startup,
    tunnel,
)
from benchmarks import mcp as mcp_tools
from benchmarks.report import Figure, document, loadavg, machine, markdown, table
from benchmarks.servers import REPO, Fleet
from testkit import edge_tls

Suite = Callable[[Fleet, bool, dict[str, Any]], list[Figure]]

# In this order: peers reuses the tunnel suite's time-to-URL as its baseline.
SUITES: dict[str, Suite] = {
    "startup": startup.run,
    "tunnel": tunnel.run,
    "endpoints": endpoints.run,
    "loop": endpoints.run_loop,
    "flood": flood.run,
    "peers": peers.run,
    "mcp": mcp_tools.run,
    "metrics": metrics.run,
    "relay": relay.run,
    "forward": forward.run,
    "files": files.run,
    "requests": request_paths.run,
    "lab": lab.run,
}
# The table's order (the sort is stable: within a group, the order the suites made them).
GROUPS = [
    "start-up",
    "memory",
    "shutdown",
    "tunnel",
    "restart",
    "endpoints",
    "throughput",
    "event loop",
    "log flood",
    "peers",
    "mcp",
    "metrics",
    "dashboard",
    "relay",
    "forward",
    "files",
    "requests",
    "lab",
]
DEFAULT_JSON = REPO / "benchmarks" / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="few iterations (< 60 s): a smoke run")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default: {DEFAULT_JSON}")
    p.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated suites to run (default all: {','.join(SUITES)})",
    )
    p.add_argument("--keep", action="store_true", help="keep the servers' work directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(f"unknown suites: {', '.join(unknown)}; known: {', '.join(SUITES)}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="jct-bench-"))
    # The stand-ins' edges serve TLS, as Cloudflare's does; the relay and cp verify it.
    edge_ca = edge_tls.setup()
    fleet = Fleet(workdir)
    ctx: dict[str, Any] = {}
    figures: list[Figure] = []
    failed: dict[str, str] = {}
    timings: dict[str, float] = {}
    load_before = loadavg()
    started = time.perf_counter()
    mode = "quick" if args.quick else "full"
    print(f"benchmarks ({mode}): {', '.join(names)}; work directory {workdir}", flush=True)
    try:
        for name in [n for n in SUITES if n in names]:
            t0 = time.perf_counter()
            print(f"-- {name} ...", flush=True)
            try:
                figures += SUITES[name](fleet, args.quick, ctx)
            except Exception:
                failed[name] = traceback.format_exc()
                print(f"!! suite {name} failed:\n{failed[name]}", file=sys.stderr, flush=True)
            finally:
                fleet.close()  # nothing of a suite outlives it, even when it failed
            timings[name] = round(time.perf_counter() - t0, 1)
            print(f"   {name}: {timings[name]} s", flush=True)
    finally:
        fleet.close()
        edge_tls.teardown(edge_ca)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if fleet.sigkills:
        figures.append(startup.sigkill_figure(fleet.sigkills))
    figures.sort(key=lambda f: GROUPS.index(f.group) if f.group in GROUPS else len(GROUPS))
    meta = {
        "mode": mode,
        "suites": names,
        "machine": machine(),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "duration_s": round(time.perf_counter() - started, 1),
        "suite_duration_s": timings,
        "failed_suites": failed,
        "skipped_figures": ctx.get("skipped", {}),
    }
    doc = document(figures, meta)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print()
    print(table(figures))
    m = meta["machine"]
    print(
        f"\n{m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}; load average "
        f"{load_before} before, {meta['loadavg_after']} after; {meta['duration_s']} s"
    )
    s = doc["summary"]
    print(f"targets met: {s['met']}, missed: {len(s['missed'])} {s['missed']}, info: {s['info']}")
    print(f"JSON: {args.json}")
    for key, why in meta["skipped_figures"].items():
        print(f"skipped {key}: {why}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(figures) + "\n")
        print(f"Markdown: {args.markdown}")
    if failed:
        print(f"FAILED suites: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
