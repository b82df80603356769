"""Waiting on a condition with a bound, for tests that must not synchronise by sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Return once `condition()` is true; fail with `what` after `timeout` seconds.

    Polls between loop iterations, so the event loop (and the code under test) runs meanwhile.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.005)
