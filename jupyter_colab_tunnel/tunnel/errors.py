"""Which tunnel problems are worth a restart, how soon, and which count as crashes (the policy)."""

from __future__ import annotations

import random
from dataclasses import replace

from ..problems import Problem, TunnelKind

# A restart cannot fix these: the user has to change something first.
FATAL_KINDS: frozenset[TunnelKind] = frozenset(
    {
        "binary_unavailable",
        "invalid_token",
        "token_unavailable",
        "bad_arguments",
        "insecure_config",
        "invalid_config",
        "crash_loop",
    }
)

# Failures of the world outside (no network, Cloudflare's rate limit), not of cloudflared:
# retried for as long as the server runs, and never counted towards crash_loop, so an outage
# heals by itself once it ends.
ENVIRONMENTAL_KINDS: frozenset[TunnelKind] = frozenset({"network", "rate_limited"})

# Cloudflare asks rate-limited clients to wait; sooner retries only extend the block.
RATE_LIMIT_DELAY = 60.0

# A named tunnel never talks to api.trycloudflare.com: its network trouble is DNS or the edge.
NAMED_NETWORK_HINT = (
    "cloudflared could not reach Cloudflare's edge. Check DNS (it looks up "
    "region1.v2.argotunnel.com) and outbound access to region1.v2.argotunnel.com:7844 "
    "(TCP and UDP); where UDP is blocked set c.ColabTunnelApp.protocol = 'http2'. "
    "It is retried with backoff for as long as the server runs."
)


def retryable(problem: Problem) -> bool:
    return problem.kind not in FATAL_KINDS


def counts_as_crash(problem: Problem) -> bool:
    """Whether this exit counts towards max_restarts within crash_window."""
    return retryable(problem) and problem.kind not in ENVIRONMENTAL_KINDS


def min_delay(problem: Problem) -> float:
    return RATE_LIMIT_DELAY if problem.kind == "rate_limited" else 0.0


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff capped at `maximum`, with equal jitter.

    Equal jitter (a random point in the upper half) spreads restarts of many servers without
    ever collapsing to an immediate retry. A cap below `initial` means `initial`.
    """
    cap = max(maximum, initial)
    base = min(cap, initial * 2.0 ** min(attempt, 30))
    return base * random.uniform(0.5, 1.0)


def fit_to_mode(problem: Problem, mode: str) -> Problem:
    """The problem with the hint that fits this tunnel mode (the default hints are quick's)."""
    if problem.kind == "network" and mode == "named":
        return replace(problem, hint=NAMED_NETWORK_HINT)
    return problem
