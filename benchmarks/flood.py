"""A cloudflared that logs 20 000 lines/s: the server's RSS growth and CPU while it reads them.

Two servers, one after the other: the baseline's stand-in logs normally, the other's runs with
FAKE_CLOUDFLARED_FAULT=log_flood=20000 (120-byte lines). Both are measured the same way once
the tunnel is ready: RSS sampled every 100 ms (growth = peak - start), server CPU from
psutil cpu_times, and the flood's own line counter read back from GET /colab/tunnel?logs=20 to
show how many lines per second the server actually consumed.
"""

from __future__ import annotations

import re
import time
from typing import Any

import psutil

from benchmarks.report import Figure, Summary
from benchmarks.servers import Fleet, Server

MB = 1024 * 1024
RATE = 20_000
COUNTER_RE = re.compile(r"x(\d+)-a")


def _counter(server: Server) -> int:
    body = server.get_json("/colab/tunnel?logs=20")
    found = [int(m.group(1)) for line in body.get("logs", []) for m in COUNTER_RE.finditer(line)]
    return max(found, default=0)


def _measure(server: Server, seconds: float) -> dict[str, float]:
    child = psutil.Process(server.get_json("/colab/tunnel")["pid"])
    c0 = child.cpu_times()
    n0 = _counter(server)
    rss0 = server.rss()
    cpu0 = server.cpu_seconds()
    t0 = time.perf_counter()
    peak = rss0
    while time.perf_counter() - t0 < seconds:
        time.sleep(0.1)
        peak = max(peak, server.rss())
    cpu1 = server.cpu_seconds()
    t1 = time.perf_counter()
    rss1 = server.rss()
    n1 = _counter(server)
    c1 = child.cpu_times()
    wall = t1 - t0
    return {
        "growth_mb": (max(peak, rss1) - rss0) / MB,
        "end_growth_mb": (rss1 - rss0) / MB,
        "rss_start_mb": rss0 / MB,
        "cpu_percent": (cpu1 - cpu0) / wall * 100,
        "lines_per_s": (n1 - n0) / wall,
        "standin_cpu_percent": ((c1.user + c1.system - c0.user - c0.system) / wall * 100),
        "seconds": wall,
    }


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    seconds = 3.0 if quick else 10.0
    results: dict[bool, dict[str, float]] = {}
    for flood in (False, True):
        server = fleet.start(
            "flood" if flood else "flood-baseline", faults=f"log_flood={RATE}" if flood else ""
        )
        server.wait_ready()
        time.sleep(0.5)  # the log ring buffer (1000 lines) is full: steady state
        results[flood] = _measure(server, seconds)
        fleet.sigkill(server)
    fl, base = results[True], results[False]
    return [
        Figure(
            key="flood.rss_growth",
            group="log flood",
            title=f"RSS growth during {RATE} lines/s for {seconds:.0f} s",
            unit="MB",
            value=Summary.scalar(fl["growth_mb"]),
            baseline=Summary.scalar(base["growth_mb"]),
            baseline_label="same measurement, a server whose cloudflared logs normally",
            target="<= 10 MB",
            met=fl["growth_mb"] <= 10,
            compare=f"{fl['growth_mb'] - base['growth_mb']:+.1f} MB",
            notes=f"start RSS {fl['rss_start_mb']:.0f} MB; peak minus start",
            details={"flood": fl, "baseline": base},
        ),
        Figure(
            key="flood.cpu",
            group="log flood",
            title=f"server CPU during {RATE} lines/s",
            unit="%",
            value=Summary.scalar(fl["cpu_percent"]),
            baseline=Summary.scalar(base["cpu_percent"]),
            baseline_label="server CPU, cloudflared logging normally",
            target="<= 25 % of one core",
            met=fl["cpu_percent"] <= 25,
            compare=f"{fl['cpu_percent'] - base['cpu_percent']:+.1f} points",
            notes=f"stand-in's own CPU {fl['standin_cpu_percent']:.0f} %",
            details={"flood": fl, "baseline": base},
        ),
        Figure(
            key="flood.rate",
            group="log flood",
            title="flood lines consumed by the server",
            unit="lines/s",
            value=Summary.scalar(fl["lines_per_s"]),
            baseline=Summary.scalar(float(RATE)),
            baseline_label="the rate the stand-in was asked for",
            target="none (checks the load was applied)",
            met=None,
            compare=f"{fl['lines_per_s'] / RATE:.2f}x",
        ),
    ]
