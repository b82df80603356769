"""/metrics with 8 fake GPUs against /api/status, and the dashboard in headless Chromium.

Scrape: one server (tunnel ready, NVML patched with 8 fake T4s, default gpu_cache_ttl 1 s).
Blocks of /api/status (the baseline) and /metrics alternate at concurrency 1. /metrics holds
jupyter_server's own series too; ours come from the cached GPU sample, so a scrape's cost must
stay close to Jupyter's cheapest handler. The /metrics of a server without the extension, in
the same alternation, says what Jupyter's own series cost and what the extension adds.

Dashboard: the 8-GPU server, a fresh Chromium profile per load (nothing cached). Time
to the first rendered GPU value is the page's own `colab:first-gpu` performance mark (from
navigation start); transfer sizes are the browser's Resource Timing `transferSize`s, split into
the page's static files and one refresh of the API calls.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.clients import Block, sequential
from benchmarks.report import Figure, Summary, ratio
from benchmarks.servers import Fleet, Server

GPUS = 8
SCRAPE_TARGET = 1.5
FIRST_GPU_TARGET_MS = 1500.0
STATIC_TARGET_BYTES = 64 * 1024

TRANSFER = """JSON.stringify((() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const api = res.filter(r => /\\/colab\\/(gpu|status|tunnel)/.test(r.name));
  const first = {};
  for (const r of api) {
    const key = r.name.replace(/\\?.*$/, '');
    if (!(key in first)) first[key] = r.transferSize;
  }
  return {
    first_gpu: (performance.getEntriesByName('colab:first-gpu')[0] || {}).startTime,
    dom: nav.domContentLoadedEventEnd,
    static: nav.transferSize + res.filter(r => /dashboard\\.(css|js)$/.test(r.name))
      .reduce((a, r) => a + r.transferSize, 0),
    refresh: Object.values(first).reduce((a, b) => a + b, 0),
    names: res.map(r => r.name),
  };
})())"""


def scrape(gpus: Server, plain: Server, jupyter: Server, quick: bool) -> list[Figure]:
    rounds = 1 if quick else 5
    n = 60 if quick else 400
    conns = {
        "gpus": gpus.connection(),
        "plain": plain.connection(),
        "jupyter": jupyter.connection(),
    }
    sequential(conns["gpus"], "/colab/gpu", 5)  # the first sample (the collector reads the cache)
    sequential(conns["plain"], "/colab/gpu", 5)
    status, body = conns["gpus"].get("/metrics")
    if status != 200 or body.count(b"DCGM_FI_DEV_FB_USED{") != GPUS:
        raise RuntimeError(f"/metrics without the {GPUS} fake GPUs: {status} {body[:300]!r}")
    size = len(body)
    plan = [
        ("api", "gpus", "/api/status"),
        ("metrics", "gpus", "/metrics"),
        ("nogpu", "plain", "/metrics"),
        ("jupyter", "jupyter", "/metrics"),
    ]
    for _, conn, path in plan:
        sequential(conns[conn], path, 30)
    blocks: dict[str, list[Block]] = {name: [] for name, _, _ in plan}
    k = len(plan)
    for i in range(rounds * k):
        name, conn, path = plan[i % k] if i // k % 2 == 0 else plan[k - 1 - i % k]
        blocks[name].append(sequential(conns[conn], path, n))
    for c in conns.values():
        c.close()
    if any(b.errors for bs in blocks.values() for b in bs):
        raise RuntimeError("failed requests during the /metrics benchmark")
    lat = {name: Summary.of([x for b in bs for x in b.latencies_ms]) for name, bs in blocks.items()}
    r = ratio(lat["metrics"].median, lat["api"].median)
    own = lat["metrics"].median - lat["nogpu"].median
    added = lat["metrics"].median - lat["jupyter"].median
    return [
        Figure(
            key="metrics.scrape.c1",
            group="metrics",
            title=f"/metrics scrape latency, {GPUS} GPUs, concurrency 1",
            unit="ms",
            value=lat["metrics"],
            baseline=lat["api"],
            baseline_label="/api/status on the same server, blocks alternated",
            target=f"p50 <= {SCRAPE_TARGET}x baseline",
            met=r <= SCRAPE_TARGET,
            compare=f"{r:.2f}x",
            notes=(
                f"{size} bytes per scrape; without GPU series (Jupyter's own) it is already "
                f"{ratio(lat['nogpu'].median, lat['api'].median):.2f}x"
            ),
        ),
        Figure(
            key="metrics.gpu_series",
            group="metrics",
            title=f"/metrics scrape latency, {GPUS} GPUs vs no GPU series",
            unit="ms",
            value=lat["metrics"],
            baseline=lat["nogpu"],
            baseline_label="/metrics of a server without GPUs (Jupyter's series and ours for the tunnel)",
            target="none (what the GPU series cost)",
            met=None,
            compare=f"{own:+.2f} ms",
        ),
        Figure(
            key="metrics.extension_added",
            group="metrics",
            title=f"/metrics scrape latency, {GPUS} GPUs vs Jupyter without the extension",
            unit="ms",
            value=lat["metrics"],
            baseline=lat["jupyter"],
            baseline_label="/metrics of a server without the extension (Jupyter's own series)",
            target="none (what the extension adds to a scrape)",
            met=None,
            compare=f"{added:+.2f} ms, {ratio(lat['metrics'].median, lat['jupyter'].median):.2f}x",
            notes=(
                "Jupyter's own /metrics is "
                f"{ratio(lat['jupyter'].median, lat['api'].median):.2f}x /api/status"
            ),
        ),
    ]


def dashboard(server: Server, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    from testkit.headless import Chromium, chromium_path

    if chromium_path() is None:
        why = "chromium is not installed (apt-get install chromium)"
        ctx.setdefault("skipped", {}).update(
            {"dashboard.first_gpu": why, "dashboard.transfer": why}
        )
        return []
    loads = 1 if quick else 6
    first_gpu: list[float] = []
    dom: list[float] = []
    static: list[float] = []
    refresh: list[float] = []
    with tempfile.TemporaryDirectory(prefix="jct-bench-chromium-") as tmp:
        for i in range(loads):
            with Chromium(Path(tmp) / f"profile{i}") as browser:
                browser.navigate(f"{server.base}/colab/?token={server.token}")
                browser.wait_for(
                    "performance.getEntriesByName('colab:first-gpu').length > 0", timeout=30
                )
                # The other two calls of the first refresh may still be in flight.
                deadline = time.monotonic() + 10
                while True:
                    m = json.loads(browser.eval(TRANSFER))
                    if (m["refresh"] and len(m["names"]) >= 5) or time.monotonic() > deadline:
                        break
                    browser.pump(0.05)
                first_gpu.append(m["first_gpu"])
                dom.append(m["dom"])
                static.append(m["static"])
                refresh.append(m["refresh"])
    ft = Summary.of(first_gpu)
    st = Summary.of(static)
    return [
        Figure(
            key="dashboard.first_gpu",
            group="dashboard",
            title=f"Dashboard: first GPU value on screen ({GPUS} GPUs, cold profile)",
            unit="ms",
            value=ft,
            baseline=Summary.of(dom),
            baseline_label="the same page's DOMContentLoaded",
            target=f"p50 <= {FIRST_GPU_TARGET_MS:.0f} ms",
            met=ft.median <= FIRST_GPU_TARGET_MS,
            compare=f"+{ft.median - statistics_median(dom):.0f} ms",
            notes="headless Chromium, from navigation start",
        ),
        Figure(
            key="dashboard.transfer",
            group="dashboard",
            title="Dashboard: bytes transferred for the page (HTML, CSS, JS)",
            unit="B",
            value=st,
            baseline=Summary.of(refresh),
            baseline_label=f"one refresh: /colab/tunnel, /colab/gpu, /colab/status ({GPUS} GPUs)",
            target=f"<= {STATIC_TARGET_BYTES // 1024} KiB",
            met=st.median <= STATIC_TARGET_BYTES,
            compare=f"{ratio(st.median, Summary.of(refresh).median):.2f}x",
            notes="uncompressed; every 2 s the page re-fetches the three API calls",
        ),
    ]


def statistics_median(values: list[float]) -> float:
    return Summary.of(values).median


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    gpus = fleet.start("metrics", nvml=(GPUS, 0.0))
    plain = fleet.start("metrics-nogpu")  # this machine's real no-GPU path: no DCGM series
    jupyter = fleet.start("metrics-jupyter", extension=False)  # Jupyter's own series alone
    gpus.wait_ready()
    plain.wait_ready()
    figures = scrape(gpus, plain, jupyter, quick)
    figures += dashboard(gpus, quick, ctx)
    fleet.sigkill(gpus)
    fleet.sigkill(plain)
    jupyter.stop()
    return figures
