"""One "kind / message / hint" type for every failure the package reports, on both sides.

The kinds are `Literal`s (problem_kinds.py) and each has a default hint (`HINTS`,
problem_hints.py); both are re-exported here, where the rest of the package imports them from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .problem_hints import HINTS
from .problem_kinds import (
    CLIENT_KINDS,
    FILES_KINDS,
    FORWARD_KINDS,
    GPU_KINDS,
    KINDS,
    LAB_KINDS,
    LAUNCH_KINDS,
    RECORD_KINDS,
    RELAY_KINDS,
    TUNNEL_KINDS,
    ClientKind,
    ConfigKind,
    FilesKind,
    ForwardKind,
    GpuKind,
    Kind,
    LabKind,
    LaunchKind,
    RecordKind,
    RelayKind,
    TunnelKind,
)

__all__ = [
    "CLIENT_KINDS",
    "FILES_KINDS",
    "FORWARD_KINDS",
    "GPU_KINDS",
    "HINTS",
    "KINDS",
    "LAB_KINDS",
    "LAUNCH_KINDS",
    "RECORD_KINDS",
    "RELAY_KINDS",
    "TUNNEL_KINDS",
    "ClientKind",
    "ColabTunnelError",
    "ConfigKind",
    "ConfigProblem",
    "FilesKind",
    "ForwardKind",
    "GpuKind",
    "Kind",
    "LabKind",
    "LaunchKind",
    "Problem",
    "RecordKind",
    "RelayKind",
    "TunnelKind",
]


@dataclass(frozen=True)
class Problem:
    """What went wrong (`kind`), in words (`message`), and what to do about it (`hint`)."""

    kind: Kind
    message: str
    hint: str = ""

    def __post_init__(self) -> None:
        if not self.hint:
            object.__setattr__(self, "hint", HINTS[self.kind])

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message, "hint": self.hint}

    def answer_body(self, reason: str | None = None) -> str:
        """The JSON error answer of the relay and the forward route, readable by both kinds of
        client: `message` (ending with the hint) and `reason` at the top, which jupyter_server's
        gateway client shows ("Error from Gateway: [message] reason"), and the problem under
        `error`, which client.py (and so the MCP tools) reads. `reason`: the kind unless given."""
        shown = f"{self.message} Hint: {self.hint}"
        return json.dumps(
            {"message": shown, "reason": reason or self.kind, "error": self.as_dict()}
        )

    @classmethod
    def from_dict(cls, body: Any) -> Problem | None:
        """The problem in a JSON answer, or None; an unknown kind becomes 'unknown'."""
        if not isinstance(body, dict):
            return None
        kind = body.get("kind")
        known: Kind = kind if kind in KINDS else "unknown"
        return cls(known, str(body.get("message") or ""), str(body.get("hint") or ""))

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}" + (f"\nHint: {self.hint}" if self.hint else "")


@dataclass(frozen=True)
class ConfigProblem(Problem):
    """A rejected configuration value; its trait keeps its default."""

    trait: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"trait": self.trait, **super().as_dict()}


class ColabTunnelError(Exception):
    """Base of every exception this package raises; carries its `Problem`."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem

    @property
    def kind(self) -> Kind:
        return self.problem.kind

    @property
    def message(self) -> str:
        return self.problem.message

    @property
    def hint(self) -> str:
        return self.problem.hint
