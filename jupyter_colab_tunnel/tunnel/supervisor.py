"""The tunnel state machine: when to start cloudflared, when to restart it, when to give up.

One asyncio task (`_run`) owns the child for its whole life, so there is never more than one
child; start/stop/restart only start or stop that task, under a lock. The child itself
(`child.py`), its health checks (`health.py`), time (`clock.py`) and the retry policy
(`errors.py`) are passed in or imported, so every transition runs in tests without processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..problems import Problem
from ..timefmt import iso_utc
from . import binary as binary_module
from . import child as child_module
from .binary import Binary, BinaryUnavailable
from .child import LineSink
from .clock import Clock, SystemClock
from .command import TunnelCommand, build_argv, normalize_cloudflared_args
from .errors import backoff_delay, counts_as_crash, fit_to_mode, min_delay, retryable
from .failure_log import FailureLog
from .health import HealthWatch, HttpProbe, Probe
from .logs import classify_exit, classify_line, parse_line

STATES = ("off", "starting", "connecting", "ready", "backoff", "stopping", "stopped", "failed")


@dataclass(frozen=True)
class SupervisorSettings:
    """ColabTunnelApp's tunnel traits, by the same names; the traits hold the defaults."""

    tunnel_mode: str
    cloudflared_path: str
    tunnel_token: str = field(repr=False)
    tunnel_token_file: str
    public_hostname: str
    protocol: str
    edge_ip_version: str
    cloudflared_args: str | list[str]
    restart_backoff_initial: float
    restart_backoff_max: float
    max_restarts: int
    crash_window: float
    url_timeout: float
    health_interval: float
    stop_timeout: float
    log_lines: int


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


class _Run:
    """One child and what it said; health.Watched for the health checks."""

    def __init__(self, supervisor: TunnelSupervisor) -> None:
        self._sup = supervisor
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
        return self._sup.url

    def confirmed_url(self, url: str) -> None:
        self._sup._confirmed_url(url)

    def readiness(self, connections: int, ready: bool) -> None:
        self._sup._readiness(self, connections, ready)

    def lost(self) -> None:
        if self._sup.state == "ready":
            self._sup._set_state("connecting", "lost its edge connection")


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
        on_state: Callable[[str], None] = lambda state: None,
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
        self._resolve = resolve
        self.clock: Clock = clock or SystemClock()
        self._probe: Probe = probe or HttpProbe()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._run_record: _Run | None = None
        self._wake = asyncio.Event()
        self.binary: Binary | None = None
        # The one `resolve` in flight (it runs `cloudflared --version`, maybe a download).
        self._resolving: asyncio.Future[Binary] | None = None
        self.state = "off" if settings.tunnel_mode == "off" else "stopped"
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

    def _set_state(self, state: str, detail: str = "", quiet: bool = False) -> None:
        """Record a state change; `quiet` when the caller logs it in its own words."""
        assert state in STATES, state
        if state == self.state and not detail:
            return
        self.state = state
        self.events.append({"at": iso_utc(self.clock.wall()), "state": state, "detail": detail})
        if not quiet:
            self.log.info("Tunnel %s%s", state, f": {detail}" if detail else "")
        self._notify(self._on_state, state)

    def _enter_backoff(self, error: Problem, delay: float) -> None:
        self._set_state("backoff", f"{error.kind}; retrying in {delay:.1f}s", quiet=True)
        self._failure_log.backoff(error, delay)

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
            if self.state not in ("off", "failed"):
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
        crashes: deque[float] = deque()  # monotonic times of exits that count as crashes
        attempt = 0
        try:
            while True:
                command = await self._prepare()
                if command is None:
                    return
                run = await self._spawn(command)
                if run is None:
                    return
                await self._watch(run)
                if run.stop_requested:
                    return
                self._run_record = None
                self.pid = None
                self.ready_connections = 0
                if s.tunnel_mode == "quick":
                    self._set_url(None)  # that hostname died with its cloudflared
                error = self._record_exit(run)
                self.error = error
                if not retryable(error):
                    if error.kind == "binary_unavailable":
                        self.binary = None  # look for it again at the next start
                    self.fail(error)
                    return
                now = self.clock.monotonic()
                if counts_as_crash(error):
                    crashes.append(now)
                    while crashes and now - crashes[0] > s.crash_window:
                        crashes.popleft()
                    if len(crashes) > s.max_restarts:
                        self.fail(
                            Problem(
                                "crash_loop",
                                f"cloudflared exited {len(crashes)} times within "
                                f"{s.crash_window:g}s; last: {error.kind}: {error.message}",
                            )
                        )
                        return
                cap = max(s.restart_backoff_max, s.restart_backoff_initial)
                if run.ready_since is not None and now - run.ready_since >= cap:
                    attempt = 0  # it was stable: start the backoff over
                delay = max(
                    backoff_delay(attempt, s.restart_backoff_initial, s.restart_backoff_max),
                    min_delay(error),
                )
                attempt += 1
                self.next_retry_at = self.clock.wall() + delay
                self._enter_backoff(error, delay)
                await self.clock.sleep(delay)
                self.next_retry_at = None
                self.restarts += 1
                self.restarts_total += 1
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
        """Everything before a spawn: security, arguments, token, binary. None = failed."""
        s = self.settings
        if self.state != "starting":
            self._set_state("starting", "restarting")
        refused = self._preflight()
        if refused is not None:
            self.fail(refused)
            return None
        args = normalize_cloudflared_args(s.cloudflared_args)
        if isinstance(args, Problem):
            self.fail(args)
            return None
        loop = asyncio.get_running_loop()
        token = ""
        if s.tunnel_mode == "named":
            token = s.tunnel_token
            if not token and s.tunnel_token_file:
                try:
                    read = await loop.run_in_executor(None, _read_token, s.tunnel_token_file)
                except OSError as e:
                    self.fail(
                        Problem(
                            "token_unavailable",
                            f"cannot read tunnel_token_file {s.tunnel_token_file}: {e.strerror}",
                        )
                    )
                    return None
                token = read.strip()
            if not token:
                self.fail(Problem("token_unavailable", "no tunnel token configured"))
                return None
        if self.binary is None:
            # A thread cannot be cancelled: a stop during `resolve` leaves it running. Keep that
            # one for the next start instead of starting another `cloudflared --version` (a
            # burst of start/stop would otherwise run several at once).
            if self._resolving is None:
                self._resolving = loop.run_in_executor(None, self._resolve, s.cloudflared_path)
                self._resolving.add_done_callback(_retrieve)
            resolving = self._resolving
            try:
                self.binary = await asyncio.shield(resolving)
            except BinaryUnavailable as e:
                self.fail(e.error)
                return None
            finally:
                if resolving.done() and self._resolving is resolving:
                    self._resolving = None
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

    async def _spawn(self, command: TunnelCommand) -> _Run | None:
        run = _Run(self)

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
        named_url = (
            f"https://{self.settings.public_hostname}"
            if command.mode == "named" and self.settings.public_hostname
            else None
        )
        self._set_url(named_url)
        self.log.info(
            "Started cloudflared (pid %s): %s", child.pid, " ".join(build_argv(command)[1:])
        )
        self._set_state("starting" if self.url is None else "connecting", f"pid {child.pid}")
        return run

    async def _watch(self, run: _Run) -> None:
        """Follow one child until it exits; restart it when its health says so."""
        assert run.child is not None
        child = run.child
        s = self.settings
        watch = HealthWatch(
            mode=s.tunnel_mode,
            url_timeout=s.url_timeout,
            interval=s.health_interval,
            clock=self.clock,
            probe=self._probe,
            wake=self._wake,
        )
        health = asyncio.ensure_future(watch.run(run))
        exited = asyncio.ensure_future(child.wait())
        try:
            await asyncio.wait((health, exited), return_when=asyncio.FIRST_COMPLETED)
            if health.done() and not exited.done():
                reason = None
                if health.exception() is not None:
                    self.log.error("Tunnel health check failed", exc_info=health.exception())
                else:
                    reason = health.result()
                if reason is not None and not run.stop_requested:
                    run.kill_reason = reason
                    if reason.kind == "stalled":
                        self.ready_connections = 0
                    await child.terminate(s.stop_timeout)
            await exited
        finally:
            for task in (health, exited):
                task.cancel()
            await asyncio.gather(health, exited, return_exceptions=True)

    def _on_line(self, run: _Run, stream: str, line: str) -> None:
        self.logs.append(line)
        (run.stderr_tail if stream == "stderr" else run.stdout_tail).append(line)
        if run.usage_line is None and line.startswith("Incorrect Usage"):
            run.usage_line = line
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
            if run.ready_since is None:
                run.ready_since = self.clock.monotonic()
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

    def _readiness(self, run: _Run, connections: int, ready: bool) -> None:
        if run.stop_requested:
            return
        self.ready_connections = connections
        if ready:
            if run.ready_since is None:
                run.ready_since = self.clock.monotonic()
            self._become_ready()

    def _record_exit(self, run: _Run) -> Problem:
        assert run.child is not None
        code = run.child.returncode
        assert code is not None
        self.last_exit = {
            "code": code if code >= 0 else None,
            "signal": _signal_name(-code) if code < 0 else None,
            "at": iso_utc(self.clock.wall()),
        }
        if run.kill_reason is not None:
            return run.kill_reason
        stdout = [run.usage_line] if run.usage_line else list(run.stdout_tail)
        return self._problem(classify_exit(code, list(run.stderr_tail), stdout))


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a background result as seen, so an unawaited failure is not logged at exit."""
    if not future.cancelled():
        future.exception()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _read_token(path: str) -> str:
    with open(os.path.expanduser(path), encoding="utf-8") as f:
        return f.read()
