"""Websockets through a forwarded port: the remote route is dialled first, then the local
handshake accepted with the subprotocol the app chose; messages are pumped both ways, every
write awaited (backpressure), close codes passed on.

Unlike a kernel websocket (kernel_socket.py), an app's websocket has no session to resume: when
the relay follows a new tunnel URL (or stops), it is closed with 1012 (service restart), and the
app's page reconnects through the forward, to the new URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tornado import websocket
from tornado.httpclient import HTTPClientError, HTTPRequest

from ... import forwarding
from ..failures import Failure, classify_exception, classify_status, no_upstream
from ..upstream import Upstream
from . import rules

if TYPE_CHECKING:
    from .forward import Forward

SERVICE_RESTART = 1012


class ForwardSocket(websocket.WebSocketHandler):
    forward: Forward

    def initialize(self, forward: Forward) -> None:
        self.forward = forward
        self.conn: websocket.WebSocketClientConnection | None = None
        self.upstream: Upstream | None = None
        self.opened = False
        self.local_closed = False
        self.reader: asyncio.Future[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self.refused_body: bytes | None = None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        rules.write_error(self, status_code, self._reason, self._reason)

    async def prepare(self) -> None:
        forward = self.forward
        refused = forward.refusal(self.request)
        if refused is not None:
            forward.answer_error(self, *refused)
            return
        conn, failure = await self._dial()
        if conn is None:
            assert failure is not None
            if self.refused_body is not None:
                # The route's own problem (a refused port; nothing listens, with the hint of
                # what does): passed on as it is, as an HTTP answer of the app's would be.
                forward.stats.errors += 1
                self.set_status(failure.status)
                self.set_header("Content-Type", "application/json")
                self.finish(self.refused_body)
                return
            if failure.status >= 500:
                forward.relay.fail(failure)
            forward.answer_error(
                self, failure.status, failure.reason, failure.message, failure.hint
            )
            return
        if self.local_closed:
            conn.close(1000, "the local client went away")
            return
        self.conn = conn

    def check_origin(self, origin: str) -> bool:
        return True  # the app's business, as with `ssh -L`: the Origin travels to it enveloped

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        chosen = self.conn.selected_subprotocol if self.conn is not None else None
        return chosen if chosen in subprotocols else None

    def open(self, *args: str, **kwargs: str) -> None:
        forward = self.forward
        self.opened = True
        forward.stats.websockets_open += 1
        forward.stats.websockets += 1
        forward.sockets.add(self)
        self._unlisten = forward.relay.tracker.listen(self._on_switch)
        self.reader = asyncio.ensure_future(self._read_upstream())

    async def _dial(self) -> tuple[websocket.WebSocketClientConnection | None, Failure | None]:
        """Connect to the remote route; connect failures are tried again within http_wait."""
        forward = self.forward
        relay = forward.relay
        settings = relay.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.http_wait
        protocols = [
            p.strip()
            for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        failure: Failure | None = None
        while not self.local_closed:
            upstream = await relay.tracker.wait_live(deadline)
            if upstream is None:
                break
            request = HTTPRequest(
                forward.route_url(upstream.url, self.request.path, ws=True),
                headers=forward.hop_headers(self.request),
                connect_timeout=settings.connect_timeout,
                request_timeout=settings.connect_timeout,
                validate_cert=True,
                ca_certs=settings.ca_certs,
            )
            try:
                conn = await websocket.websocket_connect(
                    request,
                    subprotocols=protocols or None,
                    ping_interval=settings.ping_interval,
                    max_message_size=forwarding.FORWARD_MAX_MESSAGE,
                )
            except HTTPClientError as e:
                body = (e.response.body if e.response is not None else b"") or b""
                failure = classify_status(e.code, body, upstream.url)
                if failure is None:
                    if e.code != 599:
                        self.refused_body = problem_body(body)
                        return None, remote_refused(e.code, forward.spec.remote)
                    failure = classify_exception(e, upstream.url)
            except Exception as e:
                failure = classify_exception(e, upstream.url)
            else:
                self.upstream = upstream
                return conn, None
            if loop.time() >= deadline:
                break
            await relay.tracker.wait_change(upstream, min(0.25, deadline - loop.time()))
        return None, relay.life.failure(failure or no_upstream(relay.tracker.state))

    # ----- the pump -------------------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        # tornado reads the next frame only once this returns: the local client waits for
        # the remote to take each message.
        conn = self.conn
        if conn is None:
            return  # closing
        try:
            await conn.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            self._lost("the remote side closed while a message was sent to it")
            return
        self.forward.stats.bytes_in += size(message)

    async def _read_upstream(self) -> None:
        conn = self.conn
        try:
            while conn is not None and not self.local_closed:
                message = await conn.read_message()
                if message is None:
                    break
                await self.write_message(message, binary=isinstance(message, bytes))
                self.forward.stats.bytes_out += size(message)
        except websocket.WebSocketClosedError:
            return  # the local side closed
        except Exception:
            self.forward.log.exception(
                "forward %d: websocket relaying failed", self.forward.spec.local
            )
        if self.local_closed or conn is None or self.conn is not conn:
            return
        code = forwarding.close_code_to_pass(conn.close_code)
        if code is None:
            self._lost(f"the remote side's websocket ended without a close ({conn.close_reason})")
        else:
            self.close(code, conn.close_reason)  # the app's own close, passed on

    def _lost(self, why: str) -> None:
        """The upstream broke: counted, logged, and the local client told (1011)."""
        forward = self.forward
        forward.stats.errors += 1
        forward.log.warning(
            "forward %d: websocket %s: %s", forward.spec.local, rules.clip(self.request.path), why
        )
        if not self.local_closed:
            self.close(1011, "the forwarded connection was lost")

    def _on_switch(self, old: Upstream | None, new: Upstream | None) -> None:
        """A new URL (or none): this websocket ran on the old one; the app reconnects."""
        if new != self.upstream and not self.local_closed:
            self.forward.stats.websockets_closed_on_switch += 1
            self.forward.log.info(
                "forward %d: websocket %s closed (1012): the relay follows the remote's new URL",
                self.forward.spec.local,
                rules.clip(self.request.path),
            )
            self.restart("the tunnel URL changed; reconnect")

    def restart(self, reason: str) -> None:
        """Close both sides with 1012 (service restart): the client should reconnect."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close(1001, reason)
        if not self.local_closed:
            self.close(SERVICE_RESTART, reason)

    # ----- closing ----------------------------------------------------------------------------

    def on_close(self) -> None:
        self.local_closed = True
        forward = self.forward
        if self.opened:
            self.opened = False
            forward.stats.websockets_open -= 1
        forward.sockets.discard(self)
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        conn, self.conn = self.conn, None
        if conn is not None:
            code = forwarding.close_code_to_pass(self.close_code) or 1000
            conn.close(code, self.close_reason or None)

    def on_connection_close(self) -> None:
        # Also called for a handshake that never completed (on_close is not).
        super().on_connection_close()
        if self.ws_connection is None:
            self.local_closed = True
            conn, self.conn = self.conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close(1000)


def problem_body(body: bytes) -> bytes | None:
    """The body of a remote route's refusal when it is a problem in the relay's shape."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    ok = isinstance(data, dict) and isinstance(data.get("error"), dict) and "reason" in data
    return body if ok else None


def size(message: str | bytes) -> int:
    return len(message) if isinstance(message, bytes) else len(message.encode())


def remote_refused(code: int, remote_port: int) -> Failure:
    """The remote route itself refused the websocket (its token check, a refused port)."""
    return Failure(
        "remote_refused",
        f"the remote answered {code} to the websocket for its port {remote_port}",
        "403: check the remote token (or that the port is allowed on the remote); 502: "
        "nothing listens on that port there (GET /colab/ports lists what does).",
        code,
        False,
    )
