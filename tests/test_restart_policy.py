"""The restart policy alone: crash window, backoff, a stable run's fresh start (no supervisor,
no clock: times are passed in, so each case runs in microseconds)."""

from __future__ import annotations

import pytest

from jupyter_colab_tunnel.problems import Problem
from jupyter_colab_tunnel.tunnel import errors
from jupyter_colab_tunnel.tunnel.errors import RATE_LIMIT_DELAY
from jupyter_colab_tunnel.tunnel.restart import GiveUp, Restart, RestartPolicy, RestartRules

CRASH = Problem("crashed", "boom")


def policy(
    max_restarts: int = 5,
    crash_window: float = 600.0,
    backoff_initial: float = 1.0,
    backoff_max: float = 10.0,
) -> RestartPolicy:
    return RestartPolicy(RestartRules(max_restarts, crash_window, backoff_initial, backoff_max))


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The top of each jitter range, so delays are exact."""
    monkeypatch.setattr(errors.random, "uniform", lambda low, high: high)


def delays(p: RestartPolicy, error: Problem, times: list[float]) -> list[float]:
    out = []
    for now in times:
        decision = p.after_exit(error, now, None)
        assert isinstance(decision, Restart), decision
        out.append(decision.delay)
    return out


@pytest.mark.parametrize("kind", ["invalid_token", "binary_unavailable", "bad_arguments"])
def test_an_error_a_restart_cannot_fix_gives_up_at_once_with_that_error(kind: str) -> None:
    error = Problem(kind, "no")  # type: ignore[arg-type]
    assert policy().after_exit(error, 0.0, None) == GiveUp(error)


def test_more_crashes_than_max_restarts_within_the_window_is_a_crash_loop() -> None:
    p = policy(max_restarts=2, crash_window=600.0)
    assert isinstance(p.after_exit(CRASH, 0.0, None), Restart)
    assert isinstance(p.after_exit(CRASH, 1.0, None), Restart)
    decision = p.after_exit(CRASH, 2.0, None)
    assert isinstance(decision, GiveUp)
    assert decision.error.kind == "crash_loop"
    assert decision.error.message == ("cloudflared exited 3 times within 600s; last: crashed: boom")


def test_crashes_further_apart_than_the_window_never_add_up() -> None:
    p = policy(max_restarts=1, crash_window=300.0)
    assert len(delays(p, CRASH, [0.0, 301.0, 602.0, 903.0])) == 4


def test_failures_of_the_world_outside_are_retried_for_ever(no_jitter: None) -> None:
    p = policy(max_restarts=1)
    got = delays(p, Problem("network", "no route"), [float(t) for t in range(50)])
    assert got[:5] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert set(got[4:]) == {10.0}  # capped at backoff_max
    # They did not count: one crash now is still within max_restarts.
    assert isinstance(p.after_exit(CRASH, 50.0, None), Restart)


def test_a_rate_limit_waits_as_long_as_cloudflare_asks(no_jitter: None) -> None:
    assert delays(policy(), Problem("rate_limited", "1015"), [0.0]) == [RATE_LIMIT_DELAY]


def test_backoff_starts_over_only_after_a_run_ready_as_long_as_the_longest_wait(
    no_jitter: None,
) -> None:
    p = policy(max_restarts=100, backoff_initial=1.0, backoff_max=10.0)
    assert delays(p, CRASH, [0.0, 1.0, 2.0]) == [1.0, 2.0, 4.0]
    short = p.after_exit(CRASH, 100.0, ready_since=100.0 - 9.9)  # ready, but not for 10 s
    assert short == Restart(8.0)
    stable = p.after_exit(CRASH, 200.0, ready_since=200.0 - 10.0)
    assert stable == Restart(1.0)
    assert delays(p, CRASH, [201.0]) == [2.0]


def test_the_jitter_never_collapses_to_an_immediate_retry() -> None:
    p = policy(max_restarts=1000, backoff_initial=2.0, backoff_max=2.0)
    got = delays(p, CRASH, [float(t) for t in range(200)])
    assert min(got) >= 1.0
    assert max(got) <= 2.0
    assert len(set(got)) > 1  # spread, so many servers do not restart in step
