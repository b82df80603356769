"""Prometheus gauges on Jupyter's /metrics: DCGM names for the GPUs, the tunnel's up and restarts."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from tornado.httpclient import HTTPClientError

from jupyter_colab_tunnel.server.files.service import FilesStats
from jupyter_colab_tunnel.server.metrics import ColabCollector, MetricsHook
from testkit.fake_nvml import FakeGpu, FakeProcess, MiB, install
from testkit.waiting import until


def parse(text: str) -> dict[str, list[Any]]:
    """Metric family name -> its samples, as prometheus_client's own parser reads them."""
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def by_gpu(samples: list[Any]) -> dict[str, Any]:
    return {s.labels["gpu"]: s for s in samples}


async def scrape(jp_fetch: Any) -> dict[str, list[Any]]:
    r = await jp_fetch("metrics")
    assert r.code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    return parse(r.body.decode())


async def wait_sampled(colab_app: Any, timeout: float = 10.0) -> None:
    await until(lambda: colab_app.gpu.latest() is not None, "a background GPU sample", timeout)


async def test_gpu_gauges_match_colab_gpu(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(
        monkeypatch,
        [
            FakeGpu.t4(utilization_gpu=37, memory_used=2048 * MiB, processes=[FakeProcess(1)]),
            FakeGpu.a100_mig(),
        ],
    )
    gpu = await jp_fetch("colab", "gpu")
    import json

    devices = json.loads(gpu.body)["devices"]
    metrics = await scrape(jp_fetch)

    util = by_gpu(metrics["DCGM_FI_DEV_GPU_UTIL"])
    used = by_gpu(metrics["DCGM_FI_DEV_FB_USED"])
    free = by_gpu(metrics["DCGM_FI_DEV_FB_FREE"])
    temp = by_gpu(metrics["DCGM_FI_DEV_GPU_TEMP"])
    power = by_gpu(metrics["DCGM_FI_DEV_POWER_USAGE"])
    clock = by_gpu(metrics["DCGM_FI_DEV_SM_CLOCK"])
    for device in devices:
        i = str(device["index"])
        assert used[i].value == device["memory"]["used"] // MiB
        assert free[i].value == device["memory"]["free"] // MiB
        assert temp[i].value == device["temperature_c"]
        assert power[i].value == pytest.approx(device["power_w"])
        assert clock[i].value == device["clocks_mhz"]["sm"]
        assert used[i].labels["UUID"] == device["uuid"]
        assert used[i].labels["modelName"] == device["name"]
        assert set(used[i].labels) == {"gpu", "UUID", "modelName"}
    assert util["0"].value == 37 == devices[0]["utilization"]["gpu"]
    assert "1" not in util  # utilization is NotSupported under MIG: no sample, not a 0
    assert metrics["colab_tunnel_up"][0].value == 0  # tunnel_mode is off here
    restarts = metrics["colab_tunnel_restarts"]
    assert [(s.name, s.value) for s in restarts] == [("colab_tunnel_restarts_total", 0)]
    assert 0 <= metrics["colab_gpu_sample_age_seconds"][0].value < 60


async def test_no_gpu_means_no_gpu_series(jp_fetch: Any, colab_app: Any) -> None:
    # The real no-driver path of this machine.
    first = await scrape(jp_fetch)
    assert "colab_tunnel_up" in first
    await wait_sampled(colab_app)
    second = await scrape(jp_fetch)
    assert not [name for name in second if name.startswith("DCGM_")]
    assert second["colab_tunnel_up"][0].value == 0


async def test_metrics_need_the_token(jp_fetch: Any, colab_app: Any) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("metrics", headers={"Authorization": ""})
    assert e.value.code == 403


async def test_scrape_never_waits_for_nvml(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch, [FakeGpu.t4()] * 2)
    with fake.hung():
        first = await scrape(jp_fetch)
        assert not [n for n in first if n.startswith("DCGM_")]  # nothing cached yet
        # The scrape asked for a sample in the background, now stuck in the driver;
        # /api/status and another scrape answer meanwhile.
        await fake.called()
        await jp_fetch("api", "status")
        await scrape(jp_fetch)
        assert colab_app.gpu.latest() is None, "a request waited for the NVML sample"
    await wait_sampled(colab_app)  # the sample finishes once the driver answers
    assert fake.calls["nvmlDeviceGetCount"] == 1  # the second scrape started no other sample
    third = await scrape(jp_fetch)
    assert len(third["DCGM_FI_DEV_FB_USED"]) == 2


async def test_a_hung_nvml_does_not_slow_api_status_during_scrapes(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch, [FakeGpu.t4()] * 4)
    colab_app.metrics.collector.max_age = 0.0  # every scrape wants a fresher sample
    with fake.hung():
        first = await scrape(jp_fetch)
        await fake.called()  # the sample that scrape asked for is stuck on the NVML thread
        more, status = await asyncio.gather(
            asyncio.gather(*(scrape(jp_fetch) for _ in range(4))), jp_fetch("api", "status")
        )
        # All answered while that sample was still stuck: none had a GPU gauge to show.
        assert colab_app.gpu.latest() is None
        assert all("DCGM_FI_DEV_FB_USED" not in s for s in [first, *more])
        assert status.code == 200
        assert json.loads(status.body)["started"]
    await wait_sampled(colab_app)
    # A read queued behind the stuck one would run on the same NVML thread before this one.
    await asyncio.get_running_loop().run_in_executor(colab_app.gpu.sampler._executor, lambda: None)
    assert fake.calls["nvmlDeviceGetCount"] == 1  # the scrapes shared that one sample


# ----- the collector alone ---------------------------------------------------------------


class Sup:
    def __init__(self, state: str, restarts_total: int) -> None:
        self.state = state
        self.restarts_total = restarts_total


def collect(collector: ColabCollector) -> dict[str, list[Any]]:
    registry = CollectorRegistry()
    registry.register(collector)
    from prometheus_client import generate_latest

    return parse(generate_latest(registry).decode())


def test_collector_reads_cache_and_asks_for_refresh_when_stale() -> None:
    now = [100.0]
    asked: list[int] = []
    sample = {
        "devices": [
            {
                "index": 0,
                "name": "Tesla T4",
                "uuid": "GPU-1",
                "pci_bus_id": "00000000:00:04.0",
                "lost": False,
                "memory": {
                    "total": 16 * 1024 * MiB,
                    "used": 3 * MiB + 5,
                    "free": 10 * MiB,
                    "reserved": None,
                },
                "utilization": {"gpu": 5, "memory": None},
                "temperature_c": None,
                "power_w": 9.5,
                "clocks_mhz": None,
                "fan_percent": None,
            },
            {"index": 1, "name": "Tesla T4", "uuid": "GPU-2", "lost": True, "memory": None},
        ]
    }
    collector = ColabCollector(
        gpu_latest=lambda: (99.5, sample),
        refresh=lambda: asked.append(1),
        supervisor=lambda: Sup("ready", 3),  # type: ignore[arg-type, return-value]
        max_age=1.0,
        clock=lambda: now[0],
    )
    metrics = collect(collector)
    assert asked == []  # 0.5 s old: fresh enough
    assert metrics["colab_tunnel_up"][0].value == 1
    assert metrics["colab_tunnel_restarts"][0].value == 3
    assert [s.value for s in metrics["DCGM_FI_DEV_FB_USED"]] == [3]  # MiB, lost GPU skipped
    assert "DCGM_FI_DEV_GPU_TEMP" not in metrics  # null field: no sample, not a 0
    assert "DCGM_FI_DEV_SM_CLOCK" not in metrics
    assert metrics["colab_gpu_sample_age_seconds"][0].value == pytest.approx(0.5)
    now[0] = 102.0
    collect(collector)
    assert asked == [1]
    # A newer sample replaces the families built from the old one.
    sample["devices"][0]["memory"]["used"] = 7 * MiB
    collector._gpu_latest = lambda: (101.9, sample)
    assert [s.value for s in collect(collector)["DCGM_FI_DEV_FB_USED"]] == [7]


def test_collector_without_sample_or_supervisor() -> None:
    asked: list[int] = []
    collector = ColabCollector(lambda: None, lambda: asked.append(1), lambda: None, 1.0)
    metrics = collect(collector)
    assert set(metrics) == {"colab_tunnel_up", "colab_tunnel_restarts"}
    assert metrics["colab_tunnel_up"][0].value == 0
    assert asked == [1]


def test_a_series_whose_value_did_not_change_is_not_built_again() -> None:
    # A scrape runs on the event loop: unchanged series are the same family objects.
    sup = Sup("ready", 2)
    stats = FilesStats()
    life = {"uptime_seconds": 50.0, "idle_seconds": 3.0}
    collector = ColabCollector(
        gpu_latest=lambda: None,
        refresh=lambda: None,
        supervisor=lambda: sup,  # type: ignore[arg-type, return-value]
        max_age=1.0,
        files=lambda: stats,
        life=lambda: life,
    )
    first = {f.name: f for f in collector.collect()}
    second = {f.name: f for f in collector.collect()}
    assert set(first) == {
        "colab_tunnel_up",
        "colab_tunnel_restarts",
        "colab_uptime_seconds",
        "colab_idle_seconds",
        "colab_files_received_bytes",
        "colab_files_sent_bytes",
        "colab_files_uploads",
    }
    assert all(second[name] is first[name] for name in first)
    # A changed value is a new family with the new value; the others stay as they were.
    sup.restarts_total = 3
    stats.bytes_sent = 10
    life = {"uptime_seconds": 51.0, "idle_seconds": 3.0}
    third = {f.name: f for f in collector.collect()}
    changed = {name for name in first if third[name] is not first[name]}
    assert changed == {"colab_tunnel_restarts", "colab_files_sent_bytes", "colab_uptime_seconds"}
    assert third["colab_tunnel_restarts"].samples[0].value == 3
    assert third["colab_files_sent_bytes"].samples[0].value == 10
    assert third["colab_uptime_seconds"].samples[0].value == 51
    metrics = collect(collector)  # and what a scrape renders reads the same
    assert [(s.name, s.value) for s in metrics["colab_tunnel_restarts"]] == [
        ("colab_tunnel_restarts_total", 3)
    ]
    assert metrics["colab_idle_seconds"][0].value == 3


async def test_the_life_series_are_the_status_life_values(colab_app: Any) -> None:
    # /metrics reads only the two figures it shows, not the whole `life` section.
    for now in (time.time(), time.time() + 12.34):
        life = colab_app.life.snapshot(now)
        assert colab_app.life.seconds(now) == {
            "uptime_seconds": life["uptime_seconds"],
            "idle_seconds": life["idle_seconds"],
        }
    await colab_app.life.life()  # the machine's start read: uptime is a number from now on
    now = time.time()
    seconds = colab_app.life.seconds(now)
    assert seconds["uptime_seconds"] == colab_app.life.snapshot(now)["uptime_seconds"] > 0


async def test_hook_registers_while_the_server_runs() -> None:
    from prometheus_client import generate_latest

    registry = CollectorRegistry()

    async def nothing() -> None:
        pass

    def gauges() -> int:
        return generate_latest(registry).decode().count("# TYPE colab_tunnel_up gauge")

    first = MetricsHook(lambda: None, nothing, lambda: None, 1.0, registry)
    first.register()  # the extension started
    assert gauges() == 1
    first.unregister()  # the extension stopped
    first.unregister()  # a second stop changes nothing
    assert gauges() == 0
    second = MetricsHook(lambda: None, nothing, lambda: None, 1.0, registry)
    second.register()  # a server started again in the same process
    assert gauges() == 1
    second.unregister()
    assert gauges() == 0


async def test_sampler_latest_is_the_newest_cached_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_colab_tunnel.gpu import GpuSampler, NvmlReader

    fake = install(monkeypatch, [FakeGpu.t4()])
    sampler = GpuSampler(NvmlReader(), cache_ttl=0)
    try:
        assert sampler.latest() is None
        without = await sampler.get(processes=False)
        taken, sample = sampler.latest()  # type: ignore[misc]
        assert sample == without  # get() hands out a view of the cached sample
        with_processes = await sampler.get(processes=True)
        calls = sum(fake.calls.values())
        newest = sampler.latest()
        assert newest is not None
        assert newest[1] is with_processes
        assert newest[0] >= taken
        assert sum(fake.calls.values()) == calls  # latest() never calls NVML
    finally:
        await sampler.close()
    assert sampler.latest() is None  # closed: no GPU series from a stale sample
