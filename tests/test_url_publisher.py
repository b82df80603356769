"""TunnelUrlPublisher: the tunnel's host (only it) let through Jupyter's Host check, the
relay command logged once, the connection file left alone when none is configured."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from jupyter_colab_tunnel.server.url_publisher import TunnelUrlPublisher


def publisher(**overrides: Any) -> tuple[TunnelUrlPublisher, dict[str, Any], SimpleNamespace]:
    settings: dict[str, Any] = {"local_hostnames": ["localhost"]}
    supervisor = SimpleNamespace(url=None, state="starting")
    serverapp = SimpleNamespace(web_app=SimpleNamespace(settings=settings), base_url="/")
    kwargs: dict[str, Any] = {
        "connection_file": "",
        "include_token": False,
        "supervisor": lambda: supervisor,
        "life": dict,
    }
    kwargs.update(overrides)
    made = TunnelUrlPublisher(serverapp, logging.getLogger("test"), **kwargs)  # type: ignore[arg-type]
    return made, settings, supervisor


def test_only_the_current_tunnel_host_is_allowed() -> None:
    pub, settings, _ = publisher()
    pub.url_changed("https://one.trycloudflare.com")
    assert settings["local_hostnames"] == ["localhost", "one.trycloudflare.com"]
    pub.url_changed("https://two.trycloudflare.com")
    assert settings["local_hostnames"] == ["localhost", "two.trycloudflare.com"]
    pub.url_changed(None)
    assert settings["local_hostnames"] == ["localhost"]


def test_the_relay_command_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    pub, _, supervisor = publisher()
    with caplog.at_level(logging.INFO, logger="test"):
        pub.announce(supervisor)  # type: ignore[arg-type]  # no URL yet: nothing
        assert not caplog.records
        supervisor.url = "https://one.trycloudflare.com"
        pub.announce(supervisor)  # type: ignore[arg-type]
        pub.announce(supervisor)  # type: ignore[arg-type]
    (record,) = caplog.records
    assert "https://one.trycloudflare.com" in record.getMessage()


def test_no_connection_file_no_writing() -> None:
    def unreachable() -> Any:
        raise AssertionError("read without a connection file")

    pub, _, _ = publisher(supervisor=unreachable, life=unreachable)
    pub.write()
    pub.finish(unreachable)
