"""Endpoint latency and throughput, and the event loop while /colab/gpu waits on a slow driver.

Latency: one server (tunnel ready, NVML patched with 8 fake T4s, default gpu_cache_ttl 1 s).
Blocks of /api/status (the baseline, Jupyter's own cheapest authenticated handler),
/colab/status, /colab/tunnel and /colab/gpu alternate in a rotating order, at concurrency 1
(one keep-alive http.client connection) and 32 (aiohttp, 32 keep-alive connections).

Event loop: another server, 8 fake GPUs whose every device call sleeps 50 ms, gpu_cache_ttl 0.
/api/status latency at concurrency 1 while idle, then while a separate process keeps 32
requests to /colab/gpu in flight; idle and loaded phases alternate.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks.clients import Block, concurrent, sequential, sequential_for
from benchmarks.report import Figure, Summary, ratio
from benchmarks.servers import REPO, Fleet, Server
from benchmarks.startup import STOP_TIMEOUT

PATHS = {
    "api": "/api/status",
    "status": "/colab/status",
    "tunnel": "/colab/tunnel",
    "gpu": "/colab/gpu",
}
TARGETS = {"status": 1.3, "tunnel": 1.3, "gpu": 1.5}
GPUS = 8
SLOW_CALL = 0.05


def _rotated(names: list[str], i: int) -> list[str]:
    k = i % len(names)
    return names[k:] + names[:k]


def _collect(blocks: list[Block]) -> dict[str, list[Block]]:
    by: dict[str, list[Block]] = {}
    for b in blocks:
        by.setdefault(b.path, []).append(b)
    return by


def _latencies(blocks: list[Block]) -> list[float]:
    return [x for b in blocks for x in b.latencies_ms]


def latency(fleet: Fleet, quick: bool) -> list[Figure]:
    rounds = 2 if quick else 5
    n_seq = 60 if quick else 400
    secs = 0.5 if quick else 2.0
    server = fleet.start("endpoints", nvml=(GPUS, 0.0))
    server.wait_ready()
    gpu = server.get_json("/colab/gpu")
    if gpu["count"] != GPUS or not gpu["available"]:
        raise RuntimeError(f"NVML patch not active in the server: {gpu}")
    conn = server.connection()
    names = list(PATHS)
    for name in names:  # warm-up: first-call imports, NVML init, caches
        sequential(conn, PATHS[name], 30)
    c1: list[Block] = []
    for i in range(rounds):
        for name in _rotated(names, i):
            c1.append(sequential(conn, PATHS[name], n_seq))
    conn.close()
    plan = [(PATHS[name], secs) for i in range(rounds) for name in _rotated(names, i)]
    c32 = concurrent(server.port, server.token, plan, 32)
    fleet.sigkill(server)

    figures: list[Figure] = []
    thr: list[Figure] = []
    for conc, blocks in ((1, c1), (32, c32)):
        by = _collect(blocks)
        errors = sum(b.errors for b in blocks)
        if errors:
            raise RuntimeError(f"{errors} failed requests at concurrency {conc}")
        base = Summary.of(_latencies(by[PATHS["api"]]))
        base_thr = Summary.of([b.throughput for b in by[PATHS["api"]]])
        for name in ("status", "tunnel", "gpu"):
            path = PATHS[name]
            value = Summary.of(_latencies(by[path]))
            r = ratio(value.median, base.median)
            figures.append(
                Figure(
                    key=f"endpoint.{name}.c{conc}",
                    group="endpoints",
                    title=f"{path} latency, concurrency {conc}",
                    unit="ms",
                    value=value,
                    baseline=base,
                    baseline_label="/api/status on the same server, blocks alternated",
                    target=f"p50 <= {TARGETS[name]}x baseline",
                    met=r <= TARGETS[name],
                    compare=f"{r:.2f}x",
                    notes=f"{len(by[path])} blocks; 8 fake GPUs" if name == "gpu" else "",
                )
            )
            tv = Summary.of([b.throughput for b in by[path]])
            thr.append(
                Figure(
                    key=f"throughput.{name}.c{conc}",
                    group="throughput",
                    title=f"{path} throughput, concurrency {conc}",
                    unit="req/s",
                    value=tv,
                    baseline=base_thr,
                    baseline_label="/api/status on the same server (per-block req/s)",
                    target="none (see latency)",
                    met=None,
                    compare=f"{ratio(tv.median, base_thr.median):.2f}x",
                )
            )
    return figures + thr


def _hammer(port: int, token: str, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.hammer", str(port), token, "/colab/gpu", "32",
         str(seconds)],
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _ask_gpu(server: Server) -> None:
    conn = server.connection()
    with contextlib.suppress(OSError, http.client.HTTPException):
        conn.get("/colab/gpu")
    conn.close()


def event_loop(fleet: Fleet, quick: bool) -> list[Figure]:
    cycles = 1 if quick else 2
    idle_s = 1.5 if quick else 6.0
    loaded_s = 2.5 if quick else 15.0
    server = fleet.start("loop", nvml=(GPUS, SLOW_CALL), colab={"gpu_cache_ttl": 0})
    server.wait_ready()
    conn = server.connection()
    sequential(conn, PATHS["api"], 50)
    idle: list[Block] = []
    loaded: list[Block] = []
    hammers: list[dict[str, Any]] = []
    try:
        for _ in range(cycles):
            idle.append(sequential_for(conn, PATHS["api"], idle_s))
            proc = _hammer(server.port, server.token, loaded_s + 0.5)
            try:
                time.sleep(0.5)  # its 32 connections are open and waiting
                loaded.append(sequential_for(conn, PATHS["api"], loaded_s))
                out, _ = proc.communicate(timeout=loaded_s + 60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            hammers.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        conn.close()
    # SIGTERM while a slow sample is in flight (this request joins the current one, if any).
    asker = threading.Thread(target=_ask_gpu, args=(server,), daemon=True)
    asker.start()
    time.sleep(0.2)
    all_gone, children_gone = server.sigterm_timed()
    asker.join(10)
    base = Summary.of(_latencies(idle))
    value = Summary.of(_latencies(loaded))
    r = ratio(value.p99 or 0.0, base.p99 or 0.0)
    completed = sum(h["completed"] for h in hammers)
    term_limit = (STOP_TIMEOUT + 0.5) * 1000
    return [
        Figure(
            key="shutdown.sigterm_slow_gpu",
            group="shutdown",
            title="SIGTERM with a slow NVML sample in flight",
            unit="ms",
            value=Summary.scalar(all_gone * 1000),
            baseline=Summary.scalar(children_gone * 1000),
            baseline_label="cloudflared gone, in the same SIGTERM",
            target=f"<= stop_timeout + 0.5 s = {term_limit:.0f} ms",
            met=all_gone * 1000 <= term_limit,
            compare=f"{(all_gone - children_gone) * 1000:+.0f} ms waiting on NVML",
            notes=(
                f"one sample of {GPUS} GPUs takes ~{GPUS * 11 * SLOW_CALL:.1f} s here; "
                "the server exits only when it ends"
            ),
        ),
        Figure(
            key="loop.api_status_under_gpu_load",
            group="event loop",
            title="/api/status while /colab/gpu hammered (slow NVML)",
            unit="ms",
            value=value,
            baseline=base,
            baseline_label="/api/status on the same server, idle, phases alternated",
            target="p99 <= 1.5x idle p99",
            met=r <= 1.5,
            compare=f"p99 {r:.2f}x, p50 {ratio(value.median, base.median):.2f}x",
            notes=(
                f"{GPUS} GPUs x {SLOW_CALL * 1000:.0f} ms per NVML call, gpu_cache_ttl 0, "
                f"32 clients; {completed} /colab/gpu answers"
            ),
            details={
                "hammer": hammers,
                "gpu_answer_median_ms": statistics.median(
                    [h["median_ms"] for h in hammers if h["median_ms"] is not None] or [0.0]
                ),
            },
        ),
    ]


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    return latency(fleet, quick)


def run_loop(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    return event_loop(fleet, quick)
