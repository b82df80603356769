"""colab_wait_gpu_memory's reading of a GPU sample: which GPU to watch, and its memory in MiB."""

from __future__ import annotations

from ..problems import Problem
from .client import JSONObject
from .mcp_errors import tool_error

MiB = 1024 * 1024


def best_device(sample: JSONObject, gpu_index: int | None) -> JSONObject:
    """The asked-for GPU, or the one with the most free memory; ToolError when there is none."""
    devices: list[JSONObject] = list(sample.get("devices") or [])
    if not sample.get("available") or not devices:
        # The remote's own GPU problem (kind and hint), e.g. no_library, no_devices.
        problem = Problem.from_dict(sample.get("error")) or Problem(
            "no_devices", "the remote lists no GPU"
        )
        raise tool_error(
            problem.kind, f"the remote has no usable GPU: {problem.message}", problem.hint
        )
    if gpu_index is not None:
        devices = [d for d in devices if d.get("index") == gpu_index]
        if not devices:
            raise tool_error(
                "no_such_gpu",
                f"the remote has no GPU {gpu_index} "
                f"({sample.get('count', 0)} GPUs, indexes from 0)",
            )
    return max(devices, key=lambda d: mib(d, "free") or -1.0)


def mib(device: JSONObject, key: str) -> float | None:
    """A device's memory figure `key` (bytes in the sample) in MiB, to 0.1; None if absent."""
    value = (device.get("memory") or {}).get(key)
    return round(value / MiB, 1) if isinstance(value, int) else None


def fmt_mib(value: float | None) -> str:
    """A MiB figure for a message."""
    return "unknown" if value is None else f"{value:g}"
