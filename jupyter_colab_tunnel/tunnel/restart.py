"""After cloudflared exits: restart it, after how long, or give up (pure; times passed in).

The rules over one problem (which kinds a restart can fix, which count as crashes, the
backoff curve) are in `errors.py`; this keeps what they need across exits since the last
start: the crashes within `crash_window`, and the backoff attempt, which starts over after
a run that stayed ready for as long as the longest backoff.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..problems import Problem
from .errors import backoff_delay, counts_as_crash, min_delay, retryable


@dataclass(frozen=True)
class RestartRules:
    """ColabTunnelApp's traits of the same meaning."""

    max_restarts: int
    crash_window: float
    backoff_initial: float
    backoff_max: float


@dataclass(frozen=True)
class Restart:
    delay: float  # seconds to wait first


@dataclass(frozen=True)
class GiveUp:
    error: Problem  # why: the exit's own error, or crash_loop


class RestartPolicy:
    """One per start of the tunnel: it remembers the exits since."""

    def __init__(self, rules: RestartRules) -> None:
        self.rules = rules
        self._crashes: deque[float] = deque()  # monotonic times of exits that count as crashes
        self._attempt = 0

    def after_exit(self, error: Problem, now: float, ready_since: float | None) -> Restart | GiveUp:
        """What to do after an exit classified as `error`, at monotonic time `now`;
        `ready_since`: when that run was first seen ready (None: never)."""
        if not retryable(error):
            return GiveUp(error)
        r = self.rules
        if counts_as_crash(error):
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > r.crash_window:
                self._crashes.popleft()
            if len(self._crashes) > r.max_restarts:
                return GiveUp(
                    Problem(
                        "crash_loop",
                        f"cloudflared exited {len(self._crashes)} times within "
                        f"{r.crash_window:g}s; last: {error.kind}: {error.message}",
                    )
                )
        cap = max(r.backoff_max, r.backoff_initial)
        if ready_since is not None and now - ready_since >= cap:
            self._attempt = 0  # it was stable: start the backoff over
        delay = max(
            backoff_delay(self._attempt, r.backoff_initial, r.backoff_max), min_delay(error)
        )
        self._attempt += 1
        return Restart(delay)
