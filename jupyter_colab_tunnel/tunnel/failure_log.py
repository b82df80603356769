"""What the server log says when the tunnel goes down: why, once, without flooding it.

Entering `backoff` logs a WARNING with kind, message and hint; entering `failed` an ERROR. In a
retry storm (the same kind again and again, as in an outage) the log gets the first WARNING,
then one summary every `summary_every` backoffs in a row, and one line when it recovers.
"""

from __future__ import annotations

import logging

from ..problems import Problem

STORM_SUMMARY_EVERY = 10


class FailureLog:
    def __init__(self, log: logging.Logger, summary_every: int = STORM_SUMMARY_EVERY) -> None:
        self.log = log
        self.summary_every = summary_every
        self._kind: str | None = None  # the kind of the backoffs in a row
        self._count = 0

    def backoff(self, error: Problem, delay: float) -> None:
        if error.kind == self._kind:
            self._count += 1
        else:
            self._kind, self._count = error.kind, 1
        if self._count == 1:
            self.log.warning(
                "Tunnel backoff: %s: %s; retrying in %.1fs\n    Hint: %s",
                error.kind,
                error.message,
                delay,
                error.hint,
            )
        elif self._count % self.summary_every == 0:
            self.log.warning(
                "Tunnel still in backoff: %s, %d times in a row; last: %s; retrying in %.1fs",
                error.kind,
                self._count,
                error.message,
                delay,
            )
        else:
            self.log.debug("Tunnel backoff: %s (%d in a row)", error.kind, self._count)

    def failed(self, error: Problem) -> None:
        self.reset()
        self.log.error("Tunnel failed: %s: %s\n    Hint: %s", error.kind, error.message, error.hint)

    def recovered(self) -> None:
        if self._count > 1:
            self.log.info(
                "Tunnel recovered after %d backoffs in a row (%s)", self._count, self._kind
            )
        self.reset()

    def reset(self) -> None:
        self._kind, self._count = None, 0
