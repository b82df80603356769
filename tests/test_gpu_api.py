"""GET /colab/gpu and the status `gpu` section through a server, real and patched NVML."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from real_nvml import assert_real_sample, real_summary
from tornado.httpclient import HTTPClientError

from testkit.fake_nvml import FakeGpu, FakeNvml, FakeProcess, install
from testkit.waiting import until


def samples_read(fake: FakeNvml) -> int:
    """Samples that reached the (fake) driver: each one asks for the device count once."""
    return fake.calls["nvmlDeviceGetCount"]


async def get_json(jp_fetch: Any, *path: str, **kwargs: Any) -> Any:
    r = await jp_fetch(*path, **kwargs)
    assert r.code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    return json.loads(r.body)


async def test_real_path(jp_fetch: Any, colab_app: Any) -> None:
    # No patching: this machine's NVML, with or without a GPU.
    body = await get_json(jp_fetch, "colab", "gpu")
    assert_real_sample(body)
    status = await get_json(jp_fetch, "colab", "status")
    gpu = status["gpu"]
    assert {key: gpu[key] for key in ("available", "count", "error")} == real_summary()
    assert gpu["names"] == [device["name"] for device in body["devices"]]


async def test_gpu_needs_credentials(jp_fetch: Any, colab_app: Any) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("colab", "gpu", headers={"Authorization": ""})
    assert e.value.code == 403


async def test_patched_devices_and_status_summary(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    gpus = [FakeGpu.t4(processes=[FakeProcess(os.getpid())]), FakeGpu.a100_mig()]
    install(monkeypatch, gpus)
    body = await get_json(jp_fetch, "colab", "gpu")
    assert body["available"] is True
    assert body["count"] == 2
    assert body["driver_version"] == "550.54.15"
    assert body["cuda_driver_version"] == "12.4"
    t4, a100 = body["devices"]
    assert t4["fan_percent"] is None  # NotSupported on a fanless card: null, not an error
    assert t4["processes"][0]["pid"] == os.getpid()
    assert t4["processes"][0]["name"]
    assert a100["mig_mode"]["current"] is True
    assert a100["utilization"]["gpu"] is None
    status = await get_json(jp_fetch, "colab", "status")
    assert status["gpu"]["count"] == 2
    assert status["gpu"]["names"] == [t4["name"], a100["name"]]
    assert status["gpu"]["memory_total"] == gpus[0].memory_total + gpus[1].memory_total


async def test_processes_false(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch, [FakeGpu.t4(processes=[FakeProcess(1)])])
    body = await get_json(jp_fetch, "colab", "gpu", params={"processes": "false"})
    assert body["devices"][0]["processes"] is None
    assert not any("Processes" in name for name in fake.calls)
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("colab", "gpu", params={"processes": "sometimes"})
    assert e.value.code == 400


async def test_concurrent_requests_share_one_sample(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch, [FakeGpu.t4()] * 2)
    sampler = colab_app.gpu.sampler
    sampler.cache_ttl = 0.0  # no reuse: only sharing the read in flight can make it one
    waiting = 0
    get = sampler.get

    async def counted_get(processes: bool = True) -> dict[str, Any]:
        nonlocal waiting
        waiting += 1
        return await get(processes)

    monkeypatch.setattr(sampler, "get", counted_get)
    with fake.hung():
        # 8: tornado's client sends at most 10 at once; more would wait in the client.
        requests = [asyncio.ensure_future(get_json(jp_fetch, "colab", "gpu")) for _ in range(8)]
        await fake.called()  # the first request's sample is in flight
        await until(lambda: waiting == 8, "all 8 requests waiting for a sample")
        assert not any(request.done() for request in requests)
    bodies = await asyncio.gather(*requests)
    assert samples_read(fake) == 1
    assert len({b["sampled_at"] for b in bodies}) == 1


async def test_a_hung_driver_does_not_block_the_server(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch, [FakeGpu.t4()] * 4)
    colab_app.gpu.sampler.cache_ttl = 0.0
    with fake.hung():
        gpu = asyncio.ensure_future(get_json(jp_fetch, "colab", "gpu"))
        await fake.called()  # the sample is stuck in the driver, on the NVML thread
        # The server answers other requests meanwhile.
        assert (await get_json(jp_fetch, "api", "status"))["started"]
        assert not gpu.done()
    assert (await gpu)["count"] == 4


async def test_requests_during_shutdown_answer_at_once(
    jp_fetch: Any, colab_app: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: jupyter_server stops extensions before its HTTP server (and then shuts the
    # kernels down); a GPU request in that window used to wait forever on the closed NVML thread.
    fake = install(monkeypatch, [FakeGpu.t4()])
    colab_app.gpu.sampler.cache_ttl = 0.0
    assert (await get_json(jp_fetch, "colab", "gpu"))["available"] is True
    await jp_serverapp.cleanup_extensions()
    assert fake.refcount == 0  # NVML was released
    body = await asyncio.wait_for(get_json(jp_fetch, "colab", "gpu"), 10)
    assert body["available"] is False
    assert body["error"]["kind"] == "shutting_down"
    assert body["error"]["hint"]
    status = await asyncio.wait_for(get_json(jp_fetch, "colab", "status"), 10)
    assert status["gpu"]["error"] == "shutting_down"
    assert samples_read(fake) == 1


async def test_requests_after_shutdown_never_start_nvml(
    jp_fetch: Any, colab_app: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No GPU request before shutdown: the sampler was never made and must not be made now.
    fake = install(monkeypatch, [FakeGpu.t4()])
    await jp_serverapp.cleanup_extensions()
    body = await asyncio.wait_for(get_json(jp_fetch, "colab", "gpu"), 10)
    assert body["error"]["kind"] == "shutting_down"
    assert samples_read(fake) == 0
    assert fake.refcount == 0
