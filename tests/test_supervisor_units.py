"""The tunnel state machine in-process: a stand-in child, a fake clock, a fake metrics server.

No processes and no real time: hours of backoff run in milliseconds, and every transition and
error path is driven line by line. tests/test_tunnel.py proves the same with real processes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import fields
from typing import Any

import pytest

from jupyter_colab_tunnel.problems import HINTS, Problem
from jupyter_colab_tunnel.server.app import ColabTunnelApp
from jupyter_colab_tunnel.tunnel.binary import Binary, BinaryUnavailable
from jupyter_colab_tunnel.tunnel.child import LineSink
from jupyter_colab_tunnel.tunnel.command import TunnelCommand, build_argv
from jupyter_colab_tunnel.tunnel.errors import NAMED_NETWORK_HINT, RATE_LIMIT_DELAY
from jupyter_colab_tunnel.tunnel.failure_log import STORM_SUMMARY_EVERY
from jupyter_colab_tunnel.tunnel.health import STALL_CHECKS, Readiness
from jupyter_colab_tunnel.tunnel.supervisor import SupervisorSettings, TunnelSupervisor

TS = "2026-11-25T22:46:51Z"
LOGGER = "test.supervisor"
DNS_QUICK = (
    f'{TS} ERR failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": '
    "dial tcp: lookup api.trycloudflare.com on 10.255.255.53:53: no such host"
)
DNS_NAMED = (
    f'{TS} ERR Failed to fetch features error="lookup region1.v2.argotunnel.com on '
    '10.255.255.53:53: no such host"'
)
RATE_LIMITED = (
    f"{TS} ERR Error unmarshaling QuickTunnel response: error code: 1015 "
    'status_code="429 Too Many Requests"'
)


def settings(**overrides: Any) -> SupervisorSettings:
    """SupervisorSettings from ColabTunnelApp's trait defaults, as the app builds them."""
    traits = ColabTunnelApp.class_traits()
    values = {f.name: traits[f.name].default() for f in fields(SupervisorSettings)}
    values["tunnel_mode"] = "quick"  # its default depends on the environment's token
    values.update(overrides)
    return SupervisorSettings(**values)


class FakeClock:
    """Monotonic and wall time that move only when every task waits on this clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), fut))
        await fut

    async def settle(self) -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def run_until(self, done: Callable[[], bool], limit: float = 100_000.0) -> None:
        """Let the tasks run; whenever all wait on the clock, jump to the next wake-up."""
        end = self.now + limit
        idle = 0
        while True:
            await self.settle()
            if done():
                return
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                # Something runs outside the clock (an executor thread): give it real time.
                idle += 1
                assert idle < 500, f"stuck: nothing waits on the clock ({self.now - 1000.0:g}s)"
                await asyncio.sleep(0.002)
                continue
            idle = 0
            deadline, _, fut = heapq.heappop(self._sleepers)
            assert deadline <= end, f"not done within {limit}s of fake time"
            self.now = max(self.now, deadline)
            fut.set_result(None)


class StandInChild:
    """A cloudflared that says what the test tells it to and exits when told."""

    def __init__(
        self, pid: int, command: TunnelCommand, on_line: LineSink, clock: FakeClock
    ) -> None:
        self.pid = pid
        self.clock = clock
        self.tasks: list[asyncio.Task[None]] = []
        self.command = command
        self.returncode: int | None = None
        self.terminated = False
        self._on_line = on_line
        self._exited = asyncio.Event()

    def say(self, *lines: str, stream: str = "stderr") -> None:
        for line in lines:
            self._on_line(stream, line)

    def exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set()

    def exit_later(self, seconds: float, code: int) -> None:
        async def later() -> None:
            await self.clock.sleep(seconds)
            self.exit(code)

        self.tasks.append(asyncio.ensure_future(later()))

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def terminate(self, timeout: float) -> None:
        self.terminated = True
        self.exit(0)  # cloudflared exits 0 after a graceful shutdown


Script = Callable[[StandInChild, int], None]


def quick_ready(child: StandInChild, n: int) -> None:
    child.say(
        f"{TS} INF |  https://words-{n}.trycloudflare.com                 |",
        f"{TS} INF Starting metrics server on 127.0.0.1:{40000 + n}/metrics",
        f"{TS} INF Registered tunnel connection connIndex=0 location=fra08 protocol=quic",
    )


def named_ready(child: StandInChild, n: int) -> None:
    child.say(
        f"{TS} INF Starting metrics server on 127.0.0.1:{40000 + n}/metrics",
        f"{TS} INF Registered tunnel connection connIndex=0 location=fra08 protocol=quic",
    )


def exits(code: int, *lines: str) -> Script:
    def script(child: StandInChild, n: int) -> None:
        child.say(*lines)
        child.exit(code)

    return script


def crashes(child: StandInChild, n: int) -> None:
    child.say(f"{TS} ERR something broke")
    child.exit(3)


def network_down(child: StandInChild, n: int) -> None:
    child.say(DNS_QUICK)
    child.exit(1)


class StandInSpawner:
    """Spawns stand-in children; each runs the next script (the last one repeats)."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts) or [quick_ready]
        self.children: list[StandInChild] = []
        self.error: BaseException | None = None
        self.clock = FakeClock()  # the harness gives it its own

    async def __call__(
        self, command: TunnelCommand, on_line: LineSink, log: logging.Logger
    ) -> StandInChild:
        if self.error is not None:
            raise self.error
        n = len(self.children)
        child = StandInChild(5000 + n, command, on_line, self.clock)
        self.children.append(child)
        script = self.scripts[min(n, len(self.scripts) - 1)]
        # Like pipes: its lines arrive after the spawn returned.
        asyncio.get_running_loop().call_soon(script, child, n)
        return child

    @property
    def alive(self) -> list[StandInChild]:
        return [c for c in self.children if c.returncode is None]


class FakeProbe:
    """The metrics server's answers, as the test sets them."""

    def __init__(self) -> None:
        self.ready: Readiness | None = Readiness(True, 1)
        self.hostname: str | None = None
        self.asked = 0

    async def readiness(self, address: str) -> Readiness | None:
        self.asked += 1
        return self.ready

    async def quick_hostname(self, address: str) -> str | None:
        return self.hostname


class Harness:
    def __init__(self, spawner: StandInSpawner, **overrides: Any) -> None:
        self.clock = FakeClock()
        self.spawner = spawner
        spawner.clock = self.clock
        self.probe = FakeProbe()
        self.urls: list[str | None] = []
        self.readies = 0
        self.preflight: Problem | None = None
        self.resolve: Callable[[str], Binary] = lambda path: Binary(
            "/opt/cf/cloudflared", "2026.8.2", "path"
        )
        self.sup = TunnelSupervisor(
            settings(**overrides),
            logging.getLogger(LOGGER),
            origin=lambda: "http://127.0.0.1:8888",
            preflight=lambda: self.preflight,
            on_url=self.urls.append,
            on_ready=self._ready,
            spawn=spawner,
            resolve=lambda path: self.resolve(path),
            clock=self.clock,
            probe=self.probe,
        )

    def _ready(self, sup: TunnelSupervisor) -> None:
        self.readies += 1

    async def until(self, done: Callable[[], bool], limit: float = 100_000.0) -> None:
        await self.clock.run_until(done, limit)

    async def until_state(self, *states: str) -> None:
        await self.until(lambda: self.sup.state in states)

    def events(self) -> list[str]:
        return [e["state"] for e in self.sup.events]

    def backoffs(self) -> list[float]:
        """The delays of the backoffs still in the event list (0.1 s resolution)."""
        found = [re.search(r"retrying in ([\d.]+)s$", e["detail"]) for e in self.sup.events]
        return [float(m.group(1)) for m in found if m]


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 20))


def harness_test(
    spawner: Callable[[], StandInSpawner], **overrides: Any
) -> Callable[[Callable[[Harness], Awaitable[None]]], Callable[[], None]]:
    """Run the test body with a harness, then stop the supervisor: nothing may stay alive."""

    def wrap(body: Callable[[Harness], Awaitable[None]]) -> Callable[[], None]:
        def test() -> None:
            async def main() -> None:
                h = Harness(spawner(), **overrides)
                try:
                    await body(h)
                finally:
                    await h.sup.stop()
                assert h.spawner.alive == []
                assert not h.sup.running

            run(main)

        test.__name__ = body.__name__
        test.__doc__ = body.__doc__
        return test

    return wrap


def warnings_and_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# ----- settings ----------------------------------------------------------------------------


def test_settings_are_the_apps_traits_by_name() -> None:
    own = ColabTunnelApp.class_own_traits(config=True)
    for f in fields(SupervisorSettings):
        assert f.name in own, f"{f.name} is not a configurable trait of ColabTunnelApp"
        assert f.default is f.default_factory, f"{f.name} repeats a default"  # both MISSING
    app = ColabTunnelApp()
    built = app._supervisor_settings()
    assert built.max_restarts == app.max_restarts == 10
    assert built.cloudflared_args == []
    assert "tunnel_token" not in repr(settings(tunnel_token="s3cret")).replace(
        "tunnel_token_file", ""
    )


def test_trait_takes_a_string_and_splits_it() -> None:
    from traitlets.config import Config

    app = ColabTunnelApp(
        config=Config({"ColabTunnelApp": {"cloudflared_args": "--edge-ip-version 4 --label 'a b'"}})
    )
    assert app.cloudflared_args == ["--edge-ip-version", "4", "--label", "a b"]
    bad = ColabTunnelApp(config=Config({"ColabTunnelApp": {"cloudflared_args": "--label 'a"}}))
    assert bad.cloudflared_args == []
    assert [e.trait for e in bad.config_errors] == ["cloudflared_args"]


# ----- the way up --------------------------------------------------------------------------


@harness_test(StandInSpawner)
async def test_quick_tunnel_starts_connects_and_is_ready(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("ready")
    assert h.events() == ["starting", "starting", "connecting", "ready"]
    assert h.sup.url == "https://words-0.trycloudflare.com"
    assert h.urls == ["https://words-0.trycloudflare.com"]
    assert h.readies == 1
    assert h.sup.pid == 5000
    assert h.sup.ready_connections == 1
    assert h.sup.binary is not None
    assert h.sup.snapshot()["cloudflared"] == {"path": "/opt/cf/cloudflared", "version": "2026.8.2"}
    (child,) = h.spawner.children
    assert build_argv(child.command)[-2:] == ["--url", "http://127.0.0.1:8888"]


@harness_test(
    lambda: StandInSpawner(
        lambda c, n: c.say(
            f"{TS} INF Starting metrics server on 127.0.0.1:1/metrics",
            f"{TS} INF |  https://late-url.trycloudflare.com  |",
        )
    )
)
async def test_ready_from_the_metrics_server_alone(h: Harness) -> None:
    """No 'Registered' line: /ready with a connection makes it ready."""
    h.probe.ready = Readiness(True, 4)
    await h.sup.start()
    await h.until_state("ready")
    assert h.sup.ready_connections == 4


@harness_test(StandInSpawner)
async def test_metrics_server_corrects_the_logged_url(h: Harness) -> None:
    h.probe.hostname = "the-real-one.trycloudflare.com"
    await h.sup.start()
    await h.until(lambda: h.sup.url == "https://the-real-one.trycloudflare.com")
    assert h.urls[-1] == "https://the-real-one.trycloudflare.com"


@harness_test(
    lambda: StandInSpawner(named_ready),
    tunnel_mode="named",
    tunnel_token="tok-123",
    public_hostname="jupyter.example.com",
)
async def test_named_tunnel_gets_its_token_and_hostname(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("ready")
    assert h.sup.url == "https://jupyter.example.com"
    command = h.spawner.children[0].command
    assert command.token == "tok-123"
    assert "tok-123" not in build_argv(command)


# ----- restarts and backoff ----------------------------------------------------------------


@harness_test(lambda: StandInSpawner(crashes, quick_ready))
async def test_crash_backs_off_then_restarts(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("backoff")
    s = h.sup.settings
    assert h.sup.error is not None
    assert h.sup.error.kind == "crashed"
    assert h.sup.error.message == "something broke"
    assert h.sup.last_exit is not None
    assert h.sup.last_exit["code"] == 3
    assert h.sup.pid is None
    assert h.sup.url is None
    delay = h.clock.slept[-1]
    assert s.restart_backoff_initial * 0.5 <= delay <= s.restart_backoff_initial
    assert h.sup.next_retry_at == pytest.approx(h.clock.wall() + delay)
    await h.until_state("ready")
    assert h.sup.restarts == 1
    assert h.sup.error is None
    assert h.sup.next_retry_at is None
    assert len(h.spawner.children) == 2


@harness_test(lambda: StandInSpawner(crashes), max_restarts=1000)
async def test_backoff_doubles_with_equal_jitter_up_to_the_cap(h: Harness) -> None:
    await h.sup.start()
    await h.until(lambda: h.sup.restarts >= 12)
    s = h.sup.settings
    delays = h.backoffs()[:12]
    assert len(delays) == 12
    for attempt, delay in enumerate(delays):
        base = min(s.restart_backoff_max, s.restart_backoff_initial * 2**attempt)
        assert 0.5 * base - 0.05 <= delay <= base + 0.05, (attempt, delay)
    assert max(delays) <= s.restart_backoff_max


@harness_test(
    lambda: StandInSpawner(crashes),
    restart_backoff_initial=5.0,
    restart_backoff_max=2.0,
    max_restarts=1000,
)
async def test_a_cap_below_the_first_delay_means_the_first_delay(h: Harness) -> None:
    await h.sup.start()
    await h.until(lambda: h.sup.restarts >= 3)
    backoffs = h.backoffs()
    assert len(backoffs) >= 3
    assert all(2.45 <= d <= 5.05 for d in backoffs)


def _crash_after(seconds: float) -> Script:
    def script(child: StandInChild, n: int) -> None:
        quick_ready(child, n)
        child.exit_later(seconds, 3)

    return script


def test_backoff_starts_over_after_a_stable_run() -> None:
    async def main() -> None:
        spawner = StandInSpawner(crashes, crashes, crashes, _crash_after(120.0), crashes)
        h = Harness(spawner, max_restarts=1000)
        await h.sup.start()
        await h.until(lambda: h.sup.restarts >= 5)
        await h.sup.stop()
        backoffs = h.backoffs()
        # Attempts 0, 1, 2 grow; after 120 s of ready (>= restart_backoff_max) it starts over.
        assert backoffs[2] >= 1.95
        assert backoffs[3] <= 1.05

    run(main)


@harness_test(
    lambda: StandInSpawner(crashes),
    max_restarts=2,
    restart_backoff_initial=0.05,
    restart_backoff_max=0.1,
)
async def test_crash_loop_gives_up(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "crash_loop"
    assert "3 times within 600s" in h.sup.error.message
    assert "last: crashed: something broke" in h.sup.error.message
    assert h.sup.restarts == 2
    assert len(h.spawner.children) == 3
    assert h.sup.url is None
    # An explicit start begins from scratch.
    await h.sup.start()
    assert h.sup.restarts == 0
    assert h.sup.error is None


def test_crashes_outside_the_window_do_not_count() -> None:
    async def main() -> None:
        spawner = StandInSpawner(_crash_after(400.0))
        h = Harness(spawner, max_restarts=1, crash_window=300.0)
        await h.sup.start()
        await h.until(lambda: h.sup.restarts >= 6)
        assert h.sup.state != "failed"
        await h.sup.stop()

    run(main)


# ----- environmental failures (issue 11 item 4) --------------------------------------------


@harness_test(lambda: StandInSpawner(network_down), max_restarts=2)
async def test_network_outage_is_retried_for_as_long_as_it_lasts(h: Harness) -> None:
    await h.sup.start()
    await h.until(lambda: h.sup.restarts >= 60)
    assert h.sup.state in ("backoff", "starting")
    assert h.sup.error is not None
    assert h.sup.error.kind == "network"
    s = h.sup.settings
    backoffs = h.backoffs()[-20:]
    # At the capped backoff by now: never above the cap, never below half of it.
    assert len(backoffs) == 20
    assert all(
        0.5 * s.restart_backoff_max - 0.05 <= d <= s.restart_backoff_max + 0.05 for d in backoffs
    )
    assert h.clock.now - 1000.0 > s.crash_window * 2  # well past any crash window


@harness_test(lambda: StandInSpawner(network_down, network_down, network_down, quick_ready))
async def test_outage_heals_by_itself(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("ready")
    assert h.sup.restarts == 3
    assert h.sup.error is None
    assert h.sup.url == "https://words-3.trycloudflare.com"


@harness_test(
    lambda: StandInSpawner(exits(1, RATE_LIMITED)), max_restarts=1, restart_backoff_max=5.0
)
async def test_rate_limit_waits_long_and_never_gives_up(h: Harness) -> None:
    await h.sup.start()
    await h.until(lambda: h.sup.restarts >= 5)
    assert h.sup.error is not None
    assert h.sup.error.kind == "rate_limited"
    assert h.backoffs()[:5] == [RATE_LIMIT_DELAY] * 5


@harness_test(
    lambda: StandInSpawner(crashes, network_down, network_down, crashes, network_down, crashes),
    max_restarts=2,
)
async def test_crashes_still_count_between_outages(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "crash_loop"
    assert h.sup.error.message.startswith("cloudflared exited 3 times")
    assert len(h.spawner.children) == 6


# ----- what kills a running child ----------------------------------------------------------


@harness_test(
    lambda: StandInSpawner(
        lambda c, n: c.say(f"{TS} INF Starting metrics server on 1.2.3.4:5/metrics"), quick_ready
    ),
)
async def test_no_url_in_time_restarts_cloudflared(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("backoff")
    first = h.spawner.children[0]
    assert first.terminated
    assert h.sup.error is not None
    assert h.sup.error.kind == "url_timeout"
    assert "within 30s" in h.sup.error.message
    assert h.clock.now - 1000.0 == pytest.approx(30.0)
    await h.until_state("ready")


@harness_test(StandInSpawner)
async def test_stall_is_noticed_then_restarted(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("ready")
    h.probe.ready = Readiness(False, 0)
    await h.until_state("connecting")
    assert h.sup.events[-1]["detail"] == "lost its edge connection"
    await h.until_state("backoff")
    assert h.sup.error is not None
    assert h.sup.error.kind == "stalled"
    assert f"{STALL_CHECKS} health checks" in h.sup.error.message
    assert h.spawner.children[0].terminated
    assert h.sup.ready_connections == 0
    h.probe.ready = Readiness(True, 1)
    await h.until(lambda: h.sup.state == "ready" and h.sup.pid == 5001)


@harness_test(StandInSpawner)
async def test_one_missed_check_is_a_blip(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("ready")
    seen = len(h.sup.events)
    asked = h.probe.asked
    h.probe.ready = None  # unreachable once
    await h.until(lambda: h.probe.asked > asked)
    h.probe.ready = Readiness(True, 1)
    await h.until(lambda: h.probe.asked > asked + 5)
    assert h.sup.state == "ready"
    assert len(h.sup.events) == seen


# ----- what is not retried -----------------------------------------------------------------


@harness_test(
    lambda: StandInSpawner(exits(255, f"{TS} ERR Provided Tunnel token is not valid.")),
    tunnel_mode="named",
    tunnel_token="notatoken",
    public_hostname="jupyter.example.com",
)
async def test_invalid_token_fails_without_a_url(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "invalid_token"
    assert h.sup.url is None  # issue 11 item 9: nothing to connect to
    assert h.urls == ["https://jupyter.example.com", None]
    assert len(h.spawner.children) == 1


@harness_test(
    lambda: StandInSpawner(
        exits(0, "Incorrect Usage. flag provided but not defined: -bogus", "NAME:", "  help")
    )
)
async def test_usage_error_is_bad_arguments(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "bad_arguments"
    assert h.sup.error.message == "Incorrect Usage. flag provided but not defined: -bogus"


@harness_test(StandInSpawner, cloudflared_args=["--edge-ip-version 4"])
async def test_flag_and_value_in_one_item_is_refused_before_spawning(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "bad_arguments"
    assert '["--edge-ip-version", "4"]' in h.sup.error.message
    assert h.spawner.children == []


@harness_test(StandInSpawner, cloudflared_args="--edge-ip-version 4 --retries 3")
async def test_a_string_of_flags_is_split_like_a_shell(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("ready")
    argv = build_argv(h.spawner.children[0].command)
    assert argv[-6:-2] == ["--edge-ip-version", "4", "--retries", "3"]


@harness_test(StandInSpawner, cloudflared_args=["--token", "s3cret"])
async def test_token_flag_refused_without_echoing_it(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "bad_arguments"
    assert "s3cret" not in str(h.sup.snapshot())
    assert h.spawner.children == []


@harness_test(StandInSpawner)
async def test_preflight_refusal_spawns_nothing(h: Harness) -> None:
    h.preflight = Problem("insecure_config", "no token")
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error == h.preflight
    assert h.spawner.children == []


@harness_test(StandInSpawner, tunnel_mode="named")
async def test_named_without_a_token(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "token_unavailable"
    assert h.spawner.children == []


@harness_test(StandInSpawner, tunnel_mode="named", tunnel_token_file="/nonexistent/token")
async def test_named_with_an_unreadable_token_file(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "token_unavailable"
    assert "No such file" in h.sup.error.message


@harness_test(StandInSpawner)
async def test_binary_not_found(h: Harness) -> None:
    def missing(path: str) -> Binary:
        raise BinaryUnavailable("cloudflared is not on PATH")

    h.resolve = missing
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "binary_unavailable"
    assert h.sup.binary is None


@harness_test(StandInSpawner)
async def test_binary_gone_at_spawn(h: Harness) -> None:
    h.spawner.error = FileNotFoundError(2, "No such file or directory")
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "binary_unavailable"
    assert "cannot run /opt/cf/cloudflared" in h.sup.error.message
    assert h.sup.binary is None  # looked for again at the next start


@harness_test(StandInSpawner)
async def test_a_bug_fails_the_tunnel_not_the_server(h: Harness) -> None:
    h.spawner.error = RuntimeError("oops")
    await h.sup.start()
    await h.until_state("failed")
    assert h.sup.error is not None
    assert h.sup.error.kind == "crashed"
    assert "supervisor error: RuntimeError: oops" in h.sup.error.message


@harness_test(StandInSpawner)
async def test_owner_callback_failure_does_not_stop_supervision(h: Harness) -> None:
    def broken(url: str | None) -> None:
        raise ValueError("owner bug")

    h.sup._on_url = broken
    await h.sup.start()
    await h.until_state("ready")
    assert h.sup.url == "https://words-0.trycloudflare.com"


# ----- live errors and hints (issue 11 item 9) ---------------------------------------------


@harness_test(
    lambda: StandInSpawner(
        lambda c, n: c.say(
            f"{TS} INF |  https://w.trycloudflare.com |",
            f"{TS} ERR failed to dial to edge with quic: timeout: no recent network activity",
        )
    )
)
async def test_live_error_while_connecting_is_reported(h: Harness) -> None:
    await h.sup.start()
    await h.until(lambda: h.sup.error is not None)
    assert h.sup.state == "connecting"
    assert h.sup.error is not None
    assert h.sup.error.kind == "network"
    assert h.spawner.children[0].returncode is None  # cloudflared retries on its own


@harness_test(lambda: StandInSpawner(network_down))
async def test_quick_network_hint_names_the_quick_tunnel_service(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("backoff")
    assert h.sup.error is not None
    assert h.sup.error.hint == HINTS["network"]
    assert "api.trycloudflare.com" in h.sup.error.hint
    assert "http2" in h.sup.error.hint


@harness_test(lambda: StandInSpawner(exits(1, DNS_NAMED)), tunnel_mode="named", tunnel_token="tok")
async def test_named_network_hint_names_dns_and_the_edge(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("backoff")
    assert h.sup.error is not None
    assert h.sup.error.kind == "network"
    assert h.sup.error.hint == NAMED_NETWORK_HINT
    assert "trycloudflare" not in h.sup.error.hint
    for words in ("DNS", "region1.v2.argotunnel.com:7844", "http2"):
        assert words in h.sup.error.hint


# ----- the log (issue 11 item 5) -----------------------------------------------------------


def test_backoff_and_failure_are_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    n = 2 * STORM_SUMMARY_EVERY + 3

    async def main() -> None:
        scripts: list[Script] = [network_down] * n + [crashes, crashes, quick_ready]
        h = Harness(StandInSpawner(*scripts), max_restarts=1000)
        await h.sup.start()
        await h.until_state("ready")
        await h.sup.stop()

    run(main)
    loud = warnings_and_errors(caplog)
    texts = [r.getMessage() for r in loud]
    network = [t for t in texts if "network" in t]
    # The first with its cause and hint, then one summary per STORM_SUMMARY_EVERY in a row.
    assert len(network) == 3, texts
    assert network[0].startswith("Tunnel backoff: network: failed to request quick Tunnel")
    assert HINTS["network"] in network[0]
    assert f"{STORM_SUMMARY_EVERY} times in a row" in network[1]
    assert f"{2 * STORM_SUMMARY_EVERY} times in a row" in network[2]
    # A new kind is logged again at once.
    crashed = [t for t in texts if "crashed" in t]
    assert len(crashed) == 1
    assert HINTS["crashed"] in crashed[0]
    assert all(r.levelno == logging.WARNING for r in loud)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert not any(t.startswith("Tunnel backoff") for t in infos)
    assert any("recovered after" in t for t in infos)


def test_failure_is_logged_at_error_with_the_hint(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def main() -> None:
        h = Harness(StandInSpawner(), cloudflared_args=["--edge-ip-version 4"])
        await h.sup.start()
        await h.until_state("failed")
        await h.sup.stop()

    run(main)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    text = errors[0].getMessage()
    assert text.startswith("Tunnel failed: bad_arguments: ")
    assert HINTS["bad_arguments"] in text


# ----- stop, restart ----------------------------------------------------------------------


@harness_test(StandInSpawner)
async def test_stop_terminates_and_forgets_the_url(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("ready")
    await h.sup.stop()
    assert h.events()[-2:] == ["stopping", "stopped"]
    assert h.spawner.children[0].terminated
    assert h.sup.url is None
    assert h.sup.pid is None
    assert h.urls[-1] is None


@harness_test(lambda: StandInSpawner(crashes))
async def test_stop_during_backoff_spawns_nothing_more(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("backoff")
    await h.sup.stop()
    assert h.sup.state == "stopped"
    assert h.sup.next_retry_at is None
    await h.clock.settle()
    assert len(h.spawner.children) == 1


@harness_test(StandInSpawner)
async def test_restart_runs_a_new_child(h: Harness) -> None:
    await h.sup.start()
    await h.until_state("ready")
    await h.sup.restart()
    await h.until(lambda: h.sup.state == "ready" and h.sup.pid == 5001)
    assert h.spawner.children[0].terminated
    assert h.sup.restarts == 0
    assert len(h.spawner.alive) == 1


@harness_test(StandInSpawner)
async def test_start_twice_runs_one_child(h: Harness) -> None:
    await asyncio.gather(h.sup.start(), h.sup.start(), h.sup.start())
    await h.until_state("ready")
    assert len(h.spawner.children) == 1


def test_mode_off_starts_as_off() -> None:
    async def main() -> None:
        h = Harness(StandInSpawner(), tunnel_mode="off")
        assert h.sup.state == "off"
        await h.sup.stop()
        assert h.sup.state == "off"

    run(main)
