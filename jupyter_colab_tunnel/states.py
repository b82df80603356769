"""The tunnel's states and actions, one `Literal` each, with the subsets the code asks about.

The remote's supervisor is always in one state; /colab/tunnel and the connection file carry
it to the local side. Each subset is a `frozenset[TunnelState]` and each comparison is with a
typed value, so a misspelt state or action fails mypy (strict equality), as a misspelt problem
kind does; a test checks that the subsets split the states as their comments say.
"""

from __future__ import annotations

from typing import Literal, get_args

TunnelState = Literal[
    "off",  # tunnel_mode is off: nothing ever runs
    "starting",
    "connecting",  # cloudflared has a URL (or a named one), no edge connection yet
    "ready",
    "backoff",  # waiting to restart after an exit
    "stopping",
    "stopped",
    "failed",  # a restart cannot help: the error says what to change
]
TUNNEL_STATES: tuple[TunnelState, ...] = get_args(TunnelState)

TunnelAction = Literal["start", "stop", "restart"]
TUNNEL_ACTIONS: tuple[TunnelAction, ...] = get_args(TunnelAction)

# States that change by themselves soon: worth polling again (the MCP tunnel action waits).
TRANSITIONAL: frozenset[TunnelState] = frozenset({"starting", "connecting", "stopping", "backoff"})
# The rest: nothing changes without a request. Waiting for the tunnel (launch()) ends here.
SETTLED: frozenset[TunnelState] = frozenset({"ready", "failed", "off", "stopped"})
# The server keeps trying to bring the tunnel up by itself.
RETRYING: frozenset[TunnelState] = frozenset({"starting", "connecting", "backoff"})
# States whose error (if any) is their reason: shown beside the state while waiting.
ERRORED: frozenset[TunnelState] = frozenset({"backoff", "failed"})
# Where launch() did its job: the tunnel serves, or it is off as configured (exit status 0).
LAUNCHED: frozenset[TunnelState] = frozenset({"ready", "off"})
# Where the tunnel's URL is live: the relay forwards to it (connection_record.LIVE_STATES).
LIVE: frozenset[TunnelState] = frozenset({"ready"})
# A stop with nothing running leaves these as they are (off stays off; failed keeps its error).
KEPT_BY_STOP: frozenset[TunnelState] = frozenset({"off", "failed"})

# What the local side shows before any remote reported a state.
UNKNOWN = "unknown"


def known_state(word: object) -> TunnelState | None:
    """A remote's word as a state of this version; None for anything else (e.g. no word, or
    a newer remote's). The local side keeps and shows the word as it came; it compares this."""
    for state in TUNNEL_STATES:
        if word == state:
            return state
    return None


def as_word(state: TunnelState) -> str:
    """A state for a field that also holds a remote's word (str): mypy checks the spelling."""
    return state
