"""What machine this is: Colab or not, which accelerator, and its resources.

Detection reads only the environment and the file system. It never imports google.colab, jax or
tensorflow: importing those in the server process would take the TPU away from the kernel.
"""

from __future__ import annotations

import getpass
import glob
import importlib.util
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PathExists = Callable[[str], bool]
Glob = Callable[[str], list[str]]


@dataclass(frozen=True)
class RuntimeProbe:
    """The inputs of runtime detection, replaceable in tests."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    exists: PathExists = os.path.exists
    glob: Glob = glob.glob
    colab_package: Callable[[], bool] = lambda: _colab_package_installed()


def _colab_package_installed() -> bool:
    """Whether `google.colab` is importable, found without importing it."""
    try:
        spec = importlib.util.find_spec("google")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(os.path.isdir(os.path.join(loc, "colab")) for loc in spec.submodule_search_locations)


def is_colab(probe: RuntimeProbe) -> bool:
    env = probe.environ
    if env.get("COLAB_RELEASE_TAG") or env.get("COLAB_BACKEND_VERSION"):
        return True
    if probe.exists("/content") and probe.exists("/datalab"):
        return True
    return probe.colab_package()


def tpu_type(probe: RuntimeProbe) -> str | None:
    """The TPU type (e.g. 'v5e-1') when this is a TPU machine, else None."""
    env = probe.environ
    accel_type = env.get("TPU_ACCELERATOR_TYPE") or None
    if accel_type or env.get("COLAB_TPU_1VM") == "1" or env.get("TPU_WORKER_ID"):
        return accel_type or "unknown"
    # v2-v4 expose /dev/accel*; v5e/v6e expose numbered VFIO groups (/dev/vfio/vfio is generic).
    if probe.glob("/dev/accel[0-9]*"):
        return "unknown"
    if is_colab(probe) and any(p.rsplit("/", 1)[-1].isdigit() for p in probe.glob("/dev/vfio/*")):
        return "unknown"
    return None


def accelerator(probe: RuntimeProbe) -> str:
    """'tpu', 'gpu' or 'none'. COLAB_GPU is set on every Colab runtime: only '1' means a GPU."""
    if tpu_type(probe) is not None:
        return "tpu"
    if probe.environ.get("COLAB_GPU") == "1":
        return "gpu"
    if probe.exists("/dev/nvidia0") or probe.exists("/proc/driver/nvidia/version"):
        return "gpu"
    return "none"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # Containers often run a uid with no passwd entry.
        return str(os.getuid())


def runtime_info(probe: RuntimeProbe | None = None) -> dict[str, Any]:
    """The `runtime` section of /colab/status. Stable for the life of the process."""
    probe = probe or RuntimeProbe()
    colab = is_colab(probe)
    return {
        "colab": colab,
        "colab_release": probe.environ.get("COLAB_RELEASE_TAG") or None,
        "accelerator": accelerator(probe),
        "tpu_type": tpu_type(probe),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "user": _user(),
    }


def resources(disk_path: str) -> dict[str, Any]:
    """The `resources` section of /colab/status. Blocking: call it off the event loop."""
    import psutil  # here, not at the top: kept out of the server's start-up

    memory = psutil.virtual_memory()
    try:
        load_1m: float | None = round(os.getloadavg()[0], 2)
    except OSError:
        load_1m = None
    disk: dict[str, Any] = {"path": disk_path, "total": None, "used": None, "free": None}
    try:
        usage = psutil.disk_usage(disk_path)
        disk.update(total=usage.total, used=usage.used, free=usage.free)
    except OSError:
        pass
    return {
        "cpu_count": psutil.cpu_count(logical=True),
        "load_1m": load_1m,
        "memory": {
            "total": memory.total,
            "available": memory.available,
            "used": memory.total - memory.available,
        },
        "disk": disk,
    }
