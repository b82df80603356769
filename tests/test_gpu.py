"""NVML reader and sampler: the real path of this machine (GPU or not), then a patched pynvml."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pynvml
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from extension_start import run_started
from real_nvml import DEVICE_KEYS, REAL, SAMPLE_KEYS, assert_real_sample, real_summary

from jupyter_colab_tunnel.gpu import GpuSampler, NvmlReader, NvmlThread, summary
from jupyter_colab_tunnel.gpu.__main__ import main as smoke_check
from jupyter_colab_tunnel.problems import HINTS
from testkit.fake_nvml import ERROR_KEYS, FakeGpu, FakeNvml, FakeProcess, MiB, install

REPO = Path(__file__).resolve().parent.parent


def missing_pid() -> int:
    """A PID that no local process has (NVML can report host PIDs inside a container)."""
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid += 1
    return pid


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Wrap pynvml.<name> (real or fake) so the test can count calls; delegates to it."""
    original = getattr(pynvml, name)
    calls: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pynvml, name, wrapper)
    return calls


def samples_read(fake: FakeNvml) -> int:
    """Samples that reached the (fake) driver: each one asks for the device count once."""
    return fake.calls["nvmlDeviceGetCount"]


# --- the real library of this machine: no GPU (the classified error) or its GPUs ------------


def test_real_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    shutdowns = counting(monkeypatch, "nvmlShutdown")
    reader = NvmlReader()
    assert_real_sample(reader.sample())
    assert_real_sample(reader.sample(processes=False), processes=False)
    reader.shutdown()
    reader.shutdown()
    # Released once, and only where it was taken.
    assert len(shutdowns) == (1 if REAL.driver else 0)


def test_real_init_retried_at_most_every_interval(
    monkeypatch: pytest.MonkeyPatch, hand_clock: Any
) -> None:
    inits = counting(monkeypatch, "nvmlInit")
    clock = hand_clock
    reader = NvmlReader(clock=clock)
    assert reader.retry_interval == 30.0
    first = reader.sample()
    second = reader.sample(processes=False)
    assert len(inits) == 1  # a failure is remembered for 30 s; a success is kept
    assert second["error"] == first["error"]
    clock.advance(29.9)
    reader.sample()
    assert len(inits) == 1
    clock.advance(0.2)
    assert_real_sample(reader.sample())
    assert len(inits) == (1 if REAL.driver else 2)
    reader.shutdown()


def test_real_retry_interval_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    inits = counting(monkeypatch, "nvmlInit")
    reader = NvmlReader(retry_interval=0)
    for _ in range(3):
        assert_real_sample(reader.sample())
    assert len(inits) == (1 if REAL.driver else 3)
    reader.shutdown()


def test_real_default_clock_within_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    inits = counting(monkeypatch, "nvmlInit")
    reader = NvmlReader()
    reader.sample()
    reader.sample()
    assert len(inits) == 1
    reader.shutdown()


def test_real_tpu_runtime() -> None:
    reader = NvmlReader(tpu_type="v5e-1")
    sample = reader.sample()
    reader.shutdown()
    if REAL.driver:  # NVML works: the GPUs are reported, whatever the runtime claims
        assert_real_sample(sample)
        return
    assert sample["available"] is False
    assert sample["devices"] == []
    error = sample["error"]
    assert error["kind"] == "tpu_runtime"
    assert error["message"] == "This is a TPU runtime (v5e-1): NVIDIA GPUs are not available"
    assert error["hint"] == HINTS["tpu_runtime"]


@pytest.mark.e2e
def test_real_cli_subprocess() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for args in ([], ["--no-processes"]):
        proc = subprocess.run(
            [sys.executable, "-m", "jupyter_colab_tunnel.gpu", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""  # no runpy warning, no traceback
        assert_real_sample(json.loads(proc.stdout), processes=not args)
        assert proc.stdout.startswith('{\n  "available"')  # indent 2


def test_real_sampler() -> None:
    async def run() -> list[dict[str, Any]]:
        sampler = GpuSampler(NvmlReader(), cache_ttl=0)
        try:
            return [await sampler.get(), await sampler.get(processes=False)]
        finally:
            await sampler.close()

    full, lean = asyncio.run(run())
    assert_real_sample(full)
    assert_real_sample(lean, processes=False)


def test_real_summary() -> None:
    reader = NvmlReader()
    sample = reader.sample()
    reader.shutdown()
    out = summary(sample)
    assert {key: out[key] for key in ("available", "count", "error")} == real_summary()
    assert out["names"] == [device["name"] for device in sample["devices"]]
    assert (out["memory_total"] > 0) is (REAL.count > 0)


@pytest.mark.e2e
def test_server_start_up_imports_neither_pynvml_nor_psutil(tmp_path: Path) -> None:
    """A meta-path hook sees every import attempted while a real ServerApp loads the extension."""
    before = """
        attempted = []

        class Watch:
            def find_spec(self, name, path=None, target=None):
                top = name.split(".")[0]
                if top in {"pynvml", "psutil"}:
                    attempted.append(top)
                return None

        sys.meta_path.insert(0, Watch())
        """
    after = """
        print("start-up:", sorted(set(attempted)))
        import jupyter_colab_tunnel.gpu.reader  # the hook does see them: NVML's reader needs both
        print("gpu reader:", sorted(set(attempted)))
        """
    assert run_started(tmp_path, before, after) == [
        "start-up: []",
        "gpu reader: ['psutil', 'pynvml']",
    ]


def test_main_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch, [FakeGpu.t4(processes=[FakeProcess(os.getpid())])])
    assert smoke_check(["--no-processes"]) == 0
    sample = json.loads(capsys.readouterr().out)
    assert sample["available"] is True
    assert sample["devices"][0]["processes"] is None
    assert fake.shutdown_calls == 1
    assert fake.refcount == 0


# --- a patched pynvml -----------------------------------------------------------------------


def test_full_device(monkeypatch: pytest.MonkeyPatch) -> None:
    me = os.getpid()
    gone = missing_pid()
    t4 = FakeGpu.t4(
        processes=[FakeProcess(me, 300 * MiB), FakeProcess(gone, None)],
        graphics_processes=[FakeProcess(me, 300 * MiB)],  # same pid: listed once
    )
    install(monkeypatch, [t4])
    sample = NvmlReader().sample()
    assert set(sample) == SAMPLE_KEYS
    assert sample["available"] is True
    assert sample["count"] == 1
    assert sample["driver_version"] == "550.54.15"
    assert sample["cuda_driver_version"] == "12.4"
    assert sample["error"] is None
    (device,) = sample["devices"]
    assert set(device) == DEVICE_KEYS
    assert device == {
        "index": 0,
        "name": "Tesla T4",
        "uuid": t4.uuid,
        "pci_bus_id": "00000000:00:04.0",
        "lost": False,
        "memory": {
            "total": 15360 * MiB,
            "used": 1024 * MiB,
            "free": (15360 - 1024 - 256) * MiB,
            "reserved": 256 * MiB,
        },
        "utilization": {"gpu": 12, "memory": 5},
        "temperature_c": 40,
        "power_w": 9.5,
        "power_limit_w": 70.0,
        "fan_percent": None,  # fanless: NotSupported
        "clocks_mhz": {"sm": 585, "memory": 5000},
        "mig_mode": {"current": False, "pending": False},
        "processes": [
            {"pid": me, "name": psutil.Process().name(), "used_memory": 300 * MiB},
            {"pid": gone, "name": None, "used_memory": None},
        ],
    }
    json.dumps(sample)


def test_several_devices_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    old_driver = FakeGpu(
        name="Tesla P100-PCIE-16GB",
        uuid="GPU-p100",
        pci_bus_id="00000000:00:07.0",
        errors={
            "memory_v2": pynvml.NVMLError_FunctionNotFound,
            "temperature_v": pynvml.NVMLError_FunctionNotFound,
            "mig_mode": pynvml.NVMLError_NotSupported,
            "compute_processes": pynvml.NVMLLibraryMismatchError,
            "graphics_processes": pynvml.NVMLLibraryMismatchError,
        },
        processes=[FakeProcess(os.getpid(), 64 * MiB)],
    )
    fake = install(
        monkeypatch,
        [FakeGpu.t4(), FakeGpu.a100_mig(), FakeGpu(lost=True), old_driver],
    )
    sample = NvmlReader().sample()
    assert sample["available"] is True
    assert sample["count"] == 4
    t4, a100, lost, p100 = sample["devices"]
    assert [d["index"] for d in sample["devices"]] == [0, 1, 2, 3]
    for device in sample["devices"]:
        assert set(device) == DEVICE_KEYS

    assert t4["fan_percent"] is None
    assert t4["temperature_c"] == 40

    assert a100["name"] == "NVIDIA A100-SXM4-40GB"
    assert a100["utilization"] == {"gpu": None, "memory": None}
    assert a100["mig_mode"] == {"current": True, "pending": True}
    assert a100["memory"]["total"] == 40960 * MiB
    assert a100["power_w"] == 52.0

    # Lost before it was ever read: nothing known but its index.
    assert lost["lost"] is True
    assert lost["name"] is None
    assert lost["memory"] is None
    assert lost["processes"] is None

    # Old driver: v1 memory (used includes reserved, reserved unknown), plain temperature,
    # _v2 process calls after NVMLLibraryMismatchError.
    assert p100["lost"] is False
    assert p100["memory"] == {
        "total": 15360 * MiB,
        "used": (1024 + 256) * MiB,
        "free": (15360 - 1024 - 256) * MiB,
        "reserved": None,
    }
    assert p100["temperature_c"] == 40
    assert p100["mig_mode"] is None
    assert p100["processes"] == [
        {"pid": os.getpid(), "name": psutil.Process().name(), "used_memory": 64 * MiB}
    ]
    assert fake.calls["nvmlDeviceGetTemperature"] == 1  # only the old-driver device
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 1


def test_library_mismatch_without_fallback_nulls_processes_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    device = FakeGpu(
        errors={
            "compute_processes": pynvml.NVMLLibraryMismatchError,
            "compute_processes_v2": pynvml.NVMLError_FunctionNotFound,
            "graphics_processes": pynvml.NVMLLibraryMismatchError("no _v3 symbol"),
            "graphics_processes_v2": pynvml.NVMLError_NotSupported,
        }
    )
    install(monkeypatch, [device])
    (out,) = NvmlReader().sample()["devices"]
    assert out["processes"] is None
    assert out["memory"]["total"] == device.memory_total
    assert out["fan_percent"] == 30


def test_processes_in_container_are_not_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    device = FakeGpu(
        errors={
            key: pynvml.NVMLError_NoPermission
            for key in ("compute_processes", "graphics_processes")
        }
        | {"compute_processes_v2": pynvml.NVMLError_NoPermission}
        | {"graphics_processes_v2": pynvml.NVMLError_NoPermission}
    )
    install(monkeypatch, [device])
    (out,) = NvmlReader().sample()["devices"]
    assert out["processes"] is None
    assert out["temperature_c"] == 40


def test_every_field_failing_keeps_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    identity = ("handle", "name", "uuid", "pci_info")
    broken = {key: pynvml.NVMLError_Unknown for key in ERROR_KEYS if key not in identity}
    install(monkeypatch, [FakeGpu(errors=broken), FakeGpu(name="fine")])
    sample = NvmlReader().sample()
    bad, fine = sample["devices"]
    assert bad == {
        "index": 0,
        "name": "Tesla T4",
        "uuid": FakeGpu().uuid,
        "pci_bus_id": "00000000:00:04.0",
        "lost": False,
        "memory": {"total": None, "used": None, "free": None, "reserved": None},
        "utilization": {"gpu": None, "memory": None},
        "temperature_c": None,
        "power_w": None,
        "power_limit_w": None,
        "fan_percent": None,
        "clocks_mhz": {"sm": None, "memory": None},
        "mig_mode": None,
        "processes": None,
    }
    assert fine["name"] == "fine"
    assert fine["power_w"] == 9.5


def test_identity_failure_and_handle_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(
        monkeypatch,
        [
            FakeGpu(
                errors={"name": pynvml.NVMLError_Unknown, "pci_info": pynvml.NVMLError_Unknown}
            ),
            FakeGpu(errors={"handle": pynvml.NVMLError_Unknown}),
        ],
    )
    reader = NvmlReader()
    first, no_handle = reader.sample()["devices"]
    assert first["name"] is None
    assert first["pci_bus_id"] is None
    assert first["uuid"]
    assert first["temperature_c"] == 40
    assert no_handle["lost"] is False
    assert no_handle["memory"] is None
    # Identity is re-read only where it failed; failed handles are retried.
    fake.devices[0].errors.clear()
    fake.devices[1].errors.clear()
    first, second = reader.sample()["devices"]
    assert first["name"] == "Tesla T4"
    assert first["pci_bus_id"] == "00000000:00:04.0"
    assert second["memory"]["total"] == FakeGpu().memory_total
    assert fake.calls["nvmlDeviceGetUUID"] == 2  # once per device, never again
    reader.sample()
    assert fake.calls["nvmlDeviceGetName"] == 3
    assert fake.calls["nvmlDeviceGetHandleByIndex"] == 3


def test_gpu_lost_after_being_seen_keeps_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu.t4(), FakeGpu.a100_mig()])
    reader = NvmlReader()
    assert reader.sample()["devices"][1]["lost"] is False
    fake.devices[1].lost = True
    t4, a100 = reader.sample()["devices"]
    assert t4["lost"] is False
    assert t4["memory"]["total"] == FakeGpu().memory_total
    assert a100["lost"] is True
    assert a100["name"] == "NVIDIA A100-SXM4-40GB"
    assert a100["uuid"] == "GPU-a100a100-0000-4a1b-9c3d-000000000001"
    assert a100["pci_bus_id"] == "00000000:00:05.0"
    assert all(
        a100[key] is None for key in DEVICE_KEYS - {"index", "name", "uuid", "pci_bus_id", "lost"}
    )


def test_gpu_lost_on_a_later_field(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, [FakeGpu(errors={"power": pynvml.NVMLError_GpuIsLost}), FakeGpu()])
    lost, ok = NvmlReader().sample()["devices"]
    assert lost["lost"] is True
    assert lost["name"] == "Tesla T4"
    assert lost["memory"] is None
    assert ok["lost"] is False
    assert ok["power_w"] == 9.5


def test_temperature_v_missing_from_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu(temperature_c=55)], missing=["nvmlDeviceGetTemperatureV"])
    assert not hasattr(pynvml, "nvmlDeviceGetTemperatureV")
    (device,) = NvmlReader().sample()["devices"]
    assert device["temperature_c"] == 55
    assert fake.calls["nvmlDeviceGetTemperature"] == 1


def test_new_driver_uses_new_calls_only(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu()])
    NvmlReader().sample()
    assert fake.calls["nvmlDeviceGetTemperature"] == 0
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 0
    assert fake.calls["nvmlDeviceGetMemoryInfo_v2"] == 1
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 0


def test_processes_false_skips_process_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu(processes=[FakeProcess(os.getpid())])])
    (device,) = NvmlReader().sample(processes=False)["devices"]
    assert device["processes"] is None
    assert not [name for name in fake.calls if "RunningProcesses" in name]


def test_bytes_driver_version_and_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, [FakeGpu()], driver_version=b"470.82.01", cuda_version=11040)
    sample = NvmlReader().sample()
    assert sample["driver_version"] == "470.82.01"
    assert sample["cuda_driver_version"] == "11.4"


def test_no_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, [])
    sample = NvmlReader().sample()
    assert sample["available"] is False
    assert sample["count"] == 0
    assert sample["driver_version"] == "550.54.15"
    assert sample["error"]["kind"] == "no_devices"
    assert sample["error"]["hint"]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (pynvml.NVMLError_LibraryNotFound, "no_library"),
        (pynvml.NVMLError_DriverNotLoaded, "driver_not_loaded"),
        (pynvml.NVMLError_NoPermission, "no_permission"),
        (pynvml.NVMLError_LibRmVersionMismatch, "version_mismatch"),
        (pynvml.NVMLError_Unknown, "unknown"),
        (pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN), "unknown"),
        (OSError, "unknown"),
    ],
)
def test_init_failure_kinds(monkeypatch: pytest.MonkeyPatch, error: Any, kind: str) -> None:
    fake = install(monkeypatch, [FakeGpu()])
    fake.init_error = error
    sample = NvmlReader().sample()
    assert sample["available"] is False
    assert sample["devices"] == []
    assert sample["driver_version"] is None
    assert sample["error"]["kind"] == kind
    assert sample["error"]["message"]
    assert sample["error"]["hint"] == HINTS[kind]
    if isinstance(error, type) and issubclass(error, pynvml.NVMLError):
        assert sample["error"]["message"] == str(error())
    # On a TPU machine any init failure reads as "this is a TPU".
    assert NvmlReader(tpu_type="v2-8").sample()["error"]["kind"] == "tpu_runtime"


def test_driver_loads_later(monkeypatch: pytest.MonkeyPatch, hand_clock: Any) -> None:
    fake = install(monkeypatch, [FakeGpu.t4()])
    fake.init_error = pynvml.NVMLError_DriverNotLoaded
    clock = hand_clock
    reader = NvmlReader(clock=clock)
    assert reader.sample()["error"]["kind"] == "driver_not_loaded"
    fake.init_error = None
    assert reader.sample()["error"]["kind"] == "driver_not_loaded"  # still within 30 s
    assert fake.init_calls == 1
    clock.advance(30)
    sample = reader.sample()
    assert sample["available"] is True
    assert sample["error"] is None
    assert fake.init_calls == 2


def test_count_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu()])
    fake.count_error = pynvml.NVMLError_Unknown
    sample = NvmlReader().sample()
    assert sample["available"] is False
    assert sample["error"]["kind"] == "unknown"
    assert sample["driver_version"] == "550.54.15"


def test_init_once_handles_cached_shutdown_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu(), FakeGpu()])
    reader = NvmlReader()
    threads = [threading.Thread(target=reader.sample) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reader.sample()
    assert fake.init_calls == 1
    assert fake.calls["nvmlDeviceGetHandleByIndex"] == 2
    assert fake.calls["nvmlSystemGetDriverVersion"] == 1
    assert fake.refcount == 1
    reader.shutdown()
    reader.shutdown()
    assert fake.shutdown_calls == 1
    assert fake.refcount == 0
    # A later sample initialises again (and releases nothing it did not take).
    assert reader.sample()["available"] is True
    assert fake.init_calls == 2


def test_unexpected_exception_never_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, [FakeGpu()])

    def boom() -> int:
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", boom)
    sample = NvmlReader().sample()
    assert sample["available"] is False
    assert sample["error"]["kind"] == "unknown"
    assert sample["error"]["message"] == "driver exploded"


def test_per_call_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu()], per_call_delay=0.002)
    start = time.perf_counter()
    NvmlReader().sample(processes=False)
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.002 * sum(fake.calls.values()) * 0.9


def test_hung_fake_blocks_device_calls_until_the_block_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = install(monkeypatch, [FakeGpu()])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with fake.hung():
            sampling = pool.submit(NvmlReader().sample, processes=False)
            fake.wait_called()
            time.sleep(0.02)
            assert not sampling.done()  # stuck in its first device call
            assert sum(fake.calls.values()) == 1
        assert sampling.result(timeout=5)["available"] is True


def test_fake_rejects_unknown_error_keys() -> None:
    with pytest.raises(ValueError, match="unknown error keys"):
        FakeGpu(errors={"fan_speed": pynvml.NVMLError_NotSupported})


# --- GpuSampler -----------------------------------------------------------------------------


def test_sampler_shares_one_in_flight_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu.t4(), FakeGpu.a100_mig()])

    async def main() -> list[dict[str, Any]]:
        sampler = GpuSampler(NvmlReader(), cache_ttl=0)
        with fake.hung():
            first = asyncio.ensure_future(sampler.get())
            await fake.called()  # the first caller's sample is in flight
            later = [asyncio.ensure_future(sampler.get()) for _ in range(19)]
            await asyncio.sleep(0.01)
            assert not any(task.done() for task in [first, *later])
        results = await asyncio.gather(first, *later)
        await sampler.close()
        return results

    results = asyncio.run(main())
    assert fake.init_calls == 1
    assert samples_read(fake) == 1
    assert all(r == results[0] for r in results)
    assert results[0]["count"] == 2
    assert fake.shutdown_calls == 1


def test_sampler_ttl(monkeypatch: pytest.MonkeyPatch, hand_clock: Any) -> None:
    fake = install(monkeypatch, [FakeGpu()])

    async def main() -> list[int]:
        sampler = GpuSampler(NvmlReader(), cache_ttl=60, clock=hand_clock)
        taken = []
        first = await sampler.get()
        hand_clock.advance(59)
        assert await sampler.get() is first
        taken.append(samples_read(fake))  # reused within the TTL
        hand_clock.advance(1)
        third = await sampler.get()
        assert third is not first
        taken.append(samples_read(fake))  # new sample once the TTL is over
        assert await sampler.get() is third
        sampler.cache_ttl = 0
        await sampler.get()
        await sampler.get()
        taken.append(samples_read(fake))  # TTL 0: always fresh
        await sampler.close()
        return taken

    assert asyncio.run(main()) == [1, 2, 4]


def test_sampler_processes_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu(processes=[FakeProcess(os.getpid())])])

    async def main() -> None:
        sampler = GpuSampler(NvmlReader(), cache_ttl=60)
        # A sample with processes serves processes=False callers, in flight and cached.
        with fake.hung():
            callers = [
                asyncio.ensure_future(sampler.get()),
                asyncio.ensure_future(sampler.get(processes=False)),
                asyncio.ensure_future(sampler.get(processes=False)),
            ]
            await fake.called()
        with_p, without_p, without_p2 = await asyncio.gather(*callers)
        assert samples_read(fake) == 1
        assert with_p["devices"][0]["processes"][0]["pid"] == os.getpid()
        assert without_p["devices"][0]["processes"] is None
        assert without_p2["devices"][0]["processes"] is None
        assert (await sampler.get(processes=False))["devices"][0]["processes"] is None
        assert samples_read(fake) == 1
        await sampler.close()

        # A sample without processes never serves a caller that wants them.
        sampler = GpuSampler(NvmlReader(), cache_ttl=60)
        await sampler.get(processes=False)
        # Only the first sampler's sample queried processes.
        assert fake.calls["nvmlDeviceGetComputeRunningProcesses"] == 1
        assert (await sampler.get())["devices"][0]["processes"] is not None
        assert samples_read(fake) == 3  # one by the first sampler, two by this one
        await sampler.close()

    asyncio.run(main())


def test_sampler_runs_nvml_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu()])

    async def main() -> int:
        sampler = GpuSampler(NvmlReader(), cache_ttl=0)
        await sampler.get()
        await sampler.close()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert fake.threads  # the fake did run
    assert loop_thread not in fake.threads
    assert fake.shutdown_calls == 1


def test_sampler_with_given_executor_and_hung_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu()] * 2)

    async def main() -> float:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            sampler = GpuSampler(NvmlReader(), cache_ttl=0, executor=pool)
            with fake.hung():
                task = asyncio.ensure_future(sampler.get())
                await fake.called()  # the sample is stuck in the driver, on the pool
                # The loop stays responsive meanwhile.
                start = time.perf_counter()
                await asyncio.sleep(0.01)
                lag = time.perf_counter() - start - 0.01
                assert not task.done()
            assert (await task)["available"] is True
            await sampler.close()
        return lag

    assert asyncio.run(main()) < 0.15
    assert threading.get_ident() not in fake.threads


def test_sampler_cancelled_caller_does_not_cancel_others(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu()])

    async def main() -> None:
        sampler = GpuSampler(NvmlReader(), cache_ttl=0)
        with fake.hung():
            first = asyncio.ensure_future(sampler.get())
            second = asyncio.ensure_future(sampler.get())
            await fake.called()  # both wait on the one sample in flight
            first.cancel()
            await asyncio.sleep(0)
        result = await second
        assert result["available"] is True
        assert first.cancelled()
        assert samples_read(fake) == 1
        await sampler.close()

    asyncio.run(main())


def test_sampler_shares_one_sample_and_views_without_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = install(monkeypatch, [FakeGpu(processes=[FakeProcess(1)])])

    async def main() -> None:
        sampler = GpuSampler(NvmlReader(), cache_ttl=60)
        first = await sampler.get()
        # No per-request deep copy: callers share the (read-only) sample.
        assert await sampler.get() is first
        view = await sampler.get(processes=False)
        assert view["devices"][0]["processes"] is None
        assert first["devices"][0]["processes"][0]["pid"] == 1  # the shared sample is untouched
        assert samples_read(fake) == 1
        await sampler.close()

    asyncio.run(main())


def test_close_does_not_wait_for_a_hung_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu()] * 2)
    monkeypatch.setattr(GpuSampler, "CLOSE_TIMEOUT", 0.1)  # the bound, shortened for speed
    before = nvml_threads()

    async def main() -> float:
        sampler = GpuSampler(NvmlReader(), cache_ttl=0)
        with fake.hung():
            sampling = asyncio.ensure_future(sampler.get())
            await fake.called()  # the sample is now stuck on the NVML thread
            t0 = time.monotonic()
            await sampler.close()
            elapsed = time.monotonic() - t0
            sampling.cancel()
        return elapsed

    elapsed = asyncio.run(main())
    # The driver never answers while close runs; close gives up after CLOSE_TIMEOUT.
    assert 0.1 <= elapsed < 0.1 + 0.5
    # Once the driver answers, the thread finishes its work and ends (before this test's
    # stand-in is taken away).
    for thread in nvml_threads() - before:
        thread.join(5)
        assert not thread.is_alive()
    assert fake.shutdown_calls == 1
    assert fake.refcount == 0


# --- after close(): the server is shutting down ---------------------------------------------


def assert_shutting_down(sample: dict[str, Any]) -> None:
    assert set(sample) == SAMPLE_KEYS
    assert sample["available"] is False
    assert sample["count"] == 0
    assert sample["devices"] == []
    assert sample["error"]["kind"] == "shutting_down"
    assert sample["error"]["message"]
    assert sample["error"]["hint"] == HINTS["shutting_down"]
    assert summary(sample)["error"] == "shutting_down"


def test_get_after_close_answers_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: the closed NVML thread used to accept the read and never run it.
    fake = install(monkeypatch, [FakeGpu.t4()])

    async def main() -> list[dict[str, Any]]:
        sampler = GpuSampler(NvmlReader(), cache_ttl=0)
        assert (await sampler.get())["available"] is True
        await sampler.close()
        await sampler.close()  # jupyter_server may stop an extension twice
        return [await asyncio.wait_for(sampler.get(processes=flag), 5) for flag in (True, False)]

    for sample in asyncio.run(main()):
        assert_shutting_down(sample)
    assert samples_read(fake) == 1  # nothing reached NVML after close
    assert fake.shutdown_calls == 1
    assert fake.refcount == 0


def test_read_queued_behind_close_does_not_start_nvml_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = install(monkeypatch, [FakeGpu.t4()])

    async def main() -> dict[str, Any]:
        sampler = GpuSampler(NvmlReader(), cache_ttl=0)
        getting = asyncio.ensure_future(sampler.get())
        await asyncio.sleep(0)  # get() is past its check; its read is scheduled, not submitted
        await sampler.close()  # close's NVML shutdown is queued first, the read after it
        return await asyncio.wait_for(getting, 5)

    assert_shutting_down(asyncio.run(main()))
    assert fake.init_calls == 0
    assert samples_read(fake) == 0


def test_close_with_given_executor_leaves_it_running(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu.t4()])

    async def main(pool: concurrent.futures.Executor) -> dict[str, Any]:
        sampler = GpuSampler(NvmlReader(), cache_ttl=0, executor=pool)
        await sampler.get()
        await sampler.close()
        return await asyncio.wait_for(sampler.get(), 5)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert_shutting_down(asyncio.run(main(pool)))
        assert pool.submit(lambda: 42).result(timeout=5) == 42  # the owner's, not ours to stop
    assert fake.refcount == 0


def nvml_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "nvml"}


def test_nvml_thread_refuses_work_after_shutdown() -> None:
    before = nvml_threads()
    executor = NvmlThread()
    assert len(nvml_threads() - before) == 1
    assert executor.submit(pow, 2, 10).result(timeout=5) == 1024
    executor.shutdown(wait=True)
    executor.shutdown()  # idempotent
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(pow, 2, 3)
    assert nvml_threads() <= before  # its thread has ended


def test_nvml_thread_runs_queued_work_then_stops_or_cancels_it() -> None:
    for cancel in (False, True):
        executor = NvmlThread()
        gate = threading.Event()
        blocking = executor.submit(gate.wait, 5)
        while not blocking.running():  # on the thread now, so only `queued` waits in the queue
            time.sleep(0.001)
        queued = executor.submit(pow, 3, 2)
        executor.shutdown(wait=False, cancel_futures=cancel)
        gate.set()
        assert blocking.result(timeout=5) is True
        if cancel:
            assert queued.cancelled()
        else:
            assert queued.result(timeout=5) == 9
        executor.shutdown(wait=True)


def test_nvml_thread_passes_exceptions_back() -> None:
    executor = NvmlThread()
    try:
        with pytest.raises(ZeroDivisionError):
            executor.submit(divmod, 1, 0).result(timeout=5)
        assert executor.submit(divmod, 7, 2).result(timeout=5) == (3, 1)
    finally:
        executor.shutdown()


# --- summary --------------------------------------------------------------------------------


def test_summary_sums_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(
        monkeypatch,
        [
            FakeGpu.t4(),
            FakeGpu.a100_mig(),
            FakeGpu(),
            FakeGpu(
                errors={
                    "memory_v2": pynvml.NVMLError_Unknown,
                    "memory_v1": pynvml.NVMLError_Unknown,
                }
            ),
        ],
    )
    fake.devices[2].lost = True
    out = summary(NvmlReader().sample())
    assert out == {
        "available": True,
        "count": 4,
        "names": ["Tesla T4", "NVIDIA A100-SXM4-40GB", None, "Tesla T4"],
        "memory_total": (15360 + 40960) * MiB,
        "memory_used": 1024 * MiB,
        "error": None,
    }


def test_fake_is_a_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [FakeGpu()])
    assert isinstance(fake, FakeNvml)
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()
