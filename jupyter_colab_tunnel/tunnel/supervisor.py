"""The tunnel state machine: spawn cloudflared, watch it, health-check it, back off, stop it.

One asyncio task (`_run`) owns the child for its whole life, so there is never more than one
child; start/stop/restart only start or stop that task, under a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ..problems import Problem
from ..timefmt import iso_utc, now_iso
from .binary import Binary, BinaryUnavailable, resolve
from .command import TunnelCommand, build_argv, build_env, check_extra_args
from .errors import min_delay, retryable
from .lines import LineSplitter
from .logs import classify_exit, classify_line, parse_line, redact

STATES = ("off", "starting", "connecting", "ready", "backoff", "stopping", "stopped", "failed")
# A health check that got no answer in this long counts as unreachable.
HEALTH_TIMEOUT = 2.0
# Consecutive unready checks after being ready before the tunnel counts as stalled.
STALL_CHECKS = 3
MAX_LINE = 4096
READ_CHUNK = 1 << 16
PR_SET_PDEATHSIG = 1


@dataclass
class SupervisorSettings:
    mode: str = "quick"
    cloudflared_path: str = ""
    token: str = field(default="", repr=False)
    token_file: str = ""
    public_hostname: str = ""
    protocol: str = "auto"
    edge_ip_version: str = "auto"
    extra_args: list[str] = field(default_factory=list)
    restart_backoff_initial: float = 1.0
    restart_backoff_max: float = 60.0
    max_restarts: int = 10
    crash_window: float = 600.0
    url_timeout: float = 30.0
    health_interval: float = 5.0
    stop_timeout: float = 5.0
    log_lines: int = 1000


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """Runs in the child before exec: die with the server, even on its SIGKILL."""
    # Resolved here, in the parent: importing or dlopen-ing after fork can deadlock.
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        prctl = None

    def setup() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the server died before prctl took effect
            os._exit(1)

    return setup


class _Child:
    """One cloudflared process and what it said."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stderr_tail: deque[str] = deque(maxlen=50)
        self.stdout_tail: deque[str] = deque(maxlen=50)
        self.metrics: str | None = None
        # cloudflared's usage error comes first, then a help text longer than any tail we keep.
        self.usage_line: str | None = None
        self.stop_requested = False
        self.kill_reason: Problem | None = None
        # When this child was first seen ready (monotonic), by its log line or by /ready.
        self.ready_since: float | None = None


class TunnelSupervisor:
    def __init__(
        self,
        settings: SupervisorSettings,
        log: logging.Logger,
        origin: Callable[[], str],
        preflight: Callable[[], Problem | None] = lambda: None,
        on_url: Callable[[str | None], None] = lambda url: None,
        on_ready: Callable[[TunnelSupervisor], None] = lambda sup: None,
    ) -> None:
        self.settings = settings
        self.log = log
        self._origin = origin
        self._preflight = preflight
        self._on_url = on_url
        self._on_ready = on_ready
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._child: _Child | None = None
        self._wake = asyncio.Event()
        self.binary: Binary | None = None
        # The one `resolve` in flight (it runs `cloudflared --version`, maybe a download).
        self._resolving: asyncio.Future[Binary] | None = None
        self.state = "off" if settings.mode == "off" else "stopped"
        self.url: str | None = None
        self.pid: int | None = None
        self.restarts = 0
        self.ready_connections = 0
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.next_retry_at: float | None = None
        self.last_exit: dict[str, Any] | None = None
        self.error: Problem | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=100)
        self.logs: deque[str] = deque(maxlen=settings.log_lines)
        self.lines_seen = 0
        self.announced = False
        self.children_spawned = 0

    # ----- public API -------------------------------------------------------------------

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

    def _launch(self) -> None:
        self.restarts = 0
        self.error = None
        self._set_state("starting", "start requested")
        self._task = asyncio.ensure_future(self._run())

    def fail(self, error: Problem) -> None:
        """Enter `failed` without running anything (e.g. invalid configuration)."""
        self.error = error
        self._set_state("failed", error.message)

    def snapshot(self, logs: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = {
            "state": self.state,
            "mode": self.settings.mode,
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

    # ----- internals --------------------------------------------------------------------

    def _set_state(self, state: str, detail: str = "") -> None:
        assert state in STATES, state
        if state == self.state and not detail:
            return
        self.state = state
        self.events.append({"at": now_iso(), "state": state, "detail": detail})
        self.log.info("Tunnel %s%s", state, f": {detail}" if detail else "")
        self._wake.set()

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

    async def _stop_locked(self) -> None:
        task = self._task
        if task is None or task.done():
            if self.state not in ("off", "failed"):
                self._set_state("stopped")
            return
        self._set_state("stopping")
        child = self._child
        if child is not None:
            child.stop_requested = True
            await self._terminate(child)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None
        self.next_retry_at = None
        self.ready_connections = 0
        self._set_url(None)
        self._set_state("stopped")

    async def _terminate(self, child: _Child) -> None:
        """SIGTERM, wait stop_timeout, SIGKILL; always reaped."""
        proc = child.proc
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), self.settings.stop_timeout)
            except asyncio.TimeoutError:
                self.log.warning(
                    "cloudflared (pid %s) ignored SIGTERM for %gs: killing it",
                    proc.pid,
                    self.settings.stop_timeout,
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        base = min(s.restart_backoff_max, s.restart_backoff_initial * 2.0 ** min(attempt, 30))
        # Full jitter in the upper half: spreads restarts without ever collapsing to zero.
        return base * random.uniform(0.5, 1.0)

    async def _run(self) -> None:
        exits: deque[float] = deque()
        attempt = 0
        try:
            while True:
                prepared = await self._prepare()
                if prepared is None:
                    return
                command, secrets = prepared
                child = await self._spawn(command, secrets)
                if child is None:
                    return
                ready_since = await self._watch(child, secrets)
                if child.stop_requested:
                    return
                self._child = None
                self.pid = None
                self.ready_connections = 0
                if self.settings.mode == "quick":
                    self._set_url(None)  # that hostname died with its cloudflared
                error = self._record_exit(child)
                self.error = error
                if not retryable(error):
                    self._set_state("failed", f"{error.kind}: {error.message}")
                    return
                now = time.monotonic()
                exits.append(now)
                while exits and now - exits[0] > self.settings.crash_window:
                    exits.popleft()
                if len(exits) > self.settings.max_restarts:
                    self.error = Problem(
                        "crash_loop",
                        f"cloudflared exited {len(exits)} times within "
                        f"{self.settings.crash_window:g}s; last: {error.kind}: {error.message}",
                    )
                    self._set_state("failed", self.error.message)
                    return
                if (
                    ready_since is not None
                    and now - ready_since >= self.settings.restart_backoff_max
                ):
                    attempt = 0  # it was stable: start the backoff over
                delay = max(self._backoff(attempt), min_delay(error))
                attempt += 1
                self.next_retry_at = time.time() + delay
                self._set_state("backoff", f"{error.kind}; retrying in {delay:.1f}s")
                await asyncio.sleep(delay)
                self.next_retry_at = None
                self.restarts += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never let a bug kill supervision silently
            self.log.exception("Tunnel supervisor failed")
            self.error = Problem("crashed", f"supervisor error: {type(e).__name__}: {e}")
            self._set_state("failed", self.error.message)
        finally:
            child = self._child
            if child is not None and child.proc.returncode is None:
                child.stop_requested = True
                await asyncio.shield(self._terminate(child))
            self._child = None
            self.pid = None

    async def _prepare(self) -> tuple[TunnelCommand, list[str]] | None:
        """Everything before a spawn: security, token, binary. None = failed (state set)."""
        s = self.settings
        if self.state != "starting":
            self._set_state("starting", "restarting")
        refused = self._preflight() or check_extra_args(s.extra_args)
        if refused is not None:
            self.fail(refused)
            return None
        loop = asyncio.get_running_loop()
        token = ""
        if s.mode == "named":
            token = s.token
            if not token and s.token_file:
                try:
                    token = (await loop.run_in_executor(None, _read_token, s.token_file)).strip()
                except OSError as e:
                    self.fail(
                        Problem(
                            "token_unavailable",
                            f"cannot read tunnel_token_file {s.token_file}: {e.strerror}",
                        )
                    )
                    return None
            if not token:
                self.fail(Problem("token_unavailable", "no tunnel token configured"))
                return None
        if self.binary is None:
            # A thread cannot be cancelled: a stop during `resolve` leaves it running. Keep that
            # one for the next start instead of starting another `cloudflared --version` (a
            # burst of start/stop used to run several at once, each a cloudflared process).
            if self._resolving is None:
                self._resolving = loop.run_in_executor(None, resolve, s.cloudflared_path)
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
        command = TunnelCommand(
            mode=s.mode,
            binary=self.binary.path,
            origin=self._origin(),
            protocol=s.protocol,
            edge_ip_version=s.edge_ip_version,
            extra_args=tuple(s.extra_args),
            stop_timeout=s.stop_timeout,
            token=token,
        )
        return command, [token] if token else []

    async def _spawn(self, command: TunnelCommand, secrets: list[str]) -> _Child | None:
        argv = build_argv(command)
        spawning = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=build_env(command),
                start_new_session=True,
                preexec_fn=_child_setup(os.getpid()),
                limit=2**16,
            )
        )
        try:
            proc = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            # Stopped mid-spawn: the process may exist already; never leave it behind.
            with contextlib.suppress(OSError):
                orphan = await spawning
                await self._terminate(_Child(orphan))
            raise
        except OSError as e:
            self.binary = None
            self.fail(Problem("binary_unavailable", f"cannot run {argv[0]}: {e}"))
            return None
        child = _Child(proc)
        self._child = child
        self.children_spawned += 1
        self.pid = proc.pid
        self.started_at = time.time()
        self.ready_at = None
        self._set_url(
            f"https://{self.settings.public_hostname}"
            if command.mode == "named" and self.settings.public_hostname
            else None
        )
        self.log.info("Started cloudflared (pid %s): %s", proc.pid, " ".join(argv[1:]))
        self._set_state("starting" if self.url is None else "connecting", f"pid {proc.pid}")
        return child

    async def _watch(self, child: _Child, secrets: list[str]) -> float | None:
        """Follow one child until it exits. Returns when it became ready (monotonic) or None."""
        assert child.proc.stderr is not None
        assert child.proc.stdout is not None
        readers = [
            asyncio.ensure_future(self._read(child, child.proc.stderr, child.stderr_tail, secrets)),
            asyncio.ensure_future(self._read(child, child.proc.stdout, child.stdout_tail, secrets)),
        ]
        health = asyncio.ensure_future(self._health(child))
        try:
            await child.proc.wait()
            # Drain what it printed last (its fatal line), but never wait on a pipe held open
            # by something else.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*readers), 1.0)
        finally:
            for task in (*readers, health):
                task.cancel()
            await asyncio.gather(*readers, health, return_exceptions=True)
        return child.ready_since

    async def _read(
        self,
        child: _Child,
        stream: asyncio.StreamReader,
        tail: deque[str],
        secrets: list[str],
    ) -> None:
        splitter = LineSplitter(MAX_LINE)
        while True:
            chunk = await stream.read(READ_CHUNK)
            for raw in splitter.feed(chunk) if chunk else splitter.close():
                line = redact(raw.decode("utf-8", errors="replace").rstrip("\r"), secrets)
                self.lines_seen += 1
                self.logs.append(line)
                tail.append(line)
                if child.usage_line is None and line.startswith("Incorrect Usage"):
                    child.usage_line = line
                try:
                    self._on_line(child, line)
                except Exception:
                    # A bug in handling one line must never stop the reading: a pipe nobody
                    # drains blocks cloudflared.
                    self.log.exception("Tunnel: failed to handle a cloudflared line")
            if not chunk:
                return

    def _on_line(self, child: _Child, line: str) -> None:
        event = parse_line(line)
        if event is None or child.stop_requested:
            return
        if event.url and self.settings.mode == "quick":
            self._set_url(event.url)
            if self.state == "starting":
                self._set_state("connecting", event.url)
        elif event.metrics:
            child.metrics = event.metrics
            self._wake.set()
        elif event.registered:
            self.ready_connections = max(self.ready_connections, 1)
            if child.ready_since is None:
                child.ready_since = time.monotonic()
            self._become_ready()
            self._wake.set()
        elif event.error and self.state != "ready":
            live = classify_line(line)
            if live is not None:
                self.error = live

    def _become_ready(self) -> None:
        if self.state == "ready":
            return
        self.ready_at = time.time()
        self.error = None
        self._set_state("ready", self.url or "")
        self._notify(self._on_ready, self)

    async def _health(self, child: _Child) -> None:
        """URL deadline, /quicktunnel confirmation, /ready polling and stall detection."""
        s = self.settings
        deadline = time.monotonic() + s.url_timeout
        confirmed = False
        strikes = 0
        while child.proc.returncode is None:
            self._wake.clear()
            have_tunnel = self.url is not None if s.mode == "quick" else child.metrics is not None
            if not have_tunnel and time.monotonic() >= deadline:
                child.kill_reason = Problem(
                    "url_timeout",
                    f"no tunnel {'URL' if s.mode == 'quick' else 'connection'} from cloudflared "
                    f"within {s.url_timeout:g}s",
                )
                self.log.warning("Tunnel: %s; restarting cloudflared", child.kill_reason.message)
                await self._terminate(child)
                return
            if child.metrics is not None:
                if s.mode == "quick" and not confirmed:
                    confirmed = await self._confirm_url(child)
                ready = await self._poll_ready(child)
                if child.stop_requested:
                    return
                if ready is True:
                    strikes = 0
                    if child.ready_since is None:
                        child.ready_since = time.monotonic()
                    self._become_ready()
                elif child.ready_since is not None:
                    # Was ready, now unready or unreachable: one miss may be a blip, three
                    # in a row is a stalled tunnel that cloudflared is not recovering.
                    strikes += 1
                    if strikes >= STALL_CHECKS:
                        child.kill_reason = Problem(
                            "stalled",
                            f"the tunnel was ready, then unready or unreachable for "
                            f"{STALL_CHECKS} health checks",
                        )
                        self.ready_connections = 0
                        self.log.warning("Tunnel stalled; restarting cloudflared")
                        await self._terminate(child)
                        return
                    if strikes >= 2 and self.state == "ready":
                        self._set_state("connecting", "lost its edge connection")
            timeout = s.health_interval
            if not have_tunnel:
                timeout = min(timeout, max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _get(self, child: _Child, path: str) -> tuple[int, Any] | None:
        try:
            r = await AsyncHTTPClient().fetch(
                f"http://{child.metrics}{path}",
                request_timeout=HEALTH_TIMEOUT,
                connect_timeout=HEALTH_TIMEOUT,
                raise_error=False,
            )
        except (OSError, HTTPClientError, asyncio.TimeoutError):
            return None
        if r.code == 599:
            return None
        try:
            return r.code, json.loads(r.body or b"null")
        except ValueError:
            return r.code, None

    async def _poll_ready(self, child: _Child) -> bool | None:
        got = await self._get(child, "/ready")
        if got is None:
            return None
        code, body = got
        n = body.get("readyConnections", 0) if isinstance(body, dict) else 0
        self.ready_connections = int(n) if isinstance(n, int) else 0
        return code == 200 and self.ready_connections >= 1

    async def _confirm_url(self, child: _Child) -> bool:
        got = await self._get(child, "/quicktunnel")
        if got is None or not isinstance(got[1], dict):
            return False
        hostname = got[1].get("hostname")
        if isinstance(hostname, str) and hostname:
            url = f"https://{hostname}"
            if url != self.url:
                self.log.warning("Tunnel URL from the log (%s) differs from /quicktunnel", self.url)
                self._set_url(url)
                if self.state == "starting":
                    self._set_state("connecting", url)
            return True
        return False

    def _record_exit(self, child: _Child) -> Problem:
        code = child.proc.returncode
        assert code is not None
        self.last_exit = {
            "code": code if code >= 0 else None,
            "signal": _signal_name(-code) if code < 0 else None,
            "at": now_iso(),
        }
        if child.kill_reason is not None:
            return child.kill_reason
        stdout = [child.usage_line] if child.usage_line else list(child.stdout_tail)
        return classify_exit(code, list(child.stderr_tail), stdout)


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
