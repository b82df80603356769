"""Output schemas of the MCP tools: the REST API's JSON (docs/openapi.yaml) as pydantic models.

They describe and check what the tools return; the tools hand back the remote's JSON itself.
Enumerations are plain strings (their values in the description), and unknown fields are
allowed, so that a newer remote does not break an older MCP server.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

TIMESTAMP = "UTC time, ISO 8601."


class Problem(BaseModel):
    kind: str = Field(description="A machine-readable error kind.")
    message: str = Field(description="What went wrong.")
    hint: str = Field(description="What to do about it.")


# ----- /colab/tunnel ----------------------------------------------------------------------


class LastExit(BaseModel):
    code: int | None = Field(description="Exit code; null when a signal killed it.")
    signal: str | None = Field(description="The signal that killed it (e.g. SIGKILL), else null.")
    at: str = Field(description=TIMESTAMP)


class Cloudflared(BaseModel):
    path: str | None = Field(description="The cloudflared binary used, null when none was found.")
    version: str | None


class TunnelEvent(BaseModel):
    at: str = Field(description=TIMESTAMP)
    state: str
    detail: str


class ConnectInfo(BaseModel):
    gateway_url: str = Field(description="The URL for a local JupyterLab's --gateway-url.")
    command: str = Field(description="The command to run on the local machine.")
    config: str = Field(description="The same as jupyter_server_config.py lines.")
    mcp: dict[str, Any] = Field(description="A jupyter-mcp-server client configuration.")


class ConfigError(BaseModel):
    trait: str
    message: str


class TunnelSnapshot(BaseModel):
    """The tunnel of the remote Jupyter server (GET /colab/tunnel)."""

    state: str = Field(
        description=(
            "off (tunnel_mode off) | starting (no URL yet) | connecting (URL known, no edge "
            "connection yet) | ready (usable) | backoff (cloudflared exited, restarting at "
            "next_retry_at) | stopping | stopped (on request) | failed (gave up: see error)."
        )
    )
    mode: str = Field(description="quick | named | off.")
    url: str | None = Field(description="The public https:// URL, null while unknown.")
    pid: int | None = Field(description="cloudflared's process id on the remote, null if none.")
    restarts: int = Field(description="Restarts after unexpected exits since the last start.")
    ready_connections: int = Field(description="Connections to Cloudflare's edge that are ready.")
    started_at: str | None = Field(description=TIMESTAMP)
    ready_at: str | None = Field(description=TIMESTAMP)
    next_retry_at: str | None = Field(description=TIMESTAMP + " Set in state backoff.")
    last_exit: LastExit | None
    error: Problem | None = Field(
        description=(
            "Why the tunnel is not working (kind e.g. binary_unavailable, invalid_token, "
            "network, rate_limited, crash_loop), with a hint; null when fine."
        )
    )
    cloudflared: Cloudflared
    events: list[TunnelEvent] = Field(description="The last state changes, oldest first.")
    connect: ConnectInfo | None = Field(description="How to connect from the local machine.")
    config_errors: list[ConfigError]
    logs: list[str] | None = Field(
        default=None, description="cloudflared's last log lines (secrets redacted), if asked."
    )


# ----- /colab/gpu -------------------------------------------------------------------------

BYTES = "Bytes; null when NVML cannot read it."


class GpuMemory(BaseModel):
    total: int | None = Field(description=BYTES)
    used: int | None = Field(description=BYTES)
    free: int | None = Field(description=BYTES)
    reserved: int | None = Field(description=BYTES)


class GpuUtilization(BaseModel):
    gpu: int | None = Field(description="Percent of time a kernel ran, over NVML's last period.")
    memory: int | None = Field(description="Percent of time memory was read or written.")


class GpuClocks(BaseModel):
    sm: int | None = Field(description="MHz.")
    memory: int | None = Field(description="MHz.")


class MigMode(BaseModel):
    current: bool
    pending: bool


class GpuProcess(BaseModel):
    pid: int = Field(description="Process id on the remote machine.")
    name: str | None
    used_memory: int | None = Field(description=BYTES)
    # Optional: remotes before the kernel mapping do not send them.
    kernel_id: str | None = Field(
        None,
        description="The remote server's kernel this process is (or descends from); null if none.",
    )
    notebook_path: str | None = Field(
        None, description="Path of the notebook whose session uses that kernel; null if none."
    )


class GpuDevice(BaseModel):
    index: int
    name: str | None
    uuid: str | None
    pci_bus_id: str | None
    lost: bool = Field(description="NVML reported the GPU lost (it needs a reset).")
    memory: GpuMemory | None
    utilization: GpuUtilization | None
    temperature_c: int | None = Field(description="Degrees Celsius.")
    power_w: float | None = Field(description="Watts drawn now.")
    power_limit_w: float | None = Field(description="Watts, the enforced limit.")
    fan_percent: int | None = Field(description="Percent of maximum fan speed; null if fanless.")
    clocks_mhz: GpuClocks | None
    mig_mode: MigMode | None
    processes: list[GpuProcess] | None = Field(
        description="Processes using the GPU; null when not asked for or not readable."
    )


class GpuSample(BaseModel):
    """Every NVIDIA GPU of the remote machine (GET /colab/gpu)."""

    available: bool = Field(description="True when NVML works and sees at least one GPU.")
    count: int
    driver_version: str | None
    cuda_driver_version: str | None = Field(description="e.g. 12.4")
    sampled_at: str = Field(description=TIMESTAMP + " Samples are cached about a second.")
    error: Problem | None = Field(
        description=(
            "Why no GPU is readable (kind no_library, driver_not_loaded, no_permission, "
            "version_mismatch, no_devices, tpu_runtime, unknown); null when available."
        )
    )
    devices: list[GpuDevice]


# ----- /colab/status ----------------------------------------------------------------------


class ServerInfo(BaseModel):
    version: str = Field(description="jupyter_server's version.")
    started_at: str = Field(description=TIMESTAMP)
    uptime_s: float = Field(description="Seconds.")
    base_url: str
    root_dir: str = Field(description="The server's root directory on the remote machine.")
    kernels: int | None = Field(description="Running kernels.")
    auth: str = Field(description="password | token | none | custom.")
    hostname: str


class RuntimeInfo(BaseModel):
    colab: bool = Field(description="True on a Google Colab runtime.")
    colab_release: str | None
    accelerator: str = Field(description="gpu | tpu | none.")
    tpu_type: str | None
    python: str
    platform: str
    user: str


class MemoryInfo(BaseModel):
    total: int = Field(description="Bytes of RAM.")
    available: int = Field(description="Bytes.")
    used: int = Field(description="Bytes.")


class DiskInfo(BaseModel):
    path: str = Field(description="The disk of this directory (the server's root dir).")
    total: int | None = Field(description="Bytes.")
    used: int | None = Field(description="Bytes.")
    free: int | None = Field(description="Bytes.")


class Resources(BaseModel):
    cpu_count: int | None
    load_1m: float | None = Field(description="1-minute load average.")
    memory: MemoryInfo
    disk: DiskInfo


class TunnelSummary(BaseModel):
    state: str = Field(description="As in colab_tunnel.")
    url: str | None
    restarts: int
    error: str | None = Field(description="The tunnel error's kind, null when fine.")


class GpuSummary(BaseModel):
    available: bool
    count: int
    names: list[str | None]
    memory_total: int = Field(description="Bytes, over all readable GPUs.")
    memory_used: int = Field(description="Bytes.")
    error: str | None = Field(description="The GPU error's kind, null when fine.")


class LifeLimits(BaseModel):
    max_lifetime_seconds: float | None = Field(
        description="Seconds a runtime lives at most; null when not known."
    )
    idle_timeout_seconds: float | None = Field(
        description="Seconds of no activity before the platform recycles it; null when not known."
    )
    source: str = Field(description="Where the figures come from (a page, or the settings).")
    note: str = Field(description="The figures in words, with how firm each is.")


class Life(BaseModel):
    """How long the runtime has been up, how idle it is, and when it may end (estimates)."""

    machine_started_at: str | None = Field(description=TIMESTAMP + " The machine's start.")
    uptime_seconds: float | None = Field(description="Seconds since the machine started.")
    last_activity_at: str = Field(description=TIMESTAMP + " The server's last activity.")
    idle_seconds: float = Field(description="Seconds without activity; 0 while a kernel runs.")
    busy_kernels: int = Field(description="Kernels executing code now.")
    platform: str | None = Field(description="colab | kaggle | null (not a known platform).")
    limits: LifeLimits | None = Field(description="Null when the platform's limits are unknown.")
    estimated_end_at: str | None = Field(
        description=TIMESTAMP + " When the runtime is expected to end: an estimate, or null."
    )
    estimated_end_reason: str | None = Field(description="max_lifetime | idle | null.")
    estimate: bool = Field(description="Always true: the end times are estimates.")


class Status(BaseModel):
    """The remote machine at a glance (GET /colab/status)."""

    version: str = Field(description="jupyter-colab-tunnel's version on the remote.")
    server: ServerInfo
    runtime: RuntimeInfo
    resources: Resources
    tunnel: TunnelSummary
    gpu: GpuSummary
    life: Life | None = Field(default=None, description="Absent from an older remote.")


# ----- colab_wait_gpu_memory --------------------------------------------------------------


class GpuMemoryWait(BaseModel):
    """The result of waiting for free GPU memory."""

    met: bool = Field(description="True when a GPU had at least min_free_mib MiB free.")
    min_free_mib: int = Field(description="The amount asked for, MiB.")
    gpu_index: int | None = Field(
        description="The GPU that has it (when not met: the one with the most free memory)."
    )
    free_mib: float | None = Field(description="That GPU's free memory at the last sample, MiB.")
    total_mib: float | None = Field(description="That GPU's total memory, MiB.")
    waited_s: float = Field(description="Seconds waited.")
    samples: int = Field(description="GPU samples taken.")
    sampled_at: str = Field(description=TIMESTAMP + " The last sample's time.")
    message: str = Field(description="The outcome in words.")


# ----- /colab/ports -----------------------------------------------------------------------


class ListeningPort(BaseModel):
    port: int = Field(description="The TCP port on the remote machine.")
    address: str | None = Field(None, description="The address it is bound to (127.0.0.1, ::).")
    pid: int | None = Field(description="The process holding it; null when not visible.")
    name: str | None = Field(description="The process name (tensorboard, python, ...) or null.")
    cmdline: str | None = Field(
        None, description="Its command line, shortened, secrets replaced by ***."
    )
    kernel_id: str | None = Field(
        description="The remote server's kernel that holds it (or started its process); null."
    )
    forwardable: bool = Field(True, description="Whether it may be forwarded.")
    refused: str | None = Field(None, description="Why it may not be forwarded; null if it may.")
    forward: str | None = Field(
        None, description="The flag to add to `jupyter colab-tunnel connect`: --forward PORT."
    )


class Ports(BaseModel):
    """The remote's listening ports (GET /colab/ports) and how to reach them locally."""

    ports: list[ListeningPort] = Field(description="One entry per port, sorted by port.")
    how_to_forward: str = Field(
        description="How a port reaches this machine: the connect command with its flag."
    )


# ----- /colab/files (colab_upload, colab_download, colab_list) ------------------------------


class FileTransfer(BaseModel):
    """A file or a directory copied whole, every file checked with sha256."""

    path: str = Field(
        description=(
            "Where it landed: the remote path (relative to the remote server's root) for an "
            "upload, the local path for a download."
        )
    )
    bytes: int = Field(description="Bytes moved (files skipped as unchanged are not counted).")
    sha256: str | None = Field(description="The file's sha256 (hex); null for a directory.")
    seconds: float = Field(description="How long it took.")
    files: int | None = Field(None, description="For a directory: the files copied.")
    resumed_from: int = Field(0, description="Bytes already there from an interrupted copy.")


class FileEntry(BaseModel):
    name: str
    path: str = Field(description="Relative to the remote server's root (use it as remote_path).")
    type: str = Field(description="file | directory.")
    size: int = Field(description="Bytes (0 for a directory).")
    mtime: str = Field(description=TIMESTAMP)


class FileListing(BaseModel):
    """A remote directory (GET /colab/files/{path}?op=list)."""

    path: str = Field(description="The directory, relative to the root ('' is the root).")
    type: str
    entries: list[FileEntry] = Field(description="Sorted by path; hidden files left out.")
    truncated: bool = Field(description="True when the directory has more entries than listed.")
