"""The typed client of the remote REST API (/colab/status, /colab/gpu, /colab/tunnel,
/colab/ports).

For the local side (MCP tools, relay, launcher, scripts): it imports nothing of the extension.
`ColabClient` is async: its requests go over http1.KeepAliveClient, the kept-alive connections
the relay and `cp` use (one round trip a request, not a TCP and a TLS handshake each), on
whatever asyncio loop runs it. `ColabClientSync` does the same over urllib (http_sync.py, the
one blocking request of the package) for command lines and notebooks. httpx was measured and
not taken: slower on both and dearer to import (docs/performance.md, "Request paths").

Every failure is one exception, `RemoteError`, with a `kind`, a `message` and a `hint` a user
can act on (the kinds of problems.py; local/failures.py names network failures and Cloudflare's
answers, for the relay too): the remote was unreachable (`dns_error`, `connection_refused`,
`tls_error`, `timeout`, `unreachable`), refused the token (`forbidden`), is not a server with
this extension (`not_found`), has no tunnel behind its hostname (`no_tunnel`, Cloudflare's
530 / error 1033), or answered with an error of its own (its `message`, or its
`{"error": {"kind", "message", "hint"}}` -- the local relay's `no_upstream`, `bad_local_token`,
... -- surfaced as they are; remote_error.py says what an answer means). The token travels
only in the `Authorization` header: it is never logged nor put in an error.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Mapping

from tornado.httputil import HTTPHeaders

from .. import http_sync
from ..http1 import KeepAliveClient, UpstreamError
from ..states import TUNNEL_ACTIONS, TunnelAction
from .remote_error import JSONObject, RemoteError, error_for_exception, result_or_error

__all__ = [
    "TUNNEL_ACTIONS",
    "ColabClient",
    "ColabClientSync",
    "JSONObject",
    "RemoteError",
    "TunnelAction",
    "error_for_exception",
    "normalize_url",
    "result_or_error",
]

# Seconds. A read is cheap on the remote (cached); an action waits for cloudflared to stop.
CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0
ACTION_TIMEOUT = 60.0
MAX_BODY = 64 * 1024 * 1024


def normalize_url(url: str) -> str:
    """The server's base URL with one trailing slash; RemoteError('invalid_url') if unusable."""
    raw = url.strip()
    shown = _without_secrets(raw)
    try:
        parts = urllib.parse.urlsplit(raw)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as e:
        raise RemoteError("invalid_url", f"{shown!r} is not a URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError("invalid_url", f"{shown!r} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        # A token in the URL would end up in logs and error messages: refuse it.
        raise RemoteError(
            "invalid_url",
            "the URL must not carry credentials, a query or a fragment",
            "Give only scheme, host, port and base path; pass the token separately.",
        )
    path = parts.path.rstrip("/") + "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _without_secrets(url: str) -> str:
    """The URL without its query, fragment and user info, which may hold a token."""
    url = url.split("#", 1)[0].split("?", 1)[0]
    scheme, sep, rest = url.rpartition("//")
    return (
        scheme
        + sep
        + rest.split("/", 1)[0].rpartition("@")[2]
        + ("/" + rest.split("/", 1)[1] if "/" in rest else "")
    )


def _endpoint(base: str, path: str, query: Mapping[str, str] | None = None) -> str:
    url = base + path
    return url + ("?" + urllib.parse.urlencode(query) if query else "")


def _tunnel_query(logs: int) -> dict[str, str]:
    if isinstance(logs, bool) or not isinstance(logs, int):
        raise TypeError(f"logs must be an int, not {type(logs).__name__}")
    return {"logs": str(logs)} if logs else {}


def _action_body(action: str) -> bytes:
    if action not in TUNNEL_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(TUNNEL_ACTIONS)}, not {action!r}")
    return json.dumps({"action": action}).encode()


# ----- what both clients share --------------------------------------------------------------


class _Client:
    """What both clients share: the URL, the time bounds and the headers of every request."""

    def __init__(
        self,
        url: str,
        token: str | None,
        bounds: Mapping[str, float],
        headers: Mapping[str, str] | None,
    ) -> None:
        for name, value in bounds.items():
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        self.url = normalize_url(url)
        self.timeout = float(bounds["timeout"])
        self.action_timeout = float(bounds["action_timeout"])
        self._headers = {"Accept": "application/json", **(headers or {})}
        # For the file transfers (local/files), which speak to the same remote on their own
        # streamed client. Never in repr, logs or errors.
        self.token = token or None
        if token:
            self._headers["Authorization"] = f"token {token}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _prepare(
        self, method: str, path: str, query: Mapping[str, str] | None, body: bytes | None
    ) -> tuple[str, float, dict[str, str]]:
        """The request's URL, time bound and headers."""
        url = _endpoint(self.url, path, query)
        timeout = self.action_timeout if method == "POST" else self.timeout
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        return url, timeout, headers


# ----- the async client -------------------------------------------------------------------


class ColabClient(_Client):
    """Async client of a remote server's /colab/* API (or of the local relay in front of it).

    url: the server's base URL, e.g. ``https://<words>.trycloudflare.com``.
    token: the Jupyter token (sent as ``Authorization: token <token>``); None sends none.
    timeout / action_timeout / connect_timeout: bounds in seconds for reads, for POST
    actions (stopping cloudflared takes a while) and for connecting.
    headers: extra headers for every request (e.g. Cloudflare Access service tokens).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = REQUEST_TIMEOUT,
        action_timeout: float = ACTION_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        bounds = {
            "timeout": timeout,
            "action_timeout": action_timeout,
            "connect_timeout": connect_timeout,
        }
        super().__init__(url, token, bounds, headers)
        self.connect_timeout = float(connect_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kept: KeepAliveClient | None = None

    async def status(self) -> JSONObject:
        """GET /colab/status: server, runtime, resources, tunnel and GPU summaries."""
        return await self._request("GET", "colab/status")

    async def gpu(self, processes: bool = True) -> JSONObject:
        """GET /colab/gpu: one sample of every GPU (memory in bytes)."""
        return await self._request("GET", "colab/gpu", {"processes": _bool(processes)})

    async def tunnel(self, logs: int = 0) -> JSONObject:
        """GET /colab/tunnel: the tunnel's state, URL, error and, with logs > 0, its last lines."""
        return await self._request("GET", "colab/tunnel", _tunnel_query(logs))

    async def tunnel_action(self, action: TunnelAction) -> JSONObject:
        """POST /colab/tunnel {"action": ...}: the snapshot right after the action."""
        return await self._request("POST", "colab/tunnel", body=_action_body(action))

    async def ports(self) -> JSONObject:
        """GET /colab/ports: the remote's listening ports, their process and kernel, and the
        `--forward` flag that reaches each from this machine."""
        return await self._request("GET", "colab/ports")

    async def _request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> JSONObject:
        url, timeout, headers = self._prepare(method, path, query, body)
        try:
            response = await self._http().fetch(
                url,
                method,
                HTTPHeaders(headers),
                body,
                min(self.connect_timeout, timeout),
                timeout,
            )
        except UpstreamError as e:
            raise error_for_exception(e.cause, url, timeout) from None
        answer = {k.lower(): v for k, v in response.headers.get_all()}
        return result_or_error(response.code, answer, response.body, url, method)

    def _http(self) -> KeepAliveClient:
        """The kept connections of the running loop: a client may serve more than one loop
        in turn (one asyncio.run after another), and a connection belongs to its loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._kept is None:
            if self._kept is not None and self._loop is not None and self._loop.is_closed():
                self._kept.close()  # its loop ended: only its sockets are left to close
            self._loop, self._kept = loop, KeepAliveClient()
        return self._kept

    async def aclose(self) -> None:
        """Close the kept connections (a later request opens a new one)."""
        if self._kept is not None and self._loop is asyncio.get_running_loop():
            self._kept.close()
        self._loop = self._kept = None


def _bool(value: bool) -> str:
    return "true" if value else "false"


# ----- the sync client --------------------------------------------------------------------


class ColabClientSync(_Client):
    """`ColabClient` over urllib, for scripts, command lines and notebook cells."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = REQUEST_TIMEOUT,
        action_timeout: float = ACTION_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            url, token, {"timeout": timeout, "action_timeout": action_timeout}, headers
        )

    def status(self) -> JSONObject:
        return self._request("GET", "colab/status")

    def gpu(self, processes: bool = True) -> JSONObject:
        return self._request("GET", "colab/gpu", {"processes": _bool(processes)})

    def tunnel(self, logs: int = 0) -> JSONObject:
        return self._request("GET", "colab/tunnel", _tunnel_query(logs))

    def tunnel_action(self, action: TunnelAction) -> JSONObject:
        return self._request("POST", "colab/tunnel", body=_action_body(action))

    def ports(self) -> JSONObject:
        return self._request("GET", "colab/ports")

    def _request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> JSONObject:
        url, timeout, headers = self._prepare(method, path, query, body)
        try:
            status, answer, raw = http_sync.request(
                url, method, headers, body, timeout=timeout, max_body=MAX_BODY
            )
        except (OSError, ValueError) as e:  # URLError is an OSError
            raise error_for_exception(e, url, timeout) from None
        return result_or_error(status, answer, raw, url, method)
