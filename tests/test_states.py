"""Tunnel states and actions: one Literal each, subsets that split them as said, and mypy
refusing a misspelt one wherever the code takes or compares a state."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jupyter_colab_tunnel.local.mcp_schemas import TunnelSnapshot
from jupyter_colab_tunnel.states import (
    ERRORED,
    KEPT_BY_STOP,
    LAUNCHED,
    LIVE,
    RETRYING,
    SETTLED,
    TRANSITIONAL,
    TUNNEL_STATES,
    known_state,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_state_settles_or_moves_on_by_itself_never_both() -> None:
    assert set(TUNNEL_STATES) == TRANSITIONAL | SETTLED
    assert not TRANSITIONAL & SETTLED


def test_the_subsets_say_what_their_names_say() -> None:
    assert TRANSITIONAL - {"stopping"} == RETRYING  # a stop is asked for, not retried
    assert {"ready"} == LIVE
    assert LIVE <= SETTLED
    assert LAUNCHED <= SETTLED
    assert KEPT_BY_STOP <= SETTLED
    assert "ready" not in ERRORED
    assert "failed" in ERRORED


def test_a_remote_word_is_a_state_only_when_this_version_knows_it() -> None:
    assert [known_state(s) for s in TUNNEL_STATES] == list(TUNNEL_STATES)
    for stranger in ("", "unknown", "Ready", "draining", None, 1):
        assert known_state(stranger) is None


def test_the_mcp_tools_describe_every_state_in_order() -> None:
    described = TunnelSnapshot.model_fields["state"].description
    assert described is not None
    assert [part.split()[0] for part in described.split("|")] == list(TUNNEL_STATES)


# Each line marked `# bad` must fail mypy; its correctly spelt twin below must not.
SNIPPET = """\
from jupyter_colab_tunnel.local.client import ColabClient
from jupyter_colab_tunnel.connection_record import connection_record
from jupyter_colab_tunnel.states import TunnelAction, TunnelState, as_word, known_state
from jupyter_colab_tunnel.tunnel.service import TunnelService
from jupyter_colab_tunnel.tunnel.supervisor import TunnelSupervisor


async def misspelt(sup: TunnelSupervisor, svc: TunnelService, c: ColabClient, w: str) -> None:
    sup._set_state("raedy")  # bad
    sup._set_state("ready")
    connection_record(None, "stoped", "/", None)  # bad
    connection_record(None, "stopped", "/", None)
    assert sup.state != "redy"  # bad
    assert sup.state != "ready"
    assert known_state(w) != "backof"  # bad
    assert known_state(w) != "backoff"
    w = as_word("starting ")  # bad
    w = as_word("starting")
    subset: frozenset[TunnelState] = frozenset({"ready", "settled"})  # bad
    subset = frozenset({"ready", "stopped"})
    action: TunnelAction = "reboot"  # bad
    action = "restart"
    await svc.act("strat")  # bad
    await svc.act("start")
    await c.tunnel_action("halt")  # bad
    await c.tunnel_action("stop")
"""


def test_mypy_refuses_a_misspelt_state_or_action(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    source = tmp_path / "snippet.py"
    source.write_text(SNIPPET)
    env = {**os.environ, "MYPYPATH": str(ROOT)}  # this checkout, not an installed copy
    got = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", str(source)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    flagged = {int(line.split(":")[1]) for line in got.stdout.splitlines() if ": error:" in line}
    bad = {n for n, line in enumerate(SNIPPET.splitlines(), 1) if line.endswith("# bad")}
    assert len(bad) == 9
    assert flagged == bad, textwrap.indent(got.stdout + got.stderr, "  ")
