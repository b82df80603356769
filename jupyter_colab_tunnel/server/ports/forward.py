"""The forward route: `<base_url>colab/forward/<PORT><path>` reaches `127.0.0.1:PORT<path>`.

One handler serves HTTP (any method, bodies streamed both ways) and websockets (an `Upgrade:
websocket` GET) on the same URL. Everything is decided on the request's head, before a byte of
its body is read: the Jupyter token (the hop's, never handed to the app: `forwarding.unwrap`),
the `colab` permission, the port (`PortPolicy`) and the path (`forwarding.escapes`). The app is
then dialled, and only then is the body read, chunk by chunk, each written to the app before
the next is read; the answer is written and flushed to the client piece by piece. A websocket
is dialled before the client's handshake is accepted, so a port where nothing listens is an
HTTP answer, and the subprotocol accepted is the app's choice.
"""

from __future__ import annotations

from http.client import responses
from typing import Any

from jupyter_server.auth.utils import HTTP_METHOD_TO_AUTH_ACTION
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import ensure_async
from tornado import httputil, web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler

from ... import forwarding
from ...http1 import STREAMED_BODY_LIMIT, Exchange, UpstreamError
from ...problems import Kind
from ..handlers import (
    AUTH_RESOURCE,
    NO_CREDENTIALS,
    ColabServicesMixin,
    TokenHintMixin,
    jupyter_refusal,
)
from .forward_socket import WS_HANDSHAKE, ForwardSocketMixin
from .forwarder import (
    CONNECT_TIMEOUT,
    HEADER_TIMEOUT,
    HOP_BY_HOP,
    HOP_CREDENTIALS_PREFIX,
    Forwarder,
    ForwardStats,
    app_headers,
    clip,
    describe,
    error_body,
    refused_connection,
)

# Where they were before the websocket half and the shared parts had modules of their own.
__all__ = [
    "CONNECT_TIMEOUT",
    "HEADER_TIMEOUT",
    "HOP_BY_HOP",
    "HOP_CREDENTIALS_PREFIX",
    "WS_HANDSHAKE",
    "ForwardHandler",
    "ForwardStats",
    "Forwarder",
    "app_headers",
    "clip",
    "error_body",
    "forward_handlers",
]

# The methods whose body may come without a Content-Length (sent on chunked).
CHUNKED_METHODS = frozenset({"POST", "PUT", "PATCH"})


# The kind of Jupyter's own refusals (write_error).


@web.stream_request_body
class ForwardHandler(
    ForwardSocketMixin,
    ColabServicesMixin,
    TokenHintMixin,
    ExtensionHandlerMixin,
    WebSocketHandler,
    JupyterHandler,
):
    """`colab/forward/(port)(path)`: HTTP and websockets to 127.0.0.1:port, for token holders."""

    auth_resource = AUTH_RESOURCE

    # ----- the head: auth, policy, path, then the app is dialled ------------------------

    async def prepare(self) -> None:  # type: ignore[override]
        self._exchange: Exchange | None = None
        self._upload_error: UpstreamError | None = None
        self._upstream_ws = None
        self._pump = None
        self._opened = False
        self._client_gone = False
        self._port = 0
        self._app_path = "/"
        # Jupyter's prepare: Host check, the token, XSRF for a cookie-only request; an unknown
        # user is refused there (get_login_url below: 403, never a redirect to a login page).
        await super().prepare()
        if self._finished:
            return
        if self.current_user is None:
            raise web.HTTPError(403, NO_CREDENTIALS)
        method = self.request.method or "GET"
        action = "execute" if self._upgrading() else HTTP_METHOD_TO_AUTH_ACTION.get(method, "write")
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403, f"User is not authorized to {action} on resource: colab.")
        port_text = self.path_args[0] if self.path_args else ""
        self._port = int(port_text) if port_text.isdigit() and len(port_text) <= 5 else 0
        self._app_path = self._raw_app_path(port_text)
        reason = self.forwarder.policy.check(self._port)
        if reason is not None:
            self._refuse(403, "port_not_allowed", reason)
            return
        if forwarding.escapes(self._app_path):
            self._refuse(
                400,
                "forward_path_refused",
                f"the path {clip(self._app_path)!r} could leave the forward route "
                "(a '.' or '..' segment or a backslash, raw or percent-encoded)",
            )
            return
        if self._upgrading():
            return  # dialled in get(): a websocket has no body to read first
        # The server-wide body limit (Jupyter's 512 MiB) would cut a large upload; nothing of
        # it is held here, and an upload may take as long as it takes.
        self.request.connection.set_max_body_size(STREAMED_BODY_LIMIT)  # type: ignore[union-attr]
        self.request.connection.set_body_timeout(None)  # type: ignore[union-attr]
        await self._open_exchange()

    def get_login_url(self) -> str:
        raise web.HTTPError(403, NO_CREDENTIALS)

    def set_signed_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        """Never (see set_cookie), and not signed for nothing on every request."""

    set_secure_cookie = set_signed_cookie

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        """Never: Jupyter sets its login cookie after a token (and _xsrf), and on an app's
        answer that cookie would be handed to the app's page, the local browser and, through
        the relay's envelope, every forwarded app: a credential for this server."""

    def _upgrading(self) -> bool:
        return (
            self.request.method == "GET"
            and self.request.headers.get("Upgrade", "").lower() == "websocket"
        )

    def _raw_app_path(self, port_text: str) -> str:
        """The app's path as the client wrote it (tornado's path_args are percent-decoded, and
        `/a%2Fb` must reach the app as `/a%2Fb`)."""
        raw = self.request.path
        marker = forwarding.ROUTE_PREFIX + port_text
        at = raw.find(marker, len(self.base_url.rstrip("/")))
        rest = raw[at + len(marker) :] if at >= 0 else (self.path_args[1] or "")
        return rest or "/"

    def _target(self, scheme: str) -> tuple[str, httputil.HTTPHeaders]:
        headers, query = forwarding.unwrap(
            self.request.headers, self.request.query, f"127.0.0.1:{self._port}"
        )
        url = f"{scheme}://127.0.0.1:{self._port}{self._app_path}" + (f"?{query}" if query else "")
        for name in {n for n in headers if n.lower().startswith(HOP_CREDENTIALS_PREFIX)}:
            del headers[name]
        return url, headers

    async def _open_exchange(self) -> None:
        url, headers = self._target("http")
        # Expect: 100-continue was this route's to answer (tornado does, once prepare() let
        # the request in); the body is on its way to the app regardless.
        headers = app_headers(headers, frozenset({"content-length", "expect"}))
        length_text = self.request.headers.get("Content-Length")
        chunked = "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()
        length = int(length_text) if length_text and length_text.isdigit() and not chunked else None
        method = self.request.method or "GET"
        if chunked and method not in CHUNKED_METHODS:
            # http1's client frames a body of unknown length for these methods only.
            self._refuse(
                411,
                "bad_request",
                f"a {method} with a chunked body (no Content-Length) cannot be forwarded",
                "Send the body with a Content-Length, or use POST, PUT or PATCH.",
            )
            return
        stats = self.forwarder.stats
        stats.requests += 1
        try:
            self._exchange = await self.forwarder.client.open(
                url, method, headers, CONNECT_TIMEOUT, length
            )
        except UpstreamError as e:
            await self._dial_failed(e)

    async def _dial_failed(self, error: BaseException) -> None:
        if refused_connection(error):
            listening = await self.ports.hint()
            self._refuse(
                502,
                "port_not_listening",
                f"nothing listens at 127.0.0.1:{self._port} on the remote",
                f"Listening there now: {listening}. Start the app first (on 127.0.0.1 or "
                "0.0.0.0), or forward one of those ports.",
            )
        else:
            self._refuse(
                502,
                "forward_failed",
                f"could not reach the app at 127.0.0.1:{self._port}: {describe(error)}",
            )

    # ----- errors: the relay's JSON shape, each logged once ------------------------------

    def _refuse(self, status: int, kind: Kind, message: str, hint: str = "") -> None:
        self.forwarder.stats.failures[kind] += 1
        self.log.warning(
            "forward %s %s -> %d %s: %s",
            self.request.method,
            clip(self._app_path),
            status,
            kind,
            message,
        )
        if self._headers_written:
            self._abandon()
            return
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(error_body(kind, message, hint) + "\n")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Jupyter's own refusals (no token, not authorized, a foreign Host), in the same shape."""
        refusal = jupyter_refusal(status_code, self._reason, kwargs.get("exc_info"))
        self.clear()
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(refusal.answer_body() + "\n")

    def _abandon(self) -> None:
        """The answer was under way when it broke: cut the client's connection (a short body
        is the only honest signal left), then end the handler without writing more."""
        connection = self.request.connection
        if connection is not None:
            connection.close()  # type: ignore[attr-defined]
        if not self._finished:
            self.finish()

    # ----- HTTP: every method, bodies streamed both ways ---------------------------------

    async def data_received(self, chunk: bytes) -> None:
        if self._exchange is None or self._upload_error is not None or self._finished:
            return
        try:
            await self._exchange.send(chunk)
        except UpstreamError as e:
            self._upload_error = e  # answered when the body has ended (see _forward)
            return
        self.forwarder.stats.bytes_to_apps += len(chunk)

    async def _forward(self) -> None:
        if self._finished or self._exchange is None:
            return
        if self._upload_error is not None:
            self._refuse(
                502,
                "forward_failed",
                f"the app at 127.0.0.1:{self._port} closed the connection while the request "
                f"body was sent ({describe(self._upload_error)})",
            )
            return
        try:
            await self._exchange.respond(self, HEADER_TIMEOUT)
        except UpstreamError as e:
            if self._client_gone:  # on_connection_close cut the app's side: not the app's fault
                self._client_left()
                return
            timeout = isinstance(e.cause, TimeoutError)
            self._refuse(
                504 if timeout else 502,
                "forward_failed",
                f"the app at 127.0.0.1:{self._port} "
                + ("gave no answer in time" if timeout else "broke off its answer")
                + f": {describe(e)}",
            )
            return
        except (StreamClosedError, OSError):
            # Our own client went away mid-answer (respond() has closed the app's connection).
            self._client_left()
            return
        if not self._finished:
            self.finish()

    def _client_left(self) -> None:
        self.forwarder.stats.failures["client_left"] += 1
        self.log.info(
            "forward %s %s: the client left during the answer",
            self.request.method,
            clip(self._app_path),
        )
        self._abandon()

    async def response_started(self, code: int, reason: str, headers: httputil.HTTPHeaders) -> None:
        self.set_status(code, reason or responses.get(code, "Unknown"))
        self._headers = httputil.HTTPHeaders()  # none of Jupyter's (its CSP is not the app's)
        for name, value in app_headers(headers).get_all():
            self.add_header(name, value)
        # Each piece goes out as it is flushed: with Nagle's algorithm on (tornado's default
        # until a response finishes) a piece after the head waits for the client's delayed ACK,
        # about 40 ms, which holds a server-sent event back.
        self.request.connection.stream.set_nodelay(True)  # type: ignore[union-attr]
        if "Content-Length" not in headers:
            # A stream (server-sent events, chunked): its head goes now, so that the client
            # sees the answer start. An answer of known length sends its head with its body.
            await self.flush()

    async def response_data(self, chunk: bytes) -> None:
        self.write(chunk)
        self.forwarder.stats.bytes_from_apps += len(chunk)
        await self.flush()  # the next piece is read from the app once the client took this one

    def on_connection_close(self) -> None:
        self._client_gone = True
        if self._upstream_ws is None and self._exchange is not None:
            self._exchange.close()  # the app sees its client leave (an event stream stops)
        super().on_connection_close()

    async def get(self, *args: str) -> None:
        if self._finished:
            return
        if self._upgrading():
            await self._websocket()
        else:
            await self._forward()

    async def head(self, *args: str) -> None:
        await self._forward()

    async def post(self, *args: str) -> None:
        await self._forward()

    async def put(self, *args: str) -> None:
        await self._forward()

    async def patch(self, *args: str) -> None:
        await self._forward()

    async def delete(self, *args: str) -> None:
        await self._forward()

    async def options(self, *args: str) -> None:
        await self._forward()

    # ----- websockets: dial the app, then accept with its subprotocol --------------------

    def check_origin(self, origin_to_satisfy_tornado: str = "") -> bool:
        """Jupyter's rules: for a websocket, the Origin matches the Host or
        ServerApp.allow_origin; for HTTP (its XSRF check of a cookie-only request), its own."""
        if not self._upgrading():
            return JupyterHandler.check_origin(self, origin_to_satisfy_tornado)
        return bool(WebSocketMixin.check_origin(self, origin_to_satisfy_tornado or None))


def forward_handlers() -> list[tuple[str, type[web.RequestHandler]]]:
    return [(forwarding.ROUTE, ForwardHandler)]
