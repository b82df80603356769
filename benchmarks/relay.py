"""The local relay against the direct path, in the same run.

One remote server (quick tunnel through the stand-in, writing a connection file), one relay
process following that file (testkit/relay_process.py: the shipped relay, dialling the public
https URL, whose name is looked up at the stand-in's TLS edge), and two local gateway-mode
servers: one through the relay, one straight to the stand-in's plain edge (the direct path the
kernel figure is compared with).

- REST overhead: GET /api/kernelspecs through the relay vs straight to the edge over TLS by the
  public name (as the relay goes), alternated in blocks, one keep-alive connection each.
- Kernel execute round trip: `pass` on a remote kernel through each local server's kernel
  websocket (one kernel each, on the same remote), alternated.
- Switch: a second relay follows a hand-written (signed) connection file that alternates between two
  addresses of the remote (the edge and the server itself); time from the file's rewrite to the
  first request the relay serves from the new address. The relay polls the file every 0.25 s.
- Resume: the remote tunnel restarts with a new URL; time from the new URL being ready at the
  remote to the same kernel answering again through the unchanged local server, with its parts.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.alternate import alternated, timed_ms
from benchmarks.report import Figure, Summary
from benchmarks.servers import REPO, Connection, Fleet, Server, ok, parse_iso
from jupyter_colab_tunnel.connection_record import connection_record
from testkit.kernel_channel import KernelChannel
from testkit.processes import free_port
from testkit.relay_process import GATEWAY_ARGS


class RelayProc:
    """A relay subprocess on a free port, its token in a file."""

    def __init__(self, workdir: Path, args: list[str], edge_root: Path | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.token_file = workdir / "relay_token"
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_COLAB_TUNNEL")}
        if edge_root is not None:
            env["RELAY_TEST_EDGE_ROOT"] = str(edge_root)
        self.log_path = workdir / "relay.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(REPO / "testkit" / "relay_process.py"),
                    "connect",
                    f"--port={self.port}",
                    f"--local-token-file={self.token_file}",
                    *args,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, RuntimeError, AssertionError):
                if self.token_file.exists() and self.status():
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"relay did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self) -> Connection:
        return Connection(self.port, self.token)

    def status(self) -> Any:
        conn = self.connection()
        try:
            return conn.get_json("/relay/status")
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(1)
            except subprocess.TimeoutExpired:
                self.proc.terminate()  # a second SIGTERM: no JupyterLab here to wait for
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _edge(server: Server, pid: int, field: str = "edge") -> str:
    """The stand-in's plain `edge` (http://127.0.0.1:PORT), or its `edge_tls`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        edge = server.standin_state(pid).get(field)
        if edge:
            return str(edge)
        time.sleep(0.01)
    raise RuntimeError(f"stand-in {pid} has no {field}")


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    work = fleet.workdir / "relay"
    conn_file = work / "drive" / "colab-tunnel.json"
    remote = fleet.start("relay-remote", colab={"connection_file": str(conn_file)})
    first = remote.wait_ready()
    edge = _edge(remote, first["pid"])
    token_file = work / "remote_token"
    token_file.write_text(remote.token)
    token_file.chmod(0o600)
    relay = RelayProc(
        work / "relay",
        ["--connection-file", str(conn_file), "--token-file", str(token_file)],
        edge_root=fleet.workdir,
    )
    second: RelayProc | None = None
    try:
        # Local gateway-mode servers (the fleet stops them with the suite).
        via_relay = fleet.start(
            "local-relay",
            args=[f"--gateway-url={relay.url}", *GATEWAY_ARGS],
            env={"JUPYTER_GATEWAY_AUTH_TOKEN": relay.token},
        )
        direct = fleet.start(
            "local-direct",
            args=[f"--gateway-url={edge}", *GATEWAY_ARGS],
            env={"JUPYTER_GATEWAY_AUTH_TOKEN": remote.token},
        )
        # The REST baseline goes over TLS to the edge by the public name, as the relay does.
        tls_port = int(_edge(remote, first["pid"], "edge_tls").rsplit(":", 1)[1])
        straight = Connection(tls_port, remote.token, tls_name=urlsplit(first["url"]).hostname)
        figures = [_rest(relay, straight, quick)]
        kernel_id = start_kernel(via_relay)
        # A gateway server knows the kernels it started: one kernel each, on the same remote.
        direct_kernel = start_kernel(direct)
        with kernel_channel(via_relay, kernel_id) as ch_relay:
            with kernel_channel(direct, direct_kernel) as ch_direct:
                figures.append(_execute(ch_relay, ch_direct, quick))
            second = RelayProc(
                work / "relay-switch",
                ["--connection-file", str(work / "hand.json"), "--token-file", str(token_file)],
            )
            figures.append(_switch(second, work / "hand.json", edge, remote, quick))
            figures.append(_resume(remote, relay, ch_relay, quick))
        return figures
    finally:
        for proc in (relay, second):
            if proc is not None:
                proc.stop()


def start_kernel(server: Server) -> str:
    status, body = server.conn.request("POST", "/api/kernels", {"name": "python3"})
    if status != 201:
        raise RuntimeError(f"POST /api/kernels: {status} {body[:300]!r}")
    return str(json.loads(body)["id"])


def kernel_channel(server: Server, kernel_id: str) -> KernelChannel:
    return KernelChannel(
        f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels",
        headers={"Authorization": f"token {server.token}"},
        origin=server.base,
    )


def _rest(relay: RelayProc, direct: Connection, quick: bool) -> Figure:
    rounds, n = (3, 20) if quick else (10, 100)
    path = "/api/kernelspecs"
    via = relay.connection()
    try:
        for _ in range(2):  # warm both connections
            via.get(path), direct.get(path)
        through, straight = alternated(
            rounds,
            n,
            [
                lambda: timed_ms(lambda: ok(via.get(path))),
                lambda: timed_ms(lambda: ok(direct.get(path))),
            ],
        )
    finally:
        via.close()
        direct.close()
    value, base = Summary.of(through), Summary.of(straight)
    limit = base.median * 1.15 + 1.0
    return Figure(
        key="relay.rest_overhead",
        group="relay",
        title="GET /api/kernelspecs through the relay",
        unit="ms",
        value=value,
        baseline=base,
        baseline_label="the same request straight to the tunnel's edge (TLS, kept)",
        target="p50 <= 1.15x direct + 1 ms",
        met=value.median <= limit,
        compare=f"+{value.median - base.median:.2f} ms",
        notes=f"{rounds} alternated blocks of {n}",
    )


def _execute(ch_relay: Any, ch_direct: Any, quick: bool) -> Figure:
    rounds, n = (2, 10) if quick else (5, 40)
    for ch in (ch_relay, ch_direct):
        ch.execute("pass")
    through, straight = alternated(
        rounds,
        n,
        [
            lambda: timed_ms(lambda: ch_relay.execute("pass", timeout=30)),
            lambda: timed_ms(lambda: ch_direct.execute("pass", timeout=30)),
        ],
    )
    value, base = Summary.of(through), Summary.of(straight)
    return Figure(
        key="relay.kernel_rtt",
        group="relay",
        title="kernel execute round trip through the relay",
        unit="ms",
        value=value,
        baseline=base,
        baseline_label="the same kernel, a local gateway server straight to the edge",
        target="p50 <= direct + 2 ms",
        met=value.median <= base.median + 2.0,
        compare=f"+{value.median - base.median:.2f} ms",
        notes="`pass`, execute_request to idle status, legacy JSON websocket protocol",
    )


def _switch(relay: RelayProc, path: Path, edge: str, remote: Server, quick: bool) -> Figure:
    addresses = [edge, f"http://127.0.0.1:{remote.port}"]
    samples: list[float] = []
    conn = relay.connection()
    try:
        for i in range((4 if quick else 20) + 1):
            target = addresses[i % 2]
            tmp = path.with_suffix(".tmp")
            # Signed as the remote signs it: the relay follows nothing else.
            tmp.write_text(json.dumps(connection_record(target, "ready", "/", remote.token)))
            t0 = time.perf_counter()
            os.replace(tmp, path)
            while True:
                status = conn.get_json("/relay/status")
                if status["upstream"] == target:
                    ok(conn.get("/api/kernelspecs"))
                    break
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"the relay never switched to {target}: {status}")
                time.sleep(0.002)
            if i:  # the first write only sets the starting point
                samples.append(time.perf_counter() - t0)
    finally:
        conn.close()
    value = Summary.of([s * 1000 for s in samples])
    return Figure(
        key="relay.switch",
        group="relay",
        title="switch: connection file rewritten -> first request on the new upstream",
        unit="ms",
        value=value,
        baseline=Summary.scalar(250.0),
        baseline_label="the relay's file poll interval",
        target="p50 <= 1000 ms",
        met=value.median <= 1000.0,
        compare=f"{value.median / 250.0:.2f}x the poll interval",
        notes="two addresses of one remote, alternated; polled every 2 ms",
    )


def _resume(remote: Server, relay: RelayProc, channel: Any, quick: bool) -> Figure:
    total: list[float] = []
    restart: list[float] = []
    pickup: list[float] = []
    for _ in range(2 if quick else 5):
        before = remote.get_json("/colab/tunnel")
        code, body = remote.post("/colab/tunnel", {"action": "restart"})
        if code != 200:
            raise RuntimeError(f"restart: {code} {body[:200]!r}")
        t_post = time.time()
        # Sent at once: the relay holds it until the new upstream is up.
        run = channel.execute("print('resumed')", timeout=60)
        t_answer = time.time()
        if run.stdout != "resumed\n":
            raise RuntimeError(f"the kernel did not resume: {run}")
        old_pid = before["pid"]
        after = remote.wait_tunnel(lambda b, p=old_pid: b["state"] == "ready" and b["pid"] != p)
        ready_at = parse_iso(after["ready_at"]) or t_post
        switched = parse_iso(relay.status()["since"]) or ready_at
        total.append((t_answer - ready_at) * 1000)
        restart.append((ready_at - t_post) * 1000)
        pickup.append((switched - ready_at) * 1000)
    value = Summary.of(total)
    return Figure(
        key="relay.resume",
        group="relay",
        title="resume: new URL ready -> same kernel answers through the same local server",
        unit="ms",
        value=value,
        baseline=Summary.of(restart),
        baseline_label="the remote tunnel's own restart (POST restart -> new URL ready)",
        target="info (the local websocket stays open: no gateway client reconnect)",
        met=None,
        compare=f"{value.median:.0f} ms after the new URL",
        notes="a cell sent right after the restart is held by the relay and run once",
        details={
            "relay_pickup_ms": Summary.of(pickup).median,
            "tunnel_restart_ms": Summary.of(restart).median,
        },
    )
