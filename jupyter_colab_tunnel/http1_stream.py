"""One HTTP/1.1 exchange streamed both ways on its own connection, with backpressure.

For the forwarded ports (the relay to the remote's port route, the route to the app): the request
body is written as it arrives, each write waits until the socket took the previous one, and each
piece of the answer is handed to a sink that may wait in turn (on its own client). Neither
direction is ever held whole. `http1.KeepAliveClient.open` starts one (and re-exports it); a
connection left open after the answer goes back to that client's pool. Also here: what both
kinds of request raise when no answer comes (`UpstreamError`), and the delegate that reads an
answer into a sink, which `fetch` uses as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.iostream import IOStream, StreamClosedError

STREAMED_BODY_LIMIT = 1 << 62
# The most a streamed answer hands on at once: each piece costs a few Python calls per hop, so
# large pieces (when the socket has them) keep a download's cost in copying, not in calls.
STREAMED_CHUNK = 1024 * 1024


class UpstreamError(Exception):
    """A request that got no HTTP answer. `connecting`: not a byte of it left this machine."""

    def __init__(self, cause: BaseException, connecting: bool, answered: bool = False) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.cause = cause
        self.connecting = connecting
        self.answered = answered  # some of an answer had arrived
        self.__cause__ = cause


class ResponseSink(Protocol):
    """Where a streamed answer goes; each call may wait (backpressure from its own client)."""

    def response_started(
        self, code: int, reason: str, headers: httputil.HTTPHeaders
    ) -> Awaitable[None]: ...

    def response_data(self, chunk: bytes) -> Awaitable[None]: ...


class StreamingDelegate(httputil.HTTPMessageDelegate):
    """Passes an answer's head and body to a sink as they arrive; notes whether a head came."""

    def __init__(self, sink: ResponseSink) -> None:
        self.sink = sink
        self.headers = httputil.HTTPHeaders()
        self.started = False  # the head of the answer arrived
        self.overdue = False  # it did not arrive in time: the connection was closed
        self.on_head: Callable[[], object] = lambda: None

    async def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> None:
        assert isinstance(start_line, httputil.ResponseStartLine)
        if 100 <= start_line.code < 200:
            return  # an interim answer: the real one follows
        self.headers = headers
        self.started = True
        self.on_head()
        await self.sink.response_started(start_line.code, start_line.reason, headers)

    async def data_received(self, chunk: bytes) -> None:
        await self.sink.response_data(chunk)


class Exchange:
    """One request under way on its own connection: the body is written piece by piece
    (`send`), then the answer is read into a sink (`respond`). Not a byte is buffered here."""

    def __init__(
        self,
        keep: Callable[[IOStream], None],
        stream: IOStream,
        reused: bool,
        method: str,
        target: str,
        headers: httputil.HTTPHeaders,
    ) -> None:
        self._keep = keep  # hands a connection still open after the answer back to its pool
        self._stream = stream
        # A kept connection the remote may have closed meanwhile: a bodiless idempotent request
        # that failed on one before any answer may be opened again (UpstreamError.answered).
        self.reused = reused
        self.body_sent = 0
        stream.read_chunk_size = STREAMED_CHUNK
        self._conn = HTTP1Connection(
            stream,
            True,
            # No cap on a streamed body: nothing of it is held (the default is the
            # stream's buffer size, which would cut a multi-GB download).
            HTTP1ConnectionParameters(
                no_keep_alive=False,
                decompress=False,
                max_body_size=STREAMED_BODY_LIMIT,
                chunk_size=STREAMED_CHUNK,
            ),
        )
        try:
            self._conn.write_headers(httputil.RequestStartLine(method, target, "HTTP/1.1"), headers)
        except (StreamClosedError, OSError) as e:
            stream.close()
            raise UpstreamError(e, True) from e

    async def send(self, chunk: bytes) -> None:
        """Write a piece of the body; returns once the socket has taken it."""
        if not chunk:
            return
        try:
            await self._conn.write(chunk)
        except (StreamClosedError, OSError, httputil.HTTPOutputError) as e:
            self.close()
            raise UpstreamError(e, False) from e
        self.body_sent += len(chunk)

    async def respond(self, sink: ResponseSink, header_timeout: float) -> None:
        """End the request, then pass the answer to `sink` as it arrives. Its head must come
        within `header_timeout`; the body may take as long as it takes (a server-sent event
        stream does not end). Raises UpstreamError when the answer is cut or never comes."""
        delegate = StreamingDelegate(sink)
        try:
            self._conn.finish()
        except (StreamClosedError, OSError, httputil.HTTPOutputError) as e:
            self.close()
            raise UpstreamError(e, False) from e
        # A timer, not wait_for() around the read: no task and no shield per request (the read
        # is the forwarded ports' hot path). No head in time: the connection is closed, which
        # ends the read.
        timer = asyncio.get_running_loop().call_later(header_timeout, self._overdue, delegate)
        delegate.on_head = timer.cancel
        try:
            open_after = await self._conn.read_response(delegate)
        except (StreamClosedError, OSError, httputil.HTTPInputError) as e:
            self.close()
            if delegate.overdue:
                raise UpstreamError(_no_answer(header_timeout), False) from None
            raise UpstreamError(e, False, delegate.started) from e
        except BaseException:
            self.close()  # the sink failed (its own client went away): this answer is abandoned
            raise
        finally:
            timer.cancel()
        if not delegate.started:  # closed before an answer (read_response swallowed it)
            self.close()
            cause = _no_answer(header_timeout) if delegate.overdue else StreamClosedError()
            raise UpstreamError(cause, False)
        keep = bool(open_after) and "close" not in connection_tokens(delegate.headers)
        if keep and not self._stream.closed():
            self._keep(self._stream)
        else:
            self._stream.close()

    def _overdue(self, delegate: StreamingDelegate) -> None:
        delegate.overdue = True
        self.close()

    def close(self) -> None:
        self._stream.close()


def _no_answer(timeout: float) -> TimeoutError:
    return TimeoutError(f"no answer in {timeout:g} s")


def connection_tokens(headers: httputil.HTTPHeaders) -> set[str]:
    """The header names (lower case) a message's Connection header lists, and its options."""
    return {t.strip().lower() for t in headers.get("Connection", "").split(",") if t.strip()}
