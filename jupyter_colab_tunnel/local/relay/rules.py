"""The relay's rules as plain functions: who may ask, what is forwarded, and what goes upstream.

Pure over tornado's request and header types, so each rule is testable without a server.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

from tornado import httputil, web

from ...problems import KINDS, Kind, Problem

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# Not forwarded in either direction: they describe one hop, or carry the local credentials.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "authorization", "cookie", "origin"}
NOT_RETURNED = HOP_BY_HOP | {"content-length", "set-cookie"}
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def hostname(host: str) -> str:
    """The host name of a Host header value (without port; IPv6 without brackets)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def query_value(query: str, name: str) -> str | None:
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k == name:
            return v
    return None


def connection_tokens(headers: httputil.HTTPHeaders) -> set[str]:
    return {t.strip().lower() for t in headers.get("Connection", "").split(",") if t.strip()}


def origin_allowed(origin: str, port: int, allowed: frozenset[str]) -> bool:
    own = {f"http://{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}
    return origin in own or origin in allowed


def token_ok(request: httputil.HTTPServerRequest, local_token: str) -> bool:
    """The relay's own token, from `Authorization: token|bearer ...` or `?token=`."""
    given = ""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("token", "bearer"):
        given = value.strip()
    if not given:
        given = query_value(request.query, "token") or ""
    return bool(given) and hmac.compare_digest(given.encode(), local_token.encode())


def refusal(
    request: httputil.HTTPServerRequest,
    port: int,
    local_token: str,
    allowed_origins: frozenset[str],
) -> tuple[int, str, str] | None:
    """(status, reason, message) when a local request is not allowed, else None."""
    host = hostname(request.host or "")
    if host not in LOOPBACK_HOSTS:
        return (
            403,
            "host_not_allowed",
            f"Host {request.host!r} is not a loopback name: the relay answers only "
            "127.0.0.1, localhost and [::1] (protection against DNS rebinding).",
        )
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, port, allowed_origins):
        return (
            403,
            "origin_not_allowed",
            f"Cross-origin request from {origin!r} refused. Allow it with "
            "--allow-origin if a page there must use the relay.",
        )
    if not token_ok(request, local_token):
        return (
            403,
            "bad_local_token",
            "Missing or wrong relay token: send 'Authorization: token <token>' with the "
            "token from the relay's --local-token-file.",
        )
    return None


def remote_headers(
    extra: Mapping[str, str],
    token: str | None,
    request: httputil.HTTPServerRequest | None = None,
) -> httputil.HTTPHeaders:
    """The headers of a request to the remote: the local request's end-to-end headers (if
    any), then the extra headers (e.g. Cloudflare Access), then the remote token."""
    headers = httputil.HTTPHeaders()
    if request is not None:
        drop = NOT_FORWARDED | connection_tokens(request.headers)
        for name, value in request.headers.get_all():
            if name.lower() not in drop:
                headers.add(name, value)
    else:
        headers["Accept"] = "application/json"
    for name, value in extra.items():
        headers[name] = value
    if token:
        headers["Authorization"] = f"token {token}"
    return headers


def upstream_url(dial: str, uri: str, ws: bool = False) -> str:
    """The remote URL for a local path+query, without the local token."""
    parts = urlsplit(uri)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, True) if k != "token"])
    url = dial + parts.path + (f"?{query}" if query else "")
    if ws:
        url = "ws" + url.removeprefix("http")
    return url


# The kind of the relay's error bodies whose reason is not a kind (tornado's own errors).
_STATUS_KINDS: dict[int, Kind] = {400: "bad_request", 403: "forbidden", 404: "not_found"}


def error_body(status: int, reason: str, message: str, hint: str = "") -> str:
    """The JSON of the relay's own errors, readable by both of its kinds of client:
    `message` and `reason` at the top, which jupyter_server's gateway client shows to a
    JupyterLab user ("Error from Gateway: [message] reason"; the message ends with the hint),
    and `error` {kind, message, hint}, the problem that client.py (and so the MCP tools)
    reads. `reason` is a problems.py kind; a hint left out is the kind's own."""
    kind: Kind
    if reason in KINDS:
        kind = reason
    else:
        kind = _STATUS_KINDS.get(status, "server_error" if status >= 500 else "http_error")
    problem = Problem(kind, message, hint)
    shown = f"{message} Hint: {problem.hint}"
    return json.dumps({"message": shown, "reason": reason, "error": problem.as_dict()})


def write_error(
    handler: web.RequestHandler, status: int, reason: str, message: str, hint: str = ""
) -> None:
    """Answer with one of the relay's own errors (the one writer of every handler)."""
    handler.clear()
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json")
    handler.set_header("Cache-Control", "no-store")
    handler.finish(error_body(status, reason, message, hint))
