"""One error model on the local side: the relay's real answers, read by the real clients.

A real relay (in-process, on a loopback port) in front of nothing, of a closed port, of a
stand-in for Cloudflare's edge, and asked with a wrong token or a foreign Host: `ColabClient`,
`ColabClientSync` and the MCP tools (the SDK's in-memory client) each report the relay's own
kind, message and hint. The same failure met directly (client, `connect --check`) has the same
name as through the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mcp import Client
from relay_env import check_relay_body
from test_mcp import TOOLS as MCP_TOOLS
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from jupyter_colab_tunnel.http1 import KeepAliveClient
from jupyter_colab_tunnel.local import connect_cli as cli
from jupyter_colab_tunnel.local.check import FORBIDDEN_HINT, CheckResult, check_remote
from jupyter_colab_tunnel.local.client import ColabClient, ColabClientSync, RemoteError
from jupyter_colab_tunnel.local.mcp import build_server
from jupyter_colab_tunnel.local.relay import Relay, RelaySettings
from jupyter_colab_tunnel.local.upstream import UpstreamTracker
from jupyter_colab_tunnel.problems import HINTS, Problem

LOG = logging.getLogger("test-relay-errors")
LOCAL = "local-relay-token-4c1d"
REMOTE = "remote-token-9f2e"  # checked never to leak


class Remote(web.RequestHandler):
    """Stand-ins behind the relay, one per first path segment: Cloudflare's edge without a
    tunnel (530 / error 1033, as testkit's cloudflared stand-in answers), Cloudflare's 502
    page, a server with the extension, one without it, and one that refuses the token."""

    def get(self, where: str, path: str) -> None:
        if where == "edge":
            self.set_status(530)
            self.set_header("Content-Type", "text/plain")
            self.finish("error code: 1033")
        elif where == "cf502":
            self.set_status(502)
            self.set_header("Content-Type", "text/plain")
            self.finish("error code: 502")
        elif where == "colab" or (where == "plain" and path == "api/kernelspecs"):
            self.finish({"version": "x"})
        elif where == "locked":
            self.set_status(403)
            self.finish({"message": "Forbidden", "reason": None})
        else:
            self.set_status(404)
            self.finish({"message": "Not Found", "reason": None})


@pytest.fixture
def remote() -> Iterator[str]:
    """The base URL of the stand-ins (a real HTTP server on a loopback port)."""
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(web.Application([(r"/([^/]+)/(.*)", Remote)]))
    server.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    server.stop()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def relay_to(upstream: str | None) -> AsyncIterator[str]:
    """A real relay whose remote is `upstream` (None: no live URL); yields its base URL."""
    tracker = UpstreamTracker(LOG)
    if upstream is not None:
        tracker.set_url(upstream)
    settings = RelaySettings(local_token=LOCAL, remote_token=lambda: REMOTE, http_wait=0.05)
    relay = Relay(settings, tracker, LOG)
    port = relay.listen(0)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await relay.close()


async def relay_answer(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The relay's own answer to GET colab/status, as it is on the wire."""
    client = AsyncHTTPClient(force_instance=True)
    try:
        r = await client.fetch(
            HTTPRequest(url + "colab/status", headers=headers), raise_error=False
        )
    finally:
        client.close()
    return r.code, json.loads(r.body)


async def clients_errors(
    url: str, token: str, headers: dict[str, str]
) -> tuple[RemoteError, RemoteError, str]:
    """What the async client, the sync client and the MCP tool report for colab/status."""
    with pytest.raises(RemoteError) as async_error:
        await ColabClient(url, token, headers=headers).status()
    sync = ColabClientSync(url, token, headers=headers)
    with pytest.raises(RemoteError) as sync_error:
        await asyncio.to_thread(sync.status)
    async with Client(build_server(ColabClient(url, token, headers=headers))) as tools:
        result = await tools.call_tool("colab_status", {})
        assert result.is_error, result
        text = "\n".join(block.text for block in result.content)  # type: ignore[union-attr]
        # The MCP server keeps serving after an error.
        assert {tool.name for tool in (await tools.list_tools()).tools} == MCP_TOOLS
    return async_error.value, sync_error.value, text


# (what, upstream, token, extra headers, the relay's status, its kind)
CASES = [
    ("no upstream", None, LOCAL, {}, 503, "no_upstream"),
    ("dead remote", "dead", LOCAL, {}, 502, "connection_refused"),
    ("no tunnel at Cloudflare", "edge", LOCAL, {}, 502, "no_tunnel"),
    ("Cloudflare's 502", "cf502", LOCAL, {}, 502, "bad_gateway"),
    ("wrong local token", "colab", "not-the-relay-token", {}, 403, "bad_local_token"),
    ("foreign Host", "colab", LOCAL, {"Host": "attacker.example:18888"}, 403, "host_not_allowed"),
]


@pytest.mark.parametrize(
    ("upstream", "token", "headers", "status", "kind"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_the_clients_report_the_relays_own_kind_and_hint(
    remote: str,
    closed_port: int,
    upstream: str | None,
    token: str,
    headers: dict[str, str],
    status: int,
    kind: str,
) -> None:
    target = {None: None, "dead": f"http://127.0.0.1:{closed_port}"}.get(
        upstream, f"{remote}/{upstream}"
    )
    async with relay_to(target) as url:
        code, body = await relay_answer(url, {"Authorization": f"token {token}", **headers})
        async_error, sync_error, tool_text = await clients_errors(url, token, headers)
    # Each client reports the relay's kind, not a generic bad_gateway / forbidden.
    assert [(e.kind, e.status) for e in (async_error, sync_error)] == [(kind, status)] * 2
    # The relay's answer: the gateway client's message and reason, and the problem itself.
    assert code == status, body
    check_relay_body("Error", body)
    problem = body["error"]
    assert (body["reason"], problem["kind"]) == (kind, kind)
    assert problem["message"]
    assert problem["hint"]
    assert body["message"] == f"{problem['message']} Hint: {problem['hint']}"
    # ... with the relay's message and hint.
    for error in (async_error, sync_error):
        assert error.problem == Problem(kind, problem["message"], problem["hint"])  # type: ignore[arg-type]
    assert f"{kind}: {problem['message']}" in tool_text
    assert f"Hint: {problem['hint']}" in tool_text
    for text in (json.dumps(body), str(async_error), str(sync_error), tool_text):
        assert REMOTE not in text
        assert LOCAL not in text


async def test_one_failure_has_one_name_directly_and_through_the_relay(
    remote: str, closed_port: int
) -> None:
    """A closed port and Cloudflare's no-tunnel answer: the client asking directly, the relay's
    start check, and the client through the relay name them the same, with the same hint."""
    client = KeepAliveClient()
    try:
        for target, kind in [
            (f"http://127.0.0.1:{closed_port}", "connection_refused"),
            (f"{remote}/edge", "no_tunnel"),
        ]:
            with pytest.raises(RemoteError) as direct:
                await ColabClient(target, REMOTE).status()
            checked = await check_remote(client, target, {})
            async with relay_to(target) as url:
                with pytest.raises(RemoteError) as relayed:
                    await ColabClient(url, LOCAL).status()
            assert checked.problem is not None
            assert direct.value.kind == checked.problem.kind == relayed.value.kind == kind
            assert direct.value.hint == checked.problem.hint == relayed.value.hint == HINTS[kind]
    finally:
        client.close()


async def test_the_start_check_gives_problems(remote: str, closed_port: int) -> None:
    client = KeepAliveClient()
    try:
        ok = await check_remote(client, f"{remote}/colab", {})
        assert (ok.ok, ok.kind, ok.problem, ok.hint) == (True, "ok", None, "")
        plain = await check_remote(client, f"{remote}/plain", {})
        assert (plain.ok, plain.kind, plain.problem) == (True, "gateway_only", None)
        results: dict[str, CheckResult] = {
            "no_upstream": await check_remote(client, None, {}),
            "forbidden": await check_remote(client, f"{remote}/locked", {}),
            "not_found": await check_remote(client, f"{remote}/nothing", {}),
            "bad_gateway": await check_remote(client, f"{remote}/cf502", {}),
            "connection_refused": await check_remote(client, f"http://127.0.0.1:{closed_port}", {}),
        }
    finally:
        client.close()
    for kind, result in results.items():
        assert result.problem is not None, kind
        assert (result.ok, result.kind, result.problem.kind) == (False, kind, kind)
        assert (result.message, result.hint) == (result.problem.message, result.problem.hint)
        assert result.hint, kind
    # The token in question is the remote's: the hint says where it goes.
    assert results["forbidden"].message == f"the remote at {remote}/locked refused the token (403)"
    assert results["forbidden"].hint == FORBIDDEN_HINT


def test_the_cli_prints_kind_message_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    problem = Problem("no_tunnel", "no tunnel is connected behind https://x.example")
    cli._print_check(CheckResult.failed(problem))
    cli._print_check(CheckResult("gateway_only", "works as a gateway"))
    assert capsys.readouterr().out.splitlines() == [
        "[colab-tunnel relay] remote check: PROBLEM (no_tunnel): no tunnel is connected behind "
        "https://x.example",
        f"[colab-tunnel relay] hint: {HINTS['no_tunnel']}",
        "[colab-tunnel relay] remote check: OK (gateway_only): works as a gateway",
    ]


# GET /colab/tunnel of a remote whose tunnel is ready again (the shape of docs/openapi.yaml).
READY = {
    "state": "ready",
    "mode": "named",
    "url": "https://named.example",
    "pid": 4242,
    "restarts": 0,
    "ready_connections": 4,
    "started_at": "2026-01-01T00:00:00Z",
    "ready_at": "2026-01-01T00:00:01Z",
    "next_retry_at": None,
    "last_exit": None,
    "error": None,
    "cloudflared": {"path": "/usr/local/bin/cloudflared", "version": "2026.1.0"},
    "events": [{"at": "2026-01-01T00:00:01Z", "state": "ready", "detail": "restarted"}],
    "connect": None,
    "config_errors": [],
}


class CutTunnel(web.RequestHandler):
    """A remote whose tunnel a restart cuts: the POST's connection drops unanswered and the
    connection file says "restarting" (no live URL) until the test writes the new URL."""

    tracker: UpstreamTracker

    def initialize(self, tracker: UpstreamTracker) -> None:
        self.tracker = tracker

    def get(self) -> None:
        self.finish(READY)

    def post(self) -> None:
        self.tracker.set_url(None, "restarting")
        self._auto_finish = False
        self.request.connection.detach().close()  # type: ignore[union-attr]


async def test_a_restart_through_the_relay_waits_out_its_no_upstream() -> None:
    """The relay's no_upstream (503) while the remote restarts is the tunnel being away, as a
    502 was: the MCP tool keeps asking until the remote answers again."""
    tracker = UpstreamTracker(LOG)
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(
        web.Application([(r"/colab/tunnel", CutTunnel, {"tracker": tracker})]),
    )
    server.add_sockets(sockets)
    remote = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    tracker.set_url(remote)
    settings = RelaySettings(local_token=LOCAL, remote_token=lambda: REMOTE, http_wait=0.2)
    relay = Relay(settings, tracker, LOG)
    url = f"http://127.0.0.1:{relay.listen(0)}/"

    async def come_back() -> None:
        """The new URL, once the tool has met the relay's no_upstream."""
        for _ in range(2000):
            if (tracker.last_error or "").startswith("no_upstream"):
                tracker.set_url(remote)
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the tool never met the relay's no_upstream")

    try:
        returning = asyncio.ensure_future(come_back())
        server_tools = build_server(ColabClient(url, LOCAL), tunnel_poll_interval=0.01)
        async with Client(server_tools) as tools:
            result = await tools.call_tool(
                "colab_tunnel_action", {"action": "restart", "wait_s": 20}
            )
        await returning
    finally:
        await relay.close()
        server.stop()
    assert not result.is_error, result.content
    assert result.structured_content == READY
