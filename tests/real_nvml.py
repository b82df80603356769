"""What the real NVML of this machine says, asked directly, and checks of a real-path sample.

The "real path" tests run the reader unpatched, so they must pass on a machine with a GPU as
well as on one without: they compare with this module's own look at the library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pynvml

from jupyter_colab_tunnel.problems import HINTS

SAMPLE_KEYS = {
    "available",
    "count",
    "driver_version",
    "cuda_driver_version",
    "sampled_at",
    "error",
    "devices",
}
DEVICE_KEYS = {
    "index",
    "name",
    "uuid",
    "pci_bus_id",
    "lost",
    "memory",
    "utilization",
    "temperature_c",
    "power_w",
    "power_limit_w",
    "fan_percent",
    "clocks_mhz",
    "mig_mode",
    "processes",
}


@dataclass(frozen=True)
class RealNvml:
    init_error: BaseException | None  # None: a driver answered
    count: int = 0

    @property
    def driver(self) -> bool:
        return self.init_error is None

    @property
    def kind(self) -> str:
        """The error kind the reader must report (written out here, not taken from the code)."""
        if self.init_error is None:
            return "no_devices" if self.count == 0 else ""
        for cls, kind in (
            (pynvml.NVMLError_LibraryNotFound, "no_library"),
            (pynvml.NVMLError_DriverNotLoaded, "driver_not_loaded"),
            (pynvml.NVMLError_NoPermission, "no_permission"),
            (pynvml.NVMLError_LibRmVersionMismatch, "version_mismatch"),
        ):
            if isinstance(self.init_error, cls):
                return kind
        return "unknown"


def probe() -> RealNvml:
    """Initialise NVML once, count the GPUs, release it. Call before any test patches pynvml."""
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return RealNvml(exc)
    try:
        return RealNvml(None, int(pynvml.nvmlDeviceGetCount()))
    finally:
        pynvml.nvmlShutdown()


REAL = probe()


def assert_recent_utc(stamp: str) -> None:
    assert stamp.endswith("Z")
    taken = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert taken.utcoffset() == timezone.utc.utcoffset(None)
    assert abs((datetime.now(timezone.utc) - taken).total_seconds()) < 60


def assert_real_sample(sample: dict[str, Any], processes: bool = True) -> None:
    """`sample` is what this machine's NVML really says: its GPUs, or why there are none."""
    assert set(sample) == SAMPLE_KEYS
    assert_recent_utc(sample["sampled_at"])
    json.dumps(sample)  # plain JSON
    if REAL.driver:
        assert sample["driver_version"]
        assert sample["count"] == len(sample["devices"]) == REAL.count
        assert sample["available"] is (REAL.count > 0)
        if REAL.count == 0:
            assert sample["error"]["kind"] == "no_devices"
        else:
            assert sample["error"] is None
        for index, device in enumerate(sample["devices"]):
            assert set(device) == DEVICE_KEYS
            assert device["index"] == index
            assert device["lost"] is False
            assert device["name"]
            assert device["uuid"].startswith(("GPU-", "MIG-"))
            assert device["memory"]["total"] > 0
            if not processes:
                assert device["processes"] is None
            elif device["processes"] is not None:
                assert all(set(p) == {"pid", "name", "used_memory"} for p in device["processes"])
        return
    assert sample["available"] is False
    assert sample["count"] == 0
    assert sample["devices"] == []
    assert sample["driver_version"] is None
    assert sample["cuda_driver_version"] is None
    error = sample["error"]
    assert error["kind"] == REAL.kind
    assert error["message"] == (str(REAL.init_error) or type(REAL.init_error).__name__)
    assert error["hint"] == HINTS[REAL.kind]  # type: ignore[index]
    if REAL.kind == "no_library":
        assert error["message"] == "NVML Shared Library Not Found"
        assert "libnvidia-ml.so.1" in error["hint"]
        assert "Runtime > Change runtime type" in error["hint"]


def real_summary() -> dict[str, Any]:
    """The /colab/status `gpu` section this machine must show (names checked separately)."""
    return {
        "available": REAL.driver and REAL.count > 0,
        "count": REAL.count,
        "error": REAL.kind or None,
    }
