"""Configuration -> cloudflared's argv and environment. Pure functions, per the reference.

Tunnel-level flags go before `run`; the named-tunnel token travels only in the child's
environment (TUNNEL_TOKEN), because argv is readable by every user through `ps`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..problems import Problem

# Flags that must never come from cloudflared_args: the token would be visible in argv, and the
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
    cloudflared_args: Sequence[str] = ()
    stop_timeout: float = 5.0
    token: str = field(default="", repr=False)


def split_args(value: str) -> list[str]:
    """Split a command-line string the way a shell would. Raises ValueError on bad quoting."""
    return shlex.split(value)


def normalize_cloudflared_args(value: str | Sequence[str]) -> list[str] | Problem:
    """The flags as cloudflared's argv items, or why they cannot be passed.

    A string is split the way a shell would. A list item that holds a flag and its value
    ("--edge-ip-version 4") would reach cloudflared as one unknown flag, so it is refused with
    the right form; so are the flags the supervisor owns.
    """
    if isinstance(value, str):
        try:
            args = split_args(value)
        except ValueError as e:
            return Problem("bad_arguments", f"cloudflared_args cannot be split ({e}): {value!r}.")
    else:
        args = list(value)
    for arg in args:
        name = re.split(r"[=\s]", arg.strip(), maxsplit=1)[0]
        if name.startswith("-") and not name.startswith("--"):
            name = "-" + name  # urfave/cli accepts -flag as --flag
        if name in _FORBIDDEN_EXTRA:
            # Never echo the item: its value may be the token.
            return Problem(
                "bad_arguments",
                f"cloudflared_args may not contain {name}: {_FORBIDDEN_EXTRA[name]}.",
            )
        flag = arg.split("=", 1)[0]
        if arg.startswith("-") and any(c.isspace() for c in flag):
            return Problem(
                "bad_arguments",
                f"cloudflared_args item {arg!r} holds a flag and its value in one item; give "
                f"them as separate items: {json.dumps(_words(arg))}.",
            )
    return args


def _words(arg: str) -> list[str]:
    try:
        return split_args(arg)
    except ValueError:
        return arg.split()


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
    argv += list(cmd.cloudflared_args)
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
