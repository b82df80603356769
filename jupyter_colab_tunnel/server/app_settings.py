"""ColabTunnelApp's settings: every configurable trait, with its help, default and validation.

A traits-only mixin (a `HasTraits`, not a `Configurable`): ColabTunnelApp inherits it after
ExtensionApp, so the settings stay `ColabTunnelApp.<name>` in config files and on the command
line, and `ColabTunnelApp.class_own_traits(config=True)` still lists them all. Also here: the
deprecated names, the secret ones, and how a rejected value's allowed values are described.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from traitlets import (
    Bool,
    Enum,
    Float,
    HasTraits,
    Int,
    List,
    TraitType,
    Unicode,
    Union,
    default,
    validate,
)
from traitlets.traitlets import TraitError

from ..tunnel.command import split_args
from .ports.policy import DEFAULT_FORWARD_PORTS, parse_ports

# Deprecated setting name -> its replacement.
RENAMED = {"extra_args": "cloudflared_args"}

# Settings whose rejected value is never echoed (it may be the secret itself).
SECRET_TRAITS = frozenset({"tunnel_token"})


class _ArgvList(List):  # type: ignore[type-arg]
    """A list of strings that also takes one string, split the way a shell would."""

    def set(self, obj: Any, value: Any) -> None:
        # traitlets' List would take a string as a one-item list.
        if isinstance(value, str):
            try:
                value = split_args(value)
            except ValueError as e:
                raise TraitError(f"cannot split {value!r} into arguments: {e}") from None
        super().set(obj, value)


class ColabTunnelSettings(HasTraits):
    """The extension's settings (all `config=True`), mixed into ColabTunnelApp."""

    @classmethod
    def class_own_traits(cls, **metadata: Any) -> dict[str, TraitType[Any, Any]]:
        """As traitlets', but a class that mixes these settings in directly owns them.

        traitlets counts a trait as a class's own only when its MRO's next class lacks it,
        which this mixin (after ExtensionApp) has: without this, ColabTunnelApp would own no
        setting, for `--help`, generated config files and jupyter_server's `<name>_config`.
        """
        own = super().class_own_traits(**metadata)
        if ColabTunnelSettings in cls.__bases__:
            own.update(ColabTunnelSettings.class_traits(**metadata))
        return dict(sorted(own.items()))

    tunnel_mode = Enum(
        ["quick", "named", "off"],
        help=(
            "Which tunnel to run. 'quick' opens a free trycloudflare.com tunnel with a new random "
            "URL on every start; 'named' runs the Cloudflare Tunnel of `tunnel_token` under your "
            "own hostname; 'off' runs none. Default: 'named' when a tunnel token is configured "
            "(tunnel_token, tunnel_token_file or $TUNNEL_TOKEN), else 'quick'."
        ),
    ).tag(config=True)

    autostart = Union(
        [Bool(), Enum(["auto"])],
        default_value="auto",
        help=(
            "Start the tunnel when the server starts. True: always; False: never (start it with "
            "POST /colab/tunnel). 'auto': only on a hosted runtime (Colab, Kaggle), a server "
            "started by launch(), or with an explicit tunnel configuration (tunnel_mode, "
            "tunnel_token, tunnel_token_file, $TUNNEL_TOKEN); never in gateway mode."
        ),
    ).tag(config=True)

    connection_file = Unicode(
        "",
        help=(
            "Write the tunnel's URL and state as JSON to this path (atomically, mode 0600) at "
            "start and on every change, for `jupyter colab-tunnel connect --connection-file`, "
            "signed with a key derived from this server's token (the relay follows nothing "
            "else; a server without a token cannot sign). Empty: none."
        ),
    ).tag(config=True)

    connection_file_token = Bool(
        False,
        help=(
            "Also write this server's Jupyter token into connection_file, so the relay needs no "
            "--token-file. Whoever can read the file then controls this server, and whoever can "
            "write it chooses where the relay goes: keep it private."
        ),
    ).tag(config=True)

    cloudflared_path = Unicode(
        "",
        help=(
            "Path of the cloudflared executable. Empty: use `cloudflared` on PATH, else the "
            "binary managed by pycloudflared (downloaded on first use)."
        ),
    ).tag(config=True)

    tunnel_token = Unicode(
        help=(
            "Token of a named Cloudflare Tunnel (secret). Defaults to $TUNNEL_TOKEN. It is passed "
            "to cloudflared only through its environment, never on its command line."
        ),
    ).tag(config=True)

    tunnel_token_file = Unicode(
        "",
        help="File holding the named-tunnel token (read at each start). Used when tunnel_token is empty.",
    ).tag(config=True)

    public_hostname = Unicode(
        "",
        help=(
            "Public hostname routed to this server in the named tunnel's dashboard "
            "(e.g. 'jupyter.example.com'); reported as https://<public_hostname>."
        ),
    ).tag(config=True)

    protocol = Enum(
        ["auto", "quic", "http2"],
        default_value="auto",
        help="Transport between cloudflared and Cloudflare's edge. Use 'http2' where UDP 7844 is blocked.",
    ).tag(config=True)

    edge_ip_version = Enum(
        ["auto", "4", "6"],
        default_value="auto",
        help="IP version used to reach Cloudflare's edge.",
    ).tag(config=True)

    cloudflared_args = _ArgvList(
        Unicode(),
        help=(
            "Extra tunnel-level flags for cloudflared, placed before `--url`/`run`, one flag or "
            "value per item (e.g. ['--edge', 'region1.v2.argotunnel.com:7844']); a single "
            "string is split the way a shell would. Never put the token here. Formerly "
            "`extra_args`, which still works for now."
        ),
    ).tag(config=True)

    restart_backoff_initial = Float(
        1.0, min=0.0, help="Seconds to wait before the first restart after cloudflared exits."
    ).tag(config=True)

    restart_backoff_max = Float(
        60.0, min=0.0, help="Upper bound in seconds of the exponential restart backoff."
    ).tag(config=True)

    max_restarts = Int(
        10,
        min=0,
        help=(
            "Give up (state 'failed', kind 'crash_loop') after more crashes or stalls than this "
            "within crash_window. Network failures and rate limits never count: they are retried "
            "for as long as the server runs."
        ),
    ).tag(config=True)

    crash_window = Float(
        600.0, min=1.0, help="Seconds over which exits are counted against max_restarts."
    ).tag(config=True)

    url_timeout = Float(
        30.0, min=1.0, help="Seconds to wait for the tunnel URL before restarting cloudflared."
    ).tag(config=True)

    health_interval = Float(
        5.0, min=0.05, help="Seconds between health checks of cloudflared's /ready endpoint."
    ).tag(config=True)

    stop_timeout = Float(
        5.0,
        min=0.0,
        help="Seconds cloudflared gets to exit after SIGTERM (also its --grace-period) before SIGKILL.",
    ).tag(config=True)

    log_lines = Int(
        1000, min=10, help="How many of cloudflared's log lines to keep in memory."
    ).tag(config=True)

    allow_unauthenticated = Bool(
        False,
        help=(
            "Allow a public tunnel to a server that has neither a token nor a password. "
            "Anyone who learns the URL could then run code on this machine."
        ),
    ).tag(config=True)

    gpu_cache_ttl = Float(
        1.0, min=0.0, help="Seconds an NVML sample is reused by /colab/gpu and /colab/status."
    ).tag(config=True)

    forward_ports = Unicode(
        DEFAULT_FORWARD_PORTS,
        help=(
            "The ports on this machine that /colab/forward/<port>/ (`jupyter colab-tunnel "
            "connect --forward`) may reach at 127.0.0.1, for holders of the Jupyter token: "
            "comma-separated ports and ranges, e.g. '6006,7860,8000-8100'. Empty: forwarding "
            "off. This server's own port, cloudflared's metrics port and Colab's own (8080, "
            "9000, 6000, 3453) are never forwarded, whatever this says."
        ),
    ).tag(config=True)

    runtime_max_lifetime = Float(
        None,
        allow_none=True,
        min=0.0,
        help=(
            "Seconds a runtime lives at most, for the estimated end in /colab/status `life` "
            "(e.g. 86400 on a paid Colab tier or a rented VM with a 24-hour lease). None: the "
            "detected platform's figure (Colab: 12 h, Kaggle: 12 h, 9 h on TPU); 0: not known."
        ),
    ).tag(config=True)

    runtime_idle_timeout = Float(
        None,
        allow_none=True,
        min=0.0,
        help=(
            "Seconds without activity after which the platform recycles the runtime, for the "
            "estimated end in /colab/status `life`. None: the detected platform's figure "
            "(Colab: 5400, what users report; Kaggle: 1200); 0: not known."
        ),
    ).tag(config=True)

    @validate("forward_ports")
    def _valid_forward_ports(self, proposal: Any) -> str:
        value = str(proposal["value"])
        try:
            parse_ports(value)
        except ValueError as e:
            raise TraitError(str(e)) from None
        return value

    @default("tunnel_token")
    def _default_tunnel_token(self) -> str:
        return os.environ.get("TUNNEL_TOKEN", "")

    @default("tunnel_mode")
    def _default_tunnel_mode(self) -> str:
        return "named" if (self.tunnel_token or self.tunnel_token_file) else "quick"


def allowed_values(trait: Any) -> str:
    """What a trait accepts, in words ('' when there is nothing short to say)."""
    values: Iterable[Any] | None = getattr(trait, "values", None)
    if values is not None:
        return ", ".join(repr(v) for v in values)
    low, high = getattr(trait, "min", None), getattr(trait, "max", None)
    if high is not None and high == float("inf"):
        high = None
    if low is not None and high is not None:
        return f"a number from {low} to {high}"
    if low is not None:
        return f"a number >= {low}"
    return ""
