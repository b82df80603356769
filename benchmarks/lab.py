"""The local JupyterLab's view of the remote (/colab/remote/*) against the relay's own answer.

One remote server (quick tunnel through the stand-in, with a connection file), one relay
following it, one local gateway-mode server through the relay.

- Latency: GET /colab/remote/status on the local server (its gateway connection to the relay,
  then the tunnel) against GET /colab/status straight at the relay, alternated in blocks, one
  keep-alive connection each. The difference is the local server's own hop: Jupyter's auth and
  one request to the relay on loopback.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.relay import RelayProc
from benchmarks.report import Figure, Summary
from benchmarks.servers import Connection, Fleet
from testkit.relay_process import GATEWAY_ARGS


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    work = fleet.workdir / "lab"
    conn_file = work / "drive" / "colab-tunnel.json"
    remote = fleet.start("lab-remote", colab={"connection_file": str(conn_file)})
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
        return [_latency(local.connection(), relay.connection(), quick)]
    finally:
        relay.stop()


def _timed(conn: Connection, path: str) -> float:
    t0 = time.perf_counter()
    status, body = conn.get(path)
    elapsed = (time.perf_counter() - t0) * 1000
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
    return elapsed


def _latency(local: Connection, relay: Connection, quick: bool) -> Figure:
    rounds, n = (3, 10) if quick else (10, 40)
    through: list[float] = []
    straight: list[float] = []
    try:
        for _ in range(3):  # warm both paths (the remote's status cache, the connections)
            _timed(local, "/colab/remote/status"), _timed(relay, "/colab/status")
        for i in range(rounds):
            order = [(local, "/colab/remote/status", through), (relay, "/colab/status", straight)]
            for conn, path, out in order if i % 2 == 0 else order[::-1]:
                for _ in range(n):
                    out.append(_timed(conn, path))
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
