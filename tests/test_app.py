"""The extension loads, and every setting is a validated, documented trait."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_colab_tunnel import __version__, _jupyter_server_extension_points
from jupyter_colab_tunnel.server.app import ColabTunnelApp

CONFIGURATION = Path(__file__).parent.parent / "docs" / "configuration.md"


def documented_defaults() -> dict[str, str]:
    """docs/configuration.md's settings table: trait name -> its `default` cell, as written."""
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", CONFIGURATION.read_text(), re.MULTILINE)
    return {name: cell.strip() for name, cell in rows}


def make_app(monkeypatch: pytest.MonkeyPatch, **config: Any) -> ColabTunnelApp:
    monkeypatch.delenv("TUNNEL_TOKEN", raising=False)
    return ColabTunnelApp(config=Config({"ColabTunnelApp": config}))


def test_extension_points() -> None:
    point, lab = _jupyter_server_extension_points()
    assert point == {"module": "jupyter_colab_tunnel.server.app", "app": ColabTunnelApp}
    # The local JupyterLab's /colab/remote/*: a plain module point, loaded by its function.
    assert lab == {"module": "jupyter_colab_tunnel.local.lab"}
    assert callable(importlib.import_module(lab["module"])._load_jupyter_server_extension)
    assert __version__.count(".") == 2


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(monkeypatch)  # with no $TUNNEL_TOKEN
    # Cells in prose: "named" with a token (tested below), else "quick"; `$TUNNEL_TOKEN`.
    prose = {"tunnel_mode": "quick", "tunnel_token": ""}
    for name, cell in documented_defaults().items():
        expected = prose[name] if name in prose else ast.literal_eval(cell.strip("`"))
        assert getattr(app, name) == expected, name
    assert app.config_errors == []


OWN_TRAITS = ColabTunnelApp.class_own_traits(config=True)


def test_the_documented_defaults_cover_every_setting() -> None:
    assert set(documented_defaults()) == set(OWN_TRAITS)


@pytest.mark.parametrize("name", sorted(OWN_TRAITS))
def test_every_setting_has_help(name: str) -> None:
    assert len(OWN_TRAITS[name].help) > 20, name


@pytest.mark.parametrize("name", sorted(OWN_TRAITS))
def test_docs_list_every_setting(name: str) -> None:
    doc = CONFIGURATION.read_text()
    assert f"`{name}`" in doc, name


def test_extra_args_still_works_with_a_deprecation_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(monkeypatch, extra_args=["--edge-ip-version", "4"])
    assert app.cloudflared_args == ["--edge-ip-version", "4"]
    assert app.config_errors == []
    warning = "ColabTunnelApp.extra_args is deprecated: use ColabTunnelApp.cloudflared_args"
    assert warning in capsys.readouterr().err
    # The new name wins when both are given.
    app = make_app(monkeypatch, extra_args=["--old"], cloudflared_args=["--new"])
    assert app.cloudflared_args == ["--new"]


def test_mode_defaults_to_named_with_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_app(monkeypatch, tunnel_token="x").tunnel_mode == "named"
    assert make_app(monkeypatch, tunnel_token_file="/t").tunnel_mode == "named"
    monkeypatch.setenv("TUNNEL_TOKEN", "from-env")
    app = ColabTunnelApp(config=Config())
    assert app.tunnel_token == "from-env"
    assert app.tunnel_mode == "named"
    assert make_app(monkeypatch, tunnel_mode="off").tunnel_mode == "off"


def test_command_line_sets_traits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNNEL_TOKEN", raising=False)
    app = ColabTunnelApp()
    app.parse_command_line(
        [
            "--ColabTunnelApp.protocol=http2",
            "--ColabTunnelApp.max_restarts=3",
            "--ColabTunnelApp.cloudflared_args=--edge",
            "--ColabTunnelApp.cloudflared_args=region1.v2.argotunnel.com:7844",
        ]
    )
    assert app.protocol == "http2"
    assert app.max_restarts == 3
    assert app.cloudflared_args == ["--edge", "region1.v2.argotunnel.com:7844"]


def test_command_line_accepts_the_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNNEL_TOKEN", raising=False)
    app = ColabTunnelApp()
    app.parse_command_line(["--ColabTunnelApp.extra_args=--edge-ip-version=4"])
    assert app.cloudflared_args == ["--edge-ip-version=4"]


@pytest.mark.parametrize(
    ("trait", "value", "expected"),
    [
        ("tunnel_mode", "fast", "'quick', 'named', 'off'"),
        ("protocol", "udp", "'auto', 'quic', 'http2'"),
        ("edge_ip_version", "5", "'auto', '4', '6'"),
        ("restart_backoff_initial", -1.0, "a number >= 0.0"),
        ("max_restarts", -2, "a number >= 0"),
        ("health_interval", 0.0, "a number >= 0.05"),
        ("runtime_max_lifetime", -3600.0, "a number >= 0.0"),
        ("runtime_idle_timeout", "90 min", ""),
        ("autostart", "maybe", ""),
    ],
)
def test_invalid_values_are_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, trait: str, value: Any, expected: str
) -> None:
    app = make_app(monkeypatch, **{trait: value, "stop_timeout": 2.5})
    # The bad value is rejected and named; the good one next to it is kept.
    assert app.stop_timeout == 2.5
    assert getattr(app, trait) == getattr(make_app(monkeypatch), trait)
    (error,) = app.config_errors
    assert error.trait == trait
    assert f"ColabTunnelApp.{trait}" in error.message
    assert expected in error.message


def test_invalid_token_type_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(monkeypatch, tunnel_token=123456789)
    (error,) = app.config_errors
    assert "123456789" not in error.message
    assert error.trait == "tunnel_token"


@pytest.mark.e2e
def test_settings_help_command_prints_every_setting() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_colab_tunnel.server.app"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for name, trait in OWN_TRAITS.items():
        assert f"--ColabTunnelApp.{name}=" in out, name
        assert trait.help.split()[0] in out
    assert "answer_yes" not in out  # inherited, not ours
    doc = CONFIGURATION.read_text()
    assert "python -m jupyter_colab_tunnel.server.app" in doc
