"""Patch NVML inside a `jupyter server` process with the NVML stand-in (testkit/fake_nvml.py).

A benchmark server's ``jupyter_server_config.py`` (written by `benchmarks.servers`) runs::

    import sys; sys.path[:0] = [REPO]
    from benchmarks import bench_nvml; bench_nvml.install(n=8, delay=0.0)

before the extension loads; the extension reads `pynvml` attributes at call time, so the order
does not matter.
"""

from __future__ import annotations

from typing import Any

MiB = 1024 * 1024


def install(n: int = 8, delay: float = 0.0) -> Any:
    """Patch pynvml with `n` fake Tesla T4s; every device call sleeps `delay` seconds."""
    import pytest

    from testkit import fake_nvml

    devices = [
        fake_nvml.FakeGpu.t4(
            uuid=f"GPU-6f2b7c1e-0000-4a1b-9c3d-{i:012d}",
            pci_bus_id=f"00000000:00:{4 + i:02x}.0",
            memory_used=(1024 + 512 * i) * MiB,
        )
        for i in range(n)
    ]
    # Never undone: the patch lives as long as the server process.
    return fake_nvml.install(pytest.MonkeyPatch(), devices, per_call_delay=delay)
