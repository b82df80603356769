"""One dial of a kernel websocket's upstream: the local handshake's path, query, headers and
subprotocols sent to the remote's tunnel URL, and what a refusal there means."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tornado import httputil, websocket
from tornado.httpclient import HTTPClientError, HTTPRequest

from ...problems import Kind
from ..failures import Failure, classify_exception, classify_status
from ..upstream import Upstream

if TYPE_CHECKING:
    from .server import Relay

# What the relay reads from either side; a frame for the remote is checked against
# RelaySettings.ws_max_message (what the remote accepts) before it is sent.
MAX_WS_MESSAGE = 512 * 1024 * 1024
# The kind of a refusal by the remote Jupyter server itself: dialling again will not help.
KERNEL_REFUSED: Kind = "remote_refused"


async def dial_kernel(
    relay: Relay, upstream: Upstream, local: httputil.HTTPServerRequest
) -> websocket.WebSocketClientConnection | Failure:
    """One try at `upstream`: the connection, or why not (a KERNEL_REFUSED failure is final;
    the others may pass when the tunnel is back or has moved)."""
    settings = relay.settings
    request = HTTPRequest(
        relay.upstream_url(upstream, local.uri or "/", ws=True),
        headers=relay.upstream_headers(local),
        connect_timeout=settings.connect_timeout,
        request_timeout=settings.connect_timeout,
        validate_cert=True,
        ca_certs=settings.ca_certs,
    )
    protocols = [
        p.strip() for p in local.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    try:
        return await websocket.websocket_connect(
            request,
            subprotocols=protocols or None,
            ping_interval=settings.ping_interval,
            max_message_size=MAX_WS_MESSAGE,
        )
    except HTTPClientError as e:
        body = e.response.body if e.response is not None else b""
        failure = classify_status(e.code, body or b"", upstream.url)
        if failure is not None:
            return failure
        if e.code == 599:
            return classify_exception(e, upstream.url)
        # The remote Jupyter server itself refused (403 token, 404 kernel).
        return Failure(
            KERNEL_REFUSED,
            f"the remote answered {e.code} to the kernel websocket",
            "403: check the remote token; 404: the kernel no longer exists.",
            e.code,
            False,
        )
    except Exception as e:
        return classify_exception(e, upstream.url)
