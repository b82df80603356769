"""While waiting for the tunnel: when waiting longer is pointless, and what to print (pure).

Waiting ends when the tunnel settles (ready, failed, off, stopped), when the same retryable
error has come back `give_up_after` times in a row, or when the next retry is due only after
the deadline. The server keeps retrying in the background in the last two cases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..states import ERRORED, SETTLED, UNKNOWN, known_state

GIVE_UP_AFTER = 3

StopReason = Literal["settled", "repeating", "late_retry"]


@dataclass(frozen=True)
class Observation:
    line: str | None = None  # a progress line not printed before
    stop: StopReason | None = None  # why waiting longer is pointless; None: keep waiting
    why: str = ""  # for "repeating" and "late_retry": the reason in words


@dataclass
class TunnelWatch:
    """Feed it each /colab/tunnel answer in turn."""

    give_up_after: int | None = GIVE_UP_AFTER
    _shown: set[tuple[str, str | None, str | None]] = field(default_factory=set)
    _kind: str | None = None  # the retryable error being repeated, and
    _first: int = 0  # the server's restart count at its first backoff seen

    def observe(self, body: Mapping[str, Any], deadline_epoch: float | None = None) -> Observation:
        """What this answer means. `deadline_epoch`: the wait's end on the wall clock."""
        state = str(body.get("state") or UNKNOWN)
        error = body.get("error") if isinstance(body.get("error"), dict) else None
        kind = str(error.get("kind")) if error else None
        info = body.get("connect")
        url = info.get("gateway_url") if isinstance(info, dict) else None
        line = self._progress(state, url, kind)
        if state in SETTLED:
            return Observation(line, "settled")
        if known_state(state) != "backoff" or kind is None:
            return Observation(line)
        count = self._repeats(kind, _int(body.get("restarts")))
        if self.give_up_after is not None and count >= self.give_up_after:
            return Observation(line, "repeating", f"`{kind}` {count} times in a row")
        retry_at = _epoch(body.get("next_retry_at"))
        if deadline_epoch is not None and retry_at is not None and retry_at > deadline_epoch:
            wait = max(0.0, retry_at - deadline_epoch)
            return Observation(
                line,
                "late_retry",
                f"`{kind}`, and the next retry comes {wait:.0f}s after the timeout",
            )
        return Observation(line)

    def _progress(self, state: str, url: Any, kind: str | None) -> str | None:
        # An error is news only where it is the reason for the state.
        shown_kind = kind if state in ERRORED else None
        key = (state, url if isinstance(url, str) else None, shown_kind)
        if key in self._shown:
            return None
        self._shown.add(key)
        # The kind only: the message and hint come once, with the connection at the end.
        return (
            f"tunnel {state}"
            + (f" {key[1]}" if key[1] else "")
            + (f" ({shown_kind})" if shown_kind else "")
        )

    def _repeats(self, kind: str, restarts: int) -> int:
        """How many backoffs in a row had this kind. Each backoff has its own restart count,
        so one missed between two polls is still counted; a count that went down is a restart
        by request, and a new streak."""
        if kind != self._kind or restarts < self._first:
            self._kind, self._first = kind, restarts
        return restarts - self._first + 1


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _epoch(value: Any) -> float | None:
    """The API's timestamps (ISO 8601 with a trailing Z) as seconds since the epoch."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
