"""Unit tests of the relay's pure parts: upstream tracking, failures, CLI input."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import stat
from pathlib import Path

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from jupyter_colab_tunnel.cli import main
from jupyter_colab_tunnel.local import connect_cli as cli
from jupyter_colab_tunnel.local.failures import classify_exception, classify_status
from jupyter_colab_tunnel.local.relay import Relay, RelaySettings, error_body
from jupyter_colab_tunnel.local.relay.rules import hostname as _hostname
from jupyter_colab_tunnel.local.upstream import UpstreamTracker
from jupyter_colab_tunnel.problems import HINTS

LOG = logging.getLogger("test-relay")


# ----- upstream tracking (the connection file: tests/test_connection_record.py) ---------------


def test_tracker_waits_for_a_live_upstream() -> None:
    async def scenario() -> tuple[object, object, float]:
        tracker = UpstreamTracker(LOG)
        loop = asyncio.get_running_loop()
        none = await tracker.wait_live(loop.time() + 0.02)
        loop.call_later(0.02, tracker.set_url, "https://late.example")
        started = loop.time()
        late = await tracker.wait_live(loop.time() + 5)
        return none, late, loop.time() - started

    none, late, waited = asyncio.run(scenario())
    assert none is None
    assert getattr(late, "url", None) == "https://late.example"
    assert waited < 2


# ----- failures -----------------------------------------------------------------------------


def test_classify_failures() -> None:
    url = "https://x.trycloudflare.com"
    dns = classify_exception(socket.gaierror(-2, "Name or service not known"), url)
    assert (dns.reason, dns.status, dns.unsent) == ("dns_error", 502, True)
    tls = classify_exception(ssl.SSLCertVerificationError("certificate verify failed"), url)
    assert (tls.reason, tls.status) == ("tls_error", 502)
    assert "SSL_CERT_FILE" in tls.hint
    refused = classify_exception(ConnectionRefusedError(111, "refused"), url)
    assert (refused.reason, refused.unsent) == ("connection_refused", True)
    slow = classify_exception(TimeoutError("no answer in 5 s"), url)
    assert (slow.reason, slow.status, slow.unsent) == ("timeout", 504, False)
    assert classify_exception(TimeoutError("connect timeout after 5 s"), url).unsent
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = socket.gaierror(-2, "x")
    assert classify_exception(wrapped, url).reason == "dns_error"
    gone = classify_status(530, b"error code: 1033", url)
    assert gone is not None
    assert (gone.reason, gone.status, gone.unsent) == ("no_tunnel", 502, True)
    origin = classify_status(502, b"error code: 502", url)
    assert origin is not None
    assert origin.reason == "bad_gateway"
    # An answer from the remote Jupyter server itself is relayed as it is.
    assert classify_status(502, b'{"message": "Error from Gateway"}', url) is None
    assert classify_status(200, b"error code: 1033 in a notebook's text", url) is None
    assert classify_status(403, b"", url) is None


def test_error_body_has_the_keys_the_gateway_client_shows() -> None:
    body = json.loads(error_body(503, "no_upstream", "no URL", "wait"))
    assert body == {
        "message": "no URL Hint: wait",
        "reason": "no_upstream",
        "error": {"kind": "no_upstream", "message": "no URL", "hint": "wait"},
    }
    # A hint left out is the kind's own; tornado's own errors get a kind by their status.
    assert (
        json.loads(error_body(403, "bad_local_token", "m"))["error"]["hint"]
        == HINTS["bad_local_token"]
    )
    strange = json.loads(error_body(405, "Method Not Allowed", "Method Not Allowed"))
    assert (strange["reason"], strange["error"]["kind"]) == ("Method Not Allowed", "http_error")


# ----- local request policy -----------------------------------------------------------------


def _request(headers: dict[str, str], uri: str = "/api/kernels") -> HTTPServerRequest:
    hdrs = HTTPHeaders(headers)
    return HTTPServerRequest(start_line=RequestStartLine("GET", uri, "HTTP/1.1"), headers=hdrs)


def _relay() -> Relay:
    settings = RelaySettings(
        local_token="local-secret",
        remote_token=lambda: "remote-secret",
        extra_headers={"CF-Access-Client-Id": "id"},
        allowed_origins=frozenset({"https://allowed.example"}),
    )
    relay = Relay(
        settings,
        UpstreamTracker(LOG),
        LOG,
        status_extra=lambda: {"connection_file": None, "remote": None},
    )
    relay.port = 18888
    return relay


def test_local_policy() -> None:
    relay = _relay()
    ok = {"Host": "127.0.0.1:18888", "Authorization": "token local-secret"}
    assert relay.refusal(_request(ok)) is None
    assert relay.refusal(_request({**ok, "Host": "localhost"})) is None
    assert relay.refusal(_request({**ok, "Host": "[::1]:18888"})) is None
    assert (
        relay.refusal(_request({**ok, "Host": "attacker.example:18888"}))[1] == "host_not_allowed"
    )  # type: ignore[index]
    assert relay.refusal(_request({**ok, "Host": "127.0.0.1.nip.io"}))[1] == "host_not_allowed"  # type: ignore[index]
    assert (
        relay.refusal(_request({**ok, "Origin": "https://evil.example"}))[1] == "origin_not_allowed"
    )  # type: ignore[index]
    assert relay.refusal(_request({**ok, "Origin": "https://allowed.example"})) is None
    assert relay.refusal(_request({**ok, "Origin": "http://localhost:18888"})) is None
    assert relay.refusal(_request({"Host": "127.0.0.1"}))[1] == "bad_local_token"  # type: ignore[index]
    assert (
        relay.refusal(_request({"Host": "127.0.0.1", "Authorization": "token wrong"})) is not None
    )
    assert relay.refusal(_request({"Host": "127.0.0.1"}, "/api/kernels?token=local-secret")) is None
    assert (
        relay.refusal(_request({"Host": "127.0.0.1", "Authorization": "Bearer local-secret"}))
        is None
    )


def test_upstream_headers_and_url() -> None:
    relay = _relay()
    request = _request(
        {
            "Host": "127.0.0.1:18888",
            "Authorization": "token local-secret",
            "Cookie": "local=1",
            "Origin": "http://127.0.0.1:18888",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "1",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, br",
        }
    )
    headers = relay.upstream_headers(request)
    assert headers["Authorization"] == "token remote-secret"
    assert headers["CF-Access-Client-Id"] == "id"
    assert headers["Accept"] == "application/json"
    # Compressed answers would hide the remote token from the relay's scan of what comes back.
    for dropped in ("Host", "Cookie", "Origin", "Connection", "X-Hop", "Accept-Encoding"):
        assert dropped not in headers
    from jupyter_colab_tunnel.local.upstream import Upstream

    up = Upstream("https://x.example/base")
    assert relay.upstream_url(
        up, "/api/kernels/k/channels?session_id=s&token=local-secret", ws=True
    ) == ("wss://x.example/base/api/kernels/k/channels?session_id=s")
    assert relay.upstream_url(up, "/api/kernels") == "https://x.example/base/api/kernels"


def test_hostname() -> None:
    assert _hostname("127.0.0.1:80") == "127.0.0.1"
    assert _hostname("[::1]:80") == "::1"
    assert _hostname("localhost") == "localhost"


# ----- CLI input ----------------------------------------------------------------------------


def test_local_token_file(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "token"
    token, created = cli.local_token(str(path))
    assert created
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cli.local_token(str(path)) == (token, False)
    path.write_text("  mine \n")
    assert cli.local_token(str(path)) == ("mine", False)
    path.write_text("\n")
    with pytest.raises(cli.UsageError, match="is empty"):
        cli.local_token(str(path))


def test_extra_headers(tmp_path: Path) -> None:
    assert cli.extra_headers(None, {}) == {}
    env = {cli.HEADERS_ENV: '{"CF-Access-Client-Id": "a", "CF-Access-Client-Secret": "b"}'}
    assert cli.extra_headers(None, env)["CF-Access-Client-Secret"] == "b"
    f = tmp_path / "h.json"
    f.write_text('{"X-A": "1"}')
    assert cli.extra_headers(str(f), env) == {"X-A": "1"}  # the file wins
    f.write_text("CF-Access-Client-Secret: b")
    with pytest.raises(cli.UsageError, match="not JSON") as e:
        cli.extra_headers(str(f), {})
    assert "CF-Access-Client-Secret: b" not in str(e.value)  # the content is never echoed
    with pytest.raises(cli.UsageError, match="JSON object of string"):
        cli.extra_headers(None, {cli.HEADERS_ENV: '{"X": 1}'})
    with pytest.raises(cli.UsageError, match="cannot read"):
        cli.extra_headers(str(tmp_path / "missing"), {})


def test_local_instructions_keep_the_token_in_its_file() -> None:
    text = cli.local_instructions(18888, "/home/me/.jupyter-colab-tunnel/relay_token")
    assert "--gateway-url=http://127.0.0.1:18888" in text
    assert 'JUPYTER_GATEWAY_AUTH_TOKEN="$(cat /home/me/.jupyter-colab-tunnel/relay_token)"' in text
    assert 'c.GatewayClient.auth_token = Path("/home/me/.jupyter-colab-tunnel/relay_token")' in text
    assert "--GatewayClient.gateway_retry_max=60" in text
    assert "c.GatewayClient.gateway_retry_interval = 0.5" in text


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connect", "--url", "x.example", "--check"]) == 2
    assert "--url 'x.example' is not an http(s) URL" in capsys.readouterr().err
    assert main(["connect", "--url", "https://x", "--token-file", str(tmp_path / "no")]) == 2
    assert "cannot read the token file" in capsys.readouterr().err
    assert main(["connect", "--url", "https://x", "--port", "70000"]) == 2
    with pytest.raises(SystemExit):
        main(["connect"])  # --url or --connection-file is required


def test_relay_spec_is_valid_and_matches_the_status() -> None:
    import yaml
    from openapi_spec_validator import validate
    from relay_env import SPEC, check_relay_body

    validate(yaml.safe_load(SPEC.read_text()))
    relay = _relay()
    check_relay_body("RelayStatus", json.loads(json.dumps(relay.status())))
    check_relay_body("Error", json.loads(error_body(403, "bad_local_token", "m")))


@pytest.mark.e2e  # runs the command in a subprocess
def test_connect_is_a_subcommand_of_the_cli() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "jupyter_colab_tunnel.launcher", "connect", "--check", "--url",
         "http://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done
    assert "remote check: PROBLEM (connection_refused)" in done.stdout


def test_the_shipped_commands_have_no_test_seam() -> None:
    """The relay and cp dial the URL they are given, as on a user's machine: tests reach the
    stand-in by its public name (testkit/edge_dns.py, testkit/edge_tls.py), not through a
    parameter of the product that maps one URL to another."""
    import dataclasses
    import inspect

    from jupyter_colab_tunnel.local.files import cp_cli, where
    from jupyter_colab_tunnel.local.upstream import Upstream

    assert list(inspect.signature(cli.run_connect).parameters) == ["args"]
    assert list(inspect.signature(cp_cli.run_cp).parameters) == ["args"]
    assert list(inspect.signature(UpstreamTracker).parameters) == ["log"]
    assert [f.name for f in dataclasses.fields(Upstream)] == ["url"]
    for kind in (where.FixedURL, where.ConnectionFile):
        assert "resolve" not in inspect.signature(kind).parameters
    assert not hasattr(where.Where, "dial")


def test_the_stand_in_resolver_reads_off_the_loop_and_passes_other_names_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """testkit/edge_dns.StandInResolver answers for the relay's event loop: the stand-ins'
    state files are read on another thread, never on the loop."""
    import threading

    from testkit import edge_dns

    state = tmp_path / "server" / "fake-state" / "123.json"
    state.parent.mkdir(parents=True)
    state.write_text(
        json.dumps({"hostname": "a-b.trycloudflare.com", "edge_tls": "https://127.0.0.1:9"})
    )
    readers: list[threading.Thread] = []
    read = edge_dns.edge_for

    def edge_for(hostname: str, root: Path) -> tuple[str, int] | None:
        readers.append(threading.current_thread())
        return read(hostname, root)

    monkeypatch.setattr(edge_dns, "edge_for", edge_for)

    async def look() -> tuple[object, object]:
        resolver = edge_dns.StandInResolver(root=tmp_path)
        try:
            return (
                await resolver.resolve("A-B.trycloudflare.com.", 443),
                # Not a stand-in's name: the system's own lookup.
                await resolver.resolve("localhost", 443, socket.AF_INET),
            )
        finally:
            resolver.close()

    edge, other = asyncio.run(look())
    assert edge == [(socket.AF_INET, ("127.0.0.1", 9))]
    assert other == [(socket.AF_INET, ("127.0.0.1", 443))]
    assert len(readers) == 2
    assert all(reader is not threading.main_thread() for reader in readers)
