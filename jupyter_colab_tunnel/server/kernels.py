"""Which kernel of this server a GPU process belongs to.

A GPU process is a kernel's when it is the kernel's process (its provisioner's pid) or one of
its descendants (a DataLoader worker, a `subprocess` the notebook started). Walking each GPU
process's parents is cheaper than listing every kernel's descendants, and answers the same.
The walk reads /proc, so it runs off the event loop and is reused for a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp

# A process's parents change only when it is re-parented or its pid is reused: seconds are safe.
OWNERS_TTL = 5.0


def parent_chain(pid: int) -> list[int]:
    """`pid` and its ancestors' pids, nearest first; empty when the process is not visible.

    In a container NVML reports the host's pids, which do not exist (or are others) here.
    """
    import psutil  # not at import: psutil stays out of the server's start-up

    try:
        proc = psutil.Process(pid)
        return [pid, *(p.pid for p in proc.parents())]
    except (psutil.Error, OSError, ValueError):
        return []


def owners(
    gpu_pids: Iterable[int],
    kernel_pids: Mapping[int, str],
    chain: Callable[[int], list[int]] = parent_chain,
) -> dict[int, str]:
    """GPU pid -> kernel id, for the GPU processes that are a kernel or descend from one."""
    found: dict[int, str] = {}
    for pid in gpu_pids:
        for ancestor in chain(pid):
            kernel_id = kernel_pids.get(ancestor)
            if kernel_id is not None:
                found[pid] = kernel_id
                break
    return found


def running_kernels(kernel_manager: Any) -> Iterator[tuple[str, Any]]:
    """(kernel id, kernel) of the running kernels; one shut down meanwhile is skipped."""
    for kernel_id in list(kernel_manager.list_kernel_ids()):
        try:
            yield kernel_id, kernel_manager.get_kernel(kernel_id)
        except KeyError:  # shut down meanwhile
            continue


def kernel_pids(kernel_manager: Any) -> dict[int, str]:
    """Kernel process pid -> kernel id for the running kernels (attribute reads only)."""
    found: dict[int, str] = {}
    for kernel_id, kernel in running_kernels(kernel_manager):
        provisioner = getattr(kernel, "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        if isinstance(pid, int) and pid > 0:
            found[pid] = kernel_id
    return found


# The ZMQ channels of a kernel (jupyter_client's connection info).
CHANNEL_PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def kernel_channel_ports(kernel_manager: Any) -> dict[int, str]:
    """Port -> kernel id for the ZMQ channels of the running kernels (attribute reads only)."""
    found: dict[int, str] = {}
    for kernel_id, kernel in running_kernels(kernel_manager):
        for name in CHANNEL_PORTS:
            port = getattr(kernel, name, 0)
            if isinstance(port, int) and port > 0:
                found[port] = kernel_id
    return found


async def session_paths(session_manager: Any) -> dict[str, str]:
    """Kernel id -> path of the notebook (or console, file) whose session uses it."""
    paths: dict[str, str] = {}
    for session in await session_manager.list_sessions():
        kernel_id = (session.get("kernel") or {}).get("id")
        path = session.get("path")
        if kernel_id and path and kernel_id not in paths:
            paths[kernel_id] = path
    return paths


class KernelOwners:
    """`owners` for a set of pids, read off the event loop and reused for `ttl` seconds while
    the pids and the kernels are the same (shared by the GPU processes and the ports)."""

    def __init__(self, ttl: float = OWNERS_TTL, chain: Callable[[int], list[int]] = parent_chain):
        self.ttl = ttl
        self._chain = chain
        self._cache: tuple[float, frozenset[int], frozenset[tuple[int, str]], dict[int, str]] = (
            float("-inf"),
            frozenset(),
            frozenset(),
            {},
        )

    async def find(self, pids: frozenset[int], roots: dict[int, str]) -> dict[int, str]:
        taken, seen, kernels, found = self._cache
        key = frozenset(roots.items())
        if seen == pids and kernels == key and time.monotonic() - taken < self.ttl:
            return found
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, owners, pids, roots, self._chain)
        self._cache = (time.monotonic(), pids, key, found)
        return found


class KernelMapper:
    """Adds `kernel_id` and `notebook_path` to every process entry of a GPU sample."""

    def __init__(
        self,
        serverapp: ServerApp,
        ttl: float = OWNERS_TTL,
        chain: Callable[[int], list[int]] = parent_chain,
    ) -> None:
        self._serverapp = serverapp
        self._owners = KernelOwners(ttl, chain)

    async def annotate(self, sample: dict[str, Any]) -> dict[str, Any]:
        """A view of `sample` (shared, never modified) whose process entries name their kernel."""
        gpu_pids = {
            int(proc["pid"])
            for device in sample.get("devices") or []
            for proc in device.get("processes") or []
        }
        if not gpu_pids:
            return sample
        roots = kernel_pids(self._serverapp.kernel_manager)
        found = await self._owners.find(frozenset(gpu_pids), roots)
        paths = await session_paths(self._serverapp.session_manager) if found else {}

        def entry(proc: dict[str, Any]) -> dict[str, Any]:
            kernel_id = found.get(int(proc["pid"]))
            path = paths.get(kernel_id) if kernel_id else None
            return {**proc, "kernel_id": kernel_id, "notebook_path": path}

        return {
            **sample,
            "devices": [
                device
                if device.get("processes") is None
                else {**device, "processes": [entry(p) for p in device["processes"]]}
                for device in sample["devices"]
            ],
        }
