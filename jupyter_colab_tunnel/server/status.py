"""Assemble GET /colab/status from the runtime, resources, tunnel and GPU services."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..cache import SharedSample
from ..runtime import resources
from ..timefmt import iso_utc
from .serverinfo import server_section

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp

    from ..gpu.service import GpuService
    from ..tunnel.service import TunnelService
    from .life import LifeReporter

# psutil and statvfs reads are cheap but can stall on a hung network disk: read off the loop,
# at most once a second.
RESOURCES_TTL = 1.0


class StatusReporter:
    def __init__(
        self,
        serverapp: ServerApp,
        started_at: float,
        runtime: dict[str, Any],
        tunnel: TunnelService,
        gpu: GpuService,
        life: LifeReporter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._serverapp = serverapp
        self._started_at = started_at
        self._runtime = runtime
        root_dir = serverapp.root_dir
        self._resources = SharedSample(lambda: resources(root_dir), RESOURCES_TTL, clock=clock)
        self._tunnel = tunnel
        self._gpu = gpu
        self._life = life

    async def status(self) -> dict[str, Any]:
        uptime = time.time() - self._started_at
        body = {
            "version": __version__,
            "server": server_section(self._serverapp, iso_utc(self._started_at) or "", uptime),
            "runtime": dict(self._runtime),
            "resources": await self._resources.get(),
            "tunnel": self._tunnel.summary(),
            "gpu": await self._gpu.summary(),
        }
        if self._life is not None:
            body["life"] = await self._life.life()
        return body
