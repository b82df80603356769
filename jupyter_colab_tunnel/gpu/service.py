"""The GPU sampler as a server service, made on first use.

pynvml, psutil and the NVML thread stay out of the server's start-up until a request needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import GpuSampler


class GpuService:
    def __init__(self, tpu_type: str | None, cache_ttl: float) -> None:
        self._tpu_type = tpu_type
        self._cache_ttl = cache_ttl
        self._sampler: GpuSampler | None = None
        self._closed = False

    @property
    def sampler(self) -> GpuSampler:
        if self._sampler is None:
            from . import GpuSampler, NvmlReader

            self._sampler = GpuSampler(
                NvmlReader(tpu_type=self._tpu_type), cache_ttl=self._cache_ttl
            )
        return self._sampler

    async def sample(self, processes: bool = True) -> dict[str, Any]:
        if self._closed and self._sampler is None:
            # Never used before shutdown: answer without starting NVML (nothing would stop it).
            from .sampler import closed_sample

            return closed_sample()
        return await self.sampler.get(processes=processes)

    def latest(self) -> tuple[float, dict[str, Any]] | None:
        """The newest sample already taken, without reading NVML (None if none yet)."""
        return self._sampler.latest() if self._sampler is not None else None

    async def summary(self) -> dict[str, Any]:
        """The `gpu` section of /colab/status."""
        from . import summary

        return summary(await self.sample(processes=False))

    async def close(self) -> None:
        self._closed = True
        if self._sampler is not None:
            await self._sampler.close()
