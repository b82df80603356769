"""The REST client (jupyter_colab_tunnel/local/client.py) against a real in-process Jupyter server.

Reads are compared with jp_fetch's answers of the same moment; every failure is one RemoteError
with a kind, the remote's own words where it said something, and a hint; the token is nowhere
in it. Both clients: the async one (tornado) and the sync one (urllib, run in a thread here
because the server shares this event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest

from jupyter_colab_tunnel.local.client import (
    ColabClient,
    ColabClientSync,
    RemoteError,
    normalize_url,
    result_or_error,
)
from jupyter_colab_tunnel.problems import CLIENT_KINDS, HINTS, ColabTunnelError, Problem
from testkit.fake_nvml import FakeGpu, FakeProcess, install

VOLATILE_STATUS = {
    ("server", "uptime_s"),
    ("resources", "load_1m"),
    ("resources", "memory"),
    # The runtime's life moves between two reads: its clock, and activity in between.
    ("life", "uptime_seconds"),
    ("life", "idle_seconds"),
    ("life", "last_activity_at"),
    ("life", "estimated_end_at"),
}


@pytest.fixture
def remote(jp_serverapp: Any, http_server_client: Any, jp_base_url: str, colab_app: Any) -> Any:
    """(base URL, token) of the in-process server, which listens on a loopback port."""
    port = http_server_client.get_http_port()
    return f"http://127.0.0.1:{port}{jp_base_url}", jp_serverapp.identity_provider.token


async def rest(jp_fetch: Any, *path: str, **kwargs: Any) -> Any:
    r = await jp_fetch(*path, **kwargs)
    assert r.code == 200
    return json.loads(r.body)


def without(body: dict[str, Any], paths: set[tuple[str, str]]) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    for section, key in paths:
        copy[section].pop(key, None)
    return copy


def assert_secret_free(error: RemoteError, token: str) -> None:
    for text in (str(error), repr(error), repr(error.args), json.dumps(error.as_dict())):
        assert token not in text


async def test_reads_match_the_rest_api(
    remote: Any, jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, token = remote
    install(monkeypatch, [FakeGpu.t4(processes=[FakeProcess(4242)]), FakeGpu.a100_mig()])
    colab_app.gpu.sampler.cache_ttl = 30.0  # one sample for the client and for jp_fetch
    client = ColabClient(url, token)
    sync = ColabClientSync(url, token)

    gpu = await client.gpu(processes=True)
    assert gpu == await rest(jp_fetch, "colab", "gpu")
    assert gpu["count"] == 2
    assert gpu["devices"][0]["processes"][0]["pid"] == 4242
    assert await asyncio.to_thread(sync.gpu, True) == gpu
    no_procs = await client.gpu(processes=False)
    assert no_procs == await rest(jp_fetch, "colab", "gpu", params={"processes": "false"})
    assert no_procs["devices"][0]["processes"] is None

    tunnel = await client.tunnel()
    assert tunnel == await rest(jp_fetch, "colab", "tunnel")
    assert tunnel["state"] == "off"
    assert "logs" not in tunnel
    assert (await client.tunnel(logs=5)) == await rest(
        jp_fetch, "colab", "tunnel", params={"logs": "5"}
    )
    assert await asyncio.to_thread(sync.tunnel) == tunnel

    status = await client.status()
    expected = await rest(jp_fetch, "colab", "status")
    assert without(status, VOLATILE_STATUS) == without(expected, VOLATILE_STATUS)
    assert status["gpu"]["count"] == 2
    synced = await asyncio.to_thread(sync.status)
    assert without(synced, VOLATILE_STATUS) == without(expected, VOLATILE_STATUS)

    # The in-process server's own port is one of the remote's listening ports.
    port = int(url.split(":")[2].split("/")[0])
    for ports in (await client.ports(), await asyncio.to_thread(sync.ports)):
        mine = next(p for p in ports["ports"] if p["port"] == port)
        assert mine["pid"] == os.getpid()
        assert mine["forward"] == f"--forward {port}"


@pytest.mark.parametrize("token", ["not-the-token", None], ids=["wrong", "missing"])
async def test_a_refused_token_is_forbidden_with_a_hint(remote: Any, token: str | None) -> None:
    url, real = remote
    for call in (
        ColabClient(url, token).status(),
        asyncio.to_thread(ColabClientSync(url, token).gpu),
    ):
        with pytest.raises(RemoteError) as e:
            await call
        assert (e.value.kind, e.value.status) == ("forbidden", 403)
        assert "token is missing or wrong" in e.value.message
        assert "--token-file" in e.value.hint
        assert "$JUPYTER_COLAB_TUNNEL_TOKEN" in e.value.hint
        assert_secret_free(e.value, real)
        if token:
            assert_secret_free(e.value, token)


async def test_remote_error_messages_are_surfaced(remote: Any) -> None:
    url, token = remote
    client = ColabClient(url, token)
    # tunnel_mode is off here: the remote refuses actions with 409 and says why.
    with pytest.raises(RemoteError) as e:
        await client.tunnel_action("start")
    assert (e.value.kind, e.value.status) == ("conflict", 409)
    assert "tunnel_mode is 'off'" in e.value.message
    assert e.value.hint
    # The client leaves range checks to the remote, which names the limit.
    with pytest.raises(RemoteError) as e:
        await client.tunnel(logs=1_000_000)
    assert (e.value.kind, e.value.status) == ("bad_request", 400)
    assert "logs must be between 0 and 100000" in e.value.message
    with pytest.raises(RemoteError) as e:
        await asyncio.to_thread(ColabClientSync(url, token).tunnel_action, "restart")
    assert e.value.kind == "conflict"
    # Arguments that can never be right fail before any request.
    with pytest.raises(ValueError, match="action must be one of start, stop, restart"):
        await client.tunnel_action("reboot")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="logs must be an int"):
        await client.tunnel(logs="5")  # type: ignore[arg-type]


async def test_a_server_without_the_extension_is_not_found(remote: Any) -> None:
    url, token = remote
    # A Jupyter server answers 404 for /colab/* when the extension is not there (here: the
    # wrong base path, the other way to reach a server without it).
    for client in (ColabClient(url + "elsewhere/", token),):
        with pytest.raises(RemoteError) as e:
            await client.status()
        assert (e.value.kind, e.value.status) == ("not_found", 404)
        assert "jupyter-colab-tunnel" in e.value.hint
        assert "base path" in e.value.hint


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@pytest.fixture
def plain_http_port() -> Iterator[int]:
    """A server that answers every connection at once in plain HTTP, as most servers do when a
    TLS handshake arrives (tornado instead waits for a request line that never comes)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    done.set()
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() at once (Linux)
    thread.join(5)
    listener.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def unreachable(url: str, **kwargs: Any) -> tuple[RemoteError, RemoteError]:
    """The error of the async client and of the sync one (asked at the same time)."""

    async def error_of(call: Awaitable[Any]) -> RemoteError:
        with pytest.raises(RemoteError) as e:
            await call
        assert e.value.unreachable
        assert e.value.status is None
        assert e.value.hint
        assert_secret_free(e.value, "t0ken-value")
        return e.value

    async_error, sync_error = await asyncio.gather(
        error_of(ColabClient(url, "t0ken-value", **kwargs).status()),
        error_of(asyncio.to_thread(ColabClientSync(url, "t0ken-value", **kwargs).status)),
    )
    return async_error, sync_error


async def test_unreachable_remotes_are_told_apart(
    closed_port: int, silent_port: int, plain_http_port: int
) -> None:
    for e in await unreachable(f"http://127.0.0.1:{closed_port}/"):
        assert e.kind == "connection_refused"
        assert f"nothing listens at http://127.0.0.1:{closed_port}" in e.message
    for e in await unreachable(f"http://127.0.0.1:{silent_port}/", timeout=0.1):
        assert e.kind == "timeout"
        assert "did not answer within 0.1 s" in e.message
    # TLS to a server that speaks plain HTTP.
    for e in await unreachable(f"https://127.0.0.1:{plain_http_port}/"):
        assert e.kind == "tls_error"
        assert "http://" in e.hint
    # .invalid never resolves (RFC 6761).
    for e in await unreachable("https://no-such-tunnel.invalid/", timeout=10):
        assert e.kind == "dns_error"
        assert "no-such-tunnel.invalid does not resolve" in e.message


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/", "http:// or https://"),
        ("https://", "http:// or https://"),
        ("example.com:8888", "http:// or https://"),
        ("https://host:99999/", "not a URL"),
        ("https://host/?token=abc", "credentials, a query or a fragment"),
        ("https://user:pw@host/", "credentials, a query or a fragment"),
        ("https://user:pw@host:99999/?token=abc", "not a URL"),
        ("ftp://host/?token=abc", "http:// or https://"),
    ],
)
def test_unusable_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(RemoteError) as e:
        ColabClient(url, "t")
    assert e.value.kind == "invalid_url"
    assert why in e.value.message
    if "?" in url or "@" in url:  # what may be a secret is not repeated
        assert "abc" not in str(e.value)
        assert "pw" not in str(e.value)
    with pytest.raises(RemoteError):
        ColabClientSync(url)


def test_urls_are_normalized() -> None:
    assert normalize_url(" https://a.trycloudflare.com ") == "https://a.trycloudflare.com/"
    assert normalize_url("http://127.0.0.1:8888/base//") == "http://127.0.0.1:8888/base/"
    assert repr(ColabClient("http://h/", "s3cret")) == "ColabClient('http://h/')"
    with pytest.raises(ValueError, match="timeout must be a positive"):
        ColabClient("http://h/", timeout=0)


# ----- answers that only other servers give (Cloudflare's edge, proxies, the relay) ---------
# The classifier is a pure function of the answer: these are its unit tests.


def classify(status: int, body: bytes, **headers: str) -> RemoteError:
    with pytest.raises(RemoteError) as e:
        result_or_error(status, headers, body, "https://x.trycloudflare.com/colab/gpu")
    return e.value


def test_cloudflare_and_proxy_answers_are_classified() -> None:
    e = classify(530, b"error code: 1033")
    assert e.kind == "no_tunnel"
    assert "new URL" in e.hint
    assert classify(502, b"error code: 502").kind == "bad_gateway"
    assert classify(524, b"error code: 524").kind == "bad_gateway"
    access = classify(302, b"", location="https://team.cloudflareaccess.com/cdn-cgi/access/login")
    assert access.kind == "forbidden"
    assert "CF-Access-Client-Id" in access.hint
    moved = classify(301, b"", location="https://elsewhere.example/base/?next=secret")
    assert moved.kind == "redirected"
    assert "secret" not in moved.message
    html = classify(200, b"<html>login</html>", **{"content-type": "text/html"})
    assert html.kind == "bad_response"
    assert "text/html" in html.message
    assert classify(500, b'{"message": "boom", "reason": null}').message.endswith(": boom")
    assert classify(418, b"").kind == "http_error"


def test_a_structured_remote_error_keeps_its_kind_and_hint() -> None:
    body = {"error": {"kind": "no_tunnel", "message": "upstream gone", "hint": "wait"}}
    e = classify(502, json.dumps(body).encode())
    assert (e.kind, e.message, e.hint, e.status) == ("no_tunnel", "upstream gone", "wait", 502)
    assert str(e) == "no_tunnel: upstream gone\nHint: wait"
    # One problem type for the whole package.
    assert isinstance(e, ColabTunnelError)
    assert e.problem == Problem("no_tunnel", "upstream gone", "wait")
    # A kind this version does not know is "unknown", with its name kept in the message.
    body = {"error": {"kind": "relay_martian", "message": "what?", "hint": "look"}}
    e = classify(502, json.dumps(body).encode())
    assert (e.kind, e.message, e.hint) == ("unknown", "[relay_martian] what?", "look")
    assert result_or_error(200, {}, b'{"a": 1}', "u") == {"a": 1}


def test_every_client_error_kind_has_a_default_hint() -> None:
    for kind in CLIENT_KINDS:
        assert RemoteError(kind, "it broke").hint == HINTS[kind]
