"""Which tunnel problems are worth a restart, and how soon (the supervisor's policy)."""

from __future__ import annotations

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

# Cloudflare asks rate-limited clients to wait; sooner retries only extend the block.
RATE_LIMIT_DELAY = 60.0


def retryable(problem: Problem) -> bool:
    return problem.kind not in FATAL_KINDS


def min_delay(problem: Problem) -> float:
    return RATE_LIMIT_DELAY if problem.kind == "rate_limited" else 0.0
