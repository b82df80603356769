"""NVML start-up failures as `Problem`s: what each one means and what the user can do."""

from __future__ import annotations

from ..problems import GPU_KINDS, GpuKind, Problem

ERROR_KINDS: tuple[GpuKind, ...] = GPU_KINDS

NO_PYNVML_HINT = "Install the Python package nvidia-ml-py (`pip install nvidia-ml-py`)."

# pynvml builds its error classes at import time; matching them by name keeps this module free of
# pynvml (and working with a pynvml that lacks one of them).
_INIT_ERROR_KINDS: dict[str, GpuKind] = {
    "NVMLError_LibraryNotFound": "no_library",
    "NVMLError_DriverNotLoaded": "driver_not_loaded",
    "NVMLError_NoPermission": "no_permission",
    "NVMLError_LibRmVersionMismatch": "version_mismatch",
}


def classify_init_error(exc: BaseException, tpu_type: str | None = None) -> Problem:
    """The problem behind an ``nvmlInit`` failure (an ImportError: no pynvml at all).

    On a TPU runtime any failure just means "no NVIDIA GPU here", which is what the user needs.
    """
    if tpu_type:
        return Problem(
            "tpu_runtime", f"This is a TPU runtime ({tpu_type}): NVIDIA GPUs are not available"
        )
    if isinstance(exc, ImportError):
        return Problem(
            "no_library", "The Python package nvidia-ml-py is not installed", NO_PYNVML_HINT
        )
    message = exc_text(exc)
    for cls in type(exc).__mro__:
        kind = _INIT_ERROR_KINDS.get(cls.__name__)
        if kind is not None:
            return Problem(kind, message)
    return Problem("unknown", message)


def exc_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # NVMLError.__str__ may call into a broken library
        text = ""
    return text or type(exc).__name__
