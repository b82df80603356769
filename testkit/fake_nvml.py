"""A stand-in for NVML: replaces pynvml's functions with ones that read `FakeGpu` objects.

No NVML mock exists on PyPI; like gpustat's tests, this patches the `pynvml` module functions
(the boundary `jupyter_colab_tunnel.gpu` calls through). Usage::

    fake = fake_nvml.install(monkeypatch, [FakeGpu.t4(), FakeGpu.a100_mig()])
    fake.devices[0].errors["power"] = pynvml.NVMLError_NotSupported
    fake.init_error = pynvml.NVMLError_DriverNotLoaded

Error keys (`FakeGpu.errors`, value: an exception class or instance): see `ERROR_KEYS`.
Calls behave like NVML's: before `nvmlInit` (or after the last `nvmlShutdown`) they raise
NVMLError_Uninitialized; a `lost` GPU raises NVMLError_GpuIsLost on every call.

A hung driver, for tests of what must not wait for NVML::

    with fake.hung():
        ...  # start the work, then `await fake.called()`: it is now stuck in the driver
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

ERROR_KEYS = (
    "handle",
    "name",
    "uuid",
    "pci_info",
    "memory_v2",
    "memory_v1",
    "utilization",
    "temperature_v",
    "temperature",
    "power",
    "power_limit",
    "fan",
    "clock_sm",
    "clock_memory",
    "mig_mode",
    "compute_processes",
    "compute_processes_v2",
    "graphics_processes",
    "graphics_processes_v2",
)

MiB = 1024 * 1024

ErrorSpec = type[BaseException] | BaseException


@dataclass
class FakeProcess:
    pid: int
    used_memory: int | None = 100 * MiB


@dataclass
class FakeGpu:
    """One fake device. Memory in bytes, power in milliwatts (as NVML reports it)."""

    name: str = "Tesla T4"
    uuid: str = "GPU-6f2b7c1e-0000-4a1b-9c3d-000000000000"
    pci_bus_id: str = "00000000:00:04.0"
    memory_total: int = 15360 * MiB
    memory_used: int = 1024 * MiB
    memory_reserved: int = 256 * MiB
    utilization_gpu: int = 12
    utilization_memory: int = 5
    temperature_c: int = 40
    power_mw: int = 9500
    power_limit_mw: int = 70000
    fan_percent: int = 30
    clock_sm_mhz: int = 585
    clock_memory_mhz: int = 5000
    mig_mode: tuple[int, int] = (0, 0)
    processes: list[FakeProcess] = field(default_factory=list)
    graphics_processes: list[FakeProcess] = field(default_factory=list)
    errors: dict[str, ErrorSpec] = field(default_factory=dict)
    lost: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.errors) - set(ERROR_KEYS)
        if unknown:
            raise ValueError(f"unknown error keys {sorted(unknown)}; use {ERROR_KEYS}")

    @property
    def memory_free(self) -> int:
        return self.memory_total - self.memory_used - self.memory_reserved

    @classmethod
    def t4(cls, **kwargs: Any) -> FakeGpu:
        """Colab's T4: fanless, so the fan query is NotSupported."""
        kwargs.setdefault("errors", {"fan": pynvml.NVMLError_NotSupported})
        return cls(**kwargs)

    @classmethod
    def a100_mig(cls, **kwargs: Any) -> FakeGpu:
        """An A100 with MIG enabled: no utilization, no fan."""
        values: dict[str, Any] = {
            "name": "NVIDIA A100-SXM4-40GB",
            "uuid": "GPU-a100a100-0000-4a1b-9c3d-000000000001",
            "pci_bus_id": "00000000:00:05.0",
            "memory_total": 40960 * MiB,
            "memory_used": 0,
            "memory_reserved": 512 * MiB,
            "temperature_c": 33,
            "power_mw": 52000,
            "power_limit_mw": 400000,
            "clock_sm_mhz": 1410,
            "clock_memory_mhz": 1215,
            "mig_mode": (1, 1),
            "errors": {
                "fan": pynvml.NVMLError_NotSupported,
                "utilization": pynvml.NVMLError_NotSupported,
            },
        }
        values.update(kwargs)
        return cls(**values)


@dataclass(frozen=True)
class FakeHandle:
    index: int


class FakeNvml:
    """State of the fake library; `install` returns it. Counters are thread-safe."""

    def __init__(
        self,
        devices: list[FakeGpu],
        per_call_delay: float = 0.0,
        driver_version: str | bytes = "550.54.15",
        cuda_version: int = 12040,
    ) -> None:
        self.devices = devices
        self.per_call_delay = per_call_delay
        self.init_delay = 0.0
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.init_error: ErrorSpec | None = None
        self.count_error: ErrorSpec | None = None
        self.refcount = 0
        self.init_calls = 0
        self.shutdown_calls = 0
        self.calls: collections.Counter[str] = collections.Counter()
        self.threads: set[int] = set()
        self._lock = threading.Lock()
        self._running = threading.Event()  # cleared while the driver hangs
        self._running.set()
        self._called = threading.Event()  # set by the first device call

    # Long enough for any test, short enough that a test which forgets to end the hang fails
    # instead of leaving a thread behind for the rest of the run.
    HANG_LIMIT = 30.0

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        """Every device call blocks (on its NVML thread) until the block ends."""
        self._running.clear()
        try:
            yield
        finally:
            self._running.set()

    def wait_called(self, timeout: float = 10.0) -> None:
        """Block until a device call has started (inside `hung()`: until one is stuck)."""
        if not self._called.wait(timeout):
            raise AssertionError(f"no NVML device call within {timeout} s")

    async def called(self, timeout: float = 10.0) -> None:
        """`wait_called` for a coroutine: the event loop keeps running meanwhile."""
        deadline = time.monotonic() + timeout
        while not self._called.is_set():
            if time.monotonic() > deadline:
                raise AssertionError(f"no NVML device call within {timeout} s")
            await asyncio.sleep(0.001)

    # --- bookkeeping -----------------------------------------------------------------------

    def _enter(self, fn: str) -> None:
        with self._lock:
            self.calls[fn] += 1
            self.threads.add(threading.get_ident())
        self._called.set()
        if self.refcount <= 0:
            raise pynvml.NVMLError_Uninitialized()
        if not self._running.wait(self.HANG_LIMIT):
            raise RuntimeError(f"the fake driver hung for {self.HANG_LIMIT} s: end `hung()`")
        if self.per_call_delay:
            time.sleep(self.per_call_delay)

    def _device(self, fn: str, handle: FakeHandle, key: str) -> FakeGpu:
        self._enter(fn)
        if not 0 <= handle.index < len(self.devices):
            raise pynvml.NVMLError_InvalidArgument()
        gpu = self.devices[handle.index]
        if gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        spec = gpu.errors.get(key)
        if spec is not None:
            _raise(spec)
        return gpu

    # --- the library -----------------------------------------------------------------------

    def nvmlInit(self) -> None:
        with self._lock:
            self.init_calls += 1
            self.threads.add(threading.get_ident())
        if self.init_delay:
            time.sleep(self.init_delay)
        if self.init_error is not None:
            _raise(self.init_error)
        with self._lock:
            self.refcount += 1

    def nvmlShutdown(self) -> None:
        with self._lock:
            self.shutdown_calls += 1
            self.threads.add(threading.get_ident())
            if self.refcount <= 0:
                raise pynvml.NVMLError_Uninitialized()
            self.refcount -= 1

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        if self.count_error is not None:
            _raise(self.count_error)
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._device("nvmlDeviceGetHandleByIndex", FakeHandle(index), "handle")
        return FakeHandle(index)

    def nvmlDeviceGetName(self, h: FakeHandle) -> str:
        return self._device("nvmlDeviceGetName", h, "name").name

    def nvmlDeviceGetUUID(self, h: FakeHandle) -> str:
        return self._device("nvmlDeviceGetUUID", h, "uuid").uuid

    def nvmlDeviceGetPciInfo(self, h: FakeHandle) -> SimpleNamespace:
        return SimpleNamespace(busId=self._device("nvmlDeviceGetPciInfo", h, "pci_info").pci_bus_id)

    def nvmlDeviceGetMemoryInfo(self, h: FakeHandle, version: int | None = None) -> SimpleNamespace:
        if version:
            gpu = self._device("nvmlDeviceGetMemoryInfo_v2", h, "memory_v2")
            assert version == pynvml.nvmlMemory_v2
            return SimpleNamespace(
                version=version,
                total=gpu.memory_total,
                reserved=gpu.memory_reserved,
                free=gpu.memory_free,
                used=gpu.memory_used,
            )
        gpu = self._device("nvmlDeviceGetMemoryInfo", h, "memory_v1")
        # v1's `used` includes the driver-reserved memory (R510+).
        return SimpleNamespace(
            total=gpu.memory_total,
            free=gpu.memory_free,
            used=gpu.memory_used + gpu.memory_reserved,
        )

    def nvmlDeviceGetUtilizationRates(self, h: FakeHandle) -> SimpleNamespace:
        gpu = self._device("nvmlDeviceGetUtilizationRates", h, "utilization")
        return SimpleNamespace(gpu=gpu.utilization_gpu, memory=gpu.utilization_memory)

    def nvmlDeviceGetTemperatureV(self, h: FakeHandle, sensor: int, version: Any = None) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._device("nvmlDeviceGetTemperatureV", h, "temperature_v").temperature_c

    def nvmlDeviceGetTemperature(self, h: FakeHandle, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._device("nvmlDeviceGetTemperature", h, "temperature").temperature_c

    def nvmlDeviceGetPowerUsage(self, h: FakeHandle) -> int:
        return self._device("nvmlDeviceGetPowerUsage", h, "power").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeHandle) -> int:
        return self._device("nvmlDeviceGetEnforcedPowerLimit", h, "power_limit").power_limit_mw

    def nvmlDeviceGetFanSpeed(self, h: FakeHandle) -> int:
        return self._device("nvmlDeviceGetFanSpeed", h, "fan").fan_percent

    def nvmlDeviceGetClockInfo(self, h: FakeHandle, clock_type: int) -> int:
        if clock_type == pynvml.NVML_CLOCK_SM:
            return self._device("nvmlDeviceGetClockInfo", h, "clock_sm").clock_sm_mhz
        if clock_type == pynvml.NVML_CLOCK_MEM:
            return self._device("nvmlDeviceGetClockInfo", h, "clock_memory").clock_memory_mhz
        raise pynvml.NVMLError_InvalidArgument()

    def nvmlDeviceGetMigMode(self, h: FakeHandle) -> list[int]:
        return list(self._device("nvmlDeviceGetMigMode", h, "mig_mode").mig_mode)

    def _procs(self, fn: str, h: FakeHandle, key: str, graphics: bool) -> list[SimpleNamespace]:
        gpu = self._device(fn, h, key)
        return [
            SimpleNamespace(
                pid=p.pid, usedGpuMemory=p.used_memory, gpuInstanceId=0, computeInstanceId=0
            )
            for p in (gpu.graphics_processes if graphics else gpu.processes)
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeHandle) -> list[SimpleNamespace]:
        return self._procs("nvmlDeviceGetComputeRunningProcesses", h, "compute_processes", False)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, h: FakeHandle) -> list[SimpleNamespace]:
        fn = "nvmlDeviceGetComputeRunningProcesses_v2"
        return self._procs(fn, h, "compute_processes_v2", False)

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: FakeHandle) -> list[SimpleNamespace]:
        fn = "nvmlDeviceGetGraphicsRunningProcesses"
        return self._procs(fn, h, "graphics_processes", True)

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, h: FakeHandle) -> list[SimpleNamespace]:
        fn = "nvmlDeviceGetGraphicsRunningProcesses_v2"
        return self._procs(fn, h, "graphics_processes_v2", True)


PATCHED = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetTemperatureV",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetFanSpeed",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetComputeRunningProcesses_v2",
    "nvmlDeviceGetGraphicsRunningProcesses",
    "nvmlDeviceGetGraphicsRunningProcesses_v2",
)


def _raise(spec: ErrorSpec) -> None:
    if isinstance(spec, BaseException):
        raise spec
    if spec is pynvml.NVMLError:  # the base class needs an error code
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
    if issubclass(spec, pynvml.NVMLError):
        raise spec()
    raise spec(f"fake {spec.__name__}")


def install(
    monkeypatch: Any,
    devices: list[FakeGpu],
    per_call_delay: float = 0.0,
    *,
    driver_version: str | bytes = "550.54.15",
    cuda_version: int = 12040,
    missing: Iterable[str] = (),
) -> FakeNvml:
    """Patch pynvml (undone by `monkeypatch` at test end) and return the fake's state.

    `per_call_delay` sleeps in every NVML call but init/shutdown (`FakeNvml.init_delay` for
    those); `missing` deletes pynvml functions, as in an older pynvml release.
    """
    fake = FakeNvml(devices, per_call_delay, driver_version, cuda_version)
    for name in PATCHED:
        monkeypatch.setattr(pynvml, name, getattr(fake, name))
    for name in missing:
        monkeypatch.delattr(pynvml, name)
    return fake
