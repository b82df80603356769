"""A copy from start to end: plan it, create the directories, move each file, count.

Shared by `cp` and the MCP tools. A file that fails is reported and the others go on; a remote
that cannot be reached (beyond the wait) or that refuses the token ends the run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from ...problems import ColabTunnelError
from ..client import RemoteError
from .answers import fatal_reach
from .download import download
from .plan import make_plan
from .progress import Tally
from .remote import FilesClient
from .specs import Direction, Plan
from .transfer import Outcome, local_error
from .upload import upload


@dataclass
class Run:
    plan: Plan
    tally: Tally = field(default_factory=Tally)
    outcomes: list[Outcome] = field(default_factory=list)
    failures: list[tuple[str, ColabTunnelError]] = field(default_factory=list)


# Files of at most this size go PARALLEL at a time: through the relay, which holds a request's
# body whole, that is at most PARALLEL MiB there at once.
SMALL_FILE = 1024 * 1024
PARALLEL = 8


class Unreachable(Exception):
    """The remote went away (beyond the wait) or refused the token mid-run."""

    def __init__(self, error: RemoteError, path: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.path = path


async def execute(
    client: FilesClient,
    direction: Direction,
    *,
    recursive: bool,
    update: bool,
    wait: float,
    on_plan: Callable[[Plan], None] = lambda plan: None,
    progress: Callable[[int], None] = lambda n: None,
    on_error: Callable[[ColabTunnelError, str], None] = lambda e, path: None,
) -> Run:
    """Plan (SpecError / RemoteError raised before anything moves), then copy."""
    plan = await make_plan(client, direction, recursive)
    on_plan(plan)
    run = Run(plan)
    for directory in plan.directories:
        shown = f"remote:{directory}" if direction.upload else directory
        try:
            if direction.upload:
                await client.mkdir(directory)
            else:
                await asyncio.to_thread(os.makedirs, directory, exist_ok=True)
        except RemoteError as e:
            if fatal_reach(e):
                raise Unreachable(e, shown) from None
            run.failures.append((shown, e))
            on_error(e, shown)
        except OSError as e:
            error = local_error(e, directory, "creating")
            run.failures.append((shown, error))
            on_error(error, shown)

    sizes = {source: size for source, _, size in plan.files}

    async def one(source: str, target: str) -> None:
        shown = source if direction.upload else f"remote:{source}"
        try:
            if direction.upload:
                outcome = await upload(client, source, target, wait, progress, update)
            else:
                outcome = await download(
                    client, source, target, wait, progress, update, size_hint=sizes[source]
                )
        except RemoteError as e:
            if fatal_reach(e):
                raise Unreachable(e, shown) from None
            run.failures.append((shown, e))
            run.tally.failed += 1
            on_error(e, shown)
            return
        run.outcomes.append(outcome)
        _count(run.tally, outcome)

    # Small files a few at a time (each costs round trips more than bytes), large ones alone.
    small = iter([(s, t) for s, t, size in plan.files if size <= SMALL_FILE])
    await _together(small, one, PARALLEL)
    for source, target, size in plan.files:
        if size > SMALL_FILE:
            await one(source, target)
    return run


async def _together(
    items: Iterator[tuple[str, str]],
    one: Callable[[str, str], Awaitable[None]],
    workers: int,
) -> None:
    """`one` over `items`, `workers` at a time; the first exception stops the others."""

    async def worker() -> None:
        for source, target in items:  # a shared iterator: each item is taken once
            await one(source, target)

    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _count(tally: Tally, outcome: Outcome) -> None:
    if outcome.skipped:
        tally.skipped += 1
        return
    tally.files += 1
    tally.bytes += outcome.size
    if outcome.resumed_from or outcome.resumes:
        tally.resumed += 1
    tally.resumed_bytes += outcome.resumed_from
    tally.resumes += outcome.resumes
    tally.sent_again += outcome.sent_again
