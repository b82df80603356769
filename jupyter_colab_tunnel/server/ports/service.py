"""The ports service: the listing, read off the event loop and reused for a moment, each port
named with the kernel of this server that holds it and whether it may be forwarded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ...cache import SharedSample
from ..kernels import KernelOwners, kernel_pids, parent_chain

if TYPE_CHECKING:
    from .listing import ListeningPort

PORTS_TTL = 2.0

# A port's refusal (why it may not be forwarded), or None when it may.
PortCheck = Callable[[int], "str | None"]


def read_listening() -> list[ListeningPort]:
    """The machine's listening ports. Blocking. `listing` (its parsers and patterns) is loaded
    at the first read, not with the server."""
    from .listing import listening_ports

    return listening_ports()


def allow_all(port: int) -> str | None:
    return None


def forward_flag(port: int) -> str:
    """What a user adds to `jupyter colab-tunnel connect` to reach `port` at 127.0.0.1."""
    return f"--forward {port}"


class PortsService:
    """`kernel_manager`: the server's (None: no kernel is named); `check`: the port policy."""

    def __init__(
        self,
        read: Callable[[], list[ListeningPort]] = read_listening,
        ttl: float = PORTS_TTL,
        *,
        kernel_manager: Any = None,
        check: PortCheck = allow_all,
        chain: Callable[[int], list[int]] = parent_chain,
    ) -> None:
        self._sample = SharedSample(read, ttl)
        self._kernel_manager = kernel_manager
        self._check = check
        self._owners = KernelOwners(chain=chain)

    async def listening(self) -> list[ListeningPort]:
        return await self._sample.get()

    async def hint(self) -> str:
        """What listens, for a message: '6006 tensorboard, 7860 python' (or 'nothing')."""
        ports = await self.listening()
        shown = ", ".join(f"{p.port} {p.name or '?'}" for p in ports[:20])
        return shown or "nothing"

    async def report(self) -> dict[str, Any]:
        """The body of GET /colab/ports."""
        ports = await self.listening()
        held_by = await self._kernels({p.pid for p in ports if p.pid is not None})
        items = []
        for p in ports:
            refused = self._check(p.port)
            kernel_id = held_by.get(p.pid) if p.pid is not None else None
            items.append(
                {
                    **asdict(p),
                    "kernel_id": kernel_id,
                    "forwardable": refused is None,
                    "refused": refused,
                    "forward": forward_flag(p.port),
                }
            )
        return {"ports": items}

    async def _kernels(self, pids: set[int]) -> dict[int, str]:
        """pid -> kernel id for the pids that are one of this server's kernels or descend
        from one; the parents are read off the loop and reused for a few seconds."""
        if self._kernel_manager is None or not pids:
            return {}
        roots = kernel_pids(self._kernel_manager)
        if not roots:
            return {}
        return await self._owners.find(frozenset(pids), roots)
