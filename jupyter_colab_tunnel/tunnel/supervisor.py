"""The tunnel state machine: when to start cloudflared, when to restart it, when to give up.

One asyncio task (`_run`) owns the child for its whole life, so there is never more than one
child; start/stop/restart only start or stop that task, under a lock. The child itself
(`child.py`), its health checks (`health.py`), time (`clock.py`), the restart policy
(`restart.py`) and the steps before a spawn (`prepare.py`) are passed in or imported, so every
transition runs in tests without processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..problems import Problem
from ..states import KEPT_BY_STOP, TunnelState
from ..timefmt import iso_utc
from . import binary as binary_module
from . import child as child_module
from .binary import Binary
from .clock import Clock, SystemClock
from .command import TunnelCommand, build_argv, normalize_cloudflared_args
from .errors import fit_to_mode
from .failure_log import FailureLog
from .health import HttpProbe, Probe
from .logs import classify_line, parse_line
from .prepare import BinaryLookup, tunnel_token
from .restart import GiveUp, RestartPolicy
from .run import Run, RunReports, Spawner
from .settings import SupervisorSettings


class TunnelSupervisor:
    """Keeps one cloudflared running for the server's life; its state is what /colab/tunnel shows."""

    def __init__(
        self,
        settings: SupervisorSettings,
        log: logging.Logger,
        origin: Callable[[], str],
        preflight: Callable[[], Problem | None] = lambda: None,
        on_url: Callable[[str | None], None] = lambda url: None,
        on_ready: Callable[[TunnelSupervisor], None] = lambda sup: None,
        on_state: Callable[[TunnelState], None] = lambda state: None,
        *,
        spawn: Spawner = child_module.spawn,
        resolve: Callable[[str], Binary] = binary_module.resolve,
        clock: Clock | None = None,
        probe: Probe | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self._origin = origin
        self._preflight = preflight
        self._on_url = on_url
        self._on_ready = on_ready
        self._on_state = on_state
        self._spawn_child = spawn
        self._binaries = BinaryLookup(resolve)
        self.clock: Clock = clock or SystemClock()
        self._wake = asyncio.Event()  # set when a line brought news for the health checks
        self._health = settings.health_watch(self.clock, probe or HttpProbe(), self._wake)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._run_record: Run | None = None
        # A run knows the supervisor only through these.
        self._reports = RunReports(
            url=lambda: self.url,
            confirmed_url=self._confirmed_url,
            readiness=self._readiness,
            lost=self._lost,
        )
        self.binary: Binary | None = None
        self.state: TunnelState = "off" if settings.tunnel_mode == "off" else "stopped"
        self.url: str | None = None
        self.pid: int | None = None
        self.restarts = 0
        # Never reset (unlike `restarts`, which counts since the last start): Prometheus counter.
        self.restarts_total = 0
        self.ready_connections = 0
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.next_retry_at: float | None = None
        self.last_exit: dict[str, Any] | None = None
        self.error: Problem | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=100)
        self.logs: deque[str] = deque(maxlen=settings.log_lines)
        self._failure_log = FailureLog(log)

    # ----- public API -------------------------------------------------------------------

    @property
    def metrics_address(self) -> str | None:
        """The running cloudflared's metrics server (host:port), once it said where."""
        return self._run_record.metrics if self._run_record else None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        async with self._lock:
            if self.running:
                return
            self._launch()

    async def stop(self) -> None:
        async with self._lock:
            await self._stop_locked()

    async def restart(self) -> None:
        async with self._lock:
            await self._stop_locked()
            self._launch()

    def fail(self, error: Problem) -> None:
        """Enter `failed` (e.g. invalid configuration); nothing runs until the next start."""
        self.error = error
        # A failed tunnel serves nothing: no URL to publish (a named one's included).
        self._set_url(None)
        self._set_state("failed", error.message, quiet=True)
        self._failure_log.failed(error)

    def note(self, detail: str) -> None:
        """An event that changes no state (e.g. why the tunnel was not started)."""
        self.events.append(
            {"at": iso_utc(self.clock.wall()), "state": self.state, "detail": detail}
        )

    def snapshot(self, logs: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = {
            "state": self.state,
            "mode": self.settings.tunnel_mode,
            "url": self.url,
            "pid": self.pid,
            "restarts": self.restarts,
            "ready_connections": self.ready_connections,
            "started_at": iso_utc(self.started_at),
            "ready_at": iso_utc(self.ready_at),
            "next_retry_at": iso_utc(self.next_retry_at),
            "last_exit": self.last_exit,
            "error": self.error.as_dict() if self.error else None,
            "cloudflared": {
                "path": self.binary.path if self.binary else None,
                "version": self.binary.version if self.binary else None,
            },
            "events": list(self.events),
        }
        if logs > 0:
            body["logs"] = list(self.logs)[-logs:]
        return body

    def summary(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "url": self.url,
            "restarts": self.restarts,
            "error": self.error.kind if self.error else None,
        }

    # ----- state ------------------------------------------------------------------------

    def _launch(self) -> None:
        self.restarts = 0
        self.error = None
        self._failure_log.reset()
        self._set_state("starting", "start requested")
        self._task = asyncio.ensure_future(self._run())

    def _set_state(self, state: TunnelState, detail: str = "", quiet: bool = False) -> None:
        """Record a state change; `quiet` when the caller logs it in its own words."""
        if state == self.state and not detail:
            return
        self.state = state
        self.events.append({"at": iso_utc(self.clock.wall()), "state": state, "detail": detail})
        if not quiet:
            self.log.info("Tunnel %s%s", state, f": {detail}" if detail else "")
        self._notify(self._on_state, state)

    async def _back_off(self, error: Problem, delay: float) -> None:
        """Wait `delay` before the next restart, in state backoff."""
        self.next_retry_at = self.clock.wall() + delay
        self._set_state("backoff", f"{error.kind}; retrying in {delay:.1f}s", quiet=True)
        self._failure_log.backoff(error, delay)
        await self.clock.sleep(delay)
        self.next_retry_at = None
        self.restarts += 1
        self.restarts_total += 1

    def _become_ready(self) -> None:
        if self.state == "ready":
            return
        self.ready_at = self.clock.wall()
        self.error = None
        self._failure_log.recovered()
        self._set_state("ready", self.url or "")
        self._notify(self._on_ready, self)

    def _notify(self, callback: Callable[[Any], None], arg: Any) -> None:
        """Run an owner's callback; its failure is logged, never fatal to supervision."""
        try:
            callback(arg)
        except Exception:
            self.log.exception("Tunnel: a state callback failed")

    def _set_url(self, url: str | None) -> None:
        if url == self.url:
            return
        self.url = url
        self._notify(self._on_url, url)

    def _problem(self, problem: Problem) -> Problem:
        return fit_to_mode(problem, self.settings.tunnel_mode)

    # ----- the run: prepare, spawn, watch, decide ---------------------------------------

    async def _stop_locked(self) -> None:
        task = self._task
        if task is None or task.done():
            if self.state not in KEPT_BY_STOP:
                self._set_state("stopped")
            return
        self._set_state("stopping")
        run = self._run_record
        if run is not None and run.child is not None:
            run.stop_requested = True
            await run.child.terminate(self.settings.stop_timeout)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None
        self.next_retry_at = None
        self.ready_connections = 0
        self._set_url(None)
        self._set_state("stopped")

    async def _run(self) -> None:
        s = self.settings
        policy = RestartPolicy(s.restart_rules)
        try:
            while True:
                command = await self._prepare()
                if command is None:
                    return
                run = await self._spawn(command)
                if run is None:
                    return
                await run.follow(self._health, s.stop_timeout, self.log, self._killing)
                if run.stop_requested:
                    return
                self._run_record = None
                self.pid = None
                self.ready_connections = 0
                if s.tunnel_mode == "quick":
                    self._set_url(None)  # that hostname died with its cloudflared
                error = self._record_exit(run)
                self.error = error
                decision = policy.after_exit(error, self.clock.monotonic(), run.ready_since)
                if isinstance(decision, GiveUp):
                    if decision.error.kind == "binary_unavailable":
                        self.binary = None  # look for it again at the next start
                    self.fail(decision.error)
                    return
                await self._back_off(error, decision.delay)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never let a bug kill supervision silently
            self.log.exception("Tunnel supervisor failed")
            self.fail(Problem("crashed", f"supervisor error: {type(e).__name__}: {e}"))
        finally:
            run = self._run_record
            if run is not None and run.child is not None and run.child.returncode is None:
                run.stop_requested = True
                await asyncio.shield(run.child.terminate(s.stop_timeout))
            self._run_record = None
            self.pid = None

    async def _prepare(self) -> TunnelCommand | None:
        """Everything before a spawn; None when a step failed the tunnel."""
        if self.state != "starting":
            self._set_state("starting", "restarting")
        command = await self._command()
        if isinstance(command, Problem):
            self.fail(command)
            return None
        return command

    async def _command(self) -> TunnelCommand | Problem:
        """The steps in turn: the security check, the arguments, the token, the binary."""
        s = self.settings
        refused = self._preflight()
        if refused is not None:
            return refused
        args = normalize_cloudflared_args(s.cloudflared_args)
        if isinstance(args, Problem):
            return args
        token = await tunnel_token(s.tunnel_mode, s.tunnel_token, s.tunnel_token_file)
        if isinstance(token, Problem):
            return token
        if self.binary is None:
            found = await self._binaries.find(s.cloudflared_path)
            if isinstance(found, Problem):
                return found
            self.binary = found
        return TunnelCommand(
            mode=s.tunnel_mode,
            binary=self.binary.path,
            origin=self._origin(),
            protocol=s.protocol,
            edge_ip_version=s.edge_ip_version,
            cloudflared_args=tuple(args),
            stop_timeout=s.stop_timeout,
            token=token,
        )

    async def _spawn(self, command: TunnelCommand) -> Run | None:
        run = Run(self._reports)

        def on_line(stream: str, line: str) -> None:
            self._on_line(run, stream, line)

        try:
            child = await self._spawn_child(command, on_line, self.log)
        except OSError as e:
            self.binary = None  # look for it again next time
            self.fail(Problem("binary_unavailable", f"cannot run {command.binary}: {e}"))
            return None
        run.child = child
        self._run_record = run
        self.pid = child.pid
        self.started_at = self.clock.wall()
        self.ready_at = None
        self._set_url(self.settings.named_url)
        self.log.info(
            "Started cloudflared (pid %s): %s", child.pid, " ".join(build_argv(command)[1:])
        )
        self._set_state("starting" if self.url is None else "connecting", f"pid {child.pid}")
        return run

    def _killing(self, reason: Problem) -> None:
        """The health checks stop the child: a stall leaves no ready connection to show."""
        if reason.kind == "stalled":
            self.ready_connections = 0

    def _on_line(self, run: Run, stream: str, line: str) -> None:
        self.logs.append(line)
        run.heard(stream, line)
        event = parse_line(line)
        if event is None or run.stop_requested:
            return
        if event.url and self.settings.tunnel_mode == "quick":
            self._set_url(event.url)
            if self.state == "starting":
                self._set_state("connecting", event.url)
            self._wake.set()
        elif event.metrics:
            run.metrics = event.metrics
            self._wake.set()
        elif event.registered:
            self.ready_connections = max(self.ready_connections, 1)
            run.seen_ready(self.clock.monotonic())
            self._become_ready()
            self._wake.set()
        elif event.error and self.state != "ready":
            live = classify_line(line)
            if live is not None:
                self.error = self._problem(live)

    def _confirmed_url(self, url: str) -> None:
        """The quick tunnel's hostname as its metrics server states it (wins over the log)."""
        if url == self.url:
            return
        self.log.warning("Tunnel URL from the log (%s) differs from /quicktunnel", self.url)
        self._set_url(url)
        if self.state == "starting":
            self._set_state("connecting", url)

    def _readiness(self, run: Run, connections: int, ready: bool) -> None:
        if run.stop_requested:
            return
        self.ready_connections = connections
        if ready:
            run.seen_ready(self.clock.monotonic())
            self._become_ready()

    def _lost(self) -> None:
        if self.state == "ready":
            self._set_state("connecting", "lost its edge connection")

    def _record_exit(self, run: Run) -> Problem:
        self.last_exit = run.exit_facts(self.clock.wall())
        if run.kill_reason is not None:
            return run.kill_reason
        return self._problem(run.classified_exit())
