"""Colab and accelerator detection from controlled environments, and real resource readings."""

from __future__ import annotations

import fnmatch
import importlib
import importlib.abc
import os
import sys
from typing import Any

import pytest

from jupyter_colab_tunnel.runtime import (
    RuntimeProbe,
    accelerator,
    is_colab,
    resources,
    runtime_info,
    tpu_type,
)


def probe(
    env: dict[str, str], paths: tuple[str, ...] = (), colab_pkg: bool = False
) -> RuntimeProbe:
    return RuntimeProbe(
        environ=env,
        exists=lambda p: p in paths,
        glob=lambda pattern: [p for p in paths if fnmatch.fnmatch(p, pattern)],
        colab_package=lambda: colab_pkg,
    )


def test_plain_machine() -> None:
    p = probe({})
    assert not is_colab(p)
    assert accelerator(p) == "none"
    assert tpu_type(p) is None


def test_colab_gpu_runtime() -> None:
    p = probe({"COLAB_RELEASE_TAG": "release-colab_20261120-060052_RC00", "COLAB_GPU": "1"})
    info = runtime_info(p)
    assert info["colab"] is True
    assert info["colab_release"] == "release-colab_20261120-060052_RC00"
    assert info["accelerator"] == "gpu"
    assert info["tpu_type"] is None


def test_colab_cpu_runtime_has_empty_colab_gpu() -> None:
    p = probe({"COLAB_BACKEND_VERSION": "next", "COLAB_GPU": ""})
    assert is_colab(p)
    assert accelerator(p) == "none"


def test_colab_detected_from_paths_or_package() -> None:
    assert is_colab(probe({}, paths=("/content", "/datalab")))
    assert not is_colab(probe({}, paths=("/content",)))
    assert is_colab(probe({}, colab_pkg=True))


def test_colab_tpu_runtime() -> None:
    p = probe({"COLAB_RELEASE_TAG": "r", "COLAB_TPU_1VM": "1", "TPU_ACCELERATOR_TYPE": "v5e-1"})
    assert accelerator(p) == "tpu"
    assert tpu_type(p) == "v5e-1"


def test_tpu_from_devices() -> None:
    assert accelerator(probe({}, paths=("/dev/accel0",))) == "tpu"
    colab_vfio = probe({"COLAB_RELEASE_TAG": "r"}, paths=("/dev/vfio/0", "/dev/vfio/vfio"))
    assert accelerator(colab_vfio) == "tpu"
    # /dev/vfio/vfio alone exists on many hosts and says nothing.
    assert accelerator(probe({"COLAB_RELEASE_TAG": "r"}, paths=("/dev/vfio/vfio",))) == "none"


def test_gpu_from_driver_files() -> None:
    assert accelerator(probe({}, paths=("/dev/nvidia0",))) == "gpu"
    assert accelerator(probe({}, paths=("/proc/driver/nvidia/version",))) == "gpu"


HEAVY = ("google.colab", "jax", "tensorflow", "torch")


class _ImportRecorder(importlib.abc.MetaPathFinder):
    """Sees every attempted import, even of modules that are not installed."""

    def __init__(self) -> None:
        self.attempted: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        self.attempted.append(fullname)
        return None  # let the real finders do the work


def test_real_probe_attempts_no_heavy_import() -> None:
    recorder = _ImportRecorder()
    sys.meta_path.insert(0, recorder)
    try:
        info = runtime_info()
    finally:
        sys.meta_path.remove(recorder)
    assert info["python"].count(".") == 2
    tried = [name for name in recorder.attempted if name.startswith(HEAVY)]
    assert tried == []


def test_the_import_recorder_sees_failed_imports() -> None:
    recorder = _ImportRecorder()
    sys.meta_path.insert(0, recorder)
    try:
        with pytest.raises(ImportError):
            importlib.import_module("torch_that_is_not_installed")
    finally:
        sys.meta_path.remove(recorder)
    assert "torch_that_is_not_installed" in recorder.attempted


def test_real_resources(tmp_path: os.PathLike[str]) -> None:
    r = resources(str(tmp_path))
    assert r["cpu_count"] >= 1
    assert r["memory"]["total"] > r["memory"]["available"] > 0
    assert r["memory"]["used"] == r["memory"]["total"] - r["memory"]["available"]
    assert r["disk"]["path"] == str(tmp_path)
    assert r["disk"]["total"] >= r["disk"]["free"] > 0
    assert isinstance(r["load_1m"], float)


def test_missing_disk_path_is_not_an_error() -> None:
    r = resources("/does/not/exist")
    assert r["disk"]["total"] is None


def test_user_is_reported() -> None:
    assert runtime_info()["user"]
