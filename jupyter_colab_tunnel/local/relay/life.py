"""The remote runtime's life as the relay sees it: how long it has been up, when it may end,
and, once it is gone, saying so plainly (issue 21).

Two sources: the `life` object of the remote's GET /colab/status (read at most once a minute;
an older remote has none) and the connection file's record (`machine_started_at`,
`estimated_end_at`, and on shutdown `state: "stopped"` with a `reason`).

"Gone" is declared once, with since when and what to do:
- the record says `stopped` with a reason (the remote's last word): at once;
- the remote has been unreachable behind a dead tunnel (reachability.py) for `gone_after`
  seconds: a SIGKILL or a recycled machine writes nothing.
The open kernel websockets of the local JupyterLab are then closed with GONE_CLOSE_CODE, and
the relay's error bodies say `remote_gone`. A new record (a new runtime writing the same
connection file), or an answer from the remote, clears it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...connection_record import ConnectionInfo, parse_time
from ...http1 import UpstreamError
from ...problems import HINTS
from ...states import known_state
from ...timefmt import iso_utc
from ..bounded_wait import event_set
from ..failures import Failure, classify_exception, classify_status

if TYPE_CHECKING:
    from .server import Relay

# The minutes before an estimated end at which the relay warns, once each per estimate.
WARN_MINUTES = (30, 10)
# Two estimates closer than this are the same one (an idle estimate creeps as time passes).
SAME_ESTIMATE = 300.0
# How often `connect` reads the remote's /colab/status `life`: at most once a minute.
LIFE_INTERVAL = 60.0
# How often the warnings are weighed between reads (a record's estimate is weighed on arrival).
TICK = 15.0
# A private websocket close code ("4000-4999: for applications"), as HTTP's 410 Gone.
GONE_CLOSE_CODE = 4410
HINT = HINTS["remote_gone"]
HINT_FIXED_URL = (
    "Start a new runtime (in Colab, run launch() again) and restart the relay with its URL; "
    "with --connection-file the relay follows a new runtime by itself."
)


def due_warning(
    end: float, now: float, warned: list[tuple[float, int]], minutes: tuple[int, ...] = WARN_MINUTES
) -> int | None:
    """The warning to log now (minutes before `end`), or None; `warned` holds the warnings
    already logged as (estimated end, minutes) and gains the ones due now. An estimate learnt
    late gets only its nearest warning (10 minutes before, not also 30)."""
    left = end - now
    if left <= 0:
        return None
    due = [m for m in minutes if left <= m * 60]
    if not due:
        return None
    fresh = [m for m in due if not any(w == m and abs(e - end) < SAME_ESTIMATE for e, w in warned)]
    warned.extend((end, m) for m in fresh)
    nearest = min(due)
    return nearest if nearest in fresh else None


@dataclass(frozen=True)
class Gone:
    since: float
    reason: str
    hint: str
    cause: str  # "stopped" (the record said so) or "unreachable" (an answer clears it)

    def as_dict(self) -> dict[str, Any]:
        return {"since": iso_utc(self.since), "reason": self.reason, "hint": self.hint}


def _timestamp(value: Any) -> float | None:
    when = parse_time(value) if isinstance(value, str) else None
    return when.timestamp() if when is not None else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else None


class RemoteLife:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.gone: Gone | None = None
        self.life: dict[str, Any] | None = None  # /colab/status `life`, as last read
        self.checked_at: float | None = None
        self.warned: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._unlisten = relay.tracker.listen_records(self._on_record)
        self._unlisten_switch = relay.tracker.listen(self._on_switch)

    def start(self) -> None:
        record = self.relay.tracker.record
        if record is not None:
            self._on_record(record)  # read before the relay started
        self._task = asyncio.ensure_future(self._run())

    # ----- gone ---------------------------------------------------------------------------

    def declare_gone(self, since: float, reason: str, cause: str) -> None:
        if self.gone is not None:
            return
        hint = HINT if self.relay.settings.follows_file else HINT_FIXED_URL
        self.gone = Gone(since, reason, hint, cause)
        sockets = list(self.relay.sockets.values())
        self.relay.log.warning(
            "The remote runtime appears to be gone since %s: %s. %s%s",
            iso_utc(since),
            reason,
            hint,
            f" Closing {len(sockets)} open kernel websocket(s)." if sockets else "",
        )
        frame = self.close_frame()
        assert frame is not None
        for sock in sockets:
            sock.end(*frame)

    def close_frame(self) -> tuple[int, str] | None:
        """The close code and reason for a kernel websocket while gone, else None."""
        if self.gone is None:
            return None
        # A close reason is at most 123 bytes: the log and GET /relay/status say the rest.
        return (
            GONE_CLOSE_CODE,
            f"remote runtime gone since {iso_utc(self.gone.since)}; start a new one",
        )

    def clear_gone(self, why: str, cause: str | None = None) -> None:
        if self.gone is not None and cause in (None, self.gone.cause):
            self.gone = None
            self.relay.log.info("The remote runtime is back: %s", why)

    def failure(self, failure: Failure) -> Failure:
        """The failure to answer a local client: while gone, `remote_gone`, saying why."""
        gone = self.gone
        if gone is None:
            return failure
        # The last failure, where it adds something (not "no live URL" after a stop).
        said = failure.reason == "no_upstream" or failure.message in gone.reason
        last = "" if said else f" (last: {failure.message})"
        return Failure(
            "remote_gone",
            f"the remote runtime appears to be gone since {iso_utc(gone.since)}: "
            f"{gone.reason}{last}",
            gone.hint,
            503,
            True,
        )

    def _on_record(self, info: ConnectionInfo) -> None:
        if known_state(info.state) == "stopped" and info.reason:
            since = _timestamp(info.updated_at) or time.time()
            self.declare_gone(
                since, f"its connection file says it stopped ({info.reason})", "stopped"
            )
        else:
            self.clear_gone(f"its connection file has a new record (state {info.state or '?'})")
        self.life = None  # the status read was about the runtime before
        self.check_warnings()
        self._wake.set()

    def _on_switch(self, old: Any, new: Any) -> None:
        self.life = None
        self.checked_at = None
        self._wake.set()

    # ----- life ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any] | None:
        """/relay/status `remote_life`: each field from /colab/status where it has one (fresher),
        else from the connection file's record; None when neither says anything."""
        life, record = self.life or {}, self.relay.tracker.record
        started = life.get("machine_started_at") or (record.machine_started_at if record else None)
        end = life.get("estimated_end_at") or (record.estimated_end_at if record else None)
        if not self.life and started is None and end is None:
            return None
        started_ts = _timestamp(started)
        return {
            "machine_started_at": started if started_ts is not None else None,
            "uptime_seconds": round(time.time() - started_ts, 1) if started_ts else None,
            "idle_seconds": _number(life.get("idle_seconds")),
            "estimated_end_at": end if _timestamp(end) is not None else None,
            "estimated_end_reason": _text(life.get("estimated_end_reason")),
            "estimate": True,
            "checked_at": iso_utc(self.checked_at) if self.life else None,
        }

    def estimated_end(self) -> float | None:
        life = self.status()
        return _timestamp(life["estimated_end_at"]) if life else None

    def check_warnings(self, now: float | None = None) -> None:
        end = self.estimated_end()
        if end is None or self.gone is not None:
            return
        minutes = due_warning(end, time.time() if now is None else now, self.warned)
        if minutes is None:
            return
        reason = (self.status() or {}).get("estimated_end_reason")
        why = {"max_lifetime": "its maximum lifetime", "idle": "idleness"}.get(reason or "", "")
        self.relay.log.warning(
            "The remote runtime may end in about %d minutes (estimated at %s%s; an estimate, "
            "not a promise): save your work or a checkpoint now.",
            minutes,
            iso_utc(end),
            f", by {why}" if why else "",
        )

    async def _run(self) -> None:
        interval = self.relay.settings.life_interval
        while True:
            upstream = self.relay.tracker.current
            now = time.time()
            due = interval > 0 and (self.checked_at is None or now - self.checked_at >= interval)
            self._wake = asyncio.Event()
            if upstream is not None and self.gone is None and due:
                self.checked_at = now
                await self._read_life(upstream)
            self.check_warnings()
            await event_set(self._wake, min(interval, TICK) or TICK)

    async def _read_life(self, upstream: Any) -> None:
        relay = self.relay
        try:
            response = await relay.client.fetch(
                f"{upstream.url}/colab/status",
                "GET",
                relay.upstream_headers(),
                None,
                relay.settings.connect_timeout,
                relay.settings.connect_timeout,
            )
        except UpstreamError as e:
            relay.reachability.suspect(classify_exception(e.cause, upstream.url))
            return
        if relay.tracker.current != upstream:
            return
        edge = classify_status(response.code, response.body or b"", upstream.url)
        if edge is not None:
            relay.reachability.suspect(edge)
            return
        relay.reachability.answered()
        try:
            body = json.loads(response.body) if response.code == 200 else None
        except ValueError:
            body = None
        life = body.get("life") if isinstance(body, dict) else None
        self.life = life if isinstance(life, dict) else None  # an older remote has none

    async def close(self) -> None:
        self._unlisten()
        self._unlisten_switch()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
