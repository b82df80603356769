"""A forwarded port (`connect --forward`) against the app's own port through the same tunnel.

The app is testkit/forward_app.py. The forward path: a local client -> the relay's forwarded
port (`--forward LOCAL:APP`) -> the remote's stand-in tunnel edge -> the remote server's route
`/colab/forward/APP/...` -> the app. The baseline, in the same run: a second cloudflared
stand-in pointed straight at the app (`cloudflared tunnel --url http://127.0.0.1:APP`), its
TLS edge fetched directly by its public name (the relay reaches the remote's so too): the same
tunnel hop with no relay and no route. Both sides are measured
in alternated blocks, each on one keep-alive connection.

- Request overhead: `GET /echo` (a small JSON answer).
- Download throughput: `GET /download?size=N` (Content-Length), read whole in 1 MiB reads.
- Server-sent events: `GET /events?n=2&gate=G` sent -> its first event read; the app holds the
  second event until the gate is released (straight at the app, unmeasured), so the first
  event can only arrive early if nothing on the path buffers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.alternate import alternated
from benchmarks.relay import RelayProc, _edge
from benchmarks.report import Figure, Summary
from benchmarks.servers import Fleet, install_standin, open_connection
from testkit import forward_app
from testkit.processes import free_port, stop_process

MB = 1_000_000
# A stand-in's TLS edge port and the public name its certificate is checked for.
Edge = tuple[int, str]


class KeepAlive:
    """One keep-alive HTTP/1.1 connection with no credentials (a forwarded port needs none);
    with `tls_name`, over TLS to a stand-in's TLS edge, verified for that name."""

    def __init__(self, port: int, timeout: float = 60.0, tls_name: str | None = None) -> None:
        self.port = port
        self.timeout = timeout
        self.tls_name = tls_name
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = open_connection(self.port, self.timeout, self.tls_name)
        return self.conn

    def open(self, method: str, path: str) -> http.client.HTTPResponse:
        conn = self._connect()
        conn.request(method, path)
        resp = conn.getresponse()
        if resp.status != 200 and resp.status != 204:
            body = resp.read()
            raise RuntimeError(f"{method} {path} on :{self.port}: {resp.status} {body[:300]!r}")
        return resp

    def get(self, path: str) -> bytes:
        return self.open("GET", path).read()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class DirectTunnel:
    """The cloudflared stand-in as a quick tunnel straight to the app: the baseline's path."""

    def __init__(self, workdir: Path, origin: str) -> None:
        bin_dir, self.state_dir = workdir / "bin", workdir / "fake-state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        binary = install_standin(bin_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_CLOUDFLARED_")}
        env["FAKE_CLOUDFLARED_STATE_DIR"] = str(self.state_dir)
        self.log_path = workdir / "cloudflared.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    "tunnel",
                    "--no-autoupdate",
                    "--metrics",
                    "127.0.0.1:0",
                    "--url",
                    origin,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.state = self._wait_edge()
        self.edge_port = int(str(self.state["edge"]).rsplit(":", 1)[1])
        # Its TLS edge and public name: the baseline goes as the relay does (testkit/edge_tls.py).
        self.tls_edge: Edge = (
            int(str(self.state["edge_tls"]).rsplit(":", 1)[1]),
            str(self.state["hostname"]),
        )

    def _wait_edge(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                state = json.loads((self.state_dir / f"{self.proc.pid}.json").read_text())
                if state.get("ready") and state.get("edge"):
                    return dict(state)
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"the direct stand-in never got ready:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        stop_process(self.proc, 10)


def wait_answering(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        conn = KeepAlive(port, timeout=10)
        try:
            conn.get("/echo")
            return
        except (OSError, RuntimeError, http.client.HTTPException) as exc:
            last = exc
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port} never answered /echo: {last}")


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    work = fleet.workdir / "forward"
    app = forward_app.start(work / "app")
    direct: DirectTunnel | None = None
    relay: RelayProc | None = None
    try:
        conn_file = work / "drive" / "colab-tunnel.json"
        remote = fleet.start("forward-remote", colab={"connection_file": str(conn_file)})
        first = remote.wait_ready()
        _edge(remote, first["pid"])  # the edge the relay resolves the tunnel's URL to
        token_file = work / "remote_token"
        token_file.write_text(remote.token)
        token_file.chmod(0o600)
        local = free_port()
        relay = RelayProc(
            work / "relay",
            [
                "--connection-file",
                str(conn_file),
                "--token-file",
                str(token_file),
                "--forward",
                f"{local}:{app.port}",
            ],
            edge_root=fleet.workdir,
        )
        direct = DirectTunnel(work / "direct", app.url)
        wait_answering(local)
        wait_answering(direct.edge_port)
        return [
            _requests(local, direct.tls_edge, quick),
            _download(local, direct.tls_edge, quick),
            _first_event(local, direct.tls_edge, app.port, quick),
        ]
    finally:
        for part in (relay, direct, app):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()


def _alternate(
    local: int, edge: Edge, once: Callable[[KeepAlive], float], rounds: int, n: int, warm: int = 0
) -> tuple[Summary, Summary]:
    """`once` through the forward (local) and straight through the edge, in blocks of `n`
    alternated `rounds` times, each side on its own keep-alive connection (after `warm`
    unmeasured calls); the two summaries."""
    via, straight = KeepAlive(local), KeepAlive(edge[0], tls_name=edge[1])
    try:
        for conn in (via, straight):
            for _ in range(warm):
                once(conn)
        through, baseline = alternated(rounds, n, [lambda: once(via), lambda: once(straight)])
    finally:
        via.close()
        straight.close()
    return Summary.of(through), Summary.of(baseline)


def _requests(local: int, edge: Edge, quick: bool) -> Figure:
    rounds, n = (3, 20) if quick else (10, 100)

    def once(conn: KeepAlive) -> float:
        t0 = time.perf_counter()
        conn.get("/echo")
        return (time.perf_counter() - t0) * 1000

    # warm: connections, the relay's upstream, the route
    value, base = _alternate(local, edge, once, rounds, n, warm=3)
    return Figure(
        key="forward.request_overhead",
        group="forward",
        title="GET /echo through a forwarded port",
        unit="ms",
        value=value,
        baseline=base,
        baseline_label="the app's own port through a stand-in tunnel straight to it",
        target="p50 <= 1.2x direct + 1 ms",
        met=value.median <= base.median * 1.2 + 1.0,
        compare=f"+{value.median - base.median:.2f} ms",
        notes=f"{rounds} alternated blocks of {n}",
    )


def _download(local: int, edge: Edge, quick: bool) -> Figure:
    size = (32 if quick else 200) * 1024 * 1024
    rounds = 2 if quick else 6

    def once(conn: KeepAlive) -> float:
        t0 = time.perf_counter()
        resp = conn.open("GET", f"/download?size={size}")
        got = 0
        while chunk := resp.read(1 << 20):
            got += len(chunk)
        if got != size:
            raise RuntimeError(f"downloaded {got} of {size} bytes")
        return size / MB / (time.perf_counter() - t0)

    value, base = _alternate(local, edge, once, rounds, 1)
    return Figure(
        key="forward.download",
        group="forward",
        title=f"download of {size >> 20} MiB through a forwarded port",
        unit="MB/s",
        value=value,
        baseline=base,
        baseline_label="the same download through a stand-in tunnel straight to the app",
        target=">= 0.7x direct",
        met=value.median >= base.median * 0.7,
        compare=f"{value.median / base.median:.2f}x",
        notes=f"{rounds} alternated downloads",
    )


def _first_event(local: int, edge: Edge, app_port: int, quick: bool) -> Figure:
    rounds, n = (2, 5) if quick else (6, 20)
    release = KeepAlive(app_port)

    def once(conn: KeepAlive) -> float:
        gate = uuid.uuid4().hex
        t0 = time.perf_counter()
        resp = conn.open("GET", f"/events?n=2&gate={gate}")
        while resp.readline() not in (b"\n", b"\r\n"):
            pass  # the first event's lines, up to the blank line that ends it
        elapsed = (time.perf_counter() - t0) * 1000
        release.open("POST", f"/release/{gate}").read()
        resp.read()
        return elapsed

    try:
        value, base = _alternate(local, edge, once, rounds, n)
    finally:
        release.close()
    return Figure(
        key="forward.sse_first_event",
        group="forward",
        title="server-sent events: request -> first event through a forwarded port",
        unit="ms",
        value=value,
        baseline=base,
        baseline_label="the same stream through a stand-in tunnel straight to the app",
        target="p50 <= direct + 5 ms",
        met=value.median <= base.median + 5.0,
        compare=f"+{value.median - base.median:.2f} ms",
        notes="the app holds the rest of the stream until the first event was read",
    )
