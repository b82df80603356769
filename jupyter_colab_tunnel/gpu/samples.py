"""The JSON shape of a GPU sample: built by the reader, viewed and summarised for the API.

Plain dicts, because they go straight into JSON answers; docs/openapi.yaml (GpuSample) is their
schema.
"""

from __future__ import annotations

from typing import Any

from ..problems import Problem
from ..timefmt import now_iso


def gpu_sample(
    *,
    error: Problem | None,
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
        "error": None if error is None else error.as_dict(),
        "devices": devices,
    }


def blank_device(index: int, identity: dict[str, str | None], lost: bool) -> dict[str, Any]:
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


def without_processes(sample: dict[str, Any]) -> dict[str, Any]:
    """A shallow view of a shared sample in which only the `processes` keys differ."""
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
