"""NVIDIA GPU telemetry through NVML (nvidia-ml-py's ``pynvml``), one job per module.

* `errors`: NVML start-up failures as Problems.
* `reader`: `NvmlReader`, the process's NVML connection, read field by field (blocking).
* `samples`: the JSON shape of a sample, its ``processes=false`` view and its status summary.
* `sampler`: `GpuSampler`, samples for the server off the event loop, shared and reused.
* `__main__`: the smoke check, ``python -m jupyter_colab_tunnel.gpu [--no-processes]``.

Importing this package loads pynvml and psutil: the server imports it on first use only.
"""

from __future__ import annotations

from .errors import ERROR_KINDS, classify_init_error
from .reader import NvmlReader
from .sampler import GpuSampler, NvmlThread
from .samples import summary

__all__ = [
    "ERROR_KINDS",
    "GpuSampler",
    "NvmlReader",
    "NvmlThread",
    "classify_init_error",
    "summary",
]
