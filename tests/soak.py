"""Soak: restart the tunnel every few seconds under concurrent API load, for a long time.

Not a pytest test (pytest collects only test_*.py): run it on its own, from the repository root,
with the environment the tests use::

    python tests/soak.py                 # 30 minutes
    python tests/soak.py --minutes 2     # a short run

One real `jupyter server` with the cloudflared stand-in (tests/tunnel_env.py, FAST supervision
settings). The main thread POSTs `restart` every --interval seconds and waits for `ready`;
--threads load threads loop over GET /colab/status, /colab/tunnel and /api/status. Every answer
goes through `ServerProcess.request`, so it is also held to docs/openapi.yaml. Every minute (and
at start and end) it prints the server's RSS, open fds, threads and cloudflared children; at the
end the server gets SIGTERM and must exit 0 leaving no child. Exit status 1 on any failed
request, restart that did not reach ready, more than one child, or a leftover process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # run as a script: tests/ helpers and testkit

from tunnel_env import TunnelServer, cloudflared_processes, start_tunnel_server  # noqa: E402

LOAD_PATHS = ("colab/status", "colab/tunnel", "api/status")


@dataclass
class Load:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[int, list[float]]:
        """The requests and latencies since the last call (each row is one interval)."""
        with self.lock:
            n, lat = self.requests, self.latencies
            self.requests, self.latencies = 0, []
            return n, lat


def load_worker(ts: TunnelServer, load: Load, stop: threading.Event, offset: int) -> None:
    i = offset
    while not stop.is_set():
        path = LOAD_PATHS[i % len(LOAD_PATHS)]
        i += 1
        t0 = time.monotonic()
        try:
            r = ts.server.request("GET", path, timeout=30)
            ok = r.status == 200
            detail = f"{path}: HTTP {r.status} {r.body[:200]!r}"
        except Exception as e:  # a refused connection, a timeout, a spec violation
            ok = False
            detail = f"{path}: {type(e).__name__}: {e}"
        elapsed = time.monotonic() - t0
        with load.lock:
            load.requests += 1
            load.latencies.append(elapsed)
            if not ok:
                load.errors.append(detail)


def sample(ts: TunnelServer) -> dict[str, Any]:
    proc = psutil.Process(ts.server.pid)
    with proc.oneshot():
        return {
            "rss_mib": round(proc.memory_info().rss / 2**20, 1),
            "fds": proc.num_fds(),
            "threads": proc.num_threads(),
            "children": len(cloudflared_processes(ts.server.pid)),
        }


def restart_and_wait(ts: TunnelServer, timeout: float) -> tuple[float, str | None]:
    """POST restart, wait for ready under a new pid. (seconds, problem or None)."""
    before = ts.tunnel()["pid"]
    t0 = time.monotonic()
    r = ts.post("restart", timeout=60)
    if r.status != 200:
        return time.monotonic() - t0, f"restart: HTTP {r.status} {r.body[:200]!r}"
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        body = ts.tunnel()
        if body["state"] == "ready" and body["pid"] not in (None, before):
            return time.monotonic() - t0, None
        time.sleep(0.05)
    return time.monotonic() - t0, f"not ready {timeout:g}s after restart: {body['state']}"


def run(minutes: float, interval: float, threads: int, workdir: Path) -> dict[str, Any]:
    ts = start_tunnel_server(workdir)
    ts.wait_state("ready", timeout=60)
    load = Load()
    stop = threading.Event()
    workers = [
        threading.Thread(target=load_worker, args=(ts, load, stop, i), daemon=True)
        for i in range(threads)
    ]
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    restart_times: list[float] = []
    max_children = 0
    t_start = time.monotonic()
    end = t_start + minutes * 60

    def record(minute: float) -> None:
        n, lat = load.take()
        row = {"minute": round(minute, 1), **sample(ts), "restarts": len(restart_times)}
        row["requests"] = n
        row["p50_ms"] = round(statistics.median(lat) * 1000, 1) if lat else None
        row["p99_ms"] = round(sorted(lat)[int(len(lat) * 0.99)] * 1000, 1) if lat else None
        rows.append(row)
        print(format_row(row), flush=True)

    print(format_header(), flush=True)
    record(0.0)
    for w in workers:
        w.start()
    next_report = t_start + 60
    try:
        while time.monotonic() < end:
            cycle = time.monotonic()
            seconds, problem = restart_and_wait(ts, timeout=30)
            restart_times.append(seconds)
            if problem:
                problems.append(problem)
            max_children = max(max_children, len(cloudflared_processes(ts.server.pid)))
            while time.monotonic() < min(cycle + interval, end):
                max_children = max(max_children, len(cloudflared_processes(ts.server.pid)))
                if time.monotonic() >= next_report:
                    record((time.monotonic() - t_start) / 60)
                    next_report += 60
                time.sleep(0.25)
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    record((time.monotonic() - t_start) / 60)
    pids = ts.spawned_pids()
    t0 = time.monotonic()
    code = ts.server.stop(signal.SIGTERM, timeout=30)
    shutdown_s = time.monotonic() - t0
    left = ts.alive_spawned()
    if code != 0:
        problems.append(f"server exited {code} on SIGTERM")
    if left:
        problems.append(f"cloudflared left behind: {left}")
    if max_children > 1:
        problems.append(f"{max_children} cloudflared children at once")
    problems += load.errors[:20]
    return {
        "machine": f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "minutes": minutes,
        "interval_s": interval,
        "load_threads": threads,
        "rows": rows,
        "restarts": len(restart_times),
        "restart_to_ready_s": {
            "median": round(statistics.median(restart_times), 2) if restart_times else None,
            "max": round(max(restart_times), 2) if restart_times else None,
        },
        "children_spawned": len(pids),
        "max_children": max_children,
        "requests": sum(r["requests"] for r in rows),
        "failed_requests": len(load.errors),
        "shutdown_s": round(shutdown_s, 2),
        "exit_code": code,
        "problems": problems,
    }


COLUMNS = [
    ("minute", "min"),
    ("rss_mib", "RSS MiB"),
    ("fds", "fds"),
    ("threads", "threads"),
    ("children", "children"),
    ("restarts", "restarts"),
    ("requests", "requests"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
]


def format_header() -> str:
    names = [title for _, title in COLUMNS]
    return "| " + " | ".join(names) + " |\n|" + "|".join("---" for _ in names) + "|"


def format_row(row: dict[str, Any]) -> str:
    return "| " + " | ".join(str(row[key]) for key, _ in COLUMNS) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between restarts")
    parser.add_argument("--threads", type=int, default=3, help="API load threads")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="colab-soak-") as tmp:
        result = run(args.minutes, args.interval, args.threads, Path(tmp))
    print()
    print(f"machine: {result['machine']}")
    print(
        f"{result['restarts']} restarts (restart -> ready median "
        f"{result['restart_to_ready_s']['median']} s, max {result['restart_to_ready_s']['max']} s), "
        f"{result['children_spawned']} children spawned, at most {result['max_children']} at once; "
        f"{result['requests']} API requests, {result['failed_requests']} failed; "
        f"SIGTERM -> exit {result['exit_code']} in {result['shutdown_s']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    for problem in result["problems"]:
        print("PROBLEM:", problem)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
