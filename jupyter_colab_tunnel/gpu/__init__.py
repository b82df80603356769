"""NVIDIA GPU telemetry through NVML (nvidia-ml-py's ``pynvml``), one job per module.

* `errors`: NVML start-up failures as Problems.
* `reader`: `NvmlReader`, the process's NVML connection, read field by field (blocking).
* `samples`: the JSON shape of a sample, its ``processes=false`` view and its status summary.
* `sampler`: `GpuSampler`, samples for the server off the event loop, shared and reused.
* `service`: `GpuService`, the sampler as a server service, made on first use.
* `__main__`: the smoke check, ``python -m jupyter_colab_tunnel.gpu [--no-processes]``.

Importing this package loads nothing: pynvml and psutil come with the names below, on first
use (a module `__getattr__`), so that the server can import `gpu.service` at start-up and
touch NVML only when a request needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import ERROR_KINDS, classify_init_error
    from .reader import NvmlReader
    from .sampler import GpuSampler, NvmlThread
    from .samples import summary

_WHERE = {
    "ERROR_KINDS": "errors",
    "classify_init_error": "errors",
    "NvmlReader": "reader",
    "GpuSampler": "sampler",
    "NvmlThread": "sampler",
    "summary": "samples",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "ERROR_KINDS",
    "GpuSampler",
    "NvmlReader",
    "NvmlThread",
    "classify_init_error",
    "summary",
]
