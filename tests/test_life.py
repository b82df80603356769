"""The runtime's life (/colab/status `life`): limits, estimates, idle time, and the last record.

The pure computations are checked directly. The rest runs real processes: `jupyter server`
under a simulated Colab environment (COLAB_RELEASE_TAG, as runtime detection reads it), a real
kernel running a cell, /metrics, the dashboard in headless Chromium, the MCP tool through the
SDK's client, and the connection file after SIGTERM and after POST /api/shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from jupyter_colab_tunnel.connection_record import accept_record
from jupyter_colab_tunnel.local.client import ColabClient
from jupyter_colab_tunnel.local.mcp import build_server
from jupyter_colab_tunnel.server.life import (
    COLAB_FAQ,
    KAGGLE_DOCS,
    life_section,
    limits_for,
    platform_name,
    read_machine_start,
)
from jupyter_colab_tunnel.server.stop_reason import API_OR_TIMEOUT, IDLE_SHUTDOWN, stop_reason
from testkit.headless import Chromium, chromium_path
from testkit.kernel_channel import KernelChannel, ws_url

COLAB_ENV = {"COLAB_RELEASE_TAG": "release-colab_20261120-060052_RC00"}
OFF = {"ColabTunnelApp": {"tunnel_mode": "off"}}


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# ----- the computations -----------------------------------------------------------------------


def test_platform_and_its_limits() -> None:
    assert platform_name({"colab": True}, {}) == "colab"
    assert platform_name({"colab": False}, {"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}) == "kaggle"
    assert platform_name({"colab": False}, {}) is None

    colab = limits_for("colab")
    assert colab is not None
    assert (colab.max_lifetime_seconds, colab.idle_timeout_seconds) == (43200, 5400)
    assert colab.source == COLAB_FAQ
    assert "users report" in colab.note  # the idle figure is not Colab's own
    kaggle_tpu = limits_for("kaggle", "tpu")
    assert kaggle_tpu is not None
    assert (kaggle_tpu.max_lifetime_seconds, kaggle_tpu.idle_timeout_seconds) == (32400, 1200)
    kaggle_gpu = limits_for("kaggle", "gpu")
    assert kaggle_gpu is not None
    assert kaggle_gpu.max_lifetime_seconds == 43200
    assert kaggle_tpu.source == KAGGLE_DOCS
    assert limits_for(None) is None


def test_settings_replace_the_platform_figures() -> None:
    paid = limits_for("colab", max_lifetime=86400.0)
    assert paid is not None
    assert (paid.max_lifetime_seconds, paid.idle_timeout_seconds) == (86400, 5400)
    assert paid.source == f"ColabTunnelApp.runtime_max_lifetime; {COLAB_FAQ}"
    unknown_idle = limits_for("colab", idle_timeout=0.0)
    assert unknown_idle is not None
    assert unknown_idle.idle_timeout_seconds is None
    both = limits_for("colab", max_lifetime=86400.0, idle_timeout=0.0)
    assert both is not None
    assert both.source == "ColabTunnelApp.runtime_max_lifetime; ColabTunnelApp.runtime_idle_timeout"
    vm = limits_for(None, max_lifetime=3600.0)
    assert vm is not None
    assert (vm.max_lifetime_seconds, vm.idle_timeout_seconds) == (3600, None)
    assert vm.source == "ColabTunnelApp.runtime_max_lifetime"


def test_the_estimate_is_the_earlier_end_and_a_busy_kernel_is_not_idle() -> None:
    colab = limits_for("colab")
    now = 1_800_000_000.0
    # Up 11 h, idle 10 min: the 12-hour cap (in 1 h) comes before the idle timeout (in 80 min).
    life = life_section(now, now - 11 * 3600, now - 600, 0, "colab", colab)
    assert life["uptime_seconds"] == 11 * 3600
    assert life["idle_seconds"] == 600
    assert (life["estimated_end_at"], life["estimated_end_reason"]) == (
        "2027-01-15T09:00:00Z",
        "max_lifetime",
    )
    assert ts(life["estimated_end_at"]) == now + 3600
    assert life["estimate"] is True
    # Up 1 h, idle 80 min is impossible; idle 60 min: the idle timeout comes first (in 30 min).
    life = life_section(now, now - 7200, now - 3600, 0, "colab", colab)
    assert (ts(life["estimated_end_at"]), life["estimated_end_reason"]) == (now + 1800, "idle")
    # A running cell: idle 0, so the idle end moves a whole timeout away.
    life = life_section(now, now - 7200, now - 3600, 1, "colab", colab)
    assert life["idle_seconds"] == 0
    assert ts(life["estimated_end_at"]) == now + 5400
    # No known platform: no limits, no estimate.
    life = life_section(now, None, now - 5, 0, None, None)
    assert (life["limits"], life["estimated_end_at"], life["estimated_end_reason"]) == (
        None,
        None,
        None,
    )
    assert life["uptime_seconds"] is None
    assert life["machine_started_at"] is None


def test_stop_reasons() -> None:
    assert stop_reason(signal.SIGTERM, False) == "the server received SIGTERM"
    assert stop_reason(signal.SIGINT, True) == "the server received SIGINT"
    assert stop_reason(None, False) == API_OR_TIMEOUT
    assert stop_reason(None, True) == IDLE_SHUTDOWN


# ----- a real server under simulated Colab ------------------------------------------------------


def machine_start() -> float:
    start = read_machine_start()
    assert start is not None
    return start


def life_of(server: Any) -> dict[str, Any]:
    life: dict[str, Any] = server.get_json("colab/status")["life"]
    return life


def test_a_simulated_colab_runtime_reports_limits_and_an_estimate(server_factory: Any) -> None:
    server = server_factory(env=COLAB_ENV, config=OFF)
    body = server.get_json("colab/status")
    assert body["runtime"]["colab"] is True
    life = body["life"]
    assert life["platform"] == "colab"
    assert life["limits"]["max_lifetime_seconds"] == 43200
    assert life["limits"]["idle_timeout_seconds"] == 5400
    assert life["limits"]["source"] == COLAB_FAQ
    assert life["estimate"] is True
    # The later of boot and PID 1's start, as psutil reads them here.
    started = ts(life["machine_started_at"])
    assert started == round(max(psutil.boot_time(), psutil.Process(1).create_time()))
    assert life["uptime_seconds"] == pytest.approx(time.time() - started, abs=5)
    ends = {
        "max_lifetime": started + 43200,
        "idle": ts(life["last_activity_at"]) + 5400 if not life["busy_kernels"] else None,
    }
    reason = life["estimated_end_reason"]
    assert reason in ends
    assert ts(life["estimated_end_at"]) == pytest.approx(
        min(v for v in ends.values() if v is not None), abs=1
    )


def test_a_simulated_kaggle_session_reports_kaggle_limits(server_factory: Any) -> None:
    server = server_factory(env={"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, config=OFF)
    life = life_of(server)
    assert life["platform"] == "kaggle"
    assert life["limits"]["max_lifetime_seconds"] == 43200
    assert life["limits"]["idle_timeout_seconds"] == 1200
    assert life["limits"]["source"] == KAGGLE_DOCS
    assert life["estimated_end_reason"] in ("max_lifetime", "idle")


def test_settings_give_limits_where_no_platform_is_known(server_factory: Any) -> None:
    config = {"ColabTunnelApp": {"tunnel_mode": "off", "runtime_max_lifetime": 86400}}
    server = server_factory(config=config)
    life = life_of(server)
    assert life["platform"] is None
    assert life["limits"]["max_lifetime_seconds"] == 86400
    assert life["limits"]["idle_timeout_seconds"] is None
    assert life["limits"]["source"] == "ColabTunnelApp.runtime_max_lifetime"
    assert life["estimated_end_reason"] == "max_lifetime"
    assert ts(life["estimated_end_at"]) == ts(life["machine_started_at"]) + 86400
    # Without settings or a platform: no estimate.
    plain = life_of(server_factory(config=OFF))
    assert (plain["limits"], plain["estimated_end_at"]) == (None, None)


def metric(server: Any, name: str) -> float:
    text = server.request("GET", "metrics").body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def wait_life(server: Any, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
    body = server.wait_for("colab/status", lambda b: predicate(b["life"]), timeout=timeout)
    life: dict[str, Any] = body["life"]
    return life


@pytest.mark.timeout(180)
def test_idle_time_grows_while_nothing_runs_and_resets_when_a_cell_runs(
    server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(env=COLAB_ENV, config=OFF)
    kernel = server.request("POST", "api/kernels", {"name": "python3"}).json()["id"]
    url = ws_url(server.url) + f"api/kernels/{kernel}/channels"
    go = tmp_path / "go"
    with KernelChannel(url, headers={"Authorization": f"token {server.token}"}) as channel:
        assert channel.execute_eventually("pass", timeout=90).status == "ok"

        # Nothing runs: idle time grows, and reading it (the polls) is no activity.
        first = wait_life(server, lambda life: life["idle_seconds"] >= 1.0)
        later = wait_life(server, lambda life: life["idle_seconds"] >= first["idle_seconds"] + 0.5)
        assert later["last_activity_at"] == first["last_activity_at"]
        assert later["busy_kernels"] == 0
        assert metric(server, "colab_idle_seconds") >= later["idle_seconds"]
        assert metric(server, "colab_uptime_seconds") >= later["uptime_seconds"]
        idle_end = ts(later["last_activity_at"]) + 5400

        # A cell runs (until this test creates a file): busy, so not idle.
        code = f"import os, time\nwhile not os.path.exists({str(go)!r}):\n    time.sleep(0.02)\n"
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(channel.execute, code, 60.0)
            busy = wait_life(server, lambda life: life["busy_kernels"] == 1)
            assert busy["idle_seconds"] == 0
            assert metric(server, "colab_idle_seconds") == 0
            go.touch()
            assert running.result(timeout=60).status == "ok"

        # Done: idle again, counted from the cell's end.
        after = wait_life(server, lambda life: life["busy_kernels"] == 0)
        assert ts(after["last_activity_at"]) > ts(later["last_activity_at"])
        assert after["idle_seconds"] < later["idle_seconds"]
        if after["estimated_end_reason"] == "idle":
            assert ts(after["estimated_end_at"]) > idle_end


@pytest.mark.skipif(chromium_path() is None, reason="needs chromium (apt-get install chromium)")
def test_the_dashboard_shows_uptime_idle_time_and_the_estimate(
    server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(env=COLAB_ENV, config=OFF)
    life = life_of(server)
    with Chromium(tmp_path / "chromium") as browser:
        browser.navigate(f"{server.url}colab/?token={server.token}")
        browser.wait_for("!!(document.body.dataset.loaded && document.getElementById('life-end'))")
        page = json.loads(
            browser.eval(
                """JSON.stringify({
                  uptime: document.getElementById('life-uptime').textContent,
                  idle: document.getElementById('life-idle').textContent,
                  end: document.getElementById('life-end').textContent,
                  limits: document.getElementById('life-limits').textContent,
                  source: document.querySelector('#life-source a').getAttribute('href'),
                  card: document.getElementById('life').textContent,
                })"""
            )
        )
    hours = int(life["uptime_seconds"] // 3600)
    assert page["uptime"].startswith(f"{hours} h" if hours else "")
    assert "since" in page["uptime"]
    assert page["idle"].endswith(" s") or "min" in page["idle"]
    assert page["end"].startswith("estimate: ")
    reason = {"max_lifetime": "the maximum lifetime", "idle": "the idle timeout"}
    assert page["end"].endswith(reason[life["estimated_end_reason"]])
    assert page["limits"] == "colab: 12 h 00 min at most, 1 h 30 min idle"
    assert page["source"] == COLAB_FAQ
    assert "estimates" in page["card"]


def test_the_mcp_tool_returns_the_life(server_factory: Any) -> None:
    server = server_factory(env=COLAB_ENV, config=OFF)

    async def scenario() -> tuple[Any, Any]:
        async with Client(build_server(ColabClient(server.url, server.token))) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            result = await client.call_tool("colab_status", {})
            return tools["colab_status"], result

    tool, result = asyncio.run(scenario())
    assert "checkpoint" in (tool.description or "")
    assert "life" in (tool.output_schema or {})["properties"]
    assert not result.is_error, result.content
    life = result.structured_content["life"]
    rest = life_of(server)
    assert life["platform"] == "colab"
    assert life["estimate"] is True
    assert life["estimated_end_at"]
    assert life["estimated_end_reason"] in ("max_lifetime", "idle")
    assert life["machine_started_at"] == rest["machine_started_at"]
    assert life["limits"] == rest["limits"]
    assert 0 <= life["idle_seconds"] <= rest["idle_seconds"] + 1


# ----- the connection file's last word ----------------------------------------------------------


def record_config(path: Path) -> dict[str, Any]:
    return {"ColabTunnelApp": {"tunnel_mode": "off", "connection_file": str(path)}}


def wait_record(path: Path, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = json.loads(path.read_text())
            if predicate(last):
                return dict(last)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting on {path}; last: {last}")


def test_the_connection_file_says_stopped_with_the_reason_after_sigterm(
    server_factory: Any, tmp_path: Path
) -> None:
    path = tmp_path / "drive" / "colab.json"
    server = server_factory(env=COLAB_ENV, config=record_config(path))
    first = wait_record(path, lambda r: r.get("machine_started_at"))
    life = life_of(server)
    assert first["machine_started_at"] == life["machine_started_at"]
    assert first["estimated_end_at"]
    assert "reason" not in first
    stopped_at = time.time()
    assert server.stop(signal.SIGTERM) == 0
    last = json.loads(path.read_text())
    assert last["state"] == "stopped"
    assert last["reason"] == "the server received SIGTERM"
    assert last["machine_started_at"] == life["machine_started_at"]
    assert last["estimated_end_at"]
    assert ts(last["updated_at"]) >= stopped_at - 1
    # Still signed with the server's token: the relay accepts it.
    info = accept_record(path.read_bytes(), server.token)
    assert info.state == "stopped"


def test_the_connection_file_says_stopped_through_the_api(
    server_factory: Any, tmp_path: Path
) -> None:
    path = tmp_path / "colab.json"
    server = server_factory(config=record_config(path))
    wait_record(path, lambda r: "machine_started_at" in r)
    # The server may stop before its answer is whole: the file says what happened.
    with contextlib.suppress(OSError):
        server.request("POST", "api/shutdown")
    server.proc.wait(30)
    last = json.loads(path.read_text())
    assert (last["state"], last["reason"]) == ("stopped", API_OR_TIMEOUT)
    assert last["estimated_end_at"] is None  # no platform known: no estimate
    accept_record(path.read_bytes(), server.token)
