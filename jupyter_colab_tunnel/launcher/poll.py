"""The one wait loop of the launcher: ask until there is an answer or the deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL = 0.25


def poll(
    probe: Callable[[], T | None],
    deadline: float,
    interval: float = POLL_INTERVAL,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T | None:
    """`probe()` until it returns something other than None; None once `deadline` has passed.

    `deadline` is on `clock`'s scale. The probe runs at least once, and once more at the
    deadline (never sleeping past it); what it raises goes to the caller.
    """
    while True:
        result = probe()
        if result is not None:
            return result
        now = clock()
        if now >= deadline:
            return None
        sleep(min(interval, deadline - now))
