"""The ports service: the listing, read off the event loop and reused for a moment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ..cache import SharedSample
from .listing import ListeningPort, listening_ports

PORTS_TTL = 2.0


class PortsService:
    def __init__(
        self,
        read: Callable[[], list[ListeningPort]] = listening_ports,
        ttl: float = PORTS_TTL,
    ) -> None:
        self._sample = SharedSample(read, ttl)

    async def listening(self) -> list[ListeningPort]:
        return await self._sample.get()

    async def hint(self) -> str:
        """What listens, for a message: '6006 tensorboard, 7860 python' (or 'nothing')."""
        ports = await self.listening()
        shown = ", ".join(f"{p.port} {p.name or '?'}" for p in ports[:20])
        return shown or "nothing"

    async def report(self) -> dict[str, Any]:
        """The body of GET /colab/ports."""
        return {"ports": [asdict(p) for p in await self.listening()]}
