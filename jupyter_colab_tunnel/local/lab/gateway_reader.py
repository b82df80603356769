"""Reads the remote's JSON through the gateway connection of a local Jupyter server.

The gateway (normally the relay) is reached with `GatewayClient`'s own URL, headers, token (and
its token renewer), TLS and cookie settings, as the server's kernel requests are; an answer
means what it means to every other client of the package (remote_error.py), so a relay's
`remote_gone` or a Cloudflare 530 keeps its kind and hint. Nothing is retried: a poll that fails
is answered at once and the next poll asks again.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Literal

from jupyter_server.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from ...problems import ColabTunnelError, Problem
from ..remote_error import JSONObject, RemoteError, error_for_exception, result_or_error

# What the local server serves under /colab/remote/<name>, and where the gateway has it.
RemotePath = Literal["status", "gpu", "tunnel", "relay"]
GATEWAY_PATHS: dict[RemotePath, str] = {
    "status": "colab/status",
    "gpu": "colab/gpu",
    "tunnel": "colab/tunnel",
    "relay": "relay/status",
}
# Seconds. Longer than the relay's wait for a live remote during a switch (`connect --wait`,
# default 20 s), so that a switch reads as the relay's own answer, not as a timeout here;
# GatewayClient's own request timeout is sized for kernel launches (a minute or more).
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0


class LabRefusal(ColabTunnelError):
    """Why `/colab/remote/<name>` has nothing to show, with the HTTP status to answer."""

    def __init__(self, problem: Problem, status: int) -> None:
        super().__init__(problem)
        self.status = status


def gateway_url(gateway: Any) -> str | None:
    """The gateway's base URL as messages name it (no trailing slash, no credentials, no query),
    or None outside gateway mode."""
    url = getattr(gateway, "url", None)
    if not isinstance(url, str) or not url.strip():
        return None
    parts = urllib.parse.urlsplit(url.strip())
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _connection_args(gateway: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(gateway.load_connection_args())
    args["connect_timeout"] = min(
        float(args.get("connect_timeout") or CONNECT_TIMEOUT), CONNECT_TIMEOUT
    )
    args["request_timeout"] = READ_TIMEOUT
    # A JSON read follows no redirect: a gateway redirecting it is a misconfiguration to name
    # (a login page), not a place to send the gateway's token.
    args["follow_redirects"] = False
    return args


def refusal_for(error: RemoteError, name: RemotePath, base: str) -> LabRefusal:
    """What the local server answers for the gateway's failure: 404 where the gateway has no
    such thing (the item hides), 503 for a gone remote, 504 for a timeout, else 502."""
    if error.kind == "not_found":
        if name == "relay":
            return LabRefusal(
                Problem(
                    "not_a_relay",
                    f"the gateway at {base} has no /relay/status: it is not "
                    "`jupyter colab-tunnel connect`",
                ),
                404,
            )
        return LabRefusal(
            Problem(
                "no_extension",
                f"the gateway at {base} has no /{GATEWAY_PATHS[name]}: it is not a Jupyter "
                "server with jupyter-colab-tunnel (a plain Jupyter gateway?)",
            ),
            404,
        )
    status = {"remote_gone": 503, "no_upstream": 503, "timeout": 504}.get(error.kind, 502)
    return LabRefusal(error.problem, status)


async def read_remote(gateway: Any, name: RemotePath) -> JSONObject:
    """The JSON object the gateway answers for `name`; LabRefusal otherwise."""
    base = gateway_url(gateway)
    if base is None:
        raise LabRefusal(
            Problem(
                "not_gateway_mode",
                "this Jupyter server is not in gateway mode (no GatewayClient.url): its kernels "
                "run here, not on a remote",
            ),
            404,
        )
    # Requested where GatewayClient sends kernel requests (its URL as configured); named in
    # messages without credentials or query.
    url = f"{base}/{GATEWAY_PATHS[name]}"
    target = url_path_join(str(gateway.url).strip(), GATEWAY_PATHS[name])
    request = HTTPRequest(target, method="GET", **_connection_args(gateway))
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except Exception as exc:  # every failure to get an answer is named
        raise refusal_for(error_for_exception(exc, url, READ_TIMEOUT), name, base) from None
    headers = {k.lower(): v for k, v in response.headers.get_all()}
    try:
        return result_or_error(response.code, headers, response.body or b"", url)
    except RemoteError as error:
        raise refusal_for(error, name, base) from None
