"""Load generators: one keep-alive connection (concurrency 1) and aiohttp (concurrency N)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from benchmarks.servers import Connection


@dataclass
class Block:
    """One timed run of one path: its latencies (ms) and its throughput."""

    path: str
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: int = 0

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0


def sequential(conn: Connection, path: str, n: int) -> Block:
    """n requests one after the other on one keep-alive connection."""
    block = Block(path)
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        status, _body = conn.get(path)
        dt = time.perf_counter() - t0
        if status == 200:
            block.latencies_ms.append(dt * 1000)
        else:
            block.errors += 1
    block.elapsed_s = time.perf_counter() - start
    return block


def sequential_for(conn: Connection, path: str, seconds: float) -> Block:
    """Requests one after the other for `seconds`."""
    block = Block(path)
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        status, _body = conn.get(path)
        dt = time.perf_counter() - t0
        if status == 200:
            block.latencies_ms.append(dt * 1000)
        else:
            block.errors += 1
    block.elapsed_s = time.perf_counter() - start
    return block


async def _concurrent_blocks(
    port: int, token: str, plan: list[tuple[str, float]], concurrency: int, late_s: float
) -> list[Block]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    headers = {"Authorization": f"token {token}"}
    base = f"http://127.0.0.1:{port}"
    blocks: list[Block] = []
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        for path, seconds in plan:
            block = Block(path)
            start = time.perf_counter()
            end = start + seconds

            async def worker(block: Block = block, end: float = end, path: str = path) -> None:
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    async with session.get(base + path) as r:
                        await r.read()
                        ok = r.status == 200
                    dt = time.perf_counter() - t0
                    if ok:
                        block.latencies_ms.append(dt * 1000)
                    else:
                        block.errors += 1

            workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
            # A slow endpoint may hold answers past the block's end: stop waiting for them.
            _done, late = await asyncio.wait(workers, timeout=seconds + late_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            block.elapsed_s = time.perf_counter() - start
            blocks.append(block)
    return blocks


def concurrent(
    port: int, token: str, plan: list[tuple[str, float]], concurrency: int, late_s: float = 10.0
) -> list[Block]:
    """Run each (path, seconds) of `plan` in turn with `concurrency` keep-alive clients.

    Requests still unanswered `late_s` after a block's end are abandoned (not counted).
    """
    return asyncio.run(_concurrent_blocks(port, token, plan, concurrency, late_s))
