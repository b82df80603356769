"""Which remote the relay talks to now: a fixed URL, or the one a connection file names.

The connection file is rewritten by the remote (possibly through a synced folder): it is polled
by modification time, which costs one stat() per interval, and re-read only when it changed.
Only a record that connection_record.accept_record accepts moves the upstream: anything else is
refused with a reason, and the relay keeps its current remote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..connection_record import (
    MAX_RECORD_BYTES,
    ConnectionInfo,
    RecordRefused,
    accept_record,
    safe_origin,
)
from ..states import UNKNOWN, as_word
from .bounded_wait import event_set

T = TypeVar("T")


@dataclass(frozen=True)
class Upstream:
    """The remote in use: its public URL (no trailing slash), dialled as it is."""

    url: str


Listener = Callable[["Upstream | None", "Upstream | None"], None]


class UpstreamTracker:
    """The current upstream, who waits for one, and who hears of a switch."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.current: Upstream | None = None
        self.since = time.time()
        self.switches = 0
        self._last_url: str | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.state = UNKNOWN  # the remote's word (a TunnelState, or another version's)
        self._changed = asyncio.Event()
        self._listeners: list[Listener] = []
        # The connection file's record followed now (None with --url), and who hears of a new
        # one: a stopped runtime's last word, a new runtime, the life fields (relay/life.py).
        self.record: ConnectionInfo | None = None
        self._record_listeners: list[Callable[[ConnectionInfo], None]] = []

    def listen_records(self, listener: Callable[[ConnectionInfo], None]) -> Callable[[], None]:
        self._record_listeners.append(listener)
        return lambda: self._record_listeners.remove(listener)

    def set_record(self, info: ConnectionInfo) -> None:
        """A newly accepted record (before its URL is applied with set_url)."""
        self.record = info
        for listener in list(self._record_listeners):
            try:
                listener(info)
            except Exception:
                self.log.exception("a record listener failed")

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def set_url(self, url: str | None, state: str = as_word("ready"), quiet: bool = False) -> None:
        self.state = state
        url = url.rstrip("/") if url else None
        old = self.current
        if (old.url if old else None) == url:
            return
        new = Upstream(url) if url else None
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
            await event_set(self._changed, left)
        return self.current

    async def wait_change(self, since: Upstream | None, timeout: float) -> None:
        """Return when the upstream differs from `since`, or after `timeout` seconds."""
        if self.current != since:
            return
        await event_set(self._changed, timeout)


Stamp = tuple[int, int, int]

UNREADABLE_HINT = (
    "Check the path and its permissions; for a synced folder (Google Drive for desktop), that "
    "the remote has written the file and it has synced."
)


def read_record_file(path: str) -> tuple[Stamp, bytes]:
    """The file's stamp and at most MAX_RECORD_BYTES + 1 of its bytes. Raises RecordRefused.

    Never blocks on a FIFO or a device: only a regular file is opened (O_NONBLOCK, checked
    again with fstat on the open descriptor), and the read is capped.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _not_regular()
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise _unreadable(e) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped for something else in between
            raise _not_regular()
        chunks: list[bytes] = []
        left = MAX_RECORD_BYTES + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as e:
        raise _unreadable(e) from None
    finally:
        os.close(fd)
    return (st.st_mtime_ns, st.st_size, st.st_ino), b"".join(chunks)


def _unreadable(e: OSError) -> RecordRefused:
    return RecordRefused("unreadable", f"cannot read it: {e.strerror or e}", UNREADABLE_HINT)


def _not_regular() -> RecordRefused:
    return RecordRefused(
        "not_regular",
        "not a regular file (a FIFO, a directory or a device)",
        "--connection-file must name the JSON file the remote writes "
        "(ColabTunnelApp.connection_file).",
    )


async def off_loop(fn: Callable[[], T]) -> T:
    """Run blocking `fn` on a daemon thread: a read hung on a dead network mount can neither
    block the event loop nor keep the process from exiting on SIGTERM."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            result = fn()
        except BaseException as e:  # handed to the awaiting coroutine
            error = e
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(result))

    threading.Thread(target=run, name="connection-file-read", daemon=True).start()
    return await future


@dataclass(frozen=True)
class Loaded:
    """One poll: the file's stamp and bytes (None: unchanged), or why it could not be read."""

    stamp: Stamp | None
    raw: bytes | None
    refused: RecordRefused | None = None


class ConnectionFileWatcher:
    """Polls a connection file and feeds the live URL of each accepted record to a tracker.

    `token` is the relay's own remote token (--token-file or the environment): a record must be
    signed with it. Without one, a record carrying a token is checked against that token.
    """

    def __init__(
        self,
        path: str,
        tracker: UpstreamTracker,
        log: logging.Logger,
        interval: float = 0.25,
        token: str | None = None,
    ) -> None:
        self.path = os.path.expanduser(path)
        self.tracker = tracker
        self.log = log
        self.interval = interval
        self.token = token
        self.info: ConnectionInfo | None = None
        self.refused: RecordRefused | None = None
        self._stamp: Stamp | None = None
        self._task: asyncio.Task[None] | None = None
        self._problem: tuple[str, str] | None = None

    async def read_now(self) -> ConnectionInfo | None:
        """Read the file if it changed (off the loop); update the tracker; return the record
        followed now (or None)."""
        self._apply(await off_loop(self._load))
        return self.info

    def _load(self) -> Loaded:
        """Blocking I/O: one stat() when unchanged, else a capped read."""
        try:
            st = os.stat(self.path)
        except OSError as e:
            return Loaded(None, None, _unreadable(e))
        if (st.st_mtime_ns, st.st_size, st.st_ino) == self._stamp:
            return Loaded(self._stamp, None)
        try:
            stamp, raw = read_record_file(self.path)
        except RecordRefused as refused:
            return Loaded(None, None, refused)
        return Loaded(stamp, raw)

    def _apply(self, loaded: Loaded) -> None:
        if loaded.refused is not None:
            self._refuse(loaded.refused)
            return
        if loaded.raw is None:
            return  # unchanged since the last read
        # A refused record is not read again until the file changes (a partial file will).
        self._stamp = loaded.stamp
        try:
            info = accept_record(loaded.raw, self.token, self.info)
        except RecordRefused as refused:
            self._refuse(refused)
            return
        if self.refused is not None:
            self.log.info("Connection file %s: accepted a valid record again", self.path)
        self.refused = None
        self._problem = None
        self.info = info
        self.tracker.set_record(info)
        self.tracker.set_url(info.live_url, info.state or as_word("ready"))

    def _refuse(self, refused: RecordRefused) -> None:
        """Keep the current remote; say why once per distinct problem (never a token)."""
        self.refused = refused
        problem = (refused.kind, refused.message)
        if problem == self._problem:
            return
        self._problem = problem
        current = self.tracker.current
        keeping = safe_origin(current.url) if current else "none yet"
        self.log.warning(
            "Connection file %s refused (%s): %s. %s Keeping the current remote (%s).",
            self.path,
            refused.kind,
            refused.message,
            refused.hint,
            keeping,
        )
        self.tracker.record_error(f"connection file {self.path}: {refused.message}")

    def start(self) -> None:
        """Poll from now on (call read_now first for the initial read)."""
        self._task = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.read_now()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def describe(self) -> dict[str, Any]:
        """The record followed now and, if the file's last content was refused, why."""
        info = self.info
        return {
            "gateway_url": info.gateway_url if info else None,
            "state": info.state if info else None,
            "updated_at": info.updated_at if info else None,
            "refused": self.refused.as_dict() if self.refused else None,
        }
