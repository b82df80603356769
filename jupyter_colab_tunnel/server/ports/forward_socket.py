"""The forward route's websocket half: the app is dialled before the client's handshake is
accepted (so a port where nothing listens is an HTTP answer, and the subprotocol accepted is the
app's choice), then messages are pumped both ways and each side's close is passed on."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import (
    WebSocketClientConnection,
    WebSocketClosedError,
    WebSocketError,
    WebSocketHandler,
    websocket_connect,
)

from ... import forwarding
from ...problems import Kind
from .forwarder import CONNECT_TIMEOUT, HEADER_TIMEOUT, app_headers

if TYPE_CHECKING:
    from tornado import httputil

    from .forwarder import Forwarder

# The client's handshake with this route; the route makes its own with the app.
WS_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
        "content-length",
    }
)


class ForwardSocketMixin(WebSocketHandler):
    """ForwardHandler's websocket methods; the head (auth, policy, path, errors) is its own."""

    _upstream_ws: WebSocketClientConnection | None
    _pump: asyncio.Task[None] | None
    _opened: bool
    _port: int
    _app_path: str

    if TYPE_CHECKING:

        @property
        def forwarder(self) -> Forwarder: ...

        def _refuse(self, status: int, kind: Kind, message: str, hint: str = "") -> None: ...

        def _target(self, scheme: str) -> tuple[str, httputil.HTTPHeaders]: ...

        async def _dial_failed(self, error: BaseException) -> None: ...

    async def _websocket(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            # Checked before the dial too, so that the app never hears of a refused page.
            self._refuse(
                403,
                "forbidden",
                f"cross-origin websocket from {origin!r} refused "
                "(ServerApp.allow_origin allows other origins)",
            )
            return
        url, headers = self._target("ws")
        offered = [
            s.strip()
            for s in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if s.strip()
        ]
        request = HTTPRequest(
            url,
            headers=app_headers(headers, WS_HANDSHAKE),
            connect_timeout=CONNECT_TIMEOUT,
            request_timeout=HEADER_TIMEOUT,
        )
        stats = self.forwarder.stats
        stats.websockets += 1
        try:
            self._upstream_ws = await websocket_connect(
                request,
                subprotocols=offered or None,
                max_message_size=forwarding.FORWARD_MAX_MESSAGE,
            )
        except HTTPClientError as e:
            if e.code == 599:  # no answer at all (tornado's code for a timeout or a cut)
                await self._dial_failed(e)
                return
            self._refuse(
                502,
                "forward_failed",
                f"the app at 127.0.0.1:{self._port} refused the websocket handshake "
                f"({e.code} {e.message})",
            )
            return
        except WebSocketError as e:
            self._refuse(
                502,
                "forward_failed",
                f"the app at 127.0.0.1:{self._port} answered the websocket handshake with plain "
                f"HTTP: {self._app_path!r} is not one of its websocket endpoints ({e})",
            )
            return
        except (OSError, StreamClosedError, asyncio.TimeoutError) as e:
            await self._dial_failed(e)
            return
        upstream = self._upstream_ws
        # The handshake (select_subprotocol, then open()); returns when the socket has closed.
        await super().get(*self.path_args)
        if self.get_status() != 101:
            upstream.close()  # refused after all (a bad Connection header)

    @property
    def max_message_size(self) -> int:
        return forwarding.FORWARD_MAX_MESSAGE

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        chosen = self._upstream_ws.selected_subprotocol if self._upstream_ws else None
        return chosen if chosen in subprotocols else None

    def open(self, *args: str, **kwargs: str) -> None:
        self._opened = True
        self.forwarder.stats.open_websockets += 1
        self._pump = asyncio.ensure_future(self._pump_from_app())

    async def _pump_from_app(self) -> None:
        upstream = self._upstream_ws
        assert upstream is not None
        while True:
            message = await upstream.read_message()
            if message is None:
                break
            try:
                await self.write_message(message, binary=isinstance(message, bytes))
            except WebSocketClosedError:
                return
            self.forwarder.stats.bytes_from_apps += len(message)
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            self.close(forwarding.close_code_to_pass(upstream.close_code), upstream.close_reason)

    async def on_message(self, message: str | bytes) -> None:
        upstream = self._upstream_ws
        if upstream is None:
            return
        try:
            await upstream.write_message(message, binary=isinstance(message, bytes))
        except WebSocketClosedError:
            self.close(forwarding.close_code_to_pass(upstream.close_code), upstream.close_reason)
            return
        self.forwarder.stats.bytes_to_apps += len(message)

    def on_close(self) -> None:
        if self._upstream_ws is None:
            return
        if self._opened:
            self.forwarder.stats.open_websockets -= 1
        self._upstream_ws.close(forwarding.close_code_to_pass(self.close_code), self.close_reason)
        self._upstream_ws = None
