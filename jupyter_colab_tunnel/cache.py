"""Run a blocking read off the event loop, share it between concurrent callers, reuse it briefly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedSample(Generic[T]):
    """A value read by a blocking function, at most once per `ttl` seconds.

    Concurrent callers await the same in-flight read, so N requests cost one read; the read runs
    in `executor` (the loop's default when None) so a slow disk or driver never blocks the loop.
    Ages are measured on `clock` (monotonic seconds).
    """

    def __init__(
        self,
        read: Callable[[], T],
        ttl: float,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.ttl = ttl
        self._executor = executor
        self._clock = clock
        self._value: T | None = None
        self._taken_at = float("-inf")
        self._inflight: asyncio.Future[T] | None = None

    @property
    def ready(self) -> bool:
        """True when `get` starts no read: a fresh value is kept, or a read is in flight."""
        return self._inflight is not None or self._fresh()

    def _fresh(self) -> bool:
        return self._value is not None and self._clock() - self._taken_at < self.ttl

    def latest(self) -> tuple[float, T] | None:
        """The last value read and its stamp on `clock`, fresh or not; never reads."""
        return None if self._value is None else (self._taken_at, self._value)

    async def get(self) -> T:
        if self._value is not None and self._fresh():
            return self._value
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
        # shield: one caller's cancellation (a closed request) must not cancel the others' read.
        return await asyncio.shield(self._inflight)

    async def _refresh(self) -> T:
        try:
            loop = asyncio.get_running_loop()
            value = await loop.run_in_executor(self._executor, self._read)
            self._value, self._taken_at = value, self._clock()
            return value
        finally:
            self._inflight = None
