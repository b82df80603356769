"""Peers on the same machine, in the same run.

* pycloudflared.try_cloudflare against the same cloudflared stand-in: time from the stand-in
  printing the URL to try_cloudflare() returning it (it returns once it has also read the
  metrics line). Its `get_info` is replaced so that `.executable` is the stand-in wrapper.
* jupyter-resource-usage's GET /api/metrics/v1 vs GET /colab/status, in one server with both
  extensions enabled (and the tunnel running, so both see a child process).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import time
from types import SimpleNamespace
from typing import Any

from benchmarks.clients import Block, sequential
from benchmarks.report import Figure, Summary, ratio
from benchmarks.servers import Fleet, free_port, install_standin
from benchmarks.tunnel import time_to_url


def _pycloudflared(fleet: Fleet, rounds: int) -> list[float]:
    mod: Any = importlib.import_module("pycloudflared.try_cloudflare")
    workdir = fleet.workdir / "peer-pycloudflared"
    state_dir = workdir / "fake-state"
    state_dir.mkdir(parents=True, exist_ok=True)
    wrapper = install_standin(workdir / "bin")
    saved_info = mod.get_info
    saved_env = os.environ.get("FAKE_CLOUDFLARED_STATE_DIR")
    mod.get_info = lambda: SimpleNamespace(executable=str(wrapper))
    os.environ["FAKE_CLOUDFLARED_STATE_DIR"] = str(state_dir)
    out: list[float] = []
    try:
        for _ in range(rounds):
            port = free_port()
            urls = mod.try_cloudflare(port, verbose=False)
            returned = time.time()
            try:
                path = state_dir / f"{urls.process.pid}.json"
                deadline = time.monotonic() + 10
                state: dict[str, Any] = {}
                while not state.get("url_printed_at"):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"pycloudflared's stand-in wrote no state: {state}")
                    try:
                        state = json.loads(path.read_text())
                    except (OSError, ValueError):
                        time.sleep(0.005)
                if urls.tunnel != state["url"]:
                    raise RuntimeError(f"pycloudflared returned {urls.tunnel}, not {state['url']}")
                out.append((returned - state["url_printed_at"]) * 1000)
            finally:
                mod.try_cloudflare.terminate(port)
                urls.process.wait(10)
                if urls.process.stderr is not None:
                    urls.process.stderr.close()
    finally:
        mod.get_info = saved_info
        if saved_env is None:
            os.environ.pop("FAKE_CLOUDFLARED_STATE_DIR", None)
        else:
            os.environ["FAKE_CLOUDFLARED_STATE_DIR"] = saved_env
    return out


def _resource_usage(fleet: Fleet, quick: bool) -> dict[str, list[float]]:
    rounds = 2 if quick else 5
    n = 60 if quick else 300
    server = fleet.start("peer-resource-usage", resource_usage=True)
    server.wait_ready()
    conn = server.connection()
    paths = ["/api/metrics/v1", "/colab/status", "/api/status"]
    for path in paths:
        server.get_json(path)  # both extensions are really there
        sequential(conn, path, 20)
    blocks: list[Block] = []
    for i in range(rounds):
        k = i % len(paths)
        for path in paths[k:] + paths[:k]:
            blocks.append(sequential(conn, path, n))
    conn.close()
    fleet.sigkill(server)
    return {p: [x for b in blocks if b.path == p for x in b.latencies_ms] for p in paths}


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    rounds = 3 if quick else 10
    ours_ms = ctx.get("time_to_url_ms")
    if not ours_ms:  # the tunnel suite did not run: measure ours here
        server = fleet.start("peer-ours")
        server.wait_ready()
        ours_ms = time_to_url(server, rounds)["url"]
        server.stop()
    theirs_ms = _pycloudflared(fleet, rounds)
    theirs = Summary.of(theirs_ms)
    ours = Summary.of(ours_ms)
    figures = [
        Figure(
            key="peer.pycloudflared.time_to_url",
            group="peers",
            title="pycloudflared.try_cloudflare time-to-URL",
            unit="ms",
            value=theirs,
            baseline=ours,
            baseline_label="this extension's time-to-URL in this run (tunnel.time_to_url)",
            target="none (comparison)",
            met=None,
            compare=f"p50 {theirs.median - ours.median:+.2f} ms vs ours",
            notes="pycloudflared returns after the metrics line too; same stand-in",
            details={"pycloudflared_ms": theirs_ms},
        )
    ]
    if importlib.util.find_spec("jupyter_resource_usage") is None:
        ctx.setdefault("skipped", {})["peer.resource_usage.latency"] = (
            "jupyter-resource-usage is not installed: pip install -e '.[bench]'"
        )
        return figures
    ru = _resource_usage(fleet, quick)
    colab, metrics = Summary.of(ru["/colab/status"]), Summary.of(ru["/api/metrics/v1"])
    api = Summary.of(ru["/api/status"])
    figures.append(
        Figure(
            key="peer.resource_usage.latency",
            group="peers",
            title="/colab/status vs jupyter-resource-usage",
            unit="ms",
            value=colab,
            baseline=metrics,
            baseline_label="GET /api/metrics/v1 (jupyter-resource-usage) in the same server",
            target="none (comparison)",
            met=None,
            compare=f"{ratio(colab.median, metrics.median):.2f}x",
            notes=f"/api/status in that server: p50 {api.median:.2f} ms",
        )
    )
    return figures
