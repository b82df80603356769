"""The supervised tunnel with real `jupyter server` processes and the cloudflared stand-in."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from tunnel_env import TUNNEL_ID, VALID_TOKEN, TunnelServer

from testkit import fake_cloudflared

pytestmark = pytest.mark.e2e

URL_RE = re.compile(r"^https://[a-z0-9-]+\.trycloudflare\.com$")


def through_edge(
    ts: TunnelServer, pid: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """A request to the public URL: sent to the stand-in's edge, which stands in for DNS."""
    edge = ts.fake_state(pid)["edge"]
    req = urllib.request.Request(edge + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_quick_tunnel_becomes_ready(tunnel_server: Any) -> None:
    ts = tunnel_server()
    body = ts.wait_state("ready")
    assert body["mode"] == "quick"
    assert URL_RE.match(body["url"])
    assert body["ready_connections"] == 1
    assert body["restarts"] == 0
    assert body["error"] is None
    assert body["cloudflared"]["version"] == "2026.8.2"
    assert body["cloudflared"]["path"] == str(ts.bin_dir / "cloudflared")
    assert body["started_at"] <= body["ready_at"]
    states = [e["state"] for e in body["events"]]
    assert states.index("starting") < states.index("connecting") < states.index("ready")
    assert body["connect"]["gateway_url"] == body["url"]
    # The relay's command, with the token in a private file (the API never echoes it).
    command = body["connect"]["command"]
    assert f"jupyter colab-tunnel connect --url {body['url']} --token-file ~/.colab-token" in (
        command
    )
    assert "printf '%s\\n' '<token>' > ~/.colab-token" in command
    assert "auth_token" not in command
    # What the stand-in saw: the argv of the reference, the URL it printed, the metrics port.
    fake = ts.fake_state(body["pid"])
    assert fake["url"] == body["url"]
    assert fake["argv"][1:] == [
        "tunnel", "--no-autoupdate", "--metrics", "127.0.0.1:0", "--loglevel", "info",
        "--grace-period", "2s", "--url", f"http://127.0.0.1:{ts.server.port}",
    ]  # fmt: skip
    status = ts.server.get_json("colab/status")["tunnel"]
    assert status == {"state": "ready", "url": body["url"], "restarts": 0, "error": None}
    log = ts.server.log()
    # Once per ready transition (the supervisor's line), then the relay's command, no token.
    assert log.count("Tunnel ready") == 1, log
    assert log.count(f"Tunnel ready: {body['url']}") == 1
    assert f"jupyter colab-tunnel connect --url {body['url']}" in log
    assert "auth_token" not in log
    assert ts.server.token not in log


def test_public_host_is_accepted_and_others_still_blocked(tunnel_server: Any) -> None:
    ts = tunnel_server()
    body = ts.wait_state("ready")
    host = body["url"].removeprefix("https://")
    auth = {"Authorization": f"token {ts.server.token}"}
    # Through the tunnel the server sees Host: <tunnel host> and a browser's Origin.
    code, data = through_edge(ts, body["pid"], "/api/status", {**auth, "Origin": f"https://{host}"})
    assert code == 200, data
    # Any other foreign Host is still refused, as without the extension.
    r = ts.server.request("GET", "api/status", headers={"Host": "evil.example.com"})
    assert r.status == 403


def test_logs_and_snapshot_parameters(tunnel_server: Any) -> None:
    ts = tunnel_server()
    ts.wait_state("ready")
    body = ts.tunnel(logs=5)
    assert len(body["logs"]) == 5
    full = ts.tunnel(logs=1000)["logs"]
    assert any("Your quick Tunnel has been created!" in line for line in full)
    assert any("Starting metrics server on 127.0.0.1:" in line for line in full)
    assert "logs" not in ts.tunnel()
    for bad in ("x", "-1", "1e9"):
        r = ts.server.request("GET", f"colab/tunnel?logs={bad}")
        assert r.status == 400
        assert "logs" in r.json()["message"]


def test_killed_child_comes_back(tunnel_server: Any) -> None:
    ts = tunnel_server()
    first = ts.wait_state("ready")
    os.kill(first["pid"], signal.SIGKILL)
    again = ts.server.wait_for(
        "colab/tunnel", lambda b: b["state"] == "ready" and b["pid"] != first["pid"]
    )
    assert again["restarts"] == 1
    assert again["last_exit"]["signal"] == "SIGKILL"
    assert again["last_exit"]["code"] is None
    assert again["error"] is None  # cleared once ready again
    # A quick tunnel gets a new URL on every start; it is republished.
    assert URL_RE.match(again["url"])
    assert again["url"] != first["url"]
    kinds = [e["detail"] for e in again["events"] if e["state"] == "backoff"]
    assert kinds
    assert kinds[0].startswith("crashed")
    assert len(ts.children()) == 1
    # Each ready transition is logged once; the commands only the first time.
    log = ts.server.log()
    assert log.count("Tunnel ready") == 2, log
    assert log.count(f"Tunnel ready: {again['url']}") == 1
    assert log.count("Connect from your machine") == 1


def test_crash_then_backoff_state(tunnel_server: Any) -> None:
    ts = tunnel_server(
        faults="crash_after=0.5,crash_code=3",
        traits={"restart_backoff_initial": 3.0, "restart_backoff_max": 3.0},
    )
    body = ts.wait_state("backoff")
    assert body["error"]["kind"] == "crashed"
    assert body["last_exit"]["code"] == 3
    assert body["next_retry_at"] is not None
    assert body["pid"] is None
    assert body["url"] is None  # a quick tunnel's hostname dies with its cloudflared
    assert body["error"]["hint"]
    assert ts.children() == []


def test_crash_loop_gives_up(tunnel_server: Any) -> None:
    ts = tunnel_server(
        faults="crash_after=0.1",
        traits={"max_restarts": 2, "restart_backoff_initial": 0.05, "restart_backoff_max": 0.1},
    )
    body = ts.wait_state("failed", timeout=30)
    assert body["error"]["kind"] == "crash_loop"
    assert "3 times" in body["error"]["message"]
    assert body["restarts"] == 2
    assert len(ts.spawned_pids()) == 3
    assert ts.children() == []
    # An explicit start tries again from scratch.
    r = ts.post("start")
    assert r.status == 200
    assert r.json()["state"] in ("starting", "connecting", "ready", "backoff")


def test_invalid_token_is_not_retried(tunnel_server: Any) -> None:
    ts = tunnel_server(env={"TUNNEL_TOKEN": "notatoken"})
    body = ts.wait_state("failed")
    assert body["mode"] == "named"
    assert body["error"]["kind"] == "invalid_token"
    assert body["error"]["message"] == "Provided Tunnel token is not valid."
    assert body["last_exit"]["code"] == 255
    time.sleep(0.5)
    assert len(ts.spawned_pids()) == 1


def test_named_tunnel_with_an_invalid_token_offers_nothing_to_connect_to(
    tunnel_server: Any,
) -> None:
    ts = tunnel_server(
        env={"TUNNEL_TOKEN": "notatoken"}, traits={"public_hostname": "jupyter.example.com"}
    )
    body = ts.wait_state("failed")
    assert body["error"]["kind"] == "invalid_token"
    assert body["url"] is None
    assert body["connect"] is None
    assert ts.server.get_json("colab/status")["tunnel"]["url"] is None


def test_misplaced_flag_is_bad_arguments(tunnel_server: Any) -> None:
    ts = tunnel_server(traits={"cloudflared_args": ["--bogus-flag"]})
    body = ts.wait_state("failed")
    assert body["error"]["kind"] == "bad_arguments"
    assert body["error"]["message"] == (
        "Incorrect Usage. flag provided but not defined: -bogus-flag"
    )
    assert body["last_exit"]["code"] == 0
    assert len(ts.spawned_pids()) == 1


def test_token_in_cloudflared_args_is_refused_before_spawning(tunnel_server: Any) -> None:
    ts = tunnel_server(traits={"cloudflared_args": [f"--token={VALID_TOKEN}"]})
    body = ts.wait_state("failed")
    assert body["error"]["kind"] == "bad_arguments"
    assert ts.spawned_pids() == []
    assert VALID_TOKEN not in json.dumps(ts.tunnel(logs=100)) + ts.server.log()


def test_dns_failure_is_network_and_retried(tunnel_server: Any) -> None:
    ts = tunnel_server(faults="dns_failure")
    body = ts.wait_state("backoff", error_kind="network")
    assert "no such host" in body["error"]["message"]
    assert "http2" in body["error"]["hint"]
    ts.server.wait_for("colab/tunnel", lambda b: b["restarts"] >= 1)


def test_network_outage_is_retried_past_max_restarts_and_logged_once(
    tunnel_server: Any,
) -> None:
    ts = tunnel_server(faults="dns_failure", traits={"max_restarts": 1})
    body = ts.server.wait_for("colab/tunnel", lambda b: b["restarts"] >= 4, timeout=60)
    assert body["state"] != "failed"  # network failures never make a crash_loop
    assert body["error"]["kind"] == "network"
    log = ts.server.log()
    warnings = [line for line in log.splitlines() if "Tunnel backoff: network" in line]
    assert len(warnings) == 1, warnings  # the first of a storm, not one per retry
    assert warnings[0].startswith("[W ")
    assert "no such host" in warnings[0]
    assert "Hint: cloudflared could not reach Cloudflare" in log


def test_cloudflared_args_as_one_string_are_split_like_a_shell(tunnel_server: Any) -> None:
    # One value on the command line arrives as a string: --ColabTunnelApp.cloudflared_args="..."
    ts = tunnel_server(traits={"cloudflared_args": ["--edge-ip-version 4 --retries '3'"]})
    body = ts.wait_state("ready")
    argv = ts.fake_state(body["pid"])["argv"]
    assert argv[argv.index("--edge-ip-version") :][:4] == [
        "--edge-ip-version",
        "4",
        "--retries",
        "3",
    ]


def test_flag_and_value_in_one_item_is_refused_before_spawning(tunnel_server: Any) -> None:
    # Two values make a list; its first item holds a flag and its value.
    ts = tunnel_server(traits={"cloudflared_args": ["--edge-ip-version 4", "--retries=3"]})
    body = ts.wait_state("failed")
    assert body["error"]["kind"] == "bad_arguments"
    assert '["--edge-ip-version", "4"]' in body["error"]["message"]
    assert body["url"] is None
    assert body["connect"] is None
    assert ts.spawned_pids() == []
    assert "[E " in ts.server.log()
    assert "Tunnel failed: bad_arguments: cloudflared_args item" in ts.server.log()


def test_rate_limited_waits_long(tunnel_server: Any) -> None:
    ts = tunnel_server(faults="rate_limited")
    body = ts.wait_state("backoff", error_kind="rate_limited")
    wait = _ts(body["next_retry_at"]) - _ts(body["last_exit"]["at"])
    assert wait >= 59  # far above restart_backoff_max (1 s in these tests)


def test_metrics_port_in_use(tunnel_server: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ts = tunnel_server(traits={"cloudflared_args": ["--metrics", f"127.0.0.1:{port}"]})
        body = ts.wait_state("backoff", "failed", error_kind="metrics_port_in_use")
    assert f"127.0.0.1:{port}" in body["error"]["message"]
    assert "address already in use" in body["error"]["message"]


def test_no_url_times_out_and_restarts(tunnel_server: Any) -> None:
    ts = tunnel_server(faults="no_url", traits={"url_timeout": 1.0})
    first = ts.wait_state("starting")
    assert first["url"] is None
    body = ts.wait_state("backoff", error_kind="url_timeout")
    assert "within 1s" in body["error"]["message"]
    ts.server.wait_for("colab/tunnel", lambda b: b["restarts"] >= 1)


def test_never_ready_stays_connecting_with_the_cause(tunnel_server: Any) -> None:
    ts = tunnel_server(faults="never_ready")
    body = ts.wait_state("connecting", error_kind="network")
    assert URL_RE.match(body["url"])
    assert body["ready_connections"] == 0
    assert "failed to dial to edge" in body["error"]["message"]
    time.sleep(1.0)
    assert ts.tunnel()["state"] == "connecting"
    assert len(ts.spawned_pids()) == 1  # cloudflared retries on its own: no restart


def test_stalled_tunnel_is_restarted(tunnel_server: Any) -> None:
    ts = tunnel_server(faults="stall_after=1.0")
    first = ts.wait_state("ready")
    body = ts.server.wait_for(
        "colab/tunnel", lambda b: b["last_exit"] is not None and b["state"] != "ready", timeout=20
    )
    assert body["error"]["kind"] == "stalled"
    ts.server.wait_for(
        "colab/tunnel", lambda b: b["state"] == "ready" and b["pid"] not in (None, first["pid"])
    )


def test_killed_by_signal_is_crashed(tunnel_server: Any) -> None:
    ts = tunnel_server(
        faults="crash_after=0.3,crash_signal=SEGV",
        traits={"restart_backoff_initial": 5.0, "restart_backoff_max": 5.0},
    )
    body = ts.wait_state("backoff", error_kind="crashed")
    assert body["last_exit"]["signal"] == "SIGSEGV"
    assert body["error"]["message"] == "cloudflared was killed by signal SIGSEGV"


def test_unauthenticated_server_refuses_a_public_tunnel(tunnel_server: Any) -> None:
    ts = tunnel_server(token="")
    body = ts.wait_state("failed")
    assert body["error"]["kind"] == "insecure_config"
    assert "token" in body["error"]["hint"]
    time.sleep(0.3)
    assert ts.spawned_pids() == []


def test_allow_unauthenticated_opens_it(tunnel_server: Any) -> None:
    ts = tunnel_server(token="", traits={"allow_unauthenticated": True})
    assert ts.wait_state("ready")["error"] is None


def test_missing_binary_is_reported(tunnel_server: Any, tmp_path: Path) -> None:
    ts = tunnel_server(traits={"cloudflared_path": str(tmp_path / "nope" / "cloudflared")})
    body = ts.wait_state("failed")
    assert body["error"]["kind"] == "binary_unavailable"
    assert "does not exist" in body["error"]["message"]
    assert "cloudflared_path" in body["error"]["hint"]
    assert ts.server.get_json("api/status")


def test_binary_not_executable_or_not_a_program(tunnel_server: Any, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    ts = tunnel_server(traits={"cloudflared_path": str(plain)})
    assert "not executable" in ts.wait_state("failed")["error"]["message"]
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x7fELF\x00garbage")
    garbage.chmod(0o755)
    ts2 = tunnel_server(traits={"cloudflared_path": str(garbage)})
    body = ts2.wait_state("failed")
    assert body["error"]["kind"] == "binary_unavailable"
    assert "exec format error" in body["error"]["message"]


def test_no_binary_anywhere_offline(tunnel_server: Any) -> None:
    # No cloudflared on PATH, and pycloudflared cannot download one on this offline machine.
    ts = tunnel_server(install=False, env={"PATH": "/usr/bin:/bin"})
    body = ts.wait_state("failed", timeout=60)
    assert body["error"]["kind"] == "binary_unavailable"
    assert "pycloudflared" in body["error"]["message"]


def test_stop_start_restart_actions(tunnel_server: Any) -> None:
    ts = tunnel_server()
    first = ts.wait_state("ready")
    r = ts.post("stop")
    assert r.status == 200
    assert r.json()["state"] == "stopped"
    assert r.json()["url"] is None
    assert ts.children() == []
    assert not psutil.pid_exists(first["pid"]) or psutil.Process(first["pid"]).status() == "zombie"
    r = ts.post("start")
    assert r.status == 200
    second = ts.wait_state("ready")
    assert second["pid"] != first["pid"]
    r = ts.post("restart")
    assert r.status == 200
    third = ts.wait_state("ready")
    assert third["pid"] not in (first["pid"], second["pid"])
    assert len(ts.children()) == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "must be JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"action": "explode"}', "action must be one of"),
        (b'{"action": 3}', "action must be one of"),
        (b'{"action": "stop", "extra": 1}', "unknown fields"),
        (b"", "the body is empty"),
    ],
)
def test_malformed_posts_are_400(tunnel_server: Any, body: bytes, fragment: str) -> None:
    ts = tunnel_server(traits={"autostart": False})
    r = ts.server.request(
        "POST", "colab/tunnel", body=body, headers={"Content-Type": "application/json"}
    )
    assert r.status == 400
    assert r.headers["Content-Type"].startswith("application/json")
    assert fragment in r.json()["message"]
    assert ts.tunnel()["state"] == "stopped"


def test_autostart_off_waits_for_a_start(tunnel_server: Any) -> None:
    ts = tunnel_server(traits={"autostart": False})
    time.sleep(0.3)
    assert ts.tunnel()["state"] == "stopped"
    assert ts.spawned_pids() == []
    assert ts.post("start").status == 200
    ts.wait_state("ready")


def test_mode_off(tunnel_server: Any) -> None:
    ts = tunnel_server(traits={"tunnel_mode": "off"})
    assert ts.tunnel()["state"] == "off"
    r = ts.post("start")
    assert r.status == 409
    assert "tunnel_mode" in r.json()["message"]


def test_invalid_config_fails_the_tunnel_not_the_server(tunnel_server: Any) -> None:
    ts = tunnel_server(traits={"protocol": "carrier-pigeon"})
    body = ts.wait_state("failed")
    assert body["error"]["kind"] == "invalid_config"
    assert "ColabTunnelApp.protocol" in body["error"]["message"]
    assert body["config_errors"][0]["trait"] == "protocol"
    assert ts.spawned_pids() == []


def test_posts_need_credentials(tunnel_server: Any) -> None:
    ts = tunnel_server(traits={"autostart": False})
    assert ts.post("start", token=None).status == 403
    assert ts.server.request("GET", "colab/tunnel", token=None).status == 403
    assert ts.server.request("GET", "colab/tunnel", token="wrong").status == 403
    assert ts.spawned_pids() == []


def test_named_tunnel_token_stays_secret(tunnel_server: Any) -> None:
    ts = tunnel_server(
        env={"TUNNEL_TOKEN": VALID_TOKEN, "FAKE_CLOUDFLARED_HOSTNAME": "jupyter.example.com"},
        traits={"public_hostname": "jupyter.example.com"},
    )
    body = ts.wait_state("ready")
    assert body["mode"] == "named"
    assert body["url"] == "https://jupyter.example.com"
    fake = ts.fake_state(body["pid"])
    assert fake["token_seen"] is True  # it got the token, through its environment only
    assert fake["argv"][-1] == "run"
    cmdline = Path(f"/proc/{body['pid']}/cmdline").read_bytes().decode()
    assert VALID_TOKEN not in cmdline
    assert TUNNEL_ID in json.dumps(ts.tunnel(logs=1000)["logs"])  # it did start that tunnel
    seen = [
        json.dumps(ts.tunnel(logs=1000)),
        json.dumps(ts.server.get_json("colab/status")),
        ts.server.log(),
    ]
    assert not any(VALID_TOKEN in text for text in seen)


def test_named_tunnel_token_file(tunnel_server: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(VALID_TOKEN + "\n")
    ts = tunnel_server(traits={"tunnel_token_file": str(token_file)})
    body = ts.wait_state("ready")
    assert body["mode"] == "named"
    assert body["url"] is None  # no public_hostname configured
    missing = tunnel_server(traits={"tunnel_token_file": str(tmp_path / "missing")})
    body = missing.wait_state("failed")
    assert body["error"]["kind"] == "token_unavailable"
    assert "No such file" in body["error"]["message"]


def test_log_buffer_is_bounded_under_a_flood(tunnel_server: Any) -> None:
    ts = tunnel_server(faults="log_flood=5000,flood_invalid_utf8", traits={"log_lines": 50})
    ts.wait_state("ready")
    time.sleep(1.0)
    body = ts.tunnel(logs=100000)
    assert len(body["logs"]) == 50
    assert any("\ufffd" in line for line in body["logs"])  # invalid UTF-8 replaced, not fatal
    assert ts.server.get_json("api/status")
    assert body["state"] == "ready"


def test_child_ignoring_sigterm_is_killed(tunnel_server: Any) -> None:
    ts = tunnel_server(faults="ignore_sigterm", traits={"stop_timeout": 1.0})
    body = ts.wait_state("ready")
    t0 = time.monotonic()
    r = ts.post("stop")
    elapsed = time.monotonic() - t0
    assert r.json()["state"] == "stopped"
    assert 0.9 <= elapsed < 5
    assert not psutil.pid_exists(body["pid"]) or psutil.Process(body["pid"]).status() == "zombie"
    assert "ignored SIGTERM" in ts.server.log()
    states = [e["state"] for e in r.json()["events"]]
    assert states[-2:] == ["stopping", "stopped"]


def test_closed_stdio_keeps_supervision(tunnel_server: Any) -> None:
    ts = tunnel_server(faults="close_stdio")
    body = ts.wait_state("ready")
    time.sleep(1.0)
    again = ts.tunnel()
    assert again["state"] == "ready"
    assert again["pid"] == body["pid"]
    assert psutil.pid_exists(body["pid"])


def test_server_sigterm_stops_everything(tunnel_server: Any) -> None:
    ts = tunnel_server()
    body = ts.wait_state("ready")
    assert ts.server.stop(signal.SIGTERM) == 0
    assert ts.alive_spawned() == []
    assert not psutil.pid_exists(body["pid"])


@pytest.mark.parametrize("mechanism", ["setpriv", "prctl"])
def test_server_sigkill_takes_the_child_down(
    tunnel_server: Any, tmp_path: Path, mechanism: str
) -> None:
    if mechanism == "setpriv":
        if shutil.which("setpriv") is None:
            pytest.skip("util-linux setpriv is not installed here")
        ts = tunnel_server()
        told = "cloudflared dies with this server through setpriv --pdeathsig"
    else:
        # A PATH with the stand-in and no setpriv: the fallback sets the signal itself.
        bin_dir = tmp_path / "no-setpriv"
        fake_cloudflared.install(bin_dir)
        ts = tunnel_server(install=False, env={"PATH": str(bin_dir)})
        told = "cloudflared dies with this server through prctl in the child"
    body = ts.wait_state("ready")
    assert told in ts.server.log()
    # setpriv execs cloudflared: the pid the supervisor knows is cloudflared's own.
    assert [p.pid for p in ts.children()] == [body["pid"]]
    os.kill(ts.server.pid, signal.SIGKILL)
    ts.server.proc.wait()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and ts.alive_spawned():
        time.sleep(0.02)
    assert ts.alive_spawned() == [], f"cloudflared {body['pid']} outlived a SIGKILLed server"


def test_concurrent_actions_never_run_two_children(tunnel_server: Any) -> None:
    ts = tunnel_server()
    ts.wait_state("ready")
    seen_max = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal seen_max
        while not done.is_set():
            seen_max = max(seen_max, len(ts.children()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    actions = ["start", "stop", "restart"] * 17
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            codes = list(pool.map(lambda a: ts.post(a, timeout=60).status, actions[:50]))
    finally:
        done.set()
        watcher.join()
    assert codes == [200] * 50
    assert seen_max <= 1
    ts.post("start")
    final = ts.wait_state("ready")
    assert len(ts.children()) == 1
    assert final["pid"] == ts.children()[0].pid


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
