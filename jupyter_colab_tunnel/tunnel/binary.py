"""Find (or fetch) the cloudflared executable and read its version. Blocking: run off the loop."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass

from ..problems import Problem

VERSION_RE = re.compile(r"cloudflared version (\S+)")
DOWNLOAD_TIMEOUT = 30.0


@dataclass(frozen=True)
class Binary:
    path: str
    version: str | None
    source: str  # "configured" | "path" | "pycloudflared"


class BinaryUnavailable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.error = Problem("binary_unavailable", message)


def _check_executable(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise BinaryUnavailable(f"{what} {path} does not exist.")
    if not os.path.isfile(path):
        raise BinaryUnavailable(f"{what} {path} is not a file.")
    if not os.access(path, os.X_OK):
        raise BinaryUnavailable(f"{what} {path} is not executable (chmod +x it).")


def read_version(path: str) -> str | None:
    """`cloudflared --version` -> '2026.8.2'. Raises BinaryUnavailable if it cannot run at all."""
    try:
        out = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=15,
            stdin=subprocess.DEVNULL,
        )
    except OSError as e:
        if e.errno == errno.ENOEXEC:
            raise BinaryUnavailable(
                f"{path} is not a program for this machine (exec format error)."
            ) from None
        raise BinaryUnavailable(f"{path} cannot be run: {e.strerror}.") from None
    except subprocess.TimeoutExpired:
        raise BinaryUnavailable(f"{path} --version did not answer in 15 s.") from None
    m = VERSION_RE.search(out.stdout + out.stderr)
    return m.group(1) if m else None


def _pycloudflared_binary() -> str:
    """pycloudflared's managed binary, downloaded on first use (with a timeout, atomically)."""
    try:
        from pycloudflared.util import get_info
    except ImportError:
        raise BinaryUnavailable(
            "cloudflared is not on PATH and pycloudflared is not installed."
        ) from None
    try:
        info = get_info()
    except RuntimeError as e:
        raise BinaryUnavailable(
            f"pycloudflared has no cloudflared for this platform: {e}"
        ) from None
    target = str(info.executable)
    if os.path.isfile(target) and os.access(target, os.X_OK):
        return target
    if info.system == "darwin":
        raise BinaryUnavailable(
            "cloudflared is not on PATH; install it with `brew install cloudflared`."
        )
    try:
        with urllib.request.urlopen(info.url, timeout=DOWNLOAD_TIMEOUT) as resp:  # noqa: S310
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".cloudflared-")
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(resp, out)
        os.chmod(tmp, 0o755)  # noqa: S103 - an executable for everyone, like a system binary
        os.replace(tmp, target)
    except (OSError, ValueError) as e:
        raise BinaryUnavailable(
            f"cloudflared is not on PATH and downloading it through pycloudflared from "
            f"{info.url} failed: {e}"
        ) from None
    return target


def resolve(configured: str) -> Binary:
    """cloudflared_path, else `cloudflared` on PATH, else pycloudflared's managed binary."""
    if configured:
        path = os.path.expanduser(configured)
        _check_executable(path, "cloudflared_path")
        source = "configured"
    else:
        found = shutil.which("cloudflared")
        if found:
            path, source = found, "path"
        else:
            path, source = _pycloudflared_binary(), "pycloudflared"
    return Binary(path=path, version=read_version(path), source=source)
