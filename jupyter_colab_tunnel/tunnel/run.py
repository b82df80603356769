"""One run of cloudflared as the supervisor follows it: the child, what it said, its health news.

A `Run` knows its supervisor only through `RunReports` (the URL, and where the health
checks' news goes), so the state machine's own methods stay its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..problems import Problem
from ..timefmt import iso_utc
from .child import LineSink
from .command import TunnelCommand
from .health import HealthWatch
from .logs import classify_exit, signal_name


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

    def seen_ready(self, now: float) -> None:
        if self.ready_since is None:
            self.ready_since = now

    def heard(self, stream: str, line: str) -> None:
        """Keep a line in its stream's tail (and cloudflared's usage error, which comes first)."""
        (self.stderr_tail if stream == "stderr" else self.stdout_tail).append(line)
        if self.usage_line is None and line.startswith("Incorrect Usage"):
            self.usage_line = line

    async def follow(
        self,
        health: HealthWatch,
        stop_timeout: float,
        log: logging.Logger,
        on_kill: Callable[[Problem], None],
    ) -> None:
        """Until the child exits; when its health checks find a reason first (no URL in time,
        a stall), that is its `kill_reason`: `on_kill` hears it, then the child is stopped."""
        child = self.child
        assert child is not None
        checks = asyncio.ensure_future(health.run(self))
        exited = asyncio.ensure_future(child.wait())
        try:
            await asyncio.wait((checks, exited), return_when=asyncio.FIRST_COMPLETED)
            if checks.done() and not exited.done():
                reason = None
                if checks.exception() is not None:
                    log.error("Tunnel health check failed", exc_info=checks.exception())
                else:
                    reason = checks.result()
                if reason is not None and not self.stop_requested:
                    self.kill_reason = reason
                    on_kill(reason)
                    await child.terminate(stop_timeout)
            await exited
        finally:
            for task in (checks, exited):
                task.cancel()
            await asyncio.gather(checks, exited, return_exceptions=True)

    @property
    def returncode(self) -> int:
        code = self.child.returncode if self.child is not None else None
        assert code is not None, "the child has not exited"
        return code

    def exit_facts(self, at: float) -> dict[str, Any]:
        """/colab/tunnel's `last_exit`: the exit code, or the signal that killed it, and when."""
        code = self.returncode
        return {
            "code": code if code >= 0 else None,
            "signal": signal_name(-code) if code < 0 else None,
            "at": iso_utc(at),
        }

    def classified_exit(self) -> Problem:
        """What an exit nobody asked for means; the usage error alone wins over stdout's tail."""
        stdout = [self.usage_line] if self.usage_line else list(self.stdout_tail)
        return classify_exit(self.returncode, list(self.stderr_tail), stdout)
