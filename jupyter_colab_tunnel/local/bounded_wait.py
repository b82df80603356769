"""Waits that end when they say, whatever cancellation does meanwhile.

`asyncio.wait_for` cancels what it waited on at the timeout and then waits for it to end: if that
swallows the cancellation (tornado's serving loop returns on CancelledError), wait_for never
returns, and a cancellation that meets a timeout can be lost inside it before Python 3.12. Both
left a relay's `close()` hanging, once, in CI. `asyncio.wait` does neither: these waits give up
at their timeout and let a cancellation through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def event_set(event: asyncio.Event, timeout: float) -> bool:
    """Whether `event` is set within `timeout` seconds."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=max(timeout, 0.0))
    finally:
        waiter.cancel()
    return event.is_set()


async def finished_within(work: Awaitable[object], timeout: float) -> bool:
    """Whether `work` ended within `timeout` seconds; if not, it is cancelled and left to end
    by itself (never waited on again)."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait((task,), timeout=timeout)
    if not done:
        task.cancel()
        return False
    if not task.cancelled():
        task.exception()  # retrieved: a failed close is not logged as "never retrieved"
    return True
