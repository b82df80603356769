"""MCP tool calls against the REST calls they wrap, same server, same run.

One server (tunnel ready, NVML patched with 2 fake GPUs, default gpu_cache_ttl 1 s). Blocks of
the REST call (`ColabClient`, the client the tools use) and of the tool call alternate, for
colab_tunnel and colab_gpu through the SDK's in-memory client, and for colab_tunnel through a
real `jupyter colab-tunnel mcp` subprocess on stdio (what an agent runs). Target: tool p50 <=
REST p50 + 5 ms.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.report import Figure, Summary
from benchmarks.servers import Fleet, Server

MARGIN_MS = 5.0
FIGURES = ("mcp.tool.tunnel", "mcp.tool.gpu", "mcp.stdio.tunnel")


async def _timed(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _figure(
    key: str, title: str, tool: list[float], rest: list[float], via: str, **details: Any
) -> Figure:
    value, base = Summary.of(tool), Summary.of(rest)
    extra = value.median - base.median
    return Figure(
        key=key,
        group="mcp",
        title=title,
        unit="ms",
        value=value,
        baseline=base,
        baseline_label="the REST call it wraps (ColabClient), blocks alternated",
        target=f"p50 <= REST p50 + {MARGIN_MS:g} ms",
        met=extra <= MARGIN_MS,
        compare=f"{extra:+.2f} ms",
        notes=via,
        details=details,
    )


async def _measure(server: Server, token_file: Path, quick: bool) -> list[Figure]:
    from mcp import Client, StdioServerParameters
    from mcp.types import CallToolResult

    from jupyter_colab_tunnel.local.client import ColabClient
    from jupyter_colab_tunnel.local.mcp import build_server

    rounds = 2 if quick else 5
    n = 30 if quick else 200
    client = ColabClient(server.base, server.token)

    def checked(result: CallToolResult) -> CallToolResult:
        if result.is_error:
            raise RuntimeError(f"tool error: {result.content}")
        return result

    samples: dict[str, dict[str, list[float]]] = {k: {"tool": [], "rest": []} for k in FIGURES}
    async with Client(build_server(client)) as memory:

        async def tool_tunnel() -> Any:
            return checked(await memory.call_tool("colab_tunnel", {}))

        async def tool_gpu() -> Any:
            return checked(await memory.call_tool("colab_gpu", {}))

        pairs: dict[str, tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]] = {
            "mcp.tool.tunnel": (tool_tunnel, client.tunnel),
            "mcp.tool.gpu": (tool_gpu, lambda: client.gpu(processes=False)),
        }
        for tool, rest in pairs.values():  # warm-up: imports, schemas, the NVML sample
            await _timed(tool, 10)
            await _timed(rest, 10)
        for i in range(rounds):
            for key, (tool, rest) in pairs.items():
                order = [("tool", tool), ("rest", rest)]
                for side, call in order if i % 2 == 0 else order[::-1]:
                    samples[key][side] += await _timed(call, n)

    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_COLAB_TUNNEL_TOKEN"}
    params = StdioServerParameters(
        command=str(Path(sys.executable).parent / "jupyter-colab-tunnel"),
        args=["mcp", "--url", server.base, "--token-file", str(token_file)],
        env=env,
    )
    async with Client(params, read_timeout_seconds=60) as stdio:

        async def stdio_tunnel() -> Any:
            return checked(await stdio.call_tool("colab_tunnel", {}))

        async def stdio_list() -> Any:  # the SDK's stdio round trip, no remote call
            return await stdio.list_tools(cache_mode="refresh")

        await _timed(stdio_tunnel, 10)
        listing = await _timed(stdio_list, n)
        for i in range(rounds):
            order = [("tool", stdio_tunnel), ("rest", client.tunnel)]
            for side, call in order if i % 2 == 0 else order[::-1]:
                samples["mcp.stdio.tunnel"][side] += await _timed(call, n)

    titles = {
        "mcp.tool.tunnel": ("colab_tunnel tool call (in memory)", "SDK in-memory client"),
        "mcp.tool.gpu": ("colab_gpu tool call (in memory)", "SDK in-memory client; 2 fake GPUs"),
        "mcp.stdio.tunnel": (
            "colab_tunnel tool call (stdio subprocess)",
            "`jupyter colab-tunnel mcp` driven by the SDK's stdio client",
        ),
    }
    figures = [
        _figure(key, titles[key][0], s["tool"], s["rest"], titles[key][1])
        for key, s in samples.items()
        if key != "mcp.stdio.tunnel"
    ]
    # The SDK's stdio transport (a worker thread per line read and written) costs most of the
    # difference there: its own round trip is measured alongside.
    roundtrip = Summary.of(listing).median
    s = samples["mcp.stdio.tunnel"]
    via = (
        f"{titles['mcp.stdio.tunnel'][1]}; SDK stdio round trip (tools/list) p50 {roundtrip:.2f} ms"
    )
    figures.append(
        _figure(
            "mcp.stdio.tunnel",
            titles["mcp.stdio.tunnel"][0],
            s["tool"],
            s["rest"],
            via,
            stdio_list_tools_p50_ms=roundtrip,
        )
    )
    return figures


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    if importlib.util.find_spec("mcp") is None:
        for key in FIGURES:
            ctx.setdefault("skipped", {})[key] = (
                "the MCP SDK is not installed: pip install -e '.[bench]'"
            )
        return []
    server = fleet.start("mcp", nvml=(2, 0.0))
    server.wait_ready()
    token_file = fleet.workdir / "mcp-token"
    token_file.write_text(server.token)
    token_file.chmod(0o600)
    return asyncio.run(_measure(server, token_file, quick))
