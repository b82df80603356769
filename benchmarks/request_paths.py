"""The local side's request paths, side by side in one run (issue 22, item 4).

One server (tunnel ready through the stand-in). A small GET /colab/status, with the token, is
timed on each path, to the server itself ("local") and through the stand-in's edge ("tunnel"),
blocks of each path alternated in turn:

- `tornado` -- tornado's `AsyncHTTPClient` (a new connection for every request): what
  `ColabClient`, the relay's start check and its health probe used before;
- `urllib` -- `urllib.request` (a new connection each): `ColabClientSync`, `ports` and
  `launch()`'s `get_json`;
- `keepalive` / `keepalive.fresh` -- the relay's `http1.KeepAliveClient.fetch` on a kept
  connection / on a new one each time;
- `httpx` / `httpx.fresh`, `httpx.sync` / `httpx.sync.fresh` -- httpx's pooled clients;
- `ColabClient` / `ColabClientSync` -- the package's clients as they are now.

And the import cost of each library in a fresh interpreter (best of several, the interpreter's
own start subtracted). Informational: the figures choose the path (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.alternate import alternated, alternated_async, timed_ms
from benchmarks.relay import _edge
from benchmarks.report import Figure, Summary
from benchmarks.servers import Fleet

PATH = "colab/status"
IMPORTS = {
    "tornado.httpclient": "import tornado.httpclient",
    "urllib.request": "import urllib.request",
    "httpx": "import httpx",
    "jupyter_colab_tunnel.local.client": "import jupyter_colab_tunnel.local.client",
    "jupyter_colab_tunnel.http1": "import jupyter_colab_tunnel.http1",
}


def _best_ms(code: str, tries: int) -> float:
    """The best wall time of `python -c code`, in ms."""
    times = []
    for _ in range(tries):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


Call = Callable[[], Awaitable[Any]]


def _async_paths(base: str, token: str) -> dict[str, tuple[Call, Callable[[], Awaitable[None]]]]:
    """name -> (one request, cleanup)."""
    from tornado import httputil
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    from jupyter_colab_tunnel.http1 import KeepAliveClient
    from jupyter_colab_tunnel.local.client import ColabClient

    url = f"{base}/{PATH}"
    auth = {"Authorization": f"token {token}"}
    paths: dict[str, tuple[Call, Callable[[], Awaitable[None]]]] = {}

    tornado_client = AsyncHTTPClient(force_instance=True)

    async def tornado() -> None:
        r = await tornado_client.fetch(HTTPRequest(url, headers=auth, follow_redirects=False))
        assert r.code == 200

    async def tornado_close() -> None:
        tornado_client.close()

    paths["tornado"] = (tornado, tornado_close)

    for name, fresh in (("keepalive", False), ("keepalive.fresh", True)):
        kept = KeepAliveClient()

        async def keepalive(kept: KeepAliveClient = kept, fresh: bool = fresh) -> None:
            headers = httputil.HTTPHeaders(auth)
            if fresh:
                headers["Connection"] = "close"
            r = await kept.fetch(url, "GET", headers, None, 10, 30)
            assert r.code == 200

        async def keepalive_close(kept: KeepAliveClient = kept) -> None:
            kept.close()

        paths[name] = (keepalive, keepalive_close)

    if importlib.util.find_spec("httpx") is not None:
        import httpx

        for name, keep in (("httpx", 20), ("httpx.fresh", 0)):
            pooled = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=keep))

            async def via_httpx(pooled: httpx.AsyncClient = pooled) -> None:
                r = await pooled.get(url, headers=auth)
                assert r.status_code == 200

            paths[name] = (via_httpx, pooled.aclose)

    client = ColabClient(base, token)
    close = getattr(client, "aclose", None)

    async def colab() -> None:
        await client.status()

    async def colab_close() -> None:
        if close is not None:
            await close()

    paths["ColabClient"] = (colab, colab_close)
    return paths


def _sync_paths(base: str, token: str) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    from jupyter_colab_tunnel.local.client import ColabClientSync

    url = f"{base}/{PATH}"
    auth = {"Authorization": f"token {token}"}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    paths: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}

    def via_urllib() -> None:
        with opener.open(urllib.request.Request(url, headers=auth), timeout=30) as r:
            r.read()

    paths["urllib"] = (via_urllib, lambda: None)
    if importlib.util.find_spec("httpx") is not None:
        import httpx

        for name, keep in (("httpx.sync", 20), ("httpx.sync.fresh", 0)):
            pooled = httpx.Client(limits=httpx.Limits(max_keepalive_connections=keep))

            def via_httpx(pooled: httpx.Client = pooled) -> None:
                assert pooled.get(url, headers=auth).status_code == 200

            paths[name] = (via_httpx, pooled.close)
    sync = ColabClientSync(base, token)
    paths["ColabClientSync"] = (sync.status, getattr(sync, "close", lambda: None))
    return paths


async def _measure_async(base: str, token: str, n: int, rounds: int) -> dict[str, list[float]]:
    paths = _async_paths(base, token)
    order = list(paths.items())
    for _, (call, _) in order:  # warm-up: imports, the first connection
        for _ in range(5):
            await call()

    async def timed(call: Callable[[], Awaitable[object]]) -> float:
        t0 = time.perf_counter()
        await call()
        return (time.perf_counter() - t0) * 1000

    measured = await alternated_async(
        rounds, n, [lambda call=call: timed(call) for _, (call, _) in order]
    )
    for _, cleanup in paths.values():
        await cleanup()
    return dict(zip(paths, measured, strict=True))


def _measure_sync(base: str, token: str, n: int, rounds: int) -> dict[str, list[float]]:
    paths = _sync_paths(base, token)
    order = list(paths.items())
    for _, (call, _) in order:
        for _ in range(5):
            call()
    measured = alternated(rounds, n, [lambda call=call: timed_ms(call) for _, (call, _) in order])
    for _, cleanup in paths.values():
        cleanup()
    return dict(zip(paths, measured, strict=True))


def _figure(key: str, title: str, values: list[float], base: list[float], label: str) -> Figure:
    value, baseline = Summary.of(values), Summary.of(base)
    return Figure(
        key=key,
        group="requests",
        title=title,
        unit="ms",
        value=value,
        baseline=baseline,
        baseline_label=label,
        target="informational",
        met=None,
        compare=f"{value.median - baseline.median:+.2f} ms",
    )


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    server = fleet.start("requests")
    tunnel = server.wait_ready()
    edge = _edge(server, int(tunnel["pid"]))
    n, rounds = (20, 2) if quick else (100, 4)
    figures: list[Figure] = []
    for where, base in (("local", server.base), ("tunnel", edge)):
        samples = asyncio.run(_measure_async(base, server.token, n, rounds))
        samples |= _measure_sync(base, server.token, n, rounds)
        reference = samples["tornado"]
        for name, values in samples.items():
            figures.append(
                _figure(
                    f"requests.{where}.{name}",
                    f"GET /{PATH} ({where}) via {name}",
                    values,
                    reference,
                    "tornado AsyncHTTPClient, a new connection each (the path before)",
                )
            )
    tries = 3 if quick else 7
    bare = _best_ms("pass", tries)
    for name, statement in IMPORTS.items():
        ms = _best_ms(statement, tries)
        figures.append(
            Figure(
                key=f"requests.import.{name}",
                group="requests",
                title=f"`{statement}` (fresh interpreter, best of {tries})",
                unit="ms",
                value=Summary.scalar(ms),
                baseline=Summary.scalar(bare),
                baseline_label="python -c pass, best of the same number",
                target="informational",
                met=None,
                compare=f"{ms - bare:+.1f} ms",
            )
        )
    return figures
