"""NVIDIA GPU telemetry through NVML (nvidia-ml-py's ``pynvml``).

* One `NvmlReader` per process: ``nvmlInit`` is expensive (dlopen + many dlsym) and reference
  counted, so it runs once, lazily, under a lock. A failed init is remembered and retried at most
  every `retry_interval` seconds, because a driver can load after the server has started.
* Every field is read on its own: an NVML error on one field (no fan on datacenter cards, no
  utilization under MIG, no processes in a container) makes that field null, never the sample.
* `GpuSampler` runs the blocking NVML calls in an executor, shares one in-flight sample between
  concurrent callers and reuses it for `cache_ttl` seconds.

Smoke check on any machine: ``python -m jupyter_colab_tunnel.gpu [--no-processes]``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from .problems import GPU_KINDS, GpuKind, Problem
from .timefmt import now_iso

log = logging.getLogger(__name__)

# Imported as a plain module object typed Any: pynvml ships no type stubs, and every NVML call
# below goes through an attribute lookup at call time, so tests can monkeypatch the module.
pynvml: Any
try:
    pynvml = importlib.import_module("pynvml")
except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency
    pynvml = None

ERROR_KINDS: tuple[GpuKind, ...] = GPU_KINDS

NO_PYNVML_HINT = "Install the Python package nvidia-ml-py (`pip install nvidia-ml-py`)."

# NVML init error class name -> error kind. Looked up by name so a pynvml without one of them
# still imports.
_INIT_ERROR_KINDS: tuple[tuple[str, GpuKind], ...] = (
    ("NVMLError_LibraryNotFound", "no_library"),
    ("NVMLError_DriverNotLoaded", "driver_not_loaded"),
    ("NVMLError_NoPermission", "no_permission"),
    ("NVMLError_LibRmVersionMismatch", "version_mismatch"),
)


def _error(kind: GpuKind, message: str, hint: str = "") -> dict[str, str]:
    return Problem(kind, message, hint).as_dict()


def classify_init_error(exc: BaseException, tpu_type: str | None = None) -> dict[str, str]:
    """Map an ``nvmlInit`` failure to ``{"kind", "message", "hint"}``.

    On a TPU runtime any failure just means "no NVIDIA GPU here", which is what the user needs.
    """
    if tpu_type:
        return _error(
            "tpu_runtime", f"This is a TPU runtime ({tpu_type}): NVIDIA GPUs are not available"
        )
    if pynvml is None:
        return _error(
            "no_library", "The Python package nvidia-ml-py is not installed", NO_PYNVML_HINT
        )
    message = _exc_text(exc)
    for class_name, kind in _INIT_ERROR_KINDS:
        cls = getattr(pynvml, class_name, None)
        if cls is not None and isinstance(exc, cls):
            return _error(kind, message)
    return _error("unknown", message)


def _exc_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # NVMLError.__str__ may call into a broken library
        text = ""
    return text or type(exc).__name__


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


def _result(
    *,
    error: dict[str, str] | None,
    driver: str | None = None,
    cuda: str | None = None,
    devices: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    devices = devices or []
    return {
        "available": bool(devices) and error is None,
        "count": len(devices),
        "driver_version": driver,
        "cuda_driver_version": cuda,
        "sampled_at": now_iso(),
        "error": error,
        "devices": devices,
    }


def _blank_device(index: int, identity: dict[str, str | None], lost: bool) -> dict[str, Any]:
    """A device that cannot be read: what we know of its identity, everything else null."""
    return {
        "index": index,
        "name": identity.get("name"),
        "uuid": identity.get("uuid"),
        "pci_bus_id": identity.get("pci_bus_id"),
        "lost": lost,
        "memory": None,
        "utilization": None,
        "temperature_c": None,
        "power_w": None,
        "power_limit_w": None,
        "fan_percent": None,
        "clocks_mhz": None,
        "mig_mode": None,
        "processes": None,
    }


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
        self._init_error: dict[str, str] | None = None
        self._last_attempt: float | None = None
        self._handles: dict[int, Any] = {}
        # name/uuid/PCI bus id per index, kept so a lost GPU can still be named.
        self._identity: dict[int, dict[str, str | None]] = {}
        self._driver_version: str | None = None
        self._cuda_version: str | None = None

    @property
    def initialised(self) -> bool:
        return self._initialised

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
                log.debug("nvmlShutdown failed: %s", _exc_text(exc))

    def sample(self, processes: bool = True) -> dict[str, Any]:
        """Read every GPU now (blocking: call it from a thread). Never raises.

        With ``processes=False`` the per-process calls are skipped and ``processes`` is null.
        """
        with self._lock:
            try:
                return self._sample_locked(processes)
            except Exception as exc:  # a bug or an unexpected library failure: report, not raise
                log.exception("GPU sample failed")
                return _result(error=_error("unknown", _exc_text(exc)))

    def _ensure_init(self) -> dict[str, str] | None:
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
            log.debug("nvmlInit failed: %s", self._init_error["message"])
            return self._init_error
        self._initialised = True
        self._init_error = None
        return None

    def _sample_locked(self, processes: bool) -> dict[str, Any]:
        error = self._ensure_init()
        if error is not None:
            return _result(error=error)
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
            return _result(error=classify_init_error(exc), driver=driver, cuda=cuda)
        if count <= 0:
            error = _error("no_devices", "NVML reports no GPU")
            return _result(error=error, driver=driver, cuda=cuda)
        devices = [self._read_device(i, processes) for i in range(count)]
        return _result(error=None, driver=driver, cuda=cuda, devices=devices)

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
                return _blank_device(index, identity, lost=False)
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
            return _blank_device(index, identity, lost=True)

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


class _NvmlThread(concurrent.futures.Executor):
    """One daemon thread for NVML calls.

    A driver call can hang (a lost GPU). In a ThreadPoolExecutor that would also hang the
    server's exit, which joins pool threads; a daemon thread is abandoned instead.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="nvml", daemon=True)
        self._thread.start()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, lambda: fn(*args, **kwargs)))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._queue.put(None)
        if wait:
            self._thread.join()


class GpuSampler:
    """Async access to an `NvmlReader` for the server.

    NVML calls run in `executor`; when none is given the sampler owns one daemon thread, so a
    hung driver call never occupies the loop's default pool (which Jupyter uses for file I/O)
    and never holds up the server's exit. Concurrent callers share one in-flight sample, and a
    sample is reused for `cache_ttl` seconds (0: always fresh, still shared while in flight). A
    sample taken with processes also serves ``processes=False`` callers (their view has
    ``processes: null``); a ``False`` sample never serves ``True`` callers.

    Samples are shared, not copied (a deep copy per request was the largest cost of
    /colab/status): callers must treat what `get()` returns as read-only.
    """

    CLOSE_TIMEOUT = 1.0

    def __init__(
        self,
        reader: NvmlReader,
        cache_ttl: float = 1.0,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self.reader = reader
        self.cache_ttl = cache_ttl
        self._own_executor = executor is None
        self._executor: concurrent.futures.Executor = executor or _NvmlThread()
        self._cache: dict[bool, tuple[float, dict[str, Any]]] = {}
        self._inflight: dict[bool, asyncio.Future[dict[str, Any]]] = {}
        self.samples_taken = 0

    async def get(self, processes: bool = True) -> dict[str, Any]:
        keys = (True,) if processes else (False, True)
        now = time.monotonic()
        for key in keys:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self.cache_ttl:
                return _view(hit[1], processes)
        future = next((self._inflight[k] for k in keys if k in self._inflight), None)
        if future is None:
            future = asyncio.ensure_future(self._take(processes))
            self._inflight[processes] = future
        # shield: a cancelled caller (closed request) must not cancel the others' sample.
        return _view(await asyncio.shield(future), processes)

    async def _take(self, processes: bool) -> dict[str, Any]:
        try:
            self.samples_taken += 1
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, self.reader.sample, processes)
            self._cache[processes] = (time.monotonic(), result)
            return result
        finally:
            self._inflight.pop(processes, None)

    async def close(self) -> None:
        """Shut NVML down after any sample in flight, waiting at most CLOSE_TIMEOUT for it."""
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._executor, self.reader.shutdown)
        try:
            await asyncio.wait_for(asyncio.shield(done), self.CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("NVML is still busy; not waiting for it to shut down")
        self._cache.clear()
        if self._own_executor:
            self._executor.shutdown(wait=False)


def _view(sample: dict[str, Any], processes: bool) -> dict[str, Any]:
    if processes:
        return sample
    # A shallow view: only the `processes` keys differ from the shared sample.
    return {
        **sample,
        "devices": [{**device, "processes": None} for device in sample["devices"]],
    }


def summary(sample: dict[str, Any]) -> dict[str, Any]:
    """The short form for /colab/status: names and summed memory (bytes) of readable GPUs."""
    devices = sample.get("devices") or []
    total = used = 0
    for device in devices:
        memory = device.get("memory") or {}
        total += memory.get("total") or 0
        used += memory.get("used") or 0
    error = sample.get("error")
    return {
        "available": bool(sample.get("available")),
        "count": int(sample.get("count") or 0),
        "names": [device.get("name") for device in devices],
        "memory_total": total,
        "memory_used": used,
        "error": error.get("kind") if error else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Print this machine's GPU sample as JSON; exit 0 even without a GPU (the JSON says why)."""
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_colab_tunnel.gpu", description="Print an NVML GPU sample."
    )
    parser.add_argument("--no-processes", action="store_true", help="skip per-process queries")
    args = parser.parse_args(argv)
    from .runtime import RuntimeProbe, tpu_type

    reader = NvmlReader(tpu_type=tpu_type(RuntimeProbe()))
    try:
        result = reader.sample(processes=not args.no_processes)
    finally:
        reader.shutdown()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
