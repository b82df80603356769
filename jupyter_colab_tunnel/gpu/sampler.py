"""`GpuSampler`: NVML samples for the server, off the event loop, shared and briefly reused."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..cache import SharedSample
from ..problems import Problem
from .samples import gpu_sample, without_processes

if TYPE_CHECKING:
    from .reader import NvmlReader

log = logging.getLogger(__name__)

_Work = tuple["concurrent.futures.Future[Any]", Callable[[], Any]]


class NvmlThread(concurrent.futures.Executor):
    """One daemon thread for NVML calls.

    A driver call can hang (a lost GPU). In a ThreadPoolExecutor that would also hang the
    server's exit, which joins pool threads; a daemon thread is abandoned instead. Like every
    executor it refuses work once shut down: queued behind the stop mark, it would never run.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._shut_down = False
        self._thread = threading.Thread(target=self._work, name="nvml", daemon=True)
        self._thread.start()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if not self._shut_down:
                self._shut_down = True
                if cancel_futures:
                    self._cancel_queued()
                self._queue.put(None)
        if wait:
            self._thread.join()

    def _cancel_queued(self) -> None:
        pending: list[_Work | None] = []
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for item in pending:
            if item is not None:
                item[0].cancel()


class GpuSampler:
    """Async access to an `NvmlReader` for the server.

    NVML calls run in `executor`; when none is given the sampler owns one daemon thread, so a
    hung driver call never occupies the loop's default pool (which Jupyter uses for file I/O)
    and never holds up the server's exit. Concurrent callers share one in-flight sample, and a
    sample is reused for `cache_ttl` seconds on `clock` (0: always fresh, still shared while in
    flight). A
    sample taken with processes also serves ``processes=False`` callers (their view has
    ``processes: null``); a ``False`` sample never serves ``True`` callers.

    Samples are shared, not copied (a deep copy per request was the largest cost of
    /colab/status): callers must treat what `get()` returns as read-only.

    After `close()` every caller gets a ``shutting_down`` error sample at once: jupyter_server
    stops extensions before its HTTP server, so requests still arrive then.
    """

    CLOSE_TIMEOUT = 1.0

    def __init__(
        self,
        reader: NvmlReader,
        cache_ttl: float = 1.0,
        executor: concurrent.futures.Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self._own_executor = executor is None
        self._executor: concurrent.futures.Executor = executor or NvmlThread()
        self._with_processes = SharedSample(
            functools.partial(self._read, True), cache_ttl, self._executor, clock
        )
        self._without_processes = SharedSample(
            functools.partial(self._read, False), cache_ttl, self._executor, clock
        )
        self._closed = False

    @property
    def cache_ttl(self) -> float:
        return self._with_processes.ttl

    @cache_ttl.setter
    def cache_ttl(self, seconds: float) -> None:
        self._with_processes.ttl = self._without_processes.ttl = seconds

    async def get(self, processes: bool = True) -> dict[str, Any]:
        if self._closed:
            return closed_sample()
        full, lean = self._with_processes, self._without_processes
        if processes:
            return await full.get()
        # Prefer the lean sample; a full one that needs no new read serves as well.
        if full.ready and not lean.ready:
            return without_processes(await full.get())
        return await lean.get()

    def latest(self) -> tuple[float, dict[str, Any]] | None:
        """The newest sample already taken (with processes or not) and its monotonic stamp.

        Never calls NVML: for readers on the event loop that must not wait (the /metrics
        collector). None before the first sample and after `close()`. Read-only, like get()'s.
        """
        if self._closed:
            return None
        hits = [h for h in (self._with_processes.latest(), self._without_processes.latest()) if h]
        return max(hits, key=lambda hit: hit[0]) if hits else None

    def _read(self, processes: bool) -> dict[str, Any]:
        """On the NVML thread. A read queued behind close()'s shutdown must not start NVML again."""
        if self._closed:
            return closed_sample()
        return self.reader.sample(processes)

    async def close(self) -> None:
        """Shut NVML down after any sample in flight, waiting at most CLOSE_TIMEOUT for it.

        A sample still running on a hung driver is left to finish on its own (daemon) thread.
        """
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._executor, self.reader.shutdown)
        try:
            await asyncio.wait_for(asyncio.shield(done), self.CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("NVML is still busy; not waiting for it to shut down")
        if self._own_executor:
            self._executor.shutdown(wait=False)


def closed_sample() -> dict[str, Any]:
    return gpu_sample(
        error=Problem("shutting_down", "The server is shutting down: GPUs are no longer read")
    )
