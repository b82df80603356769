"""Which remote the relay talks to now: a fixed URL, or the one a connection file names.

The connection file is rewritten by the remote (possibly through a synced folder): it is polled
by modification time, which costs one stat() per interval, and re-read only when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A URL is live only when the remote says its tunnel is ready; hand-written files carry no state.
LIVE_STATES = frozenset({"ready", ""})


@dataclass(frozen=True)
class ConnectionInfo:
    """What a connection file says. `gateway_url` is the URL to forward to (url + base_url)."""

    gateway_url: str | None
    state: str
    token: str | None = None
    updated_at: str | None = None

    @property
    def live_url(self) -> str | None:
        return self.gateway_url if self.state in LIVE_STATES else None


class ConnectionFileError(ValueError):
    pass


def parse_connection_file(text: str) -> ConnectionInfo:
    """Parse the JSON the remote writes (see connection_file.py); raise ConnectionFileError."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConnectionFileError(f"not JSON ({e.msg} at line {e.lineno})") from None
    except ValueError as e:  # e.g. undecodable text
        raise ConnectionFileError(f"not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConnectionFileError("not a JSON object")
    url = data.get("gateway_url") or data.get("url")
    if url is not None and not isinstance(url, str):
        raise ConnectionFileError("'gateway_url' is not a string")
    if url and not url.startswith(("http://", "https://")):
        raise ConnectionFileError(f"'gateway_url' is not an http(s) URL: {url[:80]!r}")
    state = data.get("state", "")
    token = data.get("token")
    updated = data.get("updated_at")
    return ConnectionInfo(
        gateway_url=url.rstrip("/") if url else None,
        state=state if isinstance(state, str) else "",
        token=token if isinstance(token, str) and token else None,
        updated_at=updated if isinstance(updated, str) else None,
    )


@dataclass(frozen=True)
class Upstream:
    """The remote in use: its public URL and the URL actually dialled (they differ only when a
    resolver maps one to the other, e.g. a test's stand-in edge)."""

    url: str
    dial: str


Listener = Callable[["Upstream | None", "Upstream | None"], None]


class UpstreamTracker:
    """The current upstream, who waits for one, and who hears of a switch."""

    def __init__(
        self,
        log: logging.Logger,
        resolve: Callable[[str], str] = lambda url: url,
    ) -> None:
        self.log = log
        self._resolve = resolve
        self.current: Upstream | None = None
        self.since = time.time()
        self.switches = 0
        self._last_url: str | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.state = "unknown"
        self._changed = asyncio.Event()
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def set_url(self, url: str | None, state: str = "ready", quiet: bool = False) -> None:
        self.state = state
        url = url.rstrip("/") if url else None
        old = self.current
        if (old.url if old else None) == url:
            return
        new = Upstream(url, self._resolve(url)) if url else None
        self.current = new
        self.since = time.time()
        if new is not None:
            if self._last_url is not None and new.url != self._last_url:
                self.switches += 1  # a new URL, whatever came between (a restart: none)
            self._last_url = new.url
        if not quiet and (old is not None or new is not None):
            self.log.info(
                "Upstream %s -> %s (remote tunnel state: %s)",
                old.url if old else "none",
                new.url if new else "none",
                state,
            )
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception:
                self.log.exception("a switch listener failed")

    def record_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = time.time()

    async def wait_live(self, deadline: float) -> Upstream | None:
        """The current upstream, waiting until `deadline` (loop time) for one to appear."""
        loop = asyncio.get_running_loop()
        while self.current is None:
            left = deadline - loop.time()
            if left <= 0:
                return None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return self.current

    async def wait_change(self, since: Upstream | None, timeout: float) -> None:
        """Return when the upstream differs from `since`, or after `timeout` seconds."""
        if self.current != since:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)


class ConnectionFileWatcher:
    """Polls a connection file and feeds its live URL to a tracker."""

    def __init__(
        self, path: str, tracker: UpstreamTracker, log: logging.Logger, interval: float = 0.25
    ) -> None:
        self.path = os.path.expanduser(path)
        self.tracker = tracker
        self.log = log
        self.interval = interval
        self.info: ConnectionInfo | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._problem: str | None = None

    def read_now(self) -> ConnectionInfo | None:
        """Read the file if it changed; update the tracker; return what it says (or None)."""
        self._apply(self._load())
        return self.info

    def _load(self) -> tuple[tuple[int, int, int] | None, str | None, str | None]:
        """(stamp, text, problem); text is None when unchanged or unreadable. Blocking I/O."""
        try:
            st = os.stat(self.path)
        except OSError as e:
            return None, None, f"cannot read connection file {self.path}: {e.strerror}"
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return stamp, None, None
        try:
            with open(self.path, encoding="utf-8") as f:
                return stamp, f.read(), None
        except OSError as e:
            return None, None, f"cannot read connection file {self.path}: {e.strerror}"

    def _apply(self, loaded: tuple[tuple[int, int, int] | None, str | None, str | None]) -> None:
        stamp, text, problem = loaded
        if problem is not None:
            self._report(problem)
            return
        if text is None:
            return
        try:
            info = parse_connection_file(text)
        except ConnectionFileError as e:
            # A synced folder can briefly show a partial file: try again on the next poll.
            self._report(f"connection file {self.path}: {e}")
            return
        self._stamp = stamp
        self._problem = None
        self.info = info
        self.tracker.set_url(info.live_url, info.state or "ready")

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            self.log.warning("%s", problem)
            self.tracker.record_error(problem)
        self._problem = problem

    def start(self) -> None:
        self.read_now()
        self._task = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            # A local stat() takes microseconds, a hung network mount would not: use a thread.
            self._apply(await loop.run_in_executor(None, self._load))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def describe(info: ConnectionInfo | None) -> dict[str, Any]:
    if info is None:
        return {"gateway_url": None, "state": None, "updated_at": None}
    return {"gateway_url": info.gateway_url, "state": info.state, "updated_at": info.updated_at}
