"""Start-up, resident memory and shutdown: servers with and without the extension, alternated.

Each round starts one server with the extension (quick tunnel, the stand-in on PATH) and one
without (``jpserver_extensions: {"jupyter_colab_tunnel": false}``), in alternating order, and
for each: time from spawn to the first 200 of /api/status, RSS after a short warm-up, then the
time until every process is gone after SIGTERM (on odd rounds the extension's server gets
SIGKILL instead, a sample for the SIGKILL figure, which every other suite also feeds).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.report import Figure, Summary, ratio
from benchmarks.servers import Fleet, Server

MB = 1024 * 1024
STOP_TIMEOUT = 5.0  # the extension's default stop_timeout, which these servers use
WARM_PATHS_EXT = ("/api/status", "/colab/status", "/colab/tunnel", "/colab/gpu")


def _warm(server: Server, extension: bool, n: int) -> None:
    paths = WARM_PATHS_EXT if extension else ("/api/status",) * len(WARM_PATHS_EXT)
    for _ in range(n):
        for path in paths:
            server.get_json(path)


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    rounds = 1 if quick else 8
    warm = 5 if quick else 20
    # "off": the extension loaded with tunnel_mode 'off' (full mode only): splits the added
    # start-up time into loading the extension and starting the tunnel.
    variants = ["ext", "base"] if quick else ["ext", "base", "off"]
    startup: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    rss: dict[bool, list[float]] = {True: [], False: []}
    sigterm: dict[bool, list[float]] = {True: [], False: []}
    # Not measured: the first start of a run reads everything from disk, whichever goes first.
    warmup = fleet.start("startup-warmup")
    warmup.wait_ready()
    warmup.stop()
    for i in range(rounds):
        k = i % len(variants)
        for variant in variants[k:] + variants[:k]:
            extension = variant != "base"
            server = fleet.start(
                f"startup-{variant}-{i}",
                extension=extension,
                colab={"tunnel_mode": "off"} if variant == "off" else None,
                wait=False,
            )
            startup[variant].append(server.wait_serving() * 1000)
            cpu[variant].append(server.cpu_seconds() * 1000)
            if variant == "off":
                server.stop()
                continue
            if extension:
                server.wait_ready()
            else:
                status, _ = server.conn.get("/colab/status")
                if status != 404:
                    raise RuntimeError(f"{server.name}: the extension answered while disabled")
            _warm(server, extension, warm)
            time.sleep(0.5)
            rss[extension].append(server.rss() / MB)
            if extension and i % 2 == 1:
                fleet.sigkill(server)
            else:
                sigterm[extension].append(server.sigterm_timed()[0] * 1000)
            server.stop()  # reaps; kills leftovers (none expected)

    with_ext, without = Summary.of(startup["ext"]), Summary.of(startup["base"])
    cpu_ext, cpu_base = Summary.of(cpu["ext"]), Summary.of(cpu["base"])
    added = with_ext.median - without.median
    startup_ratio = ratio(with_ext.median, without.median)
    rss_ext, rss_base = Summary.of(rss[True]), Summary.of(rss[False])
    rss_added = rss_ext.median - rss_base.median
    term_ext, term_base = Summary.of(sigterm[True]), Summary.of(sigterm[False])
    term_limit = (STOP_TIMEOUT + 0.5) * 1000
    return [
        Figure(
            key="startup",
            group="start-up",
            title="start-up: spawn -> /api/status 200",
            unit="ms",
            value=with_ext,
            baseline=without,
            baseline_label="the same server without the extension, alternated round by round",
            target="p50 <= 1.05x and <= +50 ms",
            met=startup_ratio <= 1.05 and added <= 50,
            compare=f"{startup_ratio:.3f}x, {added:+.0f} ms",
            notes="polled every 2 ms with a new connection",
            details={
                "with_ms": startup["ext"],
                "without_ms": startup["base"],
                "extension_tunnel_off_ms": startup.get("off", []),
                # Same-round differences: less sensitive to load that drifts between rounds.
                "paired_added_median_ms": statistics.median(
                    a - b for a, b in zip(startup["ext"], startup["base"], strict=True)
                ),
            },
        ),
        Figure(
            key="startup.cpu",
            group="start-up",
            title="start-up CPU of the server process",
            unit="ms",
            value=cpu_ext,
            baseline=cpu_base,
            baseline_label="the same, without the extension",
            target="none (diagnostic: less sensitive to load than wall time)",
            met=None,
            compare=f"{cpu_ext.median - cpu_base.median:+.0f} ms",
            notes="user+system CPU from spawn to the first answer; 10 ms ticks",
            details={
                "with_ms": cpu["ext"],
                "without_ms": cpu["base"],
                "extension_tunnel_off_ms": cpu.get("off", []),
            },
        ),
        Figure(
            key="memory.rss",
            group="memory",
            title="server RSS after warm-up",
            unit="MB",
            value=rss_ext,
            baseline=rss_base,
            baseline_label="RSS of the same server without the extension (same warm-up count)",
            target="<= +15 MB",
            met=rss_added <= 15,
            compare=f"{rss_added:+.1f} MB",
            notes="server process only (cloudflared excluded); tunnel ready, NVML absent",
            details={"with_mb": rss[True], "without_mb": rss[False]},
        ),
        Figure(
            key="shutdown.sigterm",
            group="shutdown",
            title="SIGTERM -> server and cloudflared gone",
            unit="ms",
            value=term_ext,
            baseline=term_base,
            baseline_label="SIGTERM of the same server without the extension",
            target=f"max <= stop_timeout + 0.5 s = {term_limit:.0f} ms",
            met=term_ext.max <= term_limit,
            compare=f"{term_ext.median - term_base.median:+.0f} ms",
            details={"with_ms": sigterm[True], "without_ms": sigterm[False]},
        ),
    ]


def sigkill_figure(samples: list[tuple[float, float]]) -> Figure:
    """From every (server gone, cloudflared gone) pair the suites collected with Fleet.sigkill."""
    server_ms = [a * 1000 for a, _ in samples]
    child_ms = [b * 1000 for _, b in samples]
    child, server = Summary.of(child_ms), Summary.of(server_ms)
    return Figure(
        key="shutdown.sigkill",
        group="shutdown",
        title="SIGKILL of server -> cloudflared gone",
        unit="ms",
        value=child,
        baseline=server,
        baseline_label="the SIGKILLed server itself gone (reaped by the benchmark)",
        target="max <= 1000 ms",
        met=child.max <= 1000,
        compare=f"{child.median - server.median:+.1f} ms",
        notes="each suite ends by SIGKILLing its server; a zombie counts as gone",
        details={"child_ms": child_ms, "server_ms": server_ms},
    )
