"""The remote runtime's life at the relay (issue 21): the warnings before an estimated end, and
"gone means gone".

Units: the warning decision, what counts as a dead tunnel, the record's new fields. In process:
a real relay reading `life` from a tornado stand-in remote's /colab/status. End to end (real
processes): a remote killed with SIGKILL is reported gone within --gone-after, its open kernel
websocket closed with a reason, and a new remote writing the same connection file is followed
without restarting the relay; a remote stopped with SIGTERM whose record says `stopped` with a
reason is gone at once; a real relay warns from a record whose estimated end is near.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import struct
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest
import websocket
from e2e_kit import KernelChannel, kernel_channel, start_kernel, ws_url
from relay_env import RelayProcess, check_relay_body, start_local, start_relay, write_secret
from test_relay_reachability import until
from test_relay_ws import free_port
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tunnel_env import TunnelServer

from jupyter_colab_tunnel.connection_record import (
    accept_record,
    connection_record,
    sign,
    write_connection_file,
)
from jupyter_colab_tunnel.local.relay import Relay, RelaySettings
from jupyter_colab_tunnel.local.relay.life import GONE_CLOSE_CODE, due_warning
from jupyter_colab_tunnel.local.relay.reachability import dead_tunnel
from jupyter_colab_tunnel.local.upstream import UpstreamTracker


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def in_minutes(minutes: float) -> str:
    return iso(datetime.now(timezone.utc) + timedelta(minutes=minutes))


# ----- units ------------------------------------------------------------------------------


def test_warnings_come_30_and_10_minutes_before_an_estimated_end_once_each() -> None:
    end, warned = 10_000.0, []  # type: list[tuple[float, int]]
    at = [end - m * 60 for m in (45, 31, 29.5, 25, 11, 9.9, 5, 0.5)]
    said = [due_warning(end, now, warned) for now in at]
    assert said == [None, None, 30, None, None, 10, None, None]
    assert due_warning(end, end + 1, warned) is None  # past: nothing more to say
    # An idle estimate that creeps by a minute is the same estimate: no second warning.
    assert due_warning(end + 60, end - 9 * 60, warned) is None
    # Activity moved it well later: a new estimate, warned of again when it comes near.
    later = end + 3600
    assert due_warning(later, later - 29 * 60, warned) == 30


def test_an_estimate_learnt_late_gets_only_its_nearest_warning() -> None:
    warned: list[tuple[float, int]] = []
    assert due_warning(1000.0, 1000.0 - 8 * 60, warned) == 10
    assert due_warning(1000.0, 1000.0 - 7 * 60, warned) is None
    assert {m for _, m in warned} == {10, 30}  # the 30-minute one is not said afterwards


def test_what_counts_as_a_dead_tunnel() -> None:
    quick = "https://some-words-here.trycloudflare.com"
    assert dead_tunnel("no_tunnel", quick)
    assert dead_tunnel("connection_refused", "http://127.0.0.1:9")
    assert dead_tunnel("dns_error", quick)  # a quick tunnel's name goes with its tunnel
    assert dead_tunnel("dns_error", quick.upper() + ".")
    # Any other name that does not resolve may be this machine's own DNS: not gone.
    assert not dead_tunnel("dns_error", "https://jupyter.example.com")
    assert not dead_tunnel("timeout", quick)
    assert not dead_tunnel("tls_error", quick)


def test_the_record_carries_the_stop_reason_and_the_life_fields() -> None:
    token = "a-remote-token-0123456789"
    record = connection_record("https://a.trycloudflare.com", "stopped", "/", None)
    started, end = in_minutes(-60), in_minutes(600)
    record.update(
        reason="the server received SIGTERM", machine_started_at=started, estimated_end_at=end
    )
    info = accept_record(json.dumps(sign(record, token)).encode(), token)
    assert (info.state, info.reason) == ("stopped", "the server received SIGTERM")
    assert (info.machine_started_at, info.estimated_end_at) == (started, end)
    # An older remote writes none; odd values are not followed as times.
    record.update(reason=None, machine_started_at="yesterday", estimated_end_at=7)
    info = accept_record(json.dumps(sign(record, token)).encode(), token)
    assert (info.reason, info.machine_started_at, info.estimated_end_at) == (None, None, None)


# ----- in process: `life` read from the remote's /colab/status ------------------------------


class StatusStandIn(web.RequestHandler):
    """The remote's /colab/status with a `life` (what h4's remote reports), and /api."""

    life: ClassVar[dict[str, Any]] = {}

    def get(self) -> None:
        if self.request.path == "/api":
            self.finish({"version": "remote"})
        else:
            self.finish({"state": "ready", "life": StatusStandIn.life})


async def life_from_status() -> dict[str, Any]:
    log = logging.getLogger("test-relay-life")
    port = free_port()
    remote = HTTPServer(web.Application([(r"/api|/colab/status", StatusStandIn)]))
    remote.add_sockets(bind_sockets(port, "127.0.0.1"))
    StatusStandIn.life = {
        "machine_started_at": in_minutes(-700),
        "uptime_seconds": 42000.0,
        "idle_seconds": 120.0,
        "busy_kernels": 0,
        "estimated_end_at": in_minutes(25),
        "estimated_end_reason": "max_lifetime",
        "estimate": True,
    }
    tracker = UpstreamTracker(log)
    tracker.set_url(f"http://127.0.0.1:{port}")
    settings = RelaySettings(local_token="local", remote_token=lambda: None, life_interval=0.1)
    relay = Relay(settings, tracker, log, lambda: {"connection_file": None, "remote": None})
    relay.listen(0)
    out: dict[str, Any] = {}
    await until(lambda: relay.status()["remote_life"] is not None, "the life read")
    out["first"] = relay.status()
    StatusStandIn.life = {**StatusStandIn.life, "estimated_end_at": in_minutes(9)}
    await until(
        lambda: (
            (relay.status()["remote_life"] or {}).get("estimated_end_at")
            == StatusStandIn.life["estimated_end_at"]
        ),
        "the new estimate",
    )
    await until(lambda: len(relay.life.warned) >= 2, "the 10-minute warning")
    out["second"] = relay.status()
    await relay.close()
    remote.stop()
    await remote.close_all_connections()
    return out


def test_the_relay_reads_life_from_colab_status_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "test-relay-life")
    out = asyncio.run(life_from_status())
    first = out["first"]
    check_relay_body("RelayStatus", first)
    life = first["remote_life"]
    assert life["estimated_end_reason"] == "max_lifetime"
    assert life["idle_seconds"] == 120.0
    assert life["estimate"] is True
    assert life["uptime_seconds"] >= 700 * 60 - 5
    assert first["remote_gone"] is None
    check_relay_body("RelayStatus", out["second"])
    warnings = [r.getMessage() for r in caplog.records if "may end in about" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "about 30 minutes" in warnings[0]
    assert "maximum lifetime" in warnings[0]
    assert "about 10 minutes" in warnings[1]
    assert "save your work" in warnings[1]


# ----- end to end ---------------------------------------------------------------------------

TOKEN = "a-token-kept-in-colab-secrets-0123456789"


def close_frame(ws: websocket.WebSocket, timeout: float = 30.0) -> tuple[int, str]:
    """Read until the relay's close frame; return its code and reason."""
    ws.settimeout(timeout)
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            return code, data[2:].decode("utf-8", "replace")


def relay_for(tmp_path: Path, connection_file: Path, *args: str) -> RelayProcess:
    token_file = write_secret(tmp_path / "remote_token", TOKEN)
    return start_relay(
        tmp_path / "relay",
        ["--connection-file", str(connection_file), "--token-file", str(token_file), *args],
        edge_root=tmp_path,
    )


@pytest.mark.e2e
def test_a_killed_remote_is_gone_and_a_new_one_is_followed(
    tunnel_server: Any, server_factory: Any, tmp_path: Path
) -> None:
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    traits = {"connection_file": str(connection_file), "tunnel_mode": "quick"}
    first: TunnelServer = tunnel_server(traits=traits, token=TOKEN)
    first.wait_state("ready")
    relay = relay_for(tmp_path, connection_file, "--gone-after=3")
    try:
        local = start_local(server_factory, relay)
        kernel_id = start_kernel(local)
        # A kernel websocket held open through the relay, as the local JupyterLab's is.
        url = ws_url(relay.url) + f"/api/kernels/{kernel_id}/channels"
        channel = KernelChannel(url, headers={"Authorization": f"token {relay.token}"})
        assert channel.execute("print('before')").stdout == "before\n"

        killed_at = time.time()
        first.server.proc.send_signal(signal.SIGKILL)
        first.server.proc.wait(30)
        assert json.loads(connection_file.read_text())["state"] == "ready"  # it could not say
        code, reason = close_frame(channel.ws, timeout=60)
        assert code == GONE_CLOSE_CODE, (code, reason)
        assert "remote runtime gone since" in reason
        assert "start a new one" in reason
        status = relay.wait_status(lambda s: s["remote_gone"] is not None, timeout=30)
        took = time.time() - killed_at
        assert took < 3 + 20, f"gone only after {took:.1f} s"
        check_relay_body("RelayStatus", status)
        gone = status["remote_gone"]
        assert status["remote_state"] == "gone"
        assert "unreachable for 3 s behind a dead tunnel" in gone["reason"]
        assert "launch()" in gone["hint"]
        assert "same connection file" in gone["hint"]
        since = datetime.fromisoformat(gone["since"].replace("Z", "+00:00")).timestamp()
        assert killed_at - 1 <= since <= killed_at + 10
        # Error bodies say it, at once (no --wait spent on a remote that is gone).
        started = time.monotonic()
        r = relay.request("GET", "api/kernels")
        assert time.monotonic() - started < 10
        assert (r.status, r.json()["reason"]) == (503, "remote_gone"), r.body
        check_relay_body("Error", r.json())
        assert "appears to be gone since" in r.json()["message"]
        assert "launch()" in r.json()["error"]["hint"]
        log = relay.log()
        assert log.count("The remote runtime appears to be gone since") == 1, log
        assert "Closing 1 open kernel websocket(s)" in log

        # A new runtime writing the same connection file: followed without a restart.
        second: TunnelServer = tunnel_server(traits=traits, token=TOKEN)
        new_url = second.wait_state("ready")["url"]
        status = relay.wait_status(
            lambda s: s["upstream"] == new_url and s["remote_gone"] is None, timeout=30
        )
        assert status["remote_state"] == "ready"
        new_kernel = start_kernel(local)
        assert [k["id"] for k in second.server.get_json("api/kernels")] == [new_kernel]
        with kernel_channel(local, new_kernel) as fresh:
            assert fresh.execute("print(6 * 7)").stdout == "42\n"
        assert "The remote runtime is back" in relay.log()
        assert relay.proc.poll() is None
    finally:
        relay.stop()


@pytest.mark.e2e
def test_a_remote_stopped_with_sigterm_is_gone_at_once_with_its_reason(
    tunnel_server: Any, tmp_path: Path
) -> None:
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    traits = {"connection_file": str(connection_file), "tunnel_mode": "quick"}
    remote: TunnelServer = tunnel_server(traits=traits, token=TOKEN)
    remote.wait_state("ready")
    # --gone-after is long: only the record can say "gone" within this test.
    relay = relay_for(tmp_path, connection_file, "--gone-after=600")
    try:
        created = relay.request("POST", "api/kernels", body={})
        assert created.status == 201, created.body
        channels = ws_url(relay.url) + f"/api/kernels/{created.json()['id']}/channels"
        channel = KernelChannel(channels, headers={"Authorization": f"token {relay.token}"})
        assert channel.execute("print('before')").stdout == "before\n"
        remote.server.proc.send_signal(signal.SIGTERM)
        remote.server.proc.wait(30)
        # The remote's last word, written by the real server on SIGTERM (signed with its token).
        last = json.loads(connection_file.read_text())
        assert (last["state"], last["reason"]) == ("stopped", "the server received SIGTERM")
        # Told at once, not after --resume-timeout (60 s).
        code, reason = close_frame(channel.ws, timeout=20)
        assert code == GONE_CLOSE_CODE, (code, reason)
        status = relay.wait_status(lambda s: s["remote_gone"] is not None, timeout=20)
        check_relay_body("RelayStatus", status)
        gone = status["remote_gone"]
        assert "the server received SIGTERM" in gone["reason"]
        since = datetime.fromisoformat(gone["since"].replace("Z", "+00:00"))
        stopped = datetime.fromisoformat(last["updated_at"].replace("Z", "+00:00"))
        assert abs((since - stopped).total_seconds()) < 0.01  # since the record's stop time
        assert status["remote_state"] == "gone"
        assert status["upstream"] is None
        started = time.monotonic()
        r = relay.request("GET", "api/kernels")
        assert time.monotonic() - started < 5  # not the relay's 15 s wait for a live URL
        assert (r.status, r.json()["reason"]) == (503, "remote_gone"), r.body
        assert "the server received SIGTERM" in r.json()["message"]
        log = relay.log()
        assert log.count("The remote runtime appears to be gone since") == 1, log
        assert "the server received SIGTERM" in log
    finally:
        relay.stop()


@pytest.mark.e2e
def test_a_real_relay_warns_before_the_estimated_end_in_the_record(
    server_factory: Any, tmp_path: Path
) -> None:
    remote = server_factory(token=TOKEN)
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    record = connection_record(remote.url.rstrip("/"), "ready", "/", None)
    record.update(machine_started_at=in_minutes(-695), estimated_end_at=in_minutes(25))
    write_connection_file(connection_file, sign(record, TOKEN))
    relay = relay_for(tmp_path, connection_file)
    try:
        status = relay.wait_status(lambda s: s["remote_life"] is not None)
        check_relay_body("RelayStatus", status)
        assert status["remote_life"]["estimated_end_at"] == record["estimated_end_at"]
        # The real remote's own /colab/status life wins over the record's figures, except
        # where it has none: this machine is not a known platform, so no estimate of its own.
        own = remote.get_json("colab/status")["life"]
        assert own["estimated_end_at"] is None
        assert abs(status["remote_life"]["uptime_seconds"] - own["uptime_seconds"]) < 120
        wait_log(relay, "may end in about 30 minutes")
        # The remote's next record: the end is 9 minutes away now.
        record = connection_record(remote.url.rstrip("/"), "ready", "/", None)
        record.update(machine_started_at=in_minutes(-711), estimated_end_at=in_minutes(9))
        write_connection_file(connection_file, sign(record, TOKEN))
        wait_log(relay, "may end in about 10 minutes")
        log = relay.log()
        assert log.count("may end in about 30 minutes") == 1
        assert log.count("may end in about 10 minutes") == 1
        assert "an estimate" in log
        assert relay.status()["remote_gone"] is None
    finally:
        relay.stop()


def wait_log(relay: RelayProcess, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in relay.log():
        assert time.monotonic() < deadline, f"no {text!r} in:\n{relay.log()[-3000:]}"
        time.sleep(0.05)


@pytest.mark.e2e
def test_a_gone_after_that_is_not_a_positive_number_is_refused(tmp_path: Path) -> None:
    from test_relay_cli import run_connect

    for bad in ("0", "-5", "nan"):
        code, out, err = run_connect(
            [
                "--url",
                "http://127.0.0.1:9",
                f"--gone-after={bad}",
                f"--local-token-file={tmp_path / 't'}",
            ]
        )
        assert code == 2, (out, err)
        assert f"--gone-after must be a number of seconds above 0, not {float(bad)}" in err
