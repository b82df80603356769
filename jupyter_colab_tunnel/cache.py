"""Run a blocking read off the event loop, share it between concurrent callers, reuse it briefly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from time import monotonic  # a name of its own, so tests can move the clock
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedSample(Generic[T]):
    """A value read by a blocking function, at most once per `ttl` seconds.

    Concurrent callers await the same in-flight read, so N requests cost one read; the read runs
    in `executor` (the loop's default when None) so a slow disk or driver never blocks the loop.
    """

    def __init__(self, read: Callable[[], T], ttl: float, executor: Executor | None = None) -> None:
        self._read = read
        self.ttl = ttl
        self._executor = executor
        self._value: T | None = None
        self._taken_at = float("-inf")
        self._inflight: asyncio.Future[T] | None = None

    @property
    def ready(self) -> bool:
        """True when `get` starts no read: a fresh value is kept, or a read is in flight."""
        return self._inflight is not None or self._fresh()

    def _fresh(self) -> bool:
        return self._value is not None and monotonic() - self._taken_at < self.ttl

    def latest(self) -> tuple[float, T] | None:
        """The last value read and its `time.monotonic()` stamp, fresh or not; never reads."""
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
            self._value, self._taken_at = value, monotonic()
            return value
        finally:
            self._inflight = None
