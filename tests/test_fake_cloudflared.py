"""The cloudflared stand-in behaves as the reference says (real processes, 127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))

from testkit import edge_tls, fake_cloudflared

pytestmark = pytest.mark.e2e

FAKE = Path(fake_cloudflared.__file__).resolve()
URL_RE = re.compile(r"https://[a-z0-9-]+\.trycloudflare\.com")
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
TOKEN = base64.b64encode(
    json.dumps({"a": "0123456789abcdef", "t": TUNNEL_ID, "s": "c2VjcmV0LXNlY3JldA=="}).encode()
).decode()
GRACEFUL = [
    "INF Initiating graceful shutdown due to signal terminated ...",
    "INF Tunnel server stopped",
    "INF Metrics server stopped",
]


# --------------------------------------------------------------------------------------------
# Helpers


class Proc:
    """A running stand-in; stderr and stdout are read by threads into lists of lines."""

    def __init__(self, popen: subprocess.Popen[bytes], state_dir: Path):
        self.popen = popen
        self.state_dir = state_dir
        self.err: list[bytes] = []
        self.out: list[bytes] = []
        self.cond = threading.Condition()
        self.err_closed = False
        self.threads = [
            threading.Thread(target=self._read, args=(popen.stderr, self.err, True), daemon=True),
            threading.Thread(target=self._read, args=(popen.stdout, self.out, False), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _read(self, stream: Any, sink: list[bytes], is_err: bool) -> None:
        for line in iter(stream.readline, b""):
            with self.cond:
                sink.append(line)
                self.cond.notify_all()
        with self.cond:
            if is_err:
                self.err_closed = True
            self.cond.notify_all()

    def lines(self) -> list[str]:
        with self.cond:
            return [b.decode("utf-8", "replace").rstrip("\n") for b in self.err]

    def text(self) -> str:
        return "\n".join(self.lines())

    def wait_line(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for raw in self.err:
                    m = regex.search(raw.decode("utf-8", "replace"))
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.err_closed and self.popen.poll() is not None):
                    raise AssertionError(f"no line matching {pattern!r} in:\n" + self.text())
                self.cond.wait(min(left, 0.1))

    def wait(self, timeout: float = 5.0) -> int:
        code = self.popen.wait(timeout)
        for t in self.threads:
            t.join(2)
        return code

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.state_dir / f"{self.popen.pid}.json").read_text(encoding="utf-8")
        )
        return data

    def metrics(self) -> str:
        return self.wait_line(r"Starting metrics server on (\S+)/metrics").group(1)


def clean_env(state_dir: Path, fault: str | None, extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TUNNEL_", "FAKE_CLOUDFLARED_")) and k != "NO_AUTOUPDATE"
    }
    env["FAKE_CLOUDFLARED_STATE_DIR"] = str(state_dir)
    if fault:
        env["FAKE_CLOUDFLARED_FAULT"] = fault
    env.update(extra or {})
    return env


StartFn = Callable[..., Proc]


@pytest.fixture
def cloudflared(tmp_path: Path) -> Iterator[StartFn]:
    """Start stand-in processes; every one is killed and reaped at teardown."""
    started: list[Proc] = []
    state_dir = tmp_path / "state"

    def start(*args: str, fault: str | None = None, env: dict[str, str] | None = None) -> Proc:
        popen = subprocess.Popen(
            [sys.executable, str(FAKE), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(state_dir, fault, env),
        )
        proc = Proc(popen, state_dir)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.wait(10)
        for stream in (proc.popen.stdout, proc.popen.stderr):
            if stream is not None:
                stream.close()


def run(
    *args: str, fault: str | None = None, env: dict[str, str] | None = None, tmp: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FAKE), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        env=clean_env(tmp / "state", fault, env),
        timeout=20,
        check=False,
    )


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None
) -> Reply:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with _OPENER.open(req, timeout=10) as resp:
            return Reply(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers, exc.read())


def seen_headers(entry: dict[str, Any]) -> dict[str, str]:
    """Headers the origin received, by lower-case name."""
    return {k.lower(): v for k, v in entry["headers"]}


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def assert_ordered(lines: list[str], expected: list[str]) -> None:
    """Each expected regex matches a line, in this order (other lines may come between)."""
    pos = 0
    for pattern in expected:
        regex = re.compile(pattern)
        while pos < len(lines) and not regex.search(lines[pos]):
            pos += 1
        assert pos < len(lines), f"{pattern!r} missing or out of order in:\n" + "\n".join(lines)
        pos += 1


# --------------------------------------------------------------------------------------------
# Origin: a tiny aiohttp server in its own thread


@dataclass
class Origin:
    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)
    # Set by /stream-in once the first piece of a request body reached the origin.
    body_started: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def origin() -> Iterator[Origin]:
    loop = asyncio.new_event_loop()
    info = Origin(0)

    def record(request: web.Request, body: bytes = b"") -> dict[str, Any]:
        entry = {
            "method": request.method,
            "path": request.path_qs,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode("utf-8", "replace"),
        }
        info.seen.append(entry)
        return entry

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(record(request, await request.read()))

    async def redirect(request: web.Request) -> web.Response:
        record(request)
        resp = web.Response(status=302, headers={"Location": "/login?next=%2Ftree"})
        resp.headers.add("Set-Cookie", "a=1; Path=/")
        resp.headers.add("Set-Cookie", "b=2; Path=/; HttpOnly")
        return resp

    async def slow(request: web.Request) -> web.Response:
        record(request)
        await asyncio.sleep(float(request.query.get("s", "1")))
        return web.Response(text="done")

    async def stream_in(request: web.Request) -> web.Response:
        record(request)
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            info.body_started.set()
        return web.json_response({"size": size})

    async def ws(request: web.Request) -> web.WebSocketResponse:
        record(request)
        sock = web.WebSocketResponse(protocols=("v1.kernel.websocket.jupyter.org",))
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "close":
                    await sock.close(code=4000, message=b"bye")
                    break
                await sock.send_str("echo:" + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await sock.send_bytes(b"echo:" + msg.data)
        return sock

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", ws)
    app.router.add_post("/stream-in", stream_in)
    runner = web.AppRunner(app, access_log=None)

    async def setup() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port: int = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return port

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    info.port = asyncio.run_coroutine_threadsafe(setup(), loop).result(10)
    yield info
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def start_quick(start: StartFn, *extra: str, url: str = "http://127.0.0.1:8888", **kw: Any) -> Proc:
    return start(
        "tunnel", "--no-autoupdate", "--metrics", "127.0.0.1:0", *extra, "--url", url, **kw
    )


# --------------------------------------------------------------------------------------------
# Pure pieces


def test_go_durations() -> None:
    ns = fake_cloudflared.parse_go_duration
    assert ns("5s") == 5_000_000_000
    assert ns("1m") == 60_000_000_000
    assert ns("1.5s") == 1_500_000_000
    assert ns("1m30s") == 90_000_000_000
    assert ns("0") == 0
    with pytest.raises(ValueError, match="abc"):
        ns("abc")
    fmt = fake_cloudflared.format_go_duration
    assert [fmt(ns(x)) for x in ("30s", "1m", "64s", "500ms", "1h")] == [
        "30s",
        "1m0s",
        "1m4s",
        "500ms",
        "1h0m0s",
    ]


def test_box_width_follows_longest_row() -> None:
    rows = fake_cloudflared.ascii_box(
        [
            "Your quick Tunnel has been created! Visit it at "
            "(it may take some time to be reachable):",
            "https://sample-words-here-test.trycloudflare.com",
        ]
    )
    assert rows[0] == "+" + "-" * 92 + "+"
    assert rows[2] == "|  https://sample-words-here-test.trycloudflare.com" + " " * 42 + "|"
    assert {len(r) for r in rows} == {94}
    long_url = "https://" + "x" * 100 + ".trycloudflare.com"
    rows = fake_cloudflared.ascii_box(["short", long_url])
    assert len(rows[0]) == len(long_url) + 6
    assert rows[2] == f"|  {long_url}  |"


def test_import_has_no_side_effects_and_install(tmp_path: Path) -> None:
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
    path = fake_cloudflared.install(tmp_path / "bin")
    assert path == tmp_path / "bin" / "cloudflared"
    assert os.access(path, os.X_OK)
    assert path.read_text().startswith(f"#!{sys.executable}\n")
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False)
    assert out.returncode == 0
    assert out.stdout == "cloudflared version 2026.8.2 (built 2026-11-25-22:44 UTC)\n"


# --------------------------------------------------------------------------------------------
# Command line


def test_version(tmp_path: Path) -> None:
    out = run("--version", tmp=tmp_path)
    assert (out.returncode, out.stdout, out.stderr) == (
        0,
        "cloudflared version 2026.8.2 (built 2026-11-25-22:44 UTC)\n",
        "",
    )


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["tunnel", "--no-autoupdate", "--token", "x", "run"], "token"),
        (["tunnel", "run", "--metrics", "127.0.0.1:0"], "metrics"),
        (["tunnel", "--bogus", "--url", "http://127.0.0.1:1"], "bogus"),
        (["tunnel", "run", "--loglevel=debug"], "loglevel"),
    ],
)
def test_misplaced_or_unknown_flag(tmp_path: Path, args: list[str], name: str) -> None:
    out = run(*args, tmp=tmp_path, env={"TUNNEL_TOKEN": TOKEN})
    assert out.returncode == 0
    assert out.stdout.startswith(f"Incorrect Usage. flag provided but not defined: -{name}\n\n")
    assert "NAME:" in out.stdout
    assert out.stderr == ""


@pytest.mark.parametrize("token", ["notatoken", base64.b64encode(b'{"a":"x"}').decode()])
def test_invalid_token(tmp_path: Path, token: str) -> None:
    out = run("tunnel", "--no-autoupdate", "run", "--token", token, tmp=tmp_path)
    assert out.returncode == 255
    assert out.stderr == (
        "Provided Tunnel token is not valid.\nSee 'cloudflared tunnel run --help'.\n"
    )
    assert token not in out.stderr


def test_run_without_token(tmp_path: Path) -> None:
    out = run("tunnel", "--no-autoupdate", "run", tmp=tmp_path)
    assert out.returncode == 255
    assert out.stderr.startswith(
        '"cloudflared tunnel run" requires the ID or name of the tunnel to run as the last '
        "command line argument or in the configuration file.\n"
    )


# --------------------------------------------------------------------------------------------
# Quick tunnel


def test_quick_startup_metrics_and_sigterm(cloudflared: StartFn) -> None:
    proc = start_quick(cloudflared, fault="register_delay=0.6")
    addr = proc.metrics()
    ready = http(f"http://{addr}/ready")
    assert ready.status == 503
    assert ready.headers["Content-Type"] == "text/plain; charset=utf-8"
    body = ready.json()
    assert list(body) == ["status", "readyConnections", "connectorId"]
    assert body["status"] == 503
    assert body["readyConnections"] == 0
    assert ready.body == (
        b'{"status":503,"readyConnections":0,"connectorId":"' + body["connectorId"].encode() + b'"}'
    )
    proc.wait_line(r"Registered tunnel connection")
    lines = proc.lines()
    assert all(re.match(TS + r" (DBG|INF|WRN|ERR) ", line) for line in lines), lines
    assert_ordered(
        lines,
        [
            r"INF Thank you for trying Cloudflare Tunnel\. Doing so, without a Cloudflare "
            r"account, is a quick way to experiment",
            r"INF Requesting new quick Tunnel on trycloudflare\.com\.\.\.$",
            r"INF \+-{92}\+$",
            r"INF \|  Your quick Tunnel has been created! Visit it at \(it may take some time to "
            r"be reachable\):  \|$",
            r"INF \|  https://[a-z0-9-]+\.trycloudflare\.com +\|$",
            r"INF \+-{92}\+$",
            r"INF Cannot determine default configuration path\. No file \[config\.yml "
            r"config\.yaml\] in \[",
            r"INF Version 2026\.8\.2 \(Checksum b856[0-9a-f]{60}\)$",
            r"INF GOOS: linux, GOVersion: go1\.27\.3, GoArch: amd64$",
            r"INF Settings: map\[ha-connections:1 metrics:127\.0\.0\.1:0 no-autoupdate:true "
            r"protocol:quic url:http://127\.0\.0\.1:8888\]$",
            r"INF Starting metrics server on 127\.0\.0\.1:\d+/metrics$",
            r"INF Registered tunnel connection connIndex=0 connection=[0-9a-f-]{36} event=0 "
            r"ip=198\.41\.200\.13 location=fra08 protocol=quic$",
        ],
    )
    url_line = next(line for line in lines if URL_RE.search(line))
    assert len(url_line.split(" INF ", 1)[1]) == 94
    m = URL_RE.search(url_line)
    assert m is not None
    hostname = m.group(0).removeprefix("https://")
    words = hostname.removesuffix(".trycloudflare.com").split("-")
    assert len(words) == 4
    assert all(w.isalpha() and w.islower() for w in words)

    ready = http(f"http://{addr}/ready")
    assert ready.status == 200
    assert ready.json() == {
        "status": 200,
        "readyConnections": 1,
        "connectorId": body["connectorId"],
    }
    health = http(f"http://{addr}/healthcheck")
    assert (health.status, health.body) == (200, b"OK\n")
    quick = http(f"http://{addr}/quicktunnel")
    assert quick.body == json.dumps({"hostname": hostname}).replace(" ", "").encode()
    metrics = http(f"http://{addr}/metrics")
    assert "\ncloudflared_tunnel_ha_connections 1\n" in metrics.body.decode()
    for reply in (health, quick, metrics):
        assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"

    state = proc.state()
    assert state["mode"] == "quick"
    assert state["hostname"] == hostname
    assert state["url"] == f"https://{hostname}"
    assert state["metrics"] == addr
    assert state["edge"].startswith("http://127.0.0.1:")
    assert state["token_seen"] is False
    assert state["url_printed_at"] <= state["registered_at"]

    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert [line.split(" ", 1)[1] for line in proc.lines()[-3:]] == GRACEFUL


def test_loglevel_warn_hides_box_and_json_output(cloudflared: StartFn) -> None:
    quiet = start_quick(cloudflared, "--loglevel", "warn")
    js = start_quick(cloudflared, "--output=json")
    addr = js.metrics()
    js.wait_line("Registered tunnel connection")
    records = [json.loads(line) for line in js.lines()]
    for line, record in zip(js.lines(), records, strict=True):
        assert line == json.dumps(record, sort_keys=True, separators=(",", ":"))
    assert records[0]["level"] == "info"
    assert re.fullmatch(TS, records[0]["time"])
    assert any(URL_RE.search(r["message"]) for r in records)
    registered = records[-1]
    assert registered["message"] == "Registered tunnel connection"
    assert registered["connIndex"] == 0
    assert registered["location"] == "fra08"
    assert http(f"http://{addr}/ready").status == 200

    wait_until(lambda: any(quiet.state_dir.glob(f"{quiet.popen.pid}.json")))
    wait_until(lambda: quiet.state().get("registered_at") is not None)
    assert quiet.state()["url_printed_at"] is None
    assert quiet.lines() == []


def test_signal_before_quick_tunnel_obtained(cloudflared: StartFn) -> None:
    proc = start_quick(cloudflared, fault="request_delay=5")
    proc.wait_line("Requesting new quick Tunnel")
    proc.signal(signal.SIGTERM)
    assert proc.wait() == -signal.SIGTERM
    proc = start_quick(cloudflared, fault="no_url")
    proc.wait_line("Requesting new quick Tunnel")
    time.sleep(0.2)
    assert proc.popen.poll() is None
    assert not any("Starting metrics server" in line for line in proc.lines())
    proc.signal(signal.SIGINT)
    assert proc.wait() == -signal.SIGINT


def test_metrics_port_in_use(cloudflared: StartFn) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = cloudflared(
            "tunnel", "--metrics", f"127.0.0.1:{port}", "--url", "http://127.0.0.1:1"
        )
        assert proc.wait() == 1
    lines = proc.lines()
    err = (
        f'ERR Error opening metrics server listener error="failed to bind to address '
        f'(127.0.0.1:{port}): listen tcp 127.0.0.1:{port}: bind: address already in use"'
    )
    assert any(line.endswith(" " + err) and re.match(TS, line) for line in lines), lines
    assert not re.match(TS, lines[-1])


def test_ignore_sigterm(cloudflared: StartFn) -> None:
    proc = start_quick(cloudflared, fault="ignore_sigterm")
    proc.wait_line("Registered tunnel connection")
    proc.signal(signal.SIGTERM)
    proc.signal(signal.SIGINT)
    time.sleep(0.4)
    assert proc.popen.poll() is None
    assert "graceful" not in proc.text()
    proc.popen.kill()
    assert proc.wait() == -signal.SIGKILL


def test_crash_after(cloudflared: StartFn) -> None:
    crash = start_quick(cloudflared, fault="crash_after=0.5,crash_code=3")
    killed = start_quick(cloudflared, fault="crash_after=0.5,crash_signal=KILL")
    assert crash.wait() == 3
    assert re.search(TS + r" ERR .*crash", crash.text())
    assert not re.match(TS, crash.lines()[-1])
    assert killed.wait() == -signal.SIGKILL
    assert re.search(TS + r" ERR ", killed.text())


def test_exit_clean_after(cloudflared: StartFn) -> None:
    proc = start_quick(cloudflared, fault="exit_clean_after=0.8")
    assert proc.wait() == 0
    assert [line.split(" ", 1)[1] for line in proc.lines()[-3:]] == GRACEFUL


def test_quick_dns_failure_and_rate_limited(tmp_path: Path) -> None:
    start = time.monotonic()
    out = run("tunnel", "--metrics", "127.0.0.1:0", "--url", "http://127.0.0.1:1", tmp=tmp_path,
              fault="dns_failure")  # fmt: skip
    assert out.returncode == 1
    assert time.monotonic() - start < 5
    last = out.stderr.splitlines()[-1]
    assert last.startswith(
        'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp: '
        "lookup api.trycloudflare.com on "
    )
    assert last.endswith(": no such host")
    assert "Starting metrics server" not in out.stderr

    out = run("tunnel", "--url", "http://127.0.0.1:1", tmp=tmp_path, fault="rate_limited")
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert re.fullmatch(
        TS + r" ERR Error unmarshaling QuickTunnel response: <html>error code: 1015</html> "
        r"error=\"invalid character '<' looking for beginning of value\" "
        r'status_code="429 Too Many Requests"',
        lines[-2],
    )
    assert lines[-1] == (
        "failed to unmarshal quick Tunnel: invalid character '<' looking for beginning of value"
    )


def test_never_ready(cloudflared: StartFn) -> None:
    proc = start_quick(cloudflared, fault="never_ready=0.1")
    addr = proc.metrics()
    proc.wait_line(r"Retrying connection in up to 4s")
    lines = proc.lines()
    assert any(
        line.endswith(
            ' ERR Failed to dial a quic connection error="failed to dial to edge with quic: '
            'timeout: no recent network activity" connIndex=0 event=0 ip=198.41.192.7'
        )
        for line in lines
    )
    assert any(
        line.endswith(" INF Retrying connection in up to 2s connIndex=0 event=0 ip=198.41.192.7")
        for line in lines
    )
    assert http(f"http://{addr}/ready").status == 503
    assert http(f"http://{addr}/healthcheck").status == 200
    assert http(proc.state()["edge"] + "/").status == 530
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0


# --------------------------------------------------------------------------------------------
# Named tunnel


def test_named_token_from_env(cloudflared: StartFn, origin: Origin) -> None:
    proc = cloudflared(
        "tunnel",
        "--no-autoupdate",
        "--metrics",
        "127.0.0.1:0",
        "run",
        env={
            "TUNNEL_TOKEN": TOKEN,
            "FAKE_CLOUDFLARED_ORIGIN": origin.url,
            "FAKE_CLOUDFLARED_HOSTNAME": "nb.example.org",
        },
    )
    addr = proc.metrics()
    proc.wait_line("Registered tunnel connection")
    assert_ordered(
        proc.lines(),
        [
            rf"INF Starting tunnel tunnelID={TUNNEL_ID}$",
            r"INF Version 2026\.8\.2 ",
            r"INF Settings: map\[metrics:127\.0\.0\.1:0 no-autoupdate:true\]$",
            r"INF Generated Connector ID: [0-9a-f-]{36}$",
            r"INF Initial protocol quic$",
            r"INF Starting metrics server on 127\.0\.0\.1:\d+/metrics$",
            r"INF Registered tunnel connection connIndex=0 ",
        ],
    )
    assert TOKEN not in proc.text()
    assert "c2VjcmV0" not in proc.text()
    assert http(f"http://{addr}/quicktunnel").body == b'{"hostname":""}'
    assert http(f"http://{addr}/ready").status == 200
    state = proc.state()
    assert state["mode"] == "named"
    assert state["token_seen"] is True
    assert state["hostname"] == "nb.example.org"
    assert TOKEN not in json.dumps(state)
    reply = http(state["edge"] + "/echo")
    assert reply.status == 200
    assert seen_headers(reply.json())["host"] == "nb.example.org"
    proc.signal(signal.SIGINT)
    assert proc.wait() == 0
    assert "signal interrupt ..." in proc.text()


def test_named_token_flag_is_masked(cloudflared: StartFn) -> None:
    proc = cloudflared("tunnel", "--metrics", "127.0.0.1:0", "run", "--token", TOKEN)
    proc.wait_line("Registered tunnel connection")
    assert re.search(r"INF Settings: map\[metrics:127\.0\.0\.1:0 token:\*\*\*\*\*\]", proc.text())
    assert TOKEN not in proc.text()


def test_named_dns_failure(tmp_path: Path) -> None:
    out = run("tunnel", "--metrics", "127.0.0.1:0", "run", tmp=tmp_path, fault="dns_failure",
              env={"TUNNEL_TOKEN": TOKEN})  # fmt: skip
    assert out.returncode == 1
    assert re.search(
        TS + r' ERR Initiating shutdown error="Could not lookup srv records on '
        r"_v2-origintunneld\._tcp\.argotunnel\.com: ",
        out.stderr,
    )


# --------------------------------------------------------------------------------------------
# Forwarding


def test_the_edge_answers_the_public_name_over_verified_tls(
    cloudflared: StartFn, origin: Origin
) -> None:
    """As Cloudflare's edge does, the stand-in's answers https for its public name with a
    certificate a client can verify (of the session's test CA, testkit/edge_tls.py); a name the
    certificate does not carry fails the check, as it should."""
    quick = start_quick(cloudflared, url=origin.url)
    quick.wait_line("Registered tunnel connection")
    state = quick.state()
    assert state["edge_tls"].startswith("https://127.0.0.1:")
    conn = HTTPConnection(state["hostname"], timeout=10)
    conn.sock = edge_tls.connect(int(state["edge_tls"].rsplit(":", 1)[1]), state["hostname"], 10)
    try:
        conn.request("GET", "/echo")
        reply = conn.getresponse()
        assert reply.status == 200
        assert seen_headers(json.loads(reply.read()))["host"] == state["hostname"]
    finally:
        conn.close()
    named = cloudflared(
        "tunnel", "--no-autoupdate", "--metrics", "127.0.0.1:0", "run",
        env={"TUNNEL_TOKEN": TOKEN, "FAKE_CLOUDFLARED_ORIGIN": origin.url,
             "FAKE_CLOUDFLARED_HOSTNAME": "jupyter.internal"},
    )  # fmt: skip
    named.wait_line("Registered tunnel connection")
    port = int(named.state()["edge_tls"].rsplit(":", 1)[1])
    with pytest.raises(ssl.SSLCertVerificationError, match=r"jupyter\.internal"):
        edge_tls.connect(port, "jupyter.internal", 10)


def test_http_forwarding(cloudflared: StartFn, origin: Origin) -> None:
    proc = start_quick(cloudflared, url=origin.url + "/base/")
    proc.wait_line("Registered tunnel connection")
    state = proc.state()
    edge, hostname = state["edge"], state["hostname"]
    sent = {
        "Authorization": "token abc",
        "Cookie": "_xsrf=2|x; username-127-0-0-1-8888=y",
        "Origin": f"https://{hostname}",
        "X-XSRFToken": "2|x",
    }
    reply = http(edge + "/echo?x=1&y=%2F", "POST", sent, b'{"k": 1}')
    assert reply.status == 200
    seen = reply.json()
    headers = seen_headers(seen)
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo?x=1&y=%2F"
    assert seen["body"] == '{"k": 1}'
    assert headers["host"] == hostname
    assert headers["x-forwarded-proto"] == "https"
    assert headers["cf-connecting-ip"] == "127.0.0.1"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    for key, value in sent.items():
        assert headers[key.lower()] == value

    reply = http(edge + "/redirect")
    assert reply.status == 302
    assert reply.headers["Location"] == "/login?next=%2Ftree"
    assert reply.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]

    assert http(edge + "/missing").status == 404
    metrics = http(f"http://{state['metrics']}/metrics").body.decode()
    assert "cloudflared_tunnel_total_requests 3" in metrics

    rewritten = start_quick(cloudflared, "--http-host-header", "localhost", url=origin.url)
    rewritten.wait_line("Registered tunnel connection")
    reply = http(rewritten.state()["edge"] + "/echo")
    assert seen_headers(reply.json())["host"] == "localhost"

    dead = start_quick(cloudflared, url="http://127.0.0.1:9")
    dead.wait_line("Registered tunnel connection")
    assert http(dead.state()["edge"] + "/x").status == 502
    dead.wait_line(r"ERR Request failed error=\"Unable to reach the origin service")


def test_websocket_forwarding(cloudflared: StartFn, origin: Origin) -> None:
    proc = start_quick(cloudflared, url=origin.url)
    proc.wait_line("Registered tunnel connection")
    state = proc.state()

    async def talk() -> tuple[str | None, list[Any], int | None]:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(
                state["edge"] + "/ws?token=t",
                protocols=["v1.kernel.websocket.jupyter.org"],
                headers={"Origin": state["url"]},
            )
            got: list[Any] = []
            await ws.send_str("hello")
            got.append((await ws.receive(timeout=5)).data)
            await ws.send_bytes(b"\x00\x01bin")
            got.append((await ws.receive(timeout=5)).data)
            await ws.send_str("close")
            msg = await ws.receive(timeout=5)
            got.append((msg.type, msg.data))
            await ws.close()
            return ws.protocol, got, ws.close_code

    protocol, got, code = asyncio.run(talk())
    assert protocol == "v1.kernel.websocket.jupyter.org"
    assert got == ["echo:hello", b"echo:\x00\x01bin", (aiohttp.WSMsgType.CLOSE, 4000)]
    assert code == 4000
    ws_seen = next(s for s in origin.seen if s["path"].startswith("/ws"))
    headers = seen_headers(ws_seen)
    assert ws_seen["path"] == "/ws?token=t"
    assert headers["host"] == state["hostname"]
    assert headers["origin"] == state["url"]
    assert headers["sec-websocket-protocol"] == "v1.kernel.websocket.jupyter.org"


def test_request_body_is_streamed_to_the_origin(cloudflared: StartFn, origin: Origin) -> None:
    """The origin gets the first piece of an upload while the client still holds the rest, as
    with the real binary: the stand-in never holds a whole body (a 200 MiB upload)."""
    proc = start_quick(cloudflared, url=origin.url)
    proc.wait_line("Registered tunnel connection")
    edge = urllib.parse.urlsplit(proc.state()["edge"])
    reached: list[bool] = []

    def body() -> Iterator[bytes]:
        yield b"x" * 1000
        # The rest only once the origin has seen the start (or after a bound, to fail).
        reached.append(origin.body_started.wait(10))
        yield b"y" * 5000

    conn = HTTPConnection(edge.hostname or "", edge.port, timeout=30)
    try:
        conn.request("POST", "/stream-in", body=body(), encode_chunked=True)
        resp = conn.getresponse()
        answer = json.loads(resp.read())
    finally:
        conn.close()
    assert reached == [True]
    assert resp.status == 200
    assert answer == {"size": 6000}
    headers = seen_headers(origin.seen[-1])
    assert headers.get("transfer-encoding") == "chunked"

    # A body of known length keeps its Content-Length on the way (no chunking added).
    reply = http(proc.state()["edge"] + "/echo", "POST", {"Content-Type": "text/plain"}, b"abc")
    assert reply.json()["body"] == "abc"
    assert seen_headers(reply.json())["content-length"] == "3"


def test_grace_period_waits_for_inflight_then_second_signal_kills(
    cloudflared: StartFn, origin: Origin
) -> None:
    proc = start_quick(cloudflared, "--grace-period", "5s", url=origin.url)
    proc.wait_line("Registered tunnel connection")
    edge = proc.state()["edge"]
    results: list[Reply] = []
    client = threading.Thread(target=lambda: results.append(http(edge + "/slow?s=1")))
    client.start()
    wait_until(lambda: any(s["path"].startswith("/slow") for s in origin.seen))
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert time.monotonic() - started > 0.5
    client.join(5)
    assert results[0].status == 200
    assert results[0].body == b"done"

    proc = start_quick(cloudflared, "--grace-period", "1m", url=origin.url)
    proc.wait_line("Registered tunnel connection")
    edge = proc.state()["edge"]

    def doomed() -> None:
        with contextlib.suppress(OSError):  # the process dies with the request in flight
            http(edge + "/slow?s=3")

    client = threading.Thread(target=doomed)
    client.start()
    wait_until(lambda: sum(s["path"].startswith("/slow") for s in origin.seen) == 2)
    proc.signal(signal.SIGTERM)
    proc.wait_line("Initiating graceful shutdown")
    time.sleep(0.1)
    assert proc.popen.poll() is None
    proc.signal(signal.SIGTERM)
    assert proc.wait() == -signal.SIGTERM
    client.join(5)


# --------------------------------------------------------------------------------------------
# Other faults


def test_stall_after(cloudflared: StartFn, origin: Origin) -> None:
    proc = start_quick(cloudflared, url=origin.url, fault="stall_after=0.3")
    addr = proc.metrics()
    proc.wait_line("Registered tunnel connection")
    proc.wait_line(r"ERR Connection terminated error=\"[^\"]+\" connIndex=0$")
    reply = http(f"http://{addr}/ready")
    assert reply.status == 503
    assert reply.json()["readyConnections"] == 0
    assert http(proc.state()["edge"] + "/echo").status == 530


def test_close_stdio(cloudflared: StartFn) -> None:
    proc = start_quick(cloudflared, fault="close_stdio")
    addr = proc.metrics()
    wait_until(lambda: proc.err_closed)
    assert "Registered tunnel connection" in proc.lines()[-1]
    assert proc.popen.poll() is None
    assert http(f"http://{addr}/ready").status == 200
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0


def test_log_flood_with_invalid_utf8(cloudflared: StartFn) -> None:
    proc = start_quick(cloudflared, fault="log_flood=2000,flood_line_bytes=150,flood_invalid_utf8")
    addr = proc.metrics()
    wait_until(lambda: len(proc.err) > 500)
    assert http(f"http://{addr}/healthcheck").status == 200
    with proc.cond:
        flood = [b for b in proc.err if b" Request completed " in b or b" Failed to serve" in b]
    assert flood
    assert all(len(b) == 151 for b in flood)
    assert all(re.match(rb"\d{4}-\S+Z (INF|WRN) ", b) for b in flood)
    with pytest.raises(UnicodeDecodeError):
        flood[0].decode("utf-8")
