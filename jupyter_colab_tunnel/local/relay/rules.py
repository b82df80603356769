"""The relay's rules as plain functions: who may ask, what is forwarded, and what goes upstream.

Pure over tornado's request and header types, so each rule is testable without a server.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from tornado import httputil, web

from ...http1 import HOP_BY_HOP, connection_tokens
from ...problems import KINDS, Kind, Problem

if TYPE_CHECKING:
    from ...http1 import Response

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# Accept-Encoding too: answers come back uncompressed (Cloudflare's edge would otherwise gzip
# or brotli them), so that carries_token() sees every byte it must withhold.
NOT_FORWARDED = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "cookie",
    "origin",
    "accept-encoding",
}
# The relay answers CORS for the local origins itself; the remote's own answer is not passed on.
NOT_RETURNED = HOP_BY_HOP | {
    "content-length",
    "set-cookie",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
}
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
PROXIED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

# What the local side needs of the remote, and nothing else: the remote's pages (JupyterLab's
# /lab, /tree, its 404 page) carry the remote token in their page config. Gateway mode asks for
# kernels and kernel specs (jupyter_server's GatewayClient: kernels_endpoint,
# kernelspecs_endpoint, kernelspecs_resource_endpoint; GatewaySessionManager keeps sessions
# locally), and the extension's /colab/ REST API and dashboard. Each entry is a path or a prefix
# ending in "/"; the kernel websocket is exactly /api/kernels/<id>/channels.
FORWARDED_PATHS: tuple[str, ...] = (
    "/api/kernels",
    "/api/kernels/",
    "/api/kernelspecs",
    "/api/kernelspecs/",
    "/kernelspecs/",
    # The extension's REST API: status, GPU, tunnel, ports, and the files route that `cp` and
    # the MCP file tools use (/colab/files/<path>; `cp` sends 4 MiB pieces through the relay,
    # well under MAX_FORWARDED_BODY). The forwarded ports have listeners of their own.
    "/colab",
    "/colab/",
)
KERNEL_CHANNELS_ROUTE = r"/api/kernels/([^/]+)/channels"
# A path the remote (or an edge in front of it) could read as another: dot segments, encoded
# slashes or dots, backslashes, empty segments.
_AMBIGUOUS = re.compile(r"(^|/)\.{1,2}(/|$)|%2[ef]|%5c|\\|//", re.IGNORECASE)

# CORS for --allow-origin pages: what a preflight may ask for.
CORS_METHODS = ", ".join(PROXIED_METHODS)
CORS_HEADERS = "Authorization, Content-Type, X-XSRFToken"
CORS_MAX_AGE = "600"


def forwarded(path: str) -> bool:
    """Whether a local path is one the relay forwards (FORWARDED_PATHS)."""
    if _AMBIGUOUS.search(path) or _AMBIGUOUS.search(unquote(path)):
        return False
    return any(
        path.startswith(allowed) if allowed.endswith("/") else path == allowed
        for allowed in FORWARDED_PATHS
    )


def carries_token(response: Response, token: str | None) -> bool:
    """Whether an answer of the remote holds its token anywhere (headers or body): a second
    line behind FORWARDED_PATHS, since an allowed prefix still reaches the remote's HTML 404."""
    if not token:
        return False
    forms = {token.encode(), quote(token, safe="").encode()}
    head = "\n".join(f"{k}: {v}" for k, v in response.headers.get_all()).encode()
    return any(form in response.body or form in head for form in forms)


def not_forwarded_message(path: str) -> str:
    shown = ", ".join(p + ("*" if p.endswith("/") else "") for p in FORWARDED_PATHS)
    return (
        f"{shorten(path)} is not forwarded: the relay passes on only what a local Jupyter "
        f"server in gateway mode and the colab-tunnel tools need ({shown}, and the kernel "
        "websocket /api/kernels/<id>/channels). Open the remote's own pages through its tunnel URL."
    )


def clip(path: str, limit: int = 200) -> str:
    """A request path fit for a log line (headers may be up to 64 KiB)."""
    return path if len(path) <= limit else f"{path[:limit]}... ({len(path)} characters)"


def shorten(text: str, limit: int = 80) -> str:
    """A value fit to quote in a message or a log line: at most `limit` characters of it."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def is_preflight(request: httputil.HTTPServerRequest) -> bool:
    h = request.headers
    return request.method == "OPTIONS" and "Origin" in h and "Access-Control-Request-Method" in h


def cors_headers(origin: str | None, preflight: bool = False) -> dict[str, str]:
    """The CORS headers of an answer to an allowed cross-origin page (none without an Origin)."""
    if origin is None:
        return {}
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if preflight:
        headers["Access-Control-Allow-Methods"] = CORS_METHODS
        headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    return headers


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


def host_refusal(request: httputil.HTTPServerRequest) -> tuple[int, str, str] | None:
    """(403, reason, message) for a Host that is not a loopback name (the relay and its
    forwarded ports alike: protection against DNS rebinding), else None."""
    if hostname(request.host or "") in LOOPBACK_HOSTS:
        return None
    return (
        403,
        "host_not_allowed",
        f"Host {shorten(request.host or '')} is not a loopback name: the relay answers only "
        "127.0.0.1, localhost and [::1] (protection against DNS rebinding).",
    )


def refusal(
    request: httputil.HTTPServerRequest,
    port: int,
    local_token: str,
    allowed_origins: frozenset[str],
    check_token: bool = True,
) -> tuple[int, str, str] | None:
    """(status, reason, message) when a local request is not allowed, else None.
    check_token=False: a CORS preflight, which carries no credentials."""
    refused = host_refusal(request)
    if refused is not None:
        return refused
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, port, allowed_origins):
        return (
            403,
            "origin_not_allowed",
            f"Cross-origin request from {origin!r} refused. Allow it with "
            "--allow-origin if a page there must use the relay.",
        )
    if check_token and not token_ok(request, local_token):
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


def upstream_url(base: str, uri: str, ws: bool = False) -> str:
    """The remote URL for a local path+query, without the local token."""
    parts = urlsplit(uri)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, True) if k != "token"])
    url = base + parts.path + (f"?{query}" if query else "")
    if ws:
        url = "ws" + url.removeprefix("http")
    return url


# The kind of the relay's error bodies whose reason is not a kind (tornado's own errors).
_STATUS_KINDS: dict[int, Kind] = {400: "bad_request", 403: "forbidden", 404: "not_found"}


def error_body(status: int, reason: str, message: str, hint: str = "") -> str:
    """The JSON of the relay's own errors (Problem.answer_body). `reason` is a problems.py
    kind; tornado's own errors get the kind of their status. A hint left out is the kind's own."""
    kind: Kind
    if reason in KINDS:
        kind = reason
    else:
        kind = _STATUS_KINDS.get(status, "server_error" if status >= 500 else "http_error")
    return Problem(kind, message, hint).answer_body(reason)


def write_error(
    handler: web.RequestHandler, status: int, reason: str, message: str, hint: str = ""
) -> None:
    """Answer with one of the relay's own errors (the one writer of every handler)."""
    handler.clear()
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json")
    handler.set_header("Cache-Control", "no-store")
    handler.finish(error_body(status, reason, message, hint))
