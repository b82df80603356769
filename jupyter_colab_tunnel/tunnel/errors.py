"""Classified tunnel failures: a kind, cloudflared's own words, and a hint a user can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Each kind's default hint. Messages come from cloudflared (or from us when it never ran).
HINTS: dict[str, str] = {
    "binary_unavailable": (
        "Install cloudflared and put it on PATH, or set c.ColabTunnelApp.cloudflared_path. "
        "Without internet access pycloudflared cannot download it."
    ),
    "invalid_token": (
        "The named-tunnel token was rejected. Copy it again from the Cloudflare dashboard "
        "(Networks > Tunnels > your tunnel > the token in the install command) into "
        "tunnel_token, tunnel_token_file or $TUNNEL_TOKEN."
    ),
    "token_unavailable": (
        "tunnel_mode 'named' needs a token: set c.ColabTunnelApp.tunnel_token, "
        "tunnel_token_file, or $TUNNEL_TOKEN; or use tunnel_mode 'quick'."
    ),
    "bad_arguments": (
        "cloudflared rejected its command line. Check c.ColabTunnelApp.extra_args: only "
        "tunnel-level flags belong there, and never --token (use tunnel_token)."
    ),
    "network": (
        "cloudflared could not reach Cloudflare. Check DNS and outbound access to "
        "api.trycloudflare.com:443 and the edge on port 7844; where UDP is blocked set "
        "c.ColabTunnelApp.protocol = 'http2'. It is retried with backoff."
    ),
    "rate_limited": (
        "Cloudflare is rate-limiting quick tunnels from this address (HTTP 429, error 1015). "
        "It is retried after a long delay; a named tunnel (tunnel_token) is not rate-limited."
    ),
    "metrics_port_in_use": (
        "The metrics address given to cloudflared in extra_args is taken by another program. "
        "Pick a free port, or remove --metrics from extra_args so that a free one is chosen."
    ),
    "url_timeout": (
        "cloudflared did not report its tunnel within url_timeout. The quick-tunnel service "
        "may be slow or unreachable; it is restarted. Raise c.ColabTunnelApp.url_timeout on "
        "slow networks."
    ),
    "stalled": (
        "The tunnel lost its connection to Cloudflare and did not recover; cloudflared was "
        "restarted. Frequent stalls point at an unstable network: try protocol 'http2'."
    ),
    "crashed": "cloudflared exited unexpectedly; it is restarted with backoff. See the logs (?logs=50).",
    "crash_loop": (
        "cloudflared keeps exiting, so restarts stopped. Read the last error and the logs "
        "(?logs=100), fix the cause, then POST {'action': 'start'} to /colab/tunnel."
    ),
    "insecure_config": (
        "This server has neither a token nor a password, so a public tunnel would let anyone "
        "run code here. Set a token (--IdentityProvider.token=...) or a password; only if the "
        "tunnel is protected otherwise (Cloudflare Access), set allow_unauthenticated = True."
    ),
    "invalid_config": (
        "Fix the named ColabTunnelApp settings and restart the server, or POST "
        "{'action': 'start'} to run the tunnel with the valid settings."
    ),
}


@dataclass(frozen=True)
class TunnelError:
    kind: str
    message: str
    hint: str = ""
    retry: bool = True
    min_delay: float = 0.0

    def __post_init__(self) -> None:
        if not self.hint:
            object.__setattr__(self, "hint", HINTS.get(self.kind, ""))

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "hint": self.hint}
