"""A local kernel websocket relayed to the remote, re-dialled when its upstream drops or moves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from tornado import websocket

from ..failures import Failure, no_upstream
from ..upstream import Upstream
from .frames import TOO_BIG, HeldFrames, close_upstream, oversize, too_big_reason
from .kernel_dial import KERNEL_REFUSED, MAX_WS_MESSAGE, dial_kernel
from .rules import query_value, write_error

if TYPE_CHECKING:
    from .server import Relay

# Where it was before the dial had a module of its own (the relay's server and CLI read it).
__all__ = ["MAX_WS_MESSAGE", "KernelSocket"]


class KernelSocket(websocket.WebSocketHandler):
    """A local kernel websocket with one upstream that is re-dialled when it drops or moves.

    The upstream is dialled with the same path and query (session_id), so the remote replays what
    the kernel sent meanwhile; what the local side sends meanwhile is held here, in order.
    """

    relay: Relay

    def initialize(self, relay: Relay) -> None:
        self.relay = relay
        self.key: tuple[str, str] = ("", "")
        self.conn: websocket.WebSocketClientConnection | None = None
        self.held = HeldFrames(
            "", relay.settings.ws_buffer_messages, relay.settings.ws_buffer_bytes
        )
        self.local_closed = False
        self.opened = False
        self.retired = False
        self.reader: asyncio.Task[None] | None = None
        self.settled = asyncio.Event()  # set once prepare() has its upstream (or gave up)
        self.upstream: Upstream | None = None
        self._unlisten: Callable[[], None] | None = None

    # ----- handshake ----------------------------------------------------------------------

    async def prepare(self) -> None:
        relay = self.relay
        refused = relay.refusal(self.request)
        if refused is not None:
            status, reason, message = refused
            relay.log.warning("Refused websocket %s: %s", self.request.path, reason)
            write_error(self, status, reason, message)
            return
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            return  # not a websocket request: tornado's handshake answers 400
        if relay.stopping:
            write_error(
                self,
                503,
                "relay_stopping",
                "the relay is stopping: no new kernel websockets",
                "Start the relay again (`jupyter colab-tunnel connect ...`) to reconnect.",
            )
            return
        kernel_id = self.path_args[0] if self.path_args else ""
        session = query_value(self.request.query, "session_id") or ""
        self.key = (kernel_id, session)
        self.held.kernel_id = kernel_id
        older = relay.sockets.get(self.key) if session else None
        if session:
            relay.sockets[self.key] = self
        if older is not None:
            # One upstream per kernel and session: two share one ZMQ identity at the remote and
            # one of them goes dead. Close the older there first, then dial the newer.
            relay.stats.ws_replaced += 1
            relay.log.info("Kernel %s session %s: a newer connection replaces the older", *self.key)
            await older.retire()
        loop = asyncio.get_running_loop()
        try:
            conn, failure = await self._dial(loop.time() + relay.settings.http_wait)
            if self.retired:
                # Replaced while dialling (JupyterLab's refused v1-protocol attempt, left open
                # by the gateway client): this upstream must not reach the remote next to the
                # newer one. Nobody reads this socket; refusing it makes no one reconnect.
                if conn is not None:
                    await self._release(conn, reading=False)
                write_error(
                    self,
                    409,
                    "replaced",
                    "a newer connection to this kernel session replaced this one",
                )
                return
            if conn is None:
                self._forget()
                assert failure is not None
                relay.fail(failure)
                failure = relay.life.failure(failure)
                write_error(self, failure.status, failure.reason, failure.message, failure.hint)
                return
            self.conn = conn
        finally:
            self.settled.set()

    def check_origin(self, origin: str) -> bool:
        return self.relay.origin_allowed(origin)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        chosen = self.conn.selected_subprotocol if self.conn is not None else None
        return chosen if chosen in subprotocols else None

    def open(self, *args: str, **kwargs: str) -> None:
        relay = self.relay
        if self.retired:  # replaced during the handshake
            self.close(1000, "replaced by a newer connection to the same kernel session")
            return
        self.opened = True
        relay.stats.ws_open += 1
        relay.stats.ws_total += 1
        self._unlisten = relay.tracker.listen(self._on_switch)
        self.reader = asyncio.ensure_future(self._read_upstream())

    # ----- local -> upstream --------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        # tornado delivers the next frame only once this returns: order is kept while awaiting.
        if self.refuse_if_too_big(message):
            return
        while (conn := self.conn) is not None:
            if conn.protocol is None or conn.protocol.is_closing():
                # A closing upstream would swallow the frame: hold it for the next one (the
                # reader re-dials when the old upstream's close arrives).
                self.conn = None
                break
            try:
                await conn.write_message(message, binary=isinstance(message, bytes))
                return
            except websocket.WebSocketClosedError:
                if self.conn is conn:
                    self.conn = None
                # else: a new upstream is already up (the reader resumed meanwhile): use it
        self._hold(message)

    def refuse_if_too_big(self, message: str | bytes) -> bool:
        """A frame the remote would not accept (it would close with 1009 and lose it): refused
        here, and the local socket closed with 1009 so that the client sees why."""
        size = oversize(message, self.relay.settings.ws_max_message)
        if size is not None:
            self._refuse_too_big(f"a {size}-byte frame", self.relay.settings.ws_max_message)
        return size is not None

    def _refuse_too_big(self, what: str, limit: int | None) -> None:
        self.relay.stats.frames_refused += 1
        reason = too_big_reason(limit)
        self.relay.log.warning(
            "Kernel %s: refused %s from the local side: %s per websocket message (the remote's "
            "websocket_max_message_size, the relay's --max-message-size)",
            self.key[0],
            what,
            reason,
        )
        if not self.local_closed:
            self.close(TOO_BIG, reason)

    def _hold(self, message: str | bytes) -> None:
        if self.held.hold(message, self.relay.log):
            self.relay.stats.frames_buffered += 1
        else:
            self.relay.stats.frames_dropped += 1

    # ----- upstream -> local --------------------------------------------------------------

    async def _read_upstream(self) -> None:
        try:
            while not self.local_closed and not self.retired:
                conn = self.conn
                message = await conn.read_message() if conn is not None else None
                if message is not None:
                    try:
                        await self.write_message(message, binary=isinstance(message, bytes))
                    except websocket.WebSocketClosedError:
                        break
                    continue
                if self.local_closed or self.retired:
                    break
                if conn is not None:
                    if self.conn is conn:
                        self.conn = None
                    if conn.close_code == TOO_BIG:
                        # The remote refused a frame it found too big: that frame is lost.
                        self._refuse_too_big("a frame (the remote closed 1009)", None)
                        break
                    self.relay.log.info(
                        "Kernel %s: upstream websocket closed (%s); re-dialling",
                        self.key[0],
                        conn.close_reason or conn.close_code or "dropped",
                    )
                if not await self._resume():
                    break
        except Exception:
            self.relay.log.exception("Kernel %s: relaying failed", self.key[0])
        finally:
            if not self.local_closed and not self.retired:
                # The gateway client reconnects, through the relay, when its socket closes.
                self.close(*(self.relay.life.close_frame() or (1011, "upstream lost")))

    async def _resume(self) -> bool:
        """Re-dial until a new upstream is up; deliver the held frames. False: gave up."""
        relay = self.relay
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + relay.settings.ws_resume_timeout
        while True:
            conn, failure = await self._dial(deadline)
            if conn is None or self.local_closed or self.retired:
                if conn is not None:
                    conn.close()
                if failure is not None:
                    relay.fail(failure)
                self._drop_held(failure.message if failure else "the local socket closed")
                return False
            relay.stats.ws_redials += 1
            held = len(self.held)
            if await self.held.flush(conn):
                break
            # The new upstream closed during the flush: what was not written is held again.
            relay.log.info("Kernel %s: the new upstream closed while resuming", self.key[0])
        self.conn = conn
        relay.log.info(
            "Kernel %s: upstream resumed on %s after %.2f s (%d held frames delivered)",
            self.key[0],
            self.upstream.url if self.upstream else "?",
            loop.time() - started,
            held,
        )
        return True

    def _drop_held(self, why: str) -> None:
        self.relay.stats.frames_dropped += self.held.drop(why, self.relay.log)

    async def _dial(
        self, deadline: float
    ) -> tuple[websocket.WebSocketClientConnection | None, Failure | None]:
        relay = self.relay
        loop = asyncio.get_running_loop()
        failure: Failure | None = None
        delay = 0.1
        if relay.life.gone:
            deadline = loop.time()  # gone: one try (it may be back), no waiting
        while not self.local_closed and not self.retired:
            upstream = await relay.tracker.wait_live(deadline)
            if upstream is None:
                break
            outcome = await dial_kernel(relay, upstream, self.request)
            if not isinstance(outcome, Failure):
                self.upstream = upstream
                relay.reachability.answered()
                return outcome, None
            failure = outcome
            if failure.kind == KERNEL_REFUSED:
                return None, failure
            # A re-dial that fails tells whether the remote is still there (reachability.py).
            relay.reachability.failed(failure)
            if loop.time() >= deadline or relay.life.gone:
                break
            await relay.tracker.wait_change(upstream, min(delay, deadline - loop.time()))
            delay = min(delay * 2, 1.0)
        return None, failure or no_upstream(relay.tracker.state)

    def _on_switch(self, old: Upstream | None, new: Upstream | None) -> None:
        """A new URL: close the upstream on the old one; the reader re-dials the new one."""
        conn = self.conn
        if conn is not None and new is not None and self.upstream != new:
            self.conn = None
            conn.close(1001, "the relay follows the remote's new URL")

    # ----- closing ------------------------------------------------------------------------

    async def retire(self) -> None:
        """Replaced by a newer connection: close the upstream (waiting for it), then the local."""
        self.retired = True
        if not self.settled.is_set():
            # Still dialling: let that finish (it then closes its upstream) before the newer
            # one dials, so that the two never reach the remote together.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.settled.wait(), self.relay.settings.connect_timeout + 5)
        conn, self.conn = self.conn, None
        if conn is not None:
            await self._release(conn, reading=self.reader is not None)
        if not self.local_closed:
            self.close(1000, "replaced by a newer connection to the same kernel session")

    async def _release(self, conn: websocket.WebSocketClientConnection, reading: bool) -> None:
        """Close an upstream that a newer connection replaces, and wait (bounded) until the
        remote no longer counts it: the remote then buffers the kernel's channels for the
        session and hands them to the newer one ("Restoring connection"). Two upstreams at the
        remote at once share one ZMQ identity, and the newer can end up dead."""
        relay, upstream = self.relay, self.upstream
        before = await relay.kernel_connections(upstream, self.key[0]) if upstream else None
        reason = "replaced by a newer connection"
        if reading and self.reader is not None:
            conn.close(1000, reason)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.reader), 2)
        else:
            await close_upstream(conn, 1000, reason)
        if upstream is None or not before:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while loop.time() < deadline:
            now = await relay.kernel_connections(upstream, self.key[0])
            if now is None or now < before:
                return
            await asyncio.sleep(0.02)
        relay.log.warning(
            "Kernel %s: the remote still counts the replaced websocket after 3 s", self.key[0]
        )

    def shutdown(self, reason: str) -> None:
        self.end(1001, reason)

    def end(self, code: int, reason: str) -> None:
        """Close both sides for good, the local one with `code` and `reason` (<= 123 bytes)."""
        self.retired = True
        if self.conn is not None:
            self.conn.close(1001, reason)
        if not self.local_closed:
            self.close(code, reason)

    def on_close(self) -> None:
        self.local_closed = True
        relay = self.relay
        if self.opened:
            relay.stats.ws_open -= 1
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close(1000, "the local client closed")
        self._drop_held("the local socket closed")
        self._forget()

    def on_connection_close(self) -> None:
        # Also called for a handshake that never completed (on_close is not): drop the upstream.
        super().on_connection_close()
        if self.ws_connection is None:
            self.local_closed = True
            conn, self.conn = self.conn, None
            if conn is not None:
                conn.close(1000)
            self._forget()

    def _forget(self) -> None:
        if self.relay.sockets.get(self.key) is self:
            del self.relay.sockets[self.key]
