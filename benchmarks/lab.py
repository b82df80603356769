"""The local JupyterLab's view of the remote (/colab/remote/*) against the relay's own answer.

One remote server (quick tunnel through the stand-in, with a connection file), one relay
following it, one local gateway-mode server through the relay.

- Latency: GET /colab/remote/status on the local server (its gateway connection to the relay,
  then the tunnel) against GET /colab/status straight at the relay, alternated in blocks, one
  keep-alive connection each. The difference is the local server's own hop: Jupyter's auth and
  one request to the relay on loopback.
- The item's cost: JupyterLab (the local server's /lab) in headless Chromium, the item polling
  for a window (full: 60 s, quick: 12 s); the page's Resource Timing entries count its requests
  to /colab/remote/* and their bytes (headers and body, as transferred), grouped into polls by
  the gaps between them. Beside it, JupyterLab's own background requests to /api/ in the same
  window.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.alternate import alternated, timed_ms
from benchmarks.relay import RelayProc
from benchmarks.report import Figure, Summary
from benchmarks.servers import Connection, Fleet, Server, ok
from testkit.relay_process import GATEWAY_ARGS


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    work = fleet.workdir / "lab"
    conn_file = work / "drive" / "colab-tunnel.json"
    remote = fleet.start("lab-remote", colab={"connection_file": str(conn_file)}, nvml=(2, 0.0))
    remote.wait_ready()
    token_file = work / "remote_token"
    token_file.write_text(remote.token)
    token_file.chmod(0o600)
    relay = RelayProc(
        work / "relay",
        ["--connection-file", str(conn_file), "--token-file", str(token_file)],
        edge_root=fleet.workdir,
    )
    try:
        local = fleet.start(
            "lab-local",
            args=[f"--gateway-url={relay.url}", *GATEWAY_ARGS],
            env={"JUPYTER_GATEWAY_AUTH_TOKEN": relay.token},
        )
        figures = [_latency(local.connection(), relay.connection(), quick)]
        return figures + _item_cost(local, quick, ctx)
    finally:
        relay.stop()


def _timed(conn: Connection, path: str) -> float:
    return timed_ms(lambda: ok(conn.get(path), f"GET {path}"))


def _latency(local: Connection, relay: Connection, quick: bool) -> Figure:
    rounds, n = (3, 10) if quick else (10, 40)
    try:
        for _ in range(3):  # warm both paths (the remote's status cache, the connections)
            _timed(local, "/colab/remote/status"), _timed(relay, "/colab/status")
        through, straight = alternated(
            rounds,
            n,
            [lambda: _timed(local, "/colab/remote/status"), lambda: _timed(relay, "/colab/status")],
        )
    finally:
        local.close()
        relay.close()
    value, base = Summary.of(through), Summary.of(straight)
    limit = base.median * 1.2 + 2.0
    return Figure(
        key="lab.remote_status",
        group="lab",
        title="GET /colab/remote/status on the local JupyterLab's server",
        unit="ms",
        value=value,
        baseline=base,
        baseline_label="GET /colab/status straight at the relay",
        target="p50 <= 1.2x the relay's + 2 ms",
        met=value.median <= limit,
        compare=f"+{value.median - base.median:.2f} ms",
        notes=f"{rounds} alternated blocks of {n}, one keep-alive connection each",
    )


# The page's requests since the window opened: the item's and JupyterLab's own background ones.
REQUESTS = """JSON.stringify(performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/colab/remote/') || e.name.includes('/api/'))
  .map(e => ({url: e.name, start: e.startTime, bytes: e.transferSize})))"""
# Item requests closer than this belong to one poll (a poll's requests go one after another).
POLL_GAP_MS = 1000.0
ITEM_REQUESTS_TARGET = 30.0  # per minute
ITEM_POLL_BYTES_TARGET = 8 * 1024


def _item_cost(local: Server, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    from testkit.headless import Chromium, chromium_path

    keys = ("lab.item_requests", "lab.item_poll_bytes")
    if chromium_path() is None:
        why = "chromium is not installed (apt-get install chromium)"
        ctx.setdefault("skipped", {}).update(dict.fromkeys(keys, why))
        return []
    window = 12.0 if quick else 60.0
    with (
        tempfile.TemporaryDirectory(prefix="jct-bench-chromium-") as tmp,
        Chromium(Path(tmp) / "profile") as browser,
    ):
        browser.navigate(f"{local.base}/lab?token={local.token}")
        # The item is up once its first poll answered (its data-remote says what it knows).
        browser.wait_for("document.querySelector(\"[data-remote='ok']\") !== null", 90)
        browser.eval("performance.setResourceTimingBufferSize(100000)")
        browser.eval("performance.clearResourceTimings()")
        started = time.monotonic()
        while time.monotonic() - started < window:
            browser.pump(0.5)
        entries = json.loads(browser.eval(REQUESTS))
    item = sorted((e for e in entries if "/colab/remote/" in e["url"]), key=lambda e: e["start"])
    own = [e for e in entries if "/colab/remote/" not in e["url"]]
    polls: list[list[dict[str, Any]]] = []
    for entry in item:
        if polls and entry["start"] - polls[-1][-1]["start"] < POLL_GAP_MS:
            polls[-1].append(entry)
        else:
            polls.append([entry])
    if not polls:
        raise RuntimeError(f"the item made no request in {window:.0f} s")
    per_minute = len(item) * 60.0 / window
    own_per_minute = len(own) * 60.0 / window
    poll_bytes = Summary.of([float(sum(e["bytes"] for e in poll)) for poll in polls])
    own_bytes = Summary.of([float(e["bytes"]) for e in own] or [0.0])
    return [
        Figure(
            key="lab.item_requests",
            group="lab",
            title="status-bar item: requests a minute to the local server",
            unit="req/min",
            value=Summary.scalar(per_minute),
            baseline=Summary.scalar(own_per_minute),
            baseline_label="JupyterLab's own background requests to /api/ in the same window",
            target=f"<= {ITEM_REQUESTS_TARGET:.0f} req/min",
            met=per_minute <= ITEM_REQUESTS_TARGET,
            compare=f"{len(item)} requests in {len(polls)} polls in {window:.0f} s",
            notes="headless Chromium, the tab visible, 2 fake GPUs, no notebook open",
        ),
        Figure(
            key="lab.item_poll_bytes",
            group="lab",
            title="status-bar item: bytes a poll (headers and bodies, as transferred)",
            unit="B",
            value=poll_bytes,
            baseline=own_bytes,
            baseline_label="one of JupyterLab's own background requests (bytes)",
            target=f"p50 <= {ITEM_POLL_BYTES_TARGET} B",
            met=poll_bytes.median <= ITEM_POLL_BYTES_TARGET,
            compare=f"{poll_bytes.median * len(polls) * 60.0 / window / 1024:.1f} KiB a minute",
            notes="a poll: gpu and tunnel; every sixth also status and relay",
        ),
    ]
