"""Whether the tunnel starts with the server: a pure decision over plain facts.

A laptop that has the package installed only to connect must not open a public tunnel from every
`jupyter lab`; a hosted runtime or a server started by `launch()` should.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Autostart = bool | Literal["auto"]

# Set by launch() on the server it starts: that server is meant to run the tunnel.
LAUNCHED_ENV = "JUPYTER_COLAB_TUNNEL_LAUNCHED"

HOW_TO_START = (
    'Start it with POST /colab/tunnel {"action": "start"}, or set '
    "c.ColabTunnelApp.autostart = True (or tunnel_mode) to start it with the server."
)


@dataclass(frozen=True)
class AutostartFacts:
    setting: Autostart
    hosted: bool  # a detected hosted runtime (Colab, Kaggle)
    launched: bool  # started by launch() / `jupyter colab-tunnel launch`
    explicit_tunnel: bool  # tunnel_mode, tunnel_token, tunnel_token_file or $TUNNEL_TOKEN set
    gateway_mode: bool  # GatewayClient.url set: this is the user's local server


@dataclass(frozen=True)
class AutostartDecision:
    start: bool
    reason: str


def decide_autostart(facts: AutostartFacts) -> AutostartDecision:
    if facts.setting is True:
        return AutostartDecision(True, "autostart is True")
    if facts.setting is False:
        return AutostartDecision(False, f"autostart is False. {HOW_TO_START}")
    if facts.gateway_mode:
        return AutostartDecision(
            False,
            "this server is in gateway mode (GatewayClient.url is set): it is the local side "
            "and opens no tunnel unless c.ColabTunnelApp.autostart = True",
        )
    if facts.explicit_tunnel:
        return AutostartDecision(True, "a tunnel is configured explicitly")
    if facts.launched:
        return AutostartDecision(True, "started by launch()")
    if facts.hosted:
        return AutostartDecision(True, "a hosted runtime (Colab, Kaggle) was detected")
    return AutostartDecision(
        False,
        "not a hosted runtime, not started by launch() and no tunnel configured, so no public "
        f"tunnel is opened. {HOW_TO_START}",
    )


def is_kaggle(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("KAGGLE_KERNEL_RUN_TYPE") or environ.get("KAGGLE_URL_BASE"))


def explicit_tunnel_config(
    configured: set[str] | frozenset[str], environ: Mapping[str, str]
) -> bool:
    """Whether the user asked for a tunnel: one of these traits set, or $TUNNEL_TOKEN."""
    asked = {"tunnel_mode", "tunnel_token", "tunnel_token_file"}
    return bool(asked & set(configured)) or bool(environ.get("TUNNEL_TOKEN"))
