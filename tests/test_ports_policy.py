"""Which ports the forward route may reach: the setting, and the ports it never forwards."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_colab_tunnel.server.ports.policy import (
    DEFAULT_FORWARD_PORTS,
    PortPolicy,
    metrics_port,
    parse_ports,
)


def test_default_allows_unprivileged_ports_only() -> None:
    policy = PortPolicy(DEFAULT_FORWARD_PORTS, server_port=8888)
    assert policy.check(6006) is None
    assert policy.check(65535) is None
    reason = policy.check(80)
    assert reason is not None
    assert "forward_ports" in reason


@pytest.mark.parametrize("port", [8888, 8080, 9000, 6000, 3453, 40123])
def test_never_forwarded_whatever_the_setting(port: int) -> None:
    policy = PortPolicy("1-65535", server_port=8888, metrics_port=lambda: 40123)
    reason = policy.check(port)
    assert reason is not None
    assert "never forwarded" in reason
    assert str(port) in reason


@pytest.mark.parametrize("port", [0, 65536, 99999])
def test_not_a_port(port: int) -> None:
    reason = PortPolicy(DEFAULT_FORWARD_PORTS, server_port=8888).check(port)
    assert reason is not None
    assert "not a TCP port" in reason


def test_metrics_port_is_read_at_each_check() -> None:
    current: list[int | None] = [None]
    policy = PortPolicy(DEFAULT_FORWARD_PORTS, 8888, metrics_port=lambda: current[0])
    assert policy.check(40123) is None
    current[0] = 40123  # cloudflared (re)started and said where its metrics server is
    assert policy.check(40123) is not None
    assert metrics_port("127.0.0.1:40123") == 40123
    assert metrics_port(None) is None
    assert metrics_port("localhost") is None


def test_lists_and_ranges() -> None:
    assert parse_ports(" 6006, 7860 ,8000-8100") == ((6006, 6006), (7860, 7860), (8000, 8100))
    policy = PortPolicy("6006,8000-8100", server_port=8888)
    assert [p for p in (6006, 6007, 7999, 8000, 8100, 8101) if policy.check(p) is None] == [
        6006,
        8000,
        8100,
    ]


def test_empty_turns_forwarding_off() -> None:
    assert parse_ports("") == ()
    reason = PortPolicy("", server_port=8888).check(6006)
    assert reason is not None
    assert "off" in reason


@pytest.mark.parametrize(
    ("spec", "quoted"),
    [
        ("abc", "'abc'"),
        ("6006,,7860", "empty item"),
        ("9000-8000", "'9000-8000'"),
        ("0", "'0'"),
        ("70000", "'70000'"),
        ("1-2-3", "'1-2-3'"),
    ],
)
def test_bad_settings_name_the_bad_part(spec: str, quoted: str) -> None:
    with pytest.raises(ValueError, match=quoted):
        parse_ports(spec)


def test_a_bad_setting_is_a_config_error_and_keeps_the_default() -> None:
    from traitlets.config import Config

    from jupyter_colab_tunnel.server.app import ColabTunnelApp

    app: Any = ColabTunnelApp(config=Config({"ColabTunnelApp": {"forward_ports": "6006,x"}}))
    assert app.forward_ports == DEFAULT_FORWARD_PORTS
    (error,) = app.config_errors
    assert error.trait == "forward_ports"
    assert "'x' is not a port or a range" in error.message
    good: Any = ColabTunnelApp(config=Config({"ColabTunnelApp": {"forward_ports": "6006"}}))
    assert good.forward_ports == "6006"
    assert good.config_errors == []


def test_a_kernels_zmq_channels_are_never_forwarded() -> None:
    channels = {40001: "k-1"}
    policy = PortPolicy(DEFAULT_FORWARD_PORTS, server_port=8888, kernel_ports=lambda: channels)
    reason = policy.check(40001)
    assert reason is not None
    assert "ZMQ channel of kernel k-1" in reason
    assert policy.check(40002) is None
    channels.clear()  # the kernel is gone: read at each check
    assert policy.check(40001) is None
