"""The two waits of a launch, on the one poll loop: until the server answers, then until the
tunnel is ready (or waiting longer is pointless). Ctrl-C ends a wait with one line."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..problems import Problem
from ..states import known_state
from . import record as rec
from . import server
from .errors import LaunchError
from .poll import poll
from .report import STOP_HOW, Reporter
from .watch import Observation, TunnelWatch

if TYPE_CHECKING:
    from .connection import Connection


class Interrupted(Exception):
    """Ctrl-C during a wait; the one line about it is printed already."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(f"stopped waiting for the server (pid {conn.pid})")
        self.conn = conn


def interrupted_line(conn: Connection) -> str:
    return (
        f"Stopped waiting (Ctrl-C). The Jupyter server (pid {conn.pid}) is still running in "
        f"the background; stop it: {STOP_HOW}."
    )


def wait_interruptibly(conn: Connection, report: Reporter, wait: Callable[[], None]) -> None:
    """Run `wait`; on Ctrl-C print one line (no traceback) and raise `Interrupted`."""
    try:
        wait()
    except KeyboardInterrupt:
        report.line(interrupted_line(conn))
        raise Interrupted(conn) from None


def wait_serving(conn: Connection, deadline: float) -> None:
    """Until /api/status answers with our token; LaunchError if the server dies or refuses."""

    def answered() -> bool | None:
        code, _ = server.get_json(conn.local_url + "api/status", conn.token, 2.0)
        if code == 200:
            return True
        if server.exited(conn.pid, conn.create_time, conn.port):
            rec.forget(rec.state_dir(), conn.pid)
            raise LaunchError(
                "server_exited",
                f"jupyter server exited during start-up; its log ends with:\n"
                f"{server.log_tail(conn.log_path)}",
                f"Read the whole log: {conn.log_path}",
                conn.log_path,
            )
        if code in (401, 403):
            raise LaunchError(
                "token_rejected",
                f"the server on port {conn.port} refuses the recorded token",
                "Stop it (`jupyter colab-tunnel stop`) and launch again.",
                conn.log_path,
            )
        return None

    if poll(answered, deadline) is None:
        raise LaunchError(
            "server_timeout",
            f"jupyter server did not answer on {conn.local_url} in time; its log ends with:\n"
            f"{server.log_tail(conn.log_path)}",
            f"Raise timeout, or read the log. The server is still running; stop it: {STOP_HOW}.",
            conn.log_path,
        )


def wait_for_tunnel(
    conn: Connection, deadline: float, report: Reporter, give_up_after: int | None
) -> None:
    """Follow /colab/tunnel into `conn` until it settles, keeps failing, or time is up."""
    watch = TunnelWatch(give_up_after)
    deadline_epoch = time.time() + (deadline - time.monotonic())

    def settled() -> Observation | None:
        code, body = server.get_json(conn.local_url + "colab/tunnel", conn.token, 5.0)
        if code == 404:
            raise LaunchError(
                "extension_missing",
                "the server answers, but not /colab/tunnel: jupyter_colab_tunnel is not loaded",
                "Install jupyter-colab-tunnel in the Python that runs the server "
                f"({sys.executable}) and check `jupyter server extension list`.",
                conn.log_path,
            )
        if code == 200 and isinstance(body, dict):
            conn.refresh(body)
            seen = watch.observe(body, deadline_epoch)
            if seen.line is not None:
                report.line(seen.line)
            return seen if seen.stop is not None else None
        if not conn.alive():
            raise LaunchError(
                "server_exited",
                f"jupyter server exited; its log ends with:\n{server.log_tail(conn.log_path)}",
                f"Read the whole log: {conn.log_path}",
                conn.log_path,
            )
        return None

    outcome = poll(settled, deadline)
    if outcome is None:
        if conn.error is None:
            conn.error = Problem(
                "timeout", f"the tunnel was not ready before the timeout (state {conn.state})"
            )
        report.line(f"Stopped waiting: the tunnel is not ready before the timeout ({conn.state}).")
    elif outcome.stop != "settled":
        report.line(f"Stopped waiting: {outcome.why}.")
    if known_state(conn.state) == "stopped" and conn.error is None:
        conn.error = Problem(
            "not_started",
            "the tunnel is stopped (autostart is off)",
            'Start it: POST {"action": "start"} to /colab/tunnel.',
        )
