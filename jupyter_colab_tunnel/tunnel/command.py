"""Configuration -> cloudflared's argv and environment. Pure functions, per the reference.

Tunnel-level flags go before `run`; the named-tunnel token travels only in the child's
environment (TUNNEL_TOKEN), because argv is readable by every user through `ps`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..problems import Problem

# Flags that must never come from extra_args: the token would be visible in argv, and the
# supervisor owns the origin and the log level it parses. (--metrics is allowed: the last one
# wins, and the supervisor learns the address from the log either way.)
_FORBIDDEN_EXTRA = {
    "--token": "put the token in tunnel_token, tunnel_token_file or $TUNNEL_TOKEN",
    "--token-file": "use tunnel_token_file",
    "--url": "the origin is this Jupyter server",
    "--loglevel": "the supervisor needs INFO lines to learn the URL",
}


@dataclass(frozen=True)
class TunnelCommand:
    mode: str  # "quick" | "named"
    binary: str
    origin: str
    protocol: str = "auto"
    edge_ip_version: str = "auto"
    extra_args: Sequence[str] = ()
    stop_timeout: float = 5.0
    token: str = field(default="", repr=False)


def check_extra_args(extra_args: Sequence[str]) -> Problem | None:
    for arg in extra_args:
        name = arg.split("=", 1)[0]
        if name.startswith("-") and not name.startswith("--"):
            name = "-" + name  # urfave/cli accepts -flag as --flag
        if name in _FORBIDDEN_EXTRA:
            return Problem(
                "bad_arguments",
                f"cloudflared_args may not contain {name}: {_FORBIDDEN_EXTRA[name]}.",
            )
    return None


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def build_argv(cmd: TunnelCommand) -> list[str]:
    argv = [
        cmd.binary,
        "tunnel",
        "--no-autoupdate",
        "--metrics",
        "127.0.0.1:0",
        "--loglevel",
        "info",
        "--grace-period",
        _duration(cmd.stop_timeout),
    ]
    if cmd.protocol != "auto":
        argv += ["--protocol", cmd.protocol]
    if cmd.edge_ip_version != "auto":
        argv += ["--edge-ip-version", cmd.edge_ip_version]
    argv += list(cmd.extra_args)
    if cmd.mode == "quick":
        argv += ["--url", cmd.origin]
    else:
        argv += ["run"]
    return argv


def build_env(cmd: TunnelCommand, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    # A stray token or metrics setting in the server's environment must not leak into (or
    # override) the child's configuration.
    for key in ("TUNNEL_TOKEN", "TUNNEL_TOKEN_FILE", "TUNNEL_METRICS", "TUNNEL_LOGLEVEL"):
        env.pop(key, None)
    if cmd.mode == "named":
        env["TUNNEL_TOKEN"] = cmd.token
    return env
