"""Samples of two or more sides taken in alternated blocks, so that no side always runs on the
warmer, or the busier, machine: round 0 takes side A's block then B's, round 1 B's then A's, ...
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence


def timed_ms(fn: Callable[[], object]) -> float:
    """How long one call of `fn` took, in milliseconds."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def alternated(rounds: int, n: int, sides: Sequence[Callable[[], float]]) -> list[list[float]]:
    """`rounds` blocks of `n` samples of each side (a side returns its sample), alternated;
    the samples of each side, in the order of `sides`."""
    samples: list[list[float]] = [[] for _ in sides]
    order = list(enumerate(sides))
    for i in range(rounds):
        for k, side in order if i % 2 == 0 else order[::-1]:
            samples[k] += [side() for _ in range(n)]
    return samples


async def alternated_async(
    rounds: int, n: int, sides: Sequence[Callable[[], Awaitable[float]]]
) -> list[list[float]]:
    """`alternated` for sides that are coroutines."""
    samples: list[list[float]] = [[] for _ in sides]
    order = list(enumerate(sides))
    for i in range(rounds):
        for k, side in order if i % 2 == 0 else order[::-1]:
            for _ in range(n):
                samples[k].append(await side())
    return samples
