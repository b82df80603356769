"""One run of cloudflared as the supervisor follows it: the child, what it said, its health news.

A `Run` knows its supervisor only through `RunReports` (the URL, and where the health
checks' news goes), so the state machine's own methods stay its own.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..problems import Problem
from .child import LineSink
from .command import TunnelCommand


class Child(Protocol):
    """One running cloudflared, as the supervisor needs it (child.CloudflaredProcess)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    async def terminate(self, timeout: float) -> None: ...


class Spawner(Protocol):
    """Starts one child whose lines go to `on_line`; raises OSError if it cannot run."""

    async def __call__(
        self, command: TunnelCommand, on_line: LineSink, log: logging.Logger
    ) -> Child: ...


@dataclass(frozen=True)
class RunReports:
    """What a run may ask of the supervisor, and where its health checks' news goes."""

    url: Callable[[], str | None]  # the tunnel URL, once known
    confirmed_url: Callable[[str], None]  # the quick tunnel's hostname from its metrics server
    readiness: Callable[[Run, int, bool], None]  # /ready: connections, and ready or not
    lost: Callable[[], None]  # ready before, now unready twice in a row


class Run:
    """One child and what it said; health.Watched for the health checks."""

    def __init__(self, reports: RunReports) -> None:
        self._reports = reports
        self.child: Child | None = None
        self.stderr_tail: deque[str] = deque(maxlen=50)
        self.stdout_tail: deque[str] = deque(maxlen=50)
        self.metrics: str | None = None
        # cloudflared's usage error comes first, then a help text longer than any tail we keep.
        self.usage_line: str | None = None
        self.stop_requested = False
        self.kill_reason: Problem | None = None
        # When this child was first seen ready (monotonic), by its log line or by /ready.
        self.ready_since: float | None = None

    @property
    def url(self) -> str | None:
        return self._reports.url()

    def confirmed_url(self, url: str) -> None:
        self._reports.confirmed_url(url)

    def readiness(self, connections: int, ready: bool) -> None:
        self._reports.readiness(self, connections, ready)

    def lost(self) -> None:
        self._reports.lost()

    def heard(self, stream: str, line: str) -> None:
        """Keep a line in its stream's tail (and cloudflared's usage error, which comes first)."""
        (self.stderr_tail if stream == "stderr" else self.stdout_tail).append(line)
        if self.usage_line is None and line.startswith("Incorrect Usage"):
            self.usage_line = line

    def exit_output(self) -> tuple[list[str], list[str]]:
        """(stderr, stdout) to classify the exit by: the usage error alone wins over the tail."""
        stdout = [self.usage_line] if self.usage_line else list(self.stdout_tail)
        return list(self.stderr_tail), stdout
