"""Time-to-URL, time-to-ready, restart after a crash, URL republished after the restart.

One server (quick tunnel, stand-in on PATH). A poller sends GET /colab/tunnel on one
keep-alive connection, sleeping 1 ms between answers, and stamps each answer with time.time()
when it arrives; the stand-in stamps its own `url_printed_at` and `registered_at` with
time.time() on the same machine. A figure is "first answer showing it" minus "the stand-in
printed it": an upper bound that includes up to one poll period (reported as the baseline).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import statistics
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.report import Figure, Summary
from benchmarks.servers import Connection, Fleet, Server, parse_iso

# Restart backoff for the restart figure: base = initial = max, jittered to [0.5, 1] x base.
BACKOFF = 0.5
TARGET_MS = 10.0
RETRY_RE = re.compile(r"retrying in ([\d.]+)s")


@dataclass
class Poll:
    sent: float
    received: float
    pid: int | None
    url: str | None
    state: str
    next_retry_at: str | None


def poll_until(
    conn: Connection, done: Any, timeout: float = 30.0, interval: float = 0.001
) -> tuple[list[Poll], dict[str, Any]]:
    polls: list[Poll] = []
    deadline = time.time() + timeout
    while True:
        sent = time.time()
        body = conn.get_json("/colab/tunnel")
        received = time.time()
        polls.append(
            Poll(sent, received, body["pid"], body["url"], body["state"], body["next_retry_at"])
        )
        if done(body):
            return polls, body
        if received > deadline:
            raise RuntimeError(f"tunnel never got there; last: {body}")
        time.sleep(interval)


def periods_ms(polls: list[Poll]) -> list[float]:
    return [(b.received - a.received) * 1000 for a, b in itertools.pairwise(polls)]


def first(polls: list[Poll], pred: Any) -> Poll:
    for p in polls:
        if pred(p):
            return p
    raise RuntimeError("no poll matched")


def standin_times(server: Server, pid: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        state = server.standin_state(pid)
        if state.get("registered_at") and state.get("url_printed_at"):
            return state
        if time.monotonic() > deadline:
            raise RuntimeError(f"stand-in {pid} never registered: {state}")
        time.sleep(0.01)


def time_to_url(server: Server, rounds: int) -> dict[str, list[float]]:
    """POST restart `rounds` times; per restart the URL and ready latencies (ms)."""
    conn = server.connection()
    out: dict[str, list[float]] = {"url": [], "ready": [], "periods": [], "standin_gap": []}
    try:
        for _ in range(rounds):
            old = server.wait_ready()
            status, body = server.post("/colab/tunnel", {"action": "restart"})
            if status != 200:
                raise RuntimeError(f"restart: {status} {body[:200]!r}")
            polls, last = poll_until(
                conn,
                lambda b, old=old: b["pid"] not in (None, old["pid"]) and b["state"] == "ready",
            )
            pid = last["pid"]
            st = standin_times(server, pid)
            url_seen = first(polls, lambda p, pid=pid, st=st: p.pid == pid and p.url == st["url"])
            ready_seen = first(polls, lambda p, pid=pid: p.pid == pid and p.state == "ready")
            out["url"].append((url_seen.received - st["url_printed_at"]) * 1000)
            out["ready"].append((ready_seen.received - st["registered_at"]) * 1000)
            out["periods"] += periods_ms(polls)
            out["standin_gap"].append((st["registered_at"] - st["url_printed_at"]) * 1000)
    finally:
        conn.close()
    return out


def restarts(server: Server, rounds: int) -> dict[str, list[float]]:
    """SIGKILL the child `rounds` times; spawn overhead beyond the backoff, URL republished."""
    conn = server.connection()
    out: dict[str, list[float]] = {
        "overhead": [],
        "delay": [],
        "detect": [],
        "after_sleep": [],
        "woke": [],
        "spawn": [],
        "overhead_log": [],
        "republish": [],
        "periods": [],
        "delay_from_detail": [],
    }
    try:
        for _ in range(rounds):
            before = server.wait_ready()
            pid = before["pid"]
            t_kill = time.time()
            os.kill(pid, signal.SIGKILL)
            polls, last = poll_until(
                conn, lambda b, pid=pid: b["pid"] not in (None, pid) and b["state"] == "ready"
            )
            new_pid = last["pid"]
            backoff_events = [
                e
                for e in last["events"]
                if e["state"] == "backoff" and (parse_iso(e["at"]) or 0) >= t_kill
            ]
            spawn_events = [e for e in last["events"] if e["detail"] == f"pid {new_pid}"]
            if len(backoff_events) != 1 or len(spawn_events) != 1:
                raise RuntimeError(f"unexpected events after the kill: {last['events'][-6:]}")
            t_backoff = parse_iso(backoff_events[0]["at"]) or 0.0
            t_spawned = parse_iso(spawn_events[0]["at"]) or 0.0
            retry = [p.next_retry_at for p in polls if p.state == "backoff" and p.next_retry_at]
            m = RETRY_RE.search(backoff_events[0]["detail"])
            if retry:
                next_retry_at = parse_iso(retry[0]) or 0.0
                delay = next_retry_at - t_backoff
            else:  # not caught in backoff: the event's rounded delay (+-50 ms)
                delay = float(m.group(1)) if m else BACKOFF
                next_retry_at = t_backoff + delay
                out["delay_from_detail"].append(1.0)
            out["delay"].append(delay * 1000)
            out["detect"].append((t_backoff - t_kill) * 1000)
            out["after_sleep"].append((t_spawned - next_retry_at) * 1000)
            # After the sleep, _prepare logs "starting: restarting"; then the spawn.
            woke = [
                parse_iso(e["at"]) or 0.0
                for e in last["events"]
                if e["detail"] == "restarting"
                and t_backoff <= (parse_iso(e["at"]) or 0) <= t_spawned
            ]
            if woke:
                out["woke"].append((woke[0] - next_retry_at) * 1000)
                out["spawn"].append((t_spawned - woke[0]) * 1000)
            out["overhead"].append((t_spawned - t_kill - delay) * 1000)
            logged = [t for t, mm in server.log_times(r"Started cloudflared \(pid (\d+)\)")
                      if int(mm.group(1)) == new_pid]  # fmt: skip
            if logged:
                out["overhead_log"].append((logged[0] - t_kill - delay) * 1000)
            st = standin_times(server, new_pid)
            seen = first(polls, lambda p, n=new_pid, st=st: p.pid == n and p.url == st["url"])
            out["republish"].append((seen.received - st["url_printed_at"]) * 1000)
            out["periods"] += periods_ms(polls)
    finally:
        conn.close()
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    n_restart = 3 if quick else 20
    n_kill = 2 if quick else 10
    server = fleet.start(
        "tunnel",
        colab={
            "restart_backoff_initial": BACKOFF,
            "restart_backoff_max": BACKOFF,
            "max_restarts": 10_000,
        },
    )
    server.wait_ready()
    ttu = time_to_url(server, n_restart)
    rs = restarts(server, n_kill)
    fleet.sigkill(server)
    ctx["time_to_url_ms"] = ttu["url"]
    poll = Summary.of(ttu["periods"])
    kill_poll = Summary.of(rs["periods"])
    url, ready, overhead = (
        Summary.of(ttu["url"]),
        Summary.of(ttu["ready"]),
        Summary.of(rs["overhead"]),
    )
    republish = Summary.of(rs["republish"])
    poll_label = "poll resolution: interval between answers of GET /colab/tunnel"
    return [
        Figure(
            key="tunnel.time_to_url",
            group="tunnel",
            title="time-to-URL (printed -> /colab/tunnel)",
            unit="ms",
            value=url,
            baseline=poll,
            baseline_label=poll_label,
            target=f"p50 <= {TARGET_MS:.0f} ms",
            met=url.median <= TARGET_MS,
            compare=f"{url.median - poll.median:+.2f} ms vs poll",
            notes=f"{n_restart} POST restarts",
            details={"samples_ms": ttu["url"]},
        ),
        Figure(
            key="tunnel.time_to_ready",
            group="tunnel",
            title="time-to-ready (registered -> state ready)",
            unit="ms",
            value=ready,
            baseline=poll,
            baseline_label=poll_label,
            target=f"p50 <= {TARGET_MS:.0f} ms",
            met=ready.median <= TARGET_MS,
            compare=f"{ready.median - poll.median:+.2f} ms vs poll",
            notes=(
                "the stand-in's own URL->registered gap: "
                f"{statistics.median(ttu['standin_gap']):.0f} ms"
            ),
            details={"samples_ms": ttu["ready"], "standin_gap_ms": ttu["standin_gap"]},
        ),
        Figure(
            key="restart.spawn_overhead",
            group="restart",
            title="SIGKILL of child -> new child, minus backoff",
            unit="ms",
            value=overhead,
            baseline=Summary.of(rs["delay"]),
            baseline_label=(
                f"the backoff actually slept (base {BACKOFF} s, jittered), subtracted from the value"
            ),
            target="p50 <= 50 ms",
            met=overhead.median <= 50,
            compare=(
                f"exit seen {_median(rs['detect']):.1f} ms, spawn after sleep "
                f"{_median(rs['after_sleep']):.1f} ms"
            ),
            notes="new child = the supervisor's 'pid N' event (us); cross-checks in details",
            details={
                "samples_ms": rs["overhead"],
                "delay_ms": rs["delay"],
                "exit_detected_ms": rs["detect"],
                "spawn_after_sleep_ms": rs["after_sleep"],
                "of_which_sleep_overshoot_ms": rs["woke"],
                "of_which_prepare_and_spawn_ms": rs["spawn"],
                "by_log_timestamp_ms": rs["overhead_log"],
                "delay_read_from_event_detail": len(rs["delay_from_detail"]),
            },
        ),
        Figure(
            key="restart.url_republished",
            group="restart",
            title="URL republished after restart",
            unit="ms",
            value=republish,
            baseline=kill_poll,
            baseline_label=poll_label,
            target=f"p50 <= {TARGET_MS:.0f} ms (as time-to-URL)",
            met=republish.median <= TARGET_MS,
            compare=f"{republish.median - kill_poll.median:+.2f} ms vs poll",
            details={"samples_ms": rs["republish"]},
        ),
    ]
