"""The kinds of failure the package reports, one `Literal` per part, and their tuples.

A kind is a `Literal`, so a misspelt kind fails mypy. `Kind` is every kind; `KINDS` lists them at
run time (an unknown kind in a remote's answer becomes "unknown"). Each has a default hint in
problem_hints.py; problems.py builds the `Problem` type on both.
"""

from __future__ import annotations

from typing import Literal, get_args

TunnelKind = Literal[
    "binary_unavailable",
    "invalid_token",
    "token_unavailable",
    "bad_arguments",
    "network",
    "rate_limited",
    "metrics_port_in_use",
    "url_timeout",
    "stalled",
    "crashed",
    "crash_loop",
    "insecure_config",
    "invalid_config",
]

GpuKind = Literal[
    "no_library",
    "driver_not_loaded",
    "no_permission",
    "version_mismatch",
    "no_devices",
    "tpu_runtime",
    "shutting_down",
    "unknown",
]

LaunchKind = Literal[
    "unreachable",
    "http_error",
    "already_running",
    "port_in_use",
    "no_state_dir",
    "bad_root_dir",
    "server_exited",
    "token_rejected",
    "server_timeout",
    "extension_missing",
    "timeout",
    "not_started",
]

ConfigKind = Literal["invalid_value"]

# The REST client (client.py) and the MCP tools (local/mcp.py), on the local side. They also
# use "unreachable", "timeout" and "http_error" above, always with a hint of their own.
ClientKind = Literal[
    "invalid_url",
    "dns_error",
    "connection_refused",
    "tls_error",
    "forbidden",
    "not_found",
    "no_tunnel",
    "bad_gateway",
    "redirected",
    "bad_request",
    "conflict",
    "server_error",
    "bad_response",
    "tunnel_cut",
    "no_such_gpu",
]

# The local relay's own refusals and failures (`jupyter colab-tunnel connect`). When the remote
# gives no answer it uses the client's kinds (dns_error, tls_error, connection_refused, timeout,
# unreachable) and, for Cloudflare's own answers, no_tunnel and bad_gateway: one name for one
# failure, whichever part of the local side meets it.
RelayKind = Literal[
    "no_upstream",
    "remote_gone",
    "remote_refused",
    "host_not_allowed",
    "origin_not_allowed",
    "bad_local_token",
    "replaced",
    "relay_stopping",
    "not_forwarded",
    "body_too_large",
    "upstream_lost_request",
    "remote_token_withheld",
]

# The remote's forward route (/colab/forward/<port>/...): why it did not reach the app.
ForwardKind = Literal[
    "port_not_allowed",
    "port_not_listening",
    "forward_path_refused",
    "forward_failed",
]

# File transfers: the remote's /colab/files route and `jupyter colab-tunnel cp` (local side).
FilesKind = Literal[
    "path_outside_root",
    "path_hidden",
    "path_not_found",
    "is_a_directory",
    "not_a_directory",
    "upload_offset_mismatch",
    "upload_busy",
    "upload_mismatch",
    "download_mismatch",
    "file_changed",
    "range_not_satisfiable",
    "disk_full",
    "local_disk_full",
    "local_error",
]

# The local JupyterLab's /colab/remote/* (local/lab/): why it has nothing of the remote to show.
LabKind = Literal["not_gateway_mode", "no_extension", "not_a_relay"]

# Why the relay does not follow what a connection file says (connection_record.py).
RecordKind = Literal[
    "unreadable",  # cannot stat/open/read the file (missing, permissions)
    "not_regular",  # a FIFO, a directory, a device
    "too_large",  # over the record's size cap
    "not_utf8",
    "not_json",  # also a partial file during a sync: retried when it changes
    "bad_record",  # JSON, but not the record's shape
    "bad_url",  # not an http(s) URL with a host
    "insecure_url",  # plain http:// to a host that is not loopback
    "unsigned",
    "bad_signature",
    "no_key",  # signed, but the relay has no token to check it with
    "stale",  # correctly signed but older than the record in use (a replay, a sync conflict)
]

Kind = Literal[
    TunnelKind,
    GpuKind,
    LaunchKind,
    ConfigKind,
    ClientKind,
    RelayKind,
    ForwardKind,
    FilesKind,
    RecordKind,
    LabKind,
]

TUNNEL_KINDS: tuple[TunnelKind, ...] = get_args(TunnelKind)
GPU_KINDS: tuple[GpuKind, ...] = get_args(GpuKind)
LAUNCH_KINDS: tuple[LaunchKind, ...] = get_args(LaunchKind)
CLIENT_KINDS: tuple[ClientKind, ...] = get_args(ClientKind)
RELAY_KINDS: tuple[RelayKind, ...] = get_args(RelayKind)
FORWARD_KINDS: tuple[ForwardKind, ...] = get_args(ForwardKind)
FILES_KINDS: tuple[FilesKind, ...] = get_args(FilesKind)
RECORD_KINDS: tuple[RecordKind, ...] = get_args(RecordKind)
LAB_KINDS: tuple[LabKind, ...] = get_args(LabKind)
KINDS: tuple[Kind, ...] = (
    *TUNNEL_KINDS,
    *GPU_KINDS,
    *LAUNCH_KINDS,
    "invalid_value",
    *CLIENT_KINDS,
    *RELAY_KINDS,
    *FORWARD_KINDS,
    *FILES_KINDS,
    *RECORD_KINDS,
    *LAB_KINDS,
)
