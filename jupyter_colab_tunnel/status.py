"""Assemble GET /colab/status from the runtime, resources, tunnel and GPU services."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .cache import SharedSample
from .runtime import resources
from .serverinfo import server_section
from .timefmt import iso_utc

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp

Section = Callable[[], Awaitable[dict[str, Any]]]

# psutil and statvfs reads are cheap but can stall on a hung network disk: read off the loop,
# at most once a second.
RESOURCES_TTL = 1.0


class StatusReporter:
    def __init__(
        self,
        serverapp: ServerApp,
        started_at: float,
        runtime: dict[str, Any],
        tunnel_section: Section,
        gpu_section: Section,
    ) -> None:
        self._serverapp = serverapp
        self._started_at = started_at
        self._runtime = runtime
        root_dir = serverapp.root_dir
        self._resources = SharedSample(lambda: resources(root_dir), RESOURCES_TTL)
        self._tunnel_section = tunnel_section
        self._gpu_section = gpu_section

    @property
    def runtime(self) -> dict[str, Any]:
        return self._runtime

    async def status(self) -> dict[str, Any]:
        uptime = time.time() - self._started_at
        return {
            "version": __version__,
            "server": server_section(self._serverapp, iso_utc(self._started_at) or "", uptime),
            "runtime": dict(self._runtime),
            "resources": await self._resources.get(),
            "tunnel": await self._tunnel_section(),
            "gpu": await self._gpu_section(),
        }
