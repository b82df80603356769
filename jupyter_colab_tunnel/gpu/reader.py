"""`NvmlReader`: the process's NVML connection, read field by field.

* ``nvmlInit`` is expensive (dlopen + many dlsym) and reference counted, so it runs once, lazily,
  under a lock. A failed init is remembered and retried at most every `retry_interval` seconds,
  because a driver can load after the server has started.
* Every field is read on its own: an NVML error on one field (no fan on datacenter cards, no
  utilization under MIG, no processes in a container) makes that field null, never the sample.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from ..problems import Problem
from .errors import classify_init_error, exc_text
from .samples import blank_device, gpu_sample

log = logging.getLogger(__name__)

# Imported as a plain module object typed Any: pynvml ships no type stubs, and every NVML call
# below goes through an attribute lookup at call time, so tests can monkeypatch the module.
pynvml: Any
try:
    pynvml = importlib.import_module("pynvml")
except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency
    pynvml = None


class _GpuLost(Exception):
    """NVML said NVML_ERROR_GPU_IS_LOST: the device must be reset; stop reading it."""


def _soft_errors() -> tuple[type[BaseException], ...]:
    # Errors that make one field null. NVMLLibraryMismatchError is not an NVMLError subclass;
    # AttributeError covers a pynvml too old to have a function.
    errors: list[type[BaseException]] = [AttributeError]
    for name in ("NVMLError", "NVMLLibraryMismatchError"):
        cls = getattr(pynvml, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            errors.append(cls)
    return tuple(errors)


_SOFT_ERRORS = _soft_errors()


def _first(*calls: Callable[[], Any]) -> Any:
    """Result of the first call that succeeds (newest NVML API first), None if all fail.

    GpuIsLost stops everything: falling back would only query a dead device again.
    """
    lost = getattr(pynvml, "NVMLError_GpuIsLost", None)
    for call in calls:
        try:
            return call()
        except _SOFT_ERRORS as exc:
            if lost is not None and isinstance(exc, lost):
                raise _GpuLost from exc
    return None


def _text(value: Any) -> str | None:
    """NVML strings are bytes in old pynvml releases."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _watts(milliwatts: Any) -> float | None:
    return None if milliwatts is None else milliwatts / 1000.0


def _cuda_version(value: Any) -> str | None:
    """12040 -> "12.4"."""
    if not isinstance(value, int) or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def _process_name(pid: int) -> str | None:
    """Local name of `pid`, None when it is not ours to see.

    In a container NVML reports host PIDs, and a process can exit between the two calls.
    """
    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError, ValueError):
        return None


class NvmlReader:
    """The process's NVML connection: lazy init, cached handles, field-by-field reads.

    Thread-safe: a lock covers init, shutdown and each whole sample, so samples are serialised
    and `shutdown` never pulls the library out from under a running sample.
    """

    def __init__(
        self,
        tpu_type: str | None = None,
        retry_interval: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tpu_type = tpu_type
        self.retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._initialised = False
        self._init_error: Problem | None = None
        self._last_attempt: float | None = None
        self._handles: dict[int, Any] = {}
        # name/uuid/PCI bus id per index, kept so a lost GPU can still be named.
        self._identity: dict[int, dict[str, str | None]] = {}
        self._driver_version: str | None = None
        self._cuda_version: str | None = None

    def shutdown(self) -> None:
        """Release NVML (once, and only if this reader initialised it)."""
        with self._lock:
            if not self._initialised:
                return
            self._initialised = False
            self._last_attempt = None
            self._handles.clear()
            self._identity.clear()
            self._driver_version = self._cuda_version = None
            try:
                pynvml.nvmlShutdown()
            except _SOFT_ERRORS as exc:
                log.debug("nvmlShutdown failed: %s", exc_text(exc))

    def sample(self, processes: bool = True) -> dict[str, Any]:
        """Read every GPU now (blocking: call it from a thread). Never raises.

        With ``processes=False`` the per-process calls are skipped and ``processes`` is null.
        """
        with self._lock:
            try:
                return self._sample_locked(processes)
            except Exception as exc:  # a bug or an unexpected library failure: report, not raise
                log.exception("GPU sample failed")
                return gpu_sample(error=Problem("unknown", exc_text(exc)))

    def _ensure_init(self) -> Problem | None:
        """None when NVML is ready, else the (possibly remembered) init error."""
        if self._initialised:
            return None
        now = self._clock()
        if (
            self._init_error is not None
            and self._last_attempt is not None
            and now - self._last_attempt < self.retry_interval
        ):
            return self._init_error
        self._last_attempt = now
        try:
            if pynvml is None:
                raise ImportError("pynvml")
            pynvml.nvmlInit()
        except Exception as exc:  # whatever init raises must not break the server
            self._init_error = classify_init_error(exc, self.tpu_type)
            log.debug("nvmlInit failed: %s", self._init_error.message)
            return self._init_error
        self._initialised = True
        self._init_error = None
        return None

    def _sample_locked(self, processes: bool) -> dict[str, Any]:
        error = self._ensure_init()
        if error is not None:
            return gpu_sample(error=error)
        if self._driver_version is None:
            self._driver_version = _text(_first(lambda: pynvml.nvmlSystemGetDriverVersion()))
        if self._cuda_version is None:
            self._cuda_version = _cuda_version(
                _first(lambda: pynvml.nvmlSystemGetCudaDriverVersion())
            )
        driver, cuda = self._driver_version, self._cuda_version
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        except _SOFT_ERRORS as exc:
            return gpu_sample(error=classify_init_error(exc), driver=driver, cuda=cuda)
        if count <= 0:
            error = Problem("no_devices", "NVML reports no GPU")
            return gpu_sample(error=error, driver=driver, cuda=cuda)
        devices = [self._read_device(i, processes) for i in range(count)]
        return gpu_sample(error=None, driver=driver, cuda=cuda, devices=devices)

    def _handle(self, index: int) -> Any:
        handle = self._handles.get(index)
        if handle is None:
            handle = _first(lambda: pynvml.nvmlDeviceGetHandleByIndex(index))
            if handle is not None:
                self._handles[index] = handle
        return handle

    def _read_device(self, index: int, processes: bool) -> dict[str, Any]:
        identity = self._identity.setdefault(
            index, {"name": None, "uuid": None, "pci_bus_id": None}
        )
        try:
            h = self._handle(index)
            if h is None:
                return blank_device(index, identity, lost=False)
            # Identity never changes: read once, retry only what failed.
            if identity["name"] is None:
                identity["name"] = _text(_first(lambda: pynvml.nvmlDeviceGetName(h)))
            if identity["uuid"] is None:
                identity["uuid"] = _text(_first(lambda: pynvml.nvmlDeviceGetUUID(h)))
            if identity["pci_bus_id"] is None:
                pci = _first(lambda: pynvml.nvmlDeviceGetPciInfo(h))
                identity["pci_bus_id"] = _text(getattr(pci, "busId", None))

            util = _first(lambda: pynvml.nvmlDeviceGetUtilizationRates(h))
            mig = _first(lambda: pynvml.nvmlDeviceGetMigMode(h))
            return {
                "index": index,
                **identity,
                "lost": False,
                "memory": self._memory(h),
                "utilization": {
                    "gpu": getattr(util, "gpu", None),
                    "memory": getattr(util, "memory", None),
                },
                "temperature_c": _first(
                    lambda: pynvml.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU),
                    lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
                ),
                "power_w": _watts(_first(lambda: pynvml.nvmlDeviceGetPowerUsage(h))),
                "power_limit_w": _watts(_first(lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h))),
                "fan_percent": _first(lambda: pynvml.nvmlDeviceGetFanSpeed(h)),
                "clocks_mhz": {
                    "sm": _first(lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
                    "memory": _first(
                        lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)
                    ),
                },
                "mig_mode": (
                    None if mig is None else {"current": bool(mig[0]), "pending": bool(mig[1])}
                ),
                "processes": self._processes(h) if processes else None,
            }
        except _GpuLost:
            return blank_device(index, identity, lost=True)

    @staticmethod
    def _memory(h: Any) -> dict[str, int | None]:
        # v2 (driver >= 510.39) separates reserved memory; v1's `used` includes it.
        mem = _first(
            lambda: pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2),
            lambda: pynvml.nvmlDeviceGetMemoryInfo(h),
        )
        return {key: getattr(mem, key, None) for key in ("total", "used", "free", "reserved")}

    @staticmethod
    def _processes(h: Any) -> list[dict[str, Any]] | None:
        """Compute then graphics processes, one entry per pid; None when neither can be read.

        The unversioned calls need the driver's _v3 symbols and raise NVMLLibraryMismatchError
        on older drivers: fall back to _v2 there.
        """
        lists = [
            _first(
                lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(h),
                lambda: pynvml.nvmlDeviceGetComputeRunningProcesses_v2(h),
            ),
            _first(
                lambda: pynvml.nvmlDeviceGetGraphicsRunningProcesses(h),
                lambda: pynvml.nvmlDeviceGetGraphicsRunningProcesses_v2(h),
            ),
        ]
        if all(procs is None for procs in lists):
            return None
        by_pid: dict[int, dict[str, Any]] = {}
        for procs in lists:
            for proc in procs or ():
                pid = int(proc.pid)
                used = getattr(proc, "usedGpuMemory", None)
                entry = by_pid.get(pid)
                if entry is None:
                    by_pid[pid] = {"pid": pid, "name": _process_name(pid), "used_memory": used}
                elif entry["used_memory"] is None:
                    entry["used_memory"] = used
        return list(by_pid.values())
