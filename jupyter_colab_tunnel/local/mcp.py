"""MCP tools over the remote REST API: an agent reads the remote GPU and tunnel, and drives it.

Built on the official `mcp` SDK (the optional extra ``jupyter-colab-tunnel[mcp]``). Every tool
asks the remote through `ColabClient` (bounded timeouts) and returns the REST JSON itself as
structured content, with a typed output schema (local/mcp_schemas.py). A failed request
becomes a tool error (``isError``) whose text carries the error's kind, what happened and a
hint; the server keeps serving.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from .._version import __version__
from ..problems import ColabTunnelError
from ..states import TRANSITIONAL, TunnelAction
from .client import ColabClient, JSONObject, RemoteError
from .files import tools as file_tools
from .mcp_gpu import best_device, fmt_mib, mib
from .mcp_reach import cut_mid_request, reach_again
from .mcp_schemas import (
    FileListing,
    FileTransfer,
    GpuMemoryWait,
    GpuSample,
    Ports,
    Status,
    TunnelSnapshot,
)

POLL_INTERVAL = 1.0  # seconds; the remote caches a GPU sample for about a second
TUNNEL_POLL_INTERVAL = 0.5
MAX_WAIT_S = 600.0

INSTRUCTIONS = """\
Tools for a remote Jupyter server (e.g. a Colab or cloud GPU runtime) that runs the
jupyter-colab-tunnel extension: its resources and GPUs, and the cloudflared tunnel through which
this machine reaches it. Code runs on that machine through a Jupyter kernel (for example with
jupyter-mcp-server's tools); use these tools to check GPU memory before loading a model, to wait
for memory to be freed, to see or repair the tunnel, and to move files: a kernel's open("x")
reads the remote's disk, so upload scripts and data with colab_upload and fetch results with
colab_download. Memory figures are bytes unless a field name says MiB."""

T = TypeVar("T")

# The file tools' arguments (module level: annotations are evaluated here).
LOCAL_PATH = Field(description="A file or directory on this machine (absolute is best).")
REMOTE_PATH = Field(
    description=(
        "A path on the remote, relative to its Jupyter root directory (/content on Colab), or "
        "absolute inside it; '' is the root."
    )
)


def _result(body: JSONObject) -> CallToolResult:
    # The JSON text too, for clients that read only the content blocks.
    text = json.dumps(body, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=body)


async def _ask(request: Awaitable[T]) -> T:
    try:
        return await request
    except ColabTunnelError as e:  # RemoteError, and the file tools' refusals
        raise ToolError(str(e)) from None


def build_server(
    client: ColabClient,
    *,
    poll_interval: float = POLL_INTERVAL,
    tunnel_poll_interval: float = TUNNEL_POLL_INTERVAL,
) -> MCPServer:
    """An MCP server whose tools ask the remote through `client`."""
    server = MCPServer(
        name="jupyter-colab-tunnel",
        title="Remote Jupyter GPU runtime",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    read = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(
        title="Remote machine status",
        annotations=read,
        description=(
            "The remote machine at a glance: Jupyter server (version, uptime in seconds, root "
            "dir, running kernels), runtime (Colab or not, accelerator gpu/tpu/none, Python), "
            "resources (CPU count, 1-minute load, RAM and disk of the root dir, in bytes), a "
            "tunnel summary (state, URL, error kind) and a GPU summary (count, names, memory "
            "total/used in bytes), and the runtime's life: machine uptime and idle time in "
            "seconds, busy kernels, the platform's limits with their source, and on Colab or "
            "Kaggle an estimated end (estimated_end_at, an estimate: platforms do not announce "
            "it). Call it first to learn what the remote has; use colab_gpu for per-GPU detail "
            "and colab_tunnel for the tunnel's detail. When estimated_end_at is near, you may "
            "decide to save a checkpoint (to Drive or another place that outlives the runtime) "
            "before the runtime is recycled."
        ),
    )
    async def colab_status() -> Annotated[CallToolResult, Status]:
        return _result(await _ask(client.status()))

    @server.tool(
        title="Remote GPUs",
        annotations=read,
        description=(
            "One sample of every NVIDIA GPU on the remote machine, read through NVML: per "
            "device memory total/used/free/reserved in bytes, utilization in percent, "
            "temperature in °C, power in watts, clocks in MHz, MIG mode; with processes=true "
            "also the processes using each GPU (pid, name, used_memory in bytes, and the "
            "kernel_id and notebook_path of the remote server's kernel each belongs to, null "
            "for other processes). Samples are "
            "cached on the remote for about a second. When there is no usable GPU, "
            "available is false and error says why (kind, message, hint). Call it before "
            "loading a model, or when a kernel reports CUDA out of memory."
        ),
    )
    async def colab_gpu(
        processes: Annotated[
            bool,
            Field(description="Also list the processes on each GPU (slower on many GPUs)."),
        ] = False,
    ) -> Annotated[CallToolResult, GpuSample]:
        return _result(await _ask(client.gpu(processes=processes)))

    @server.tool(
        title="Tunnel state",
        annotations=read,
        description=(
            "The cloudflared tunnel through which this machine reaches the remote Jupyter "
            "server: state (ready when usable; starting, connecting, backoff while it "
            "(re)starts; stopped; failed), public URL, cloudflared pid, restarts, the last "
            "exit, error (kind, message, hint) when it is not working, recent state changes, "
            "and how to connect a local JupyterLab. With logs=N also cloudflared's last N log "
            "lines (secrets redacted). Call it when requests to the remote fail, or to learn "
            "its current URL (a quick tunnel's URL changes on every restart)."
        ),
    )
    async def colab_tunnel(
        logs: Annotated[
            int,
            Field(ge=0, le=2000, description="How many of cloudflared's last log lines (0: none)."),
        ] = 0,
    ) -> Annotated[CallToolResult, TunnelSnapshot]:
        return _result(await _ask(client.tunnel(logs=logs)))

    @server.tool(
        title="Remote web ports",
        annotations=read,
        description=(
            "The TCP ports listening on the remote machine where its own 127.0.0.1 reaches "
            "them: TensorBoard (6006), Gradio (7860), Streamlit (8501), a model server (vLLM "
            "8000, Ollama 11434), ... Per port: the process (pid, name; null when not visible), "
            "its command line (shortened, secrets as ***), the kernel_id of the remote server's "
            "kernel that started it (null for other processes), and `forward`, the flag the "
            "user adds to `jupyter colab-tunnel connect` (e.g. `jupyter colab-tunnel connect "
            "--url <tunnel URL> --forward 6006`) to open it at http://127.0.0.1:6006/ on this "
            "machine; forwardable=false with `refused` says why a port cannot be forwarded. "
            "Call it after starting a server in a kernel, to tell the user how to open it."
        ),
    )
    async def colab_ports() -> Annotated[CallToolResult, Ports]:
        body = await _ask(client.ports())
        return _result({**body, "how_to_forward": _how_to_forward(body)})

    @server.tool(
        title="Start, stop or restart the tunnel",
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=False,
        ),
        description=(
            "Start, stop or restart the remote's cloudflared tunnel, then (unless wait_s is "
            "0) wait up to wait_s seconds until it is ready, stopped or failed; returns the "
            "tunnel state as colab_tunnel does. stop and restart cut every connection through "
            "the tunnel, this one included while it lasts, and a quick tunnel comes back under "
            "a NEW URL (read `url` in the result). Use restart when colab_tunnel shows failed, "
            "stalled or crash_loop, or the remote stopped answering through the tunnel. A "
            "remote whose tunnel_mode is off answers with a conflict error."
        ),
    )
    async def colab_tunnel_action(
        action: Annotated[
            TunnelAction,
            Field(description="start (no-op when running) | stop | restart."),
        ],
        wait_s: Annotated[
            float,
            Field(ge=0, le=MAX_WAIT_S, description="Seconds to wait for a settled state."),
        ] = 30.0,
    ) -> Annotated[CallToolResult, TunnelSnapshot]:
        deadline = time.monotonic() + wait_s
        try:
            body = await client.tunnel_action(action)
        except RemoteError as e:
            if action == "start" or not cut_mid_request(e):
                raise ToolError(str(e)) from None
            # The request went through the very tunnel it stops: its answer is lost.
            body = await reach_again(client, action, e, deadline, tunnel_poll_interval)
        while body.get("state") in TRANSITIONAL and time.monotonic() < deadline:
            await anyio.sleep(min(tunnel_poll_interval, max(0.0, deadline - time.monotonic())))
            body = await _ask(client.tunnel())
        return _result(body)

    @server.tool(
        title="Wait for free GPU memory",
        annotations=read,
        description=(
            "Wait until a remote GPU has at least min_free_mib MiB of free memory (for "
            "example after freeing a model, or while another job finishes), polling about "
            "every second, for at most timeout_s seconds. Returns met=true with the GPU and "
            "its free MiB as soon as one qualifies, or met=false at the timeout with the GPU "
            "that had the most free memory. gpu_index limits it to one GPU. A machine without "
            "a usable GPU is an error at once."
        ),
    )
    async def colab_wait_gpu_memory(
        min_free_mib: Annotated[int, Field(ge=1, description="Free memory needed, in MiB.")],
        ctx: Context[Any, Any],
        gpu_index: Annotated[
            int | None, Field(ge=0, description="Only this GPU (0-based); default: any.")
        ] = None,
        timeout_s: Annotated[
            float, Field(ge=0, le=MAX_WAIT_S, description="Give up after this many seconds.")
        ] = 60.0,
    ) -> GpuMemoryWait:
        started = time.monotonic()
        deadline = started + timeout_s
        samples = 0
        while True:
            sample = await _ask(client.gpu(processes=False))
            samples += 1
            device = best_device(sample, gpu_index)
            free = mib(device, "free")
            waited = round(time.monotonic() - started, 3)
            met = free is not None and free >= min_free_mib
            if met or time.monotonic() >= deadline:
                return GpuMemoryWait(
                    met=met,
                    min_free_mib=min_free_mib,
                    gpu_index=device["index"],
                    free_mib=free,
                    total_mib=mib(device, "total"),
                    waited_s=waited,
                    samples=samples,
                    sampled_at=str(sample.get("sampled_at")),
                    message=(
                        f"GPU {device['index']} has {fmt_mib(free)} MiB free"
                        + (
                            f" (>= {min_free_mib} MiB)."
                            if met
                            else f", less than {min_free_mib} MiB, after {waited:g} s."
                        )
                    ),
                )
            await ctx.report_progress(
                waited, timeout_s, f"GPU {device['index']}: {fmt_mib(free)} MiB free"
            )
            await anyio.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))

    write = ToolAnnotations(
        read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
    )

    @server.tool(
        title="Upload to the remote",
        annotations=write,
        description=(
            "Copy a file or a directory (with everything in it) from this machine to the "
            "remote Jupyter server's disk, where its kernels read it (open('data.csv') in a "
            "cell reads the remote's root directory). If remote_path is an existing directory "
            "the source lands inside it under its own name, else it becomes remote_path (its "
            "parent directory must exist). Streamed, resumed after a tunnel restart, checked "
            "with sha256 end to end; the target is replaced only when whole. Returns where it "
            "landed, bytes, sha256 (null for a directory), seconds and, for a directory, files."
        ),
    )
    async def colab_upload(
        local_path: Annotated[str, LOCAL_PATH], remote_path: Annotated[str, REMOTE_PATH]
    ) -> Annotated[CallToolResult, FileTransfer]:
        return _result(await _ask(file_tools.copy(client, local_path, remote_path, upload=True)))

    @server.tool(
        title="Download from the remote",
        annotations=write,
        description=(
            "Copy a file or a directory (with everything in it) from the remote Jupyter "
            "server's disk to this machine: a model checkpoint, a plot, a result file a kernel "
            "wrote. If local_path is an existing directory the source lands inside it under "
            "its own name, else it becomes local_path. Streamed, resumed after a tunnel "
            "restart, checked with sha256; the local target is replaced only when whole. "
            "Returns where it landed, bytes, sha256 (null for a directory), seconds and, for a "
            "directory, files. Use colab_list to see what is there."
        ),
    )
    async def colab_download(
        local_path: Annotated[str, LOCAL_PATH], remote_path: Annotated[str, REMOTE_PATH]
    ) -> Annotated[CallToolResult, FileTransfer]:
        return _result(await _ask(file_tools.copy(client, local_path, remote_path, upload=False)))

    @server.tool(
        title="List a remote directory",
        annotations=read,
        description=(
            "The entries of a directory on the remote Jupyter server's disk (default: its root "
            "directory, /content on Colab): name, path (relative to the root, usable as "
            "remote_path), type (file or directory), size in bytes and modification time "
            "(UTC, ISO 8601). Hidden files are left out unless the server allows them. Call it "
            "to find a kernel's output before colab_download."
        ),
    )
    async def colab_list(
        remote_path: Annotated[str, REMOTE_PATH] = "",
    ) -> Annotated[CallToolResult, FileListing]:
        return _result(await _ask(file_tools.listing(client, remote_path)))

    return server


def _how_to_forward(body: JSONObject) -> str:
    ports = [p for p in body.get("ports") or [] if p.get("forwardable", True)]
    port = ports[0]["port"] if ports else 6006
    return (
        "Add a port's `forward` flag to the local relay's command, e.g. `jupyter colab-tunnel "
        f"connect --url <tunnel URL> --forward {port}` (repeatable; --forward LOCAL:REMOTE "
        f"picks another local port); the app is then at http://127.0.0.1:{port}/ here."
    )


def serve_stdio(client: ColabClient) -> None:
    """Serve the tools over stdio until the client closes stdin."""
    build_server(client).run("stdio")
