"""The fault matrix: real `jupyter server` processes, real cloudflared stand-in children.

Only the rows that tests/test_tunnel.py does not already cover; docs/reliability.md lists the
whole matrix (both files). Every row names the state and error kind it must reach, watches the
server's children for its whole length (never two cloudflared at once), and ends with no child
left behind (the `tunnel_server` fixture fails the test on any survivor as well).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from tunnel_env import TunnelServer

from jupyter_colab_tunnel.tunnel.child import MAX_LINE

pytestmark = pytest.mark.e2e


class ChildWatch:
    """Counts the server's live cloudflared children every few milliseconds, in a thread."""

    def __init__(self, ts: TunnelServer, interval: float = 0.02) -> None:
        self.ts = ts
        self.interval = interval
        self.max_seen = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> int:
        try:
            children = psutil.Process(self.ts.server.pid).children()
        except psutil.NoSuchProcess:
            return 0
        n = 0
        for child in children:
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
                if any(part.endswith("/cloudflared") for part in child.cmdline()[:2]):
                    n += 1
            except psutil.Error:
                continue
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max_seen = max(self.max_seen, self.count())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> ChildWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        assert self.samples > 0
        assert self.max_seen <= 1, f"{self.max_seen} cloudflared children at once"


@contextmanager
def watched(ts: TunnelServer) -> Iterator[ChildWatch]:
    with ChildWatch(ts) as watch:
        yield watch


def sigterm_server(ts: TunnelServer) -> float:
    """SIGTERM the server; it must exit 0 and leave no cloudflared behind. Returns seconds."""
    pids = ts.spawned_pids()
    t0 = time.monotonic()
    code = ts.server.stop(signal.SIGTERM, timeout=30)
    elapsed = time.monotonic() - t0
    assert code == 0, ts.server.log()[-3000:]
    assert ts.alive_spawned() == []
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    return elapsed


def stop_tunnel(ts: TunnelServer, watch: ChildWatch) -> None:
    r = ts.post("stop", timeout=30)
    assert r.status == 200
    assert r.json()["state"] == "stopped"
    assert watch.count() == 0
    assert ts.alive_spawned() == []


# ----- log flood of 100 kB lines with invalid UTF-8 -----------------------------------------


def test_flood_of_100kb_invalid_utf8_lines(tunnel_server: Any) -> None:
    """Row: log flood, 100 kB lines, invalid UTF-8 -> ready, no error; lines cut, buffer bound."""
    ts = tunnel_server(
        faults="log_flood=40,flood_line_bytes=100000,flood_invalid_utf8",
        traits={"log_lines": 200},
    )
    with watched(ts) as watch:
        body = ts.wait_state("ready")
        assert body["error"] is None
        rss_before = psutil.Process(ts.server.pid).memory_info().rss
        # Keep answering promptly while ~4 MB/s of garbage goes through the pipe.
        worst = 0.0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            ts.server.get_json("api/status")
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.1)
        assert worst < 2.0, f"the server took {worst:.2f}s to answer during the flood"
        snap = ts.tunnel(logs=100000)
        assert snap["state"] == "ready"
        assert snap["error"] is None
        assert snap["pid"] == body["pid"]
        assert 50 <= len(snap["logs"]) <= 200
        assert max(len(line) for line in snap["logs"]) <= MAX_LINE
        assert any("\ufffd" in line for line in snap["logs"])
        growth = psutil.Process(ts.server.pid).memory_info().rss - rss_before
        assert growth < 64 * 2**20, f"server RSS grew {growth / 2**20:.0f} MiB in 3 s"
        stop_tunnel(ts, watch)


# ----- token file unreadable ----------------------------------------------------------------


def test_token_file_unreadable(tunnel_server: Any, tmp_path: Path) -> None:
    """Row: tunnel_token_file cannot be read -> failed, token_unavailable; nothing spawned.

    Tests run as root, where chmod 000 does not stop a read: a directory is unreadable as a
    file for everyone (EISDIR).
    """
    unreadable = tmp_path / "token-dir"
    unreadable.mkdir()
    ts = tunnel_server(traits={"tunnel_token_file": str(unreadable)})
    with watched(ts):
        body = ts.wait_state("failed")
        assert body["mode"] == "named"
        assert body["error"]["kind"] == "token_unavailable"
        assert "Is a directory" in body["error"]["message"]
        assert str(unreadable) in body["error"]["message"]
        time.sleep(0.3)
        assert ts.spawned_pids() == []
        # Fixing the file and asking again works without a server restart.
        unreadable.rmdir()
        unreadable.write_text("notatoken\n")
        assert ts.post("start").status == 200
        body = ts.wait_state("failed", error_kind="invalid_token")
        assert len(ts.spawned_pids()) == 1


# ----- server SIGTERM during start and during backoff ---------------------------------------


SIGTERM_ROWS = [
    # (row id, faults, traits, state to reach before SIGTERM, error kind there)
    ("spawning", "", {"autostart": False}, "starting", None),
    ("starting", "request_delay=60", {}, "starting", None),
    ("starting-child-ignores-sigterm", "request_delay=60,ignore_sigterm", {}, "starting", None),
    ("connecting-never-ready", "never_ready=0.2", {}, "connecting", "network"),
    (
        "backoff",
        "crash_after=0.3",
        {"restart_backoff_initial": 60.0, "restart_backoff_max": 60.0},
        "backoff",
        "crashed",
    ),
]


@pytest.mark.parametrize(
    ("faults", "traits", "state", "kind"),
    [row[1:] for row in SIGTERM_ROWS],
    ids=[row[0] for row in SIGTERM_ROWS],
)
def test_server_sigterm_mid_tunnel(
    tunnel_server: Any, faults: str, traits: dict[str, Any], state: str, kind: str | None
) -> None:
    """Rows: server SIGTERM during start / backoff -> exits 0 quickly, no child left."""
    ts = tunnel_server(faults=faults, traits=traits)
    with watched(ts):
        if traits.get("autostart") is False:
            assert ts.post("start").status == 200  # SIGTERM lands while it spawns
        else:
            # A child must be running (it has logged), not just forked: SIGTERM before its
            # handlers exist would kill it at once, whatever the fault asks it to do.
            body = ts.server.wait_for(
                "colab/tunnel?logs=100",
                lambda b: (
                    b["state"] == state
                    and (b["error"] or {}).get("kind") == kind
                    and (state == "backoff" or b["pid"] is not None)
                    and (state != "starting" or any("Requesting new quick" in x for x in b["logs"]))
                ),
            )
            if state == "backoff":
                assert body["pid"] is None
                assert body["next_retry_at"] is not None
            else:
                assert body["pid"] is not None
                if kind is None:
                    assert body["error"] is None
        elapsed = sigterm_server(ts)
    # stop_timeout is 2 s in these tests: a child ignoring SIGTERM costs that, once.
    limit = 2.0 + 6.0 if "ignore_sigterm" in faults else 6.0
    assert elapsed < limit, f"the server took {elapsed:.1f}s to exit"
    if "ignore_sigterm" in faults:
        assert "ignored SIGTERM" in ts.server.log()


# ----- 200 concurrent actions ---------------------------------------------------------------


def test_200_concurrent_actions(tunnel_server: Any) -> None:
    """Row: 200 concurrent start/stop/restart -> all 200, at most one child, then ready."""
    ts = tunnel_server(traits={"autostart": False})
    rng = random.Random(7)
    actions = [rng.choice(["start", "stop", "restart"]) for _ in range(200)]
    with watched(ts) as watch:
        with ThreadPoolExecutor(max_workers=100) as pool:
            results = list(pool.map(lambda a: ts.post(a, timeout=120), actions))
        codes = [r.status for r in results]
        assert codes == [200] * 200, sorted(set(codes))
        for action, r in zip(actions, results, strict=True):
            # The answer is the snapshot right after that action, under the supervisor's lock.
            if action == "stop":
                assert r.json()["state"] == "stopped"
            else:
                assert r.json()["state"] in ("starting", "connecting", "ready"), r.json()
        assert ts.post("start").status == 200
        final = ts.wait_state("ready")
        assert final["error"] is None
        assert [p.pid for p in ts.children()] == [final["pid"]]
        assert ts.server.get_json("api/status")
        stop_tunnel(ts, watch)
    assert watch.max_seen == 1
    assert ts.alive_spawned() == []


# ----- stdio closed early, child keeps running ----------------------------------------------


def test_closed_stdio_then_killed_is_still_supervised(tunnel_server: Any) -> None:
    """Row: stdout/stderr closed, child alive -> stays ready; its later death is still seen."""
    ts = tunnel_server(faults="close_stdio")
    with watched(ts) as watch:
        first = ts.wait_state("ready")
        time.sleep(0.5)
        assert ts.tunnel()["state"] == "ready"
        # Nothing to read any more, but the exit is not missed: it is restarted.
        os.kill(first["pid"], signal.SIGKILL)
        again = ts.server.wait_for(
            "colab/tunnel",
            lambda b: b["state"] == "ready" and b["pid"] not in (None, first["pid"]),
        )
        assert again["restarts"] == 1
        assert again["last_exit"]["signal"] == "SIGKILL"
        assert again["error"] is None
        kinds = [e["detail"] for e in again["events"] if e["state"] == "backoff"]
        assert kinds
        assert kinds[0].startswith("crashed")
        # And a stop of a child with closed stdio does not hang on its pipes.
        t0 = time.monotonic()
        stop_tunnel(ts, watch)
        assert time.monotonic() - t0 < 3.0
    assert ts.spawned_pids()[:1] == [first["pid"]]
