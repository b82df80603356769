"""Real `jupyter server` processes for the benchmarks, and the cloudflared stand-in.

Requests do not go through tests/server_process.py: that helper validates every answer
against the OpenAPI document and audits it for secrets, which is right for tests but would
add client-side work to every measured request. Both start and stop the server with
testkit/jupyter_process.py.
"""

from __future__ import annotations

import compileall
import contextlib
import http.client
import importlib.util
import json
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from testkit import edge_tls

# Measured requests do not go through tests/server_process.py's checks: only the plain helpers.
from testkit.jupyter_process import (
    FOREIGN_ENV,
    descendants,
    server_argv,
    server_env,
    spawn_logged,
    stop_server,
)
from testkit.processes import free_port

REPO = Path(__file__).resolve().parent.parent

# The extension's defaults, except what a figure needs (each suite says what it changes).
DEFAULT_COLAB: dict[str, Any] = {"tunnel_mode": "quick"}


def install_standin(bin_dir: Path) -> Path:
    """Write the `cloudflared` stand-in wrapper into bin_dir; return its path."""
    from testkit import fake_cloudflared

    return Path(fake_cloudflared.install(bin_dir))


def compile_package() -> Path:
    """Write the extension's bytecode (``__pycache__``, git-ignored), as installing it does.

    jupyter_server and every other installed package start from the bytecode pip wrote at
    install; with ``PYTHONDONTWRITEBYTECODE`` set (as in some development shells) an editable
    checkout of this package would instead be compiled from source at every start, a cost
    (~35 ms on 2 cores) that no installed server pays and that only the extension's side of
    the start-up figures would carry. Compiled where the servers will import it from.
    """
    spec = importlib.util.find_spec("jupyter_colab_tunnel")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("jupyter_colab_tunnel is not importable")
    package = Path(next(iter(spec.submodule_search_locations)))
    if not compileall.compile_dir(str(package), quiet=1):
        # A read-only checkout: its servers then compile from source, as the figures will show.
        print(f"warning: could not write the bytecode of {package}", file=sys.stderr)
    return package


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def parse_iso(text: str | None) -> float | None:
    """'2026-11-25T22:46:51.123456Z' -> epoch seconds."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


LOG_TIME_RE = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) [^\]]*\] (.*)$")


def open_connection(
    port: int, timeout: float, tls_name: str | None = None
) -> http.client.HTTPConnection:
    """A connected HTTP/1.1 connection to 127.0.0.1:`port` (TCP_NODELAY); with `tls_name`, over
    TLS to a stand-in's TLS edge, verified for that name (testkit/edge_tls.py)."""
    if tls_name:
        conn = http.client.HTTPConnection(tls_name, timeout=timeout)
        conn.sock = edge_tls.connect(port, tls_name, timeout)
        return conn
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def ok(answer: tuple[int, bytes], what: str = "") -> bytes:
    """The body of a 200 answer (a `Connection.get`'s); RuntimeError for any other."""
    status, body = answer
    if status != 200:
        raise RuntimeError(f"{what + ': ' if what else ''}{status} {body[:300]!r}")
    return body


class Connection:
    """One keep-alive HTTP/1.1 connection to a server (not thread-safe: one per thread); with
    `tls_name`, over TLS to a stand-in's TLS edge, verified for that name (testkit/edge_tls.py)."""

    def __init__(
        self, port: int, token: str, timeout: float = 30.0, tls_name: str | None = None
    ) -> None:
        self.port = port
        self.tls_name = tls_name
        self.headers = {"Authorization": f"token {token}"}
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = open_connection(self.port, self.timeout, self.tls_name)
        return self._conn

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            conn = self._connect()
            try:
                conn.request(method, path, body=data, headers=headers)
                r = conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path)

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
        return json.loads(body)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    workdir: Path
    log_path: Path
    state_dir: Path
    bin_dir: Path
    spawned_at: float  # perf_counter just before Popen
    serving_after: float | None = None
    _conn: Connection | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self) -> Connection:
        return Connection(self.port, self.token)

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = self.connection()
        return self._conn

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get_json(self, path: str) -> Any:
        return self.conn.get_json(path)

    def post(self, path: str, body: Any) -> tuple[int, bytes]:
        return self.conn.request("POST", path, body)

    def wait_serving(self, timeout: float = 60.0, interval: float = 0.002) -> float:
        """Poll /api/status (a new connection each try) until 200; seconds since the spawn."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/api/status", headers={"Authorization": f"token {self.token}"})
                r = conn.getresponse()
                r.read()
                conn.close()
                if r.status == 200:
                    self.serving_after = time.perf_counter() - self.spawned_at
                    return self.serving_after
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: jupyter server exited {self.proc.returncode}:\n"
                    f"{self.log()[-3000:]}"
                )
            time.sleep(interval)
        raise RuntimeError(f"{self.name}: no answer in {timeout}s:\n{self.log()[-3000:]}")

    def wait_tunnel(self, predicate: Any, timeout: float = 30.0, interval: float = 0.01) -> Any:
        deadline = time.perf_counter() + timeout
        body = None
        while time.perf_counter() < deadline:
            body = self.get_json("/colab/tunnel")
            if predicate(body):
                return body
            time.sleep(interval)
        raise RuntimeError(f"{self.name}: tunnel never matched; last: {body}")

    def wait_ready(self, timeout: float = 30.0) -> Any:
        return self.wait_tunnel(lambda b: b["state"] == "ready" and b["url"], timeout)

    def standin_state(self, pid: int, timeout: float = 10.0) -> dict[str, Any]:
        """The state file the stand-in with this pid wrote (its own clock: time.time())."""
        path = self.state_dir / f"{pid}.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                return dict(json.loads(path.read_text()))
            time.sleep(0.005)
        raise RuntimeError(f"{self.name}: stand-in {pid} wrote no state")

    def standin_pids(self) -> list[int]:
        pids = []
        for p in self.state_dir.glob("*.json"):
            with contextlib.suppress(ValueError):
                pids.append(int(p.stem))
        return pids

    def log_times(self, message_re: str) -> list[tuple[float, re.Match[str]]]:
        """(epoch seconds, match) of the server log lines whose message matches message_re."""
        found = []
        pattern = re.compile(message_re)
        for line in self.log().splitlines():
            m = LOG_TIME_RE.match(line)
            if not m:
                continue
            mm = pattern.search(m.group(2))
            if mm:
                ts = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
                found.append((ts, mm))
        return found

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        t = psutil.Process(self.pid).cpu_times()
        return float(t.user + t.system)

    def close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def descendants(self) -> list[int]:
        return [p.pid for p in descendants(self.pid)]

    def sigterm_timed(self, limit: float = 60.0) -> tuple[float, float]:
        """SIGTERM; (seconds until every process is gone, until its descendants are gone)."""
        children = self.descendants()
        self.close_conn()
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        children_gone = None
        while True:
            now = time.perf_counter() - t0
            if children_gone is None and not any(alive(pid) for pid in children):
                children_gone = now
            if children_gone is not None and self.proc.poll() is not None:
                return now, children_gone
            if now > limit:
                raise RuntimeError(f"{self.name}: still running {limit:g} s after SIGTERM")
            time.sleep(0.001)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop the server and make sure nothing of it is left (kills leftovers)."""
        self.close_conn()
        stop_server(self.proc, sig, timeout)
        self.kill_standins()

    def kill_standins(self) -> None:
        """Kill, by pid, any stand-in of this server still alive (a bug, or a SIGKILLed server)."""
        for pid in self.standin_pids():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if str(self.bin_dir) in " ".join(p.cmdline()) and alive(pid):
                    p.kill()
                    p.wait(5)


class Fleet:
    """Starts servers under one work directory; `close()` stops every one of them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[Server] = []
        self.count = 0
        # (server gone, its cloudflared gone) in seconds after SIGKILL, for shutdown.sigkill.
        self.sigkills: list[tuple[float, float]] = []

    def start(
        self,
        name: str,
        *,
        extension: bool = True,
        colab: dict[str, Any] | None = None,
        nvml: tuple[int, float] | None = None,
        faults: str = "",
        resource_usage: bool = False,
        wait: bool = True,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Server:
        """Start a server; `nvml` = (gpus, seconds per device call) patches NVML in it."""
        self.count += 1
        workdir = self.workdir / f"{self.count:02d}-{name}"
        config_dir = workdir / "config"
        root_dir = workdir / "root"
        bin_dir = workdir / "bin"
        state_dir = workdir / "fake-state"
        for d in (config_dir, root_dir, bin_dir, state_dir):
            d.mkdir(parents=True, exist_ok=True)
        install_standin(bin_dir)
        config: dict[str, Any] = {
            "ServerApp": {
                "jpserver_extensions": {
                    "jupyter_colab_tunnel": extension,
                    "jupyter_resource_usage": resource_usage,
                }
            },
            "ColabTunnelApp": {**DEFAULT_COLAB, **(colab or {})},
        }
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(config, indent=1))
        if nvml is not None:
            gpus, delay = nvml
            (config_dir / "jupyter_server_config.py").write_text(
                "import sys\n"
                f"sys.path[:0] = [{str(REPO)!r}]\n"
                "from benchmarks import bench_nvml\n"
                f"bench_nvml.install(n={int(gpus)}, delay={float(delay)!r})\n"
            )
        token = secrets.token_hex(16)
        port = free_port()
        stand_in = {"FAKE_CLOUDFLARED_STATE_DIR": str(state_dir)}
        if faults:
            stand_in["FAKE_CLOUDFLARED_FAULT"] = faults
        env = server_env(
            workdir,
            config_dir,
            drop=(*FOREIGN_ENV, "FAKE_CLOUDFLARED_"),
            path_prepend=[bin_dir],
            extra={**(env or {}), **stand_in},
        )
        cmd = server_argv(port, token, root_dir, args=args)
        log_path = workdir / "server.log"
        spawned_at = time.perf_counter()
        proc = spawn_logged(cmd, workdir, env, log_path)
        server = Server(
            name=name,
            proc=proc,
            port=port,
            token=token,
            workdir=workdir,
            log_path=log_path,
            state_dir=state_dir,
            bin_dir=bin_dir,
            spawned_at=spawned_at,
        )
        self.servers.append(server)
        if wait:
            server.wait_serving()
        return server

    def sigkill(self, server: Server) -> None:
        """SIGKILL the server; record when it, and when its cloudflared, were gone."""
        children = server.descendants()
        if not children:
            raise RuntimeError(f"{server.name}: no cloudflared child to watch")
        server.close_conn()
        t0 = time.perf_counter()
        server.proc.kill()
        server_gone = child_gone = None
        while server_gone is None or child_gone is None:
            now = time.perf_counter()
            if server_gone is None and server.proc.poll() is not None:
                server_gone = now - t0
            if child_gone is None and not any(alive(pid) for pid in children):
                child_gone = now - t0
            if now - t0 > 30:
                raise RuntimeError(f"{server.name}: cloudflared alive 30 s after SIGKILL")
            time.sleep(0.001)
        self.sigkills.append((server_gone, child_gone))
        server.stop()  # kills leftovers, if any

    def close(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop(timeout=10.0)
        self.servers.clear()
