"""A real server with fake GPUs and the cloudflared stand-in, for the dashboard and /metrics.

Shared by tests/test_dashboard.py, the dashboard benchmarks and scripts/dashboard_screenshot.py.
The fake GPUs are installed by the server's own jupyter_server_config.py (NVML is patched
inside the server process, as benchmarks/bench_nvml.py does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunnel_env import TunnelServer, start_tunnel_server

REPO = Path(__file__).resolve().parent.parent

# Two Colab-like cards with distinct, recognisable values. GPU 0's processes are, at each
# sample, the server's running kernels plus the server itself (a process that is no kernel).
GPUS_CONFIG = """\
import os, sys
sys.path[:0] = [{repo!r}]
import psutil, pytest
from testkit import fake_nvml
MiB = fake_nvml.MiB

class KernelsOnGpu(list):
    def __iter__(self):
        kernels = [
            p.pid for p in psutil.Process().children()
            if "ipykernel" in " ".join(p.cmdline())
        ]
        procs = [fake_nvml.FakeProcess(pid, 9216 * MiB) for pid in kernels]
        return iter([*procs, fake_nvml.FakeProcess(os.getpid(), 310 * MiB)])

gpus = [
    fake_nvml.FakeGpu.t4(
        utilization_gpu=73, memory_used=9830 * MiB, temperature_c=61, power_mw=48200,
        clock_sm_mhz=1590, processes=KernelsOnGpu(),
    ),
    fake_nvml.FakeGpu.t4(
        uuid="GPU-6f2b7c1e-0000-4a1b-9c3d-000000000001", pci_bus_id="00000000:00:05.0",
        utilization_gpu=8, memory_used=512 * MiB, temperature_c=44, power_mw=27100,
    ),
]
for i in range({extra}):
    gpus.append(fake_nvml.FakeGpu.t4(
        uuid=f"GPU-6f2b7c1e-0000-4a1b-9c3d-{{i + 2:012d}}", utilization_gpu=(i * 17) % 100,
        memory_used=(1024 + 512 * i) * MiB))
fake = fake_nvml.install(pytest.MonkeyPatch(), gpus)  # lives as long as the server
if {live!r}:
    # A training-like load on GPU 0 (for the screenshot's charts).
    import math, threading, time

    def load():
        t0 = time.monotonic()
        while True:
            t = time.monotonic() - t0
            gpus[0].utilization_gpu = int(62 + 30 * math.sin(t / 3) + 6 * math.sin(t * 1.7))
            gpus[0].memory_used = int((9830 + 1500 * math.sin(t / 7)) * MiB)
            gpus[1].utilization_gpu = int(10 + 8 * math.sin(t / 2 + 1))
            time.sleep(0.25)

    threading.Thread(target=load, daemon=True).start()
"""


def start_gpu_tunnel_server(
    workdir: Path, gpus: int = 2, live: bool = False, **kwargs: Any
) -> TunnelServer:
    """A tunnel server (stand-in cloudflared) whose NVML shows `gpus` fake T4s (at least 2).

    `live`: GPU 0 and 1's utilization and GPU 0's memory keep changing.
    """
    config_dir = workdir / "server" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "jupyter_server_config.py").write_text(
        GPUS_CONFIG.format(repo=str(REPO), extra=max(0, gpus - 2), live=live)
    )
    return start_tunnel_server(workdir, **kwargs)
