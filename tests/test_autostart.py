"""Autostart: the tunnel opens only where it is wanted (hosted runtime, launch(), explicit config)."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_kit import wait_until_listening
from server_process import free_port

from jupyter_colab_tunnel.server.autostart import (
    AutostartFacts,
    decide_autostart,
    explicit_tunnel_config,
    is_kaggle,
)

PLAIN = AutostartFacts(
    setting="auto", hosted=False, launched=False, explicit_tunnel=False, gateway_mode=False
)


@pytest.mark.parametrize(
    ("changes", "start", "says"),
    [
        ({}, False, "not a hosted runtime"),
        ({"hosted": True}, True, "hosted runtime"),
        ({"launched": True}, True, "launch()"),
        ({"explicit_tunnel": True}, True, "configured explicitly"),
        ({"gateway_mode": True}, False, "gateway mode"),
        # The local side never opens a tunnel on its own, even on a hosted machine.
        ({"gateway_mode": True, "hosted": True, "explicit_tunnel": True}, False, "gateway mode"),
        ({"gateway_mode": True, "setting": True}, True, "autostart is True"),
        ({"setting": True}, True, "autostart is True"),
        ({"setting": False, "hosted": True, "launched": True}, False, "autostart is False"),
    ],
)
def test_decide_autostart(changes: dict[str, Any], start: bool, says: str) -> None:
    facts = AutostartFacts(**{**PLAIN.__dict__, **changes})
    decision = decide_autostart(facts)
    assert decision.start is start
    assert says in decision.reason
    if not start:
        assert "POST /colab/tunnel" in decision.reason or "autostart = True" in decision.reason


def test_explicit_config_and_kaggle() -> None:
    assert explicit_tunnel_config({"tunnel_mode"}, {})
    assert explicit_tunnel_config({"tunnel_token_file"}, {})
    assert explicit_tunnel_config(set(), {"TUNNEL_TOKEN": "x"})
    assert not explicit_tunnel_config({"protocol", "autostart"}, {"TUNNEL_TOKEN": ""})
    assert is_kaggle({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"})
    assert not is_kaggle({})


def test_autostart_trait_accepts_bool_and_auto() -> None:
    from jupyter_colab_tunnel.server.app import ColabTunnelApp

    app = ColabTunnelApp()
    assert app.autostart == "auto"
    app.autostart = True
    app.autostart = False
    with pytest.raises(Exception, match="autostart"):
        app.autostart = "sometimes"  # type: ignore[assignment]


# ----- real servers: who spawns cloudflared --------------------------------------------------


def _tunnel_after_start(ts: Any) -> dict[str, Any]:
    wait_until_listening(ts.server)
    return dict(ts.tunnel())


@pytest.mark.e2e
def test_unconfigured_server_on_a_plain_machine_opens_no_tunnel(tunnel_server: Any) -> None:
    ts = tunnel_server(traits={"autostart": "auto"})
    body = _tunnel_after_start(ts)
    assert body["state"] == "stopped"
    assert any("not a hosted runtime" in e["detail"] for e in body["events"]), body["events"]
    assert "Tunnel not started" in ts.server.log()
    assert ts.spawned_pids() == []
    assert ts.children() == []


@pytest.mark.e2e
def test_gateway_mode_server_opens_no_tunnel(tunnel_server: Any) -> None:
    # Configured for a tunnel and on "Colab", but in gateway mode: still none.
    gw = tunnel_server(
        traits={"autostart": "auto", "tunnel_mode": "quick"},
        env={
            "COLAB_RELEASE_TAG": "release-colab-test",
            "JUPYTER_GATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        },
        wait=False,
    )
    body = _tunnel_after_start(gw)
    assert body["state"] == "stopped"
    assert any("gateway mode" in e["detail"] for e in body["events"]), body["events"]
    assert gw.spawned_pids() == []


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("traits", "env"),
    [
        ({"autostart": "auto"}, {"COLAB_RELEASE_TAG": "release-colab-test"}),
        ({"autostart": "auto", "tunnel_mode": "quick"}, {}),
        ({"autostart": "auto"}, {"JUPYTER_COLAB_TUNNEL_LAUNCHED": "1"}),
    ],
    ids=["simulated-colab", "explicit-config", "launched"],
)
def test_wanted_tunnel_starts(
    tunnel_server: Any, traits: dict[str, Any], env: dict[str, str]
) -> None:
    ts = tunnel_server(traits=traits, env=env)
    body = ts.wait_state("ready")
    assert body["url"]
    assert len(ts.spawned_pids()) == 1
