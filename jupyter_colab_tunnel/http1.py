"""HTTP/1.1 requests over kept-alive connections: whole (`fetch`) or streamed both ways (`open`).

tornado's `SimpleAsyncHTTPClient` opens a new connection for every request: through a tunnel that
is a TCP and a TLS handshake with Cloudflare's edge each time. This client keeps idle connections
per host (tornado's own `HTTP1Connection` on a reused `IOStream`, as tornado's server does for
its side), so a request costs one round trip. TLS is verified against the system trust store
(`ssl.create_default_context`, which honours `SSL_CERT_FILE`), or the given CA file.

A request whose bytes may have reached the remote is sent again only if its method is idempotent
(RFC 9110 9.2.2, as nginx does): a POST lost on a kept connection may have been processed.

`open` streams one exchange with backpressure (http1_stream.py, whose names are re-exported here).
Shared by the remote and the local side, so it knows nothing of either.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient

from .http1_stream import (
    STREAMED_BODY_LIMIT,
    STREAMED_CHUNK,
    Exchange,
    ResponseSink,
    StreamingDelegate,
    UpstreamError,
    connection_tokens,
)

__all__ = [
    "HOP_BY_HOP",
    "IDEMPOTENT",
    "IDLE_PER_HOST",
    "IDLE_TIMEOUT",
    "MAX_BODY",
    "STREAMED_BODY_LIMIT",
    "STREAMED_CHUNK",
    "Exchange",
    "KeepAliveClient",
    "Response",
    "ResponseSink",
    "UpstreamError",
    "connection_tokens",
]

MAX_BODY = 512 * 1024 * 1024
IDLE_PER_HOST = 16
# Below the keep-alive timeout of common servers and proxies (5 s for Node and uvicorn), so a
# kept connection is rarely one the remote is closing; exactly-once does not depend on it.
IDLE_TIMEOUT = 4.0
# Headers of one hop, never passed on by a proxy in either direction (RFC 9110 7.6.1), besides
# those a message's Connection header names.
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
# Safe to send again when an answer was lost (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass
class Response:
    code: int
    reason: str
    headers: httputil.HTTPHeaders
    body: bytes


class _Collector:
    """A sink that keeps a whole answer (fetch)."""

    def __init__(self) -> None:
        self.code = 0
        self.reason = ""
        self.chunks: list[bytes] = []

    async def response_started(self, code: int, reason: str, headers: httputil.HTTPHeaders) -> None:
        self.code, self.reason = code, reason

    async def response_data(self, chunk: bytes) -> None:
        self.chunks.append(chunk)


class KeepAliveClient:
    """Requests over kept-alive connections, idle ones kept per (scheme, host, port)."""

    def __init__(self, ca_certs: str | None = None) -> None:
        # Loading the system trust store takes ~20 ms: done on the first https dial, so that a
        # client that only dials http:// (the local relay, from `cp`) never pays it. A CA file
        # given is loaded now, so that a bad one is said at once.
        self._ssl_context = ssl.create_default_context(cafile=ca_certs) if ca_certs else None
        self._tcp = TCPClient()
        self._idle: dict[tuple[str, str, int], list[tuple[IOStream, float]]] = defaultdict(list)

    async def fetch(
        self,
        url: str,
        method: str,
        headers: httputil.HTTPHeaders,
        body: bytes | None,
        connect_timeout: float,
        request_timeout: float,
    ) -> Response:
        """One request; raises UpstreamError when no HTTP answer came back."""
        headers = httputil.HTTPHeaders(headers)
        key, target, https = _where(url, headers)
        if body is not None:
            headers["Content-Length"] = str(len(body))
        while True:
            stream, reused = await self._stream(key, https, connect_timeout)
            try:
                response, keep = await self._exchange(
                    stream, method, target, headers, body, request_timeout
                )
            except UpstreamError as e:
                stream.close()
                # A kept connection that the remote closed while it was idle: try a new one,
                # unless the request may have reached the remote and must not run twice.
                stale = reused and isinstance(e.cause, StreamClosedError) and not e.answered
                if stale and (e.connecting or method in IDEMPOTENT):
                    continue
                raise
            if keep and not stream.closed():
                self._keep(key, stream)
            else:
                stream.close()
            return response

    async def open(
        self,
        url: str,
        method: str,
        headers: httputil.HTTPHeaders,
        connect_timeout: float,
        content_length: int | None = None,
    ) -> Exchange:
        """Start a streamed request: connected, its head written. `content_length`: the body's
        size when known; a POST, PUT or PATCH without one is sent chunked. `headers` are the
        caller's to give away (Host and Content-Length are set in them, not in a copy)."""
        key, target, https = _where(url, headers)
        if content_length is not None:
            headers["Content-Length"] = str(content_length)
        stream, reused = await self._stream(key, https, connect_timeout)
        return Exchange(partial(self._keep, key), stream, reused, method, target, headers)

    async def _stream(
        self, key: tuple[str, str, int], https: bool, timeout: float
    ) -> tuple[IOStream, bool]:
        """A kept connection to `key` (True), else a new one (False)."""
        stream = self._take(key)
        if stream is not None:
            return stream, True
        return await self._connect(key[1], key[2], https, timeout), False

    def _keep(self, key: tuple[str, str, int], stream: IOStream) -> None:
        self._idle[key].append((stream, time.monotonic()))
        del self._idle[key][:-IDLE_PER_HOST]

    def _take(self, key: tuple[str, str, int]) -> IOStream | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            stream, since = idle.pop()
            if not stream.closed() and now - since < IDLE_TIMEOUT and _quiet(stream):
                return stream
            stream.close()
        return None

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def _connect(self, host: str, port: int, https: bool, timeout: float) -> IOStream:
        try:
            stream = await asyncio.wait_for(
                self._tcp.connect(
                    host,
                    port,
                    ssl_options=self._ssl() if https else None,  # checks the hostname too
                    max_buffer_size=MAX_BODY,
                ),
                timeout,
            )
        except asyncio.TimeoutError as e:
            raise UpstreamError(TimeoutError(f"connect timeout after {timeout:g} s"), True) from e
        except (OSError, ssl.SSLError, StreamClosedError) as e:
            real = getattr(e, "real_error", None) or e
            raise UpstreamError(real, True) from e
        stream.set_nodelay(True)
        return stream

    async def _exchange(
        self,
        stream: IOStream,
        method: str,
        target: str,
        headers: httputil.HTTPHeaders,
        body: bytes | None,
        timeout: float,
    ) -> tuple[Response, bool]:
        conn = HTTP1Connection(
            stream,
            True,
            HTTP1ConnectionParameters(
                no_keep_alive=False, decompress=False, max_body_size=MAX_BODY
            ),
        )
        collector = _Collector()
        delegate = StreamingDelegate(collector)
        if stream.closed():  # closed before a byte was written: the request never left
            raise UpstreamError(StreamClosedError(), True)
        try:
            conn.write_headers(httputil.RequestStartLine(method, target, "HTTP/1.1"), headers)
            if body:
                conn.write(body)
            conn.finish()
            open_after = await asyncio.wait_for(conn.read_response(delegate), timeout)
        except asyncio.TimeoutError as e:
            raise UpstreamError(TimeoutError(f"no answer in {timeout:g} s"), False) from e
        except (StreamClosedError, OSError, httputil.HTTPInputError) as e:
            # The request may have been processed: resent only if idempotent (see fetch()).
            raise UpstreamError(e, False, delegate.started) from e
        if not delegate.started:  # closed before an answer (read_response swallowed it)
            raise UpstreamError(StreamClosedError(), False)
        keep = bool(open_after) and "close" not in connection_tokens(delegate.headers)
        response = Response(
            collector.code, collector.reason, delegate.headers, b"".join(collector.chunks)
        )
        return response, keep

    def close(self) -> None:
        for idle in self._idle.values():
            for stream, _ in idle:
                stream.close()
        self._idle.clear()
        self._tcp.close()


def _where(url: str, headers: httputil.HTTPHeaders) -> tuple[tuple[str, str, int], str, bool]:
    """The connection's key (scheme, host, port), the request target, whether it is TLS; sets
    `headers`' Host when it has none."""
    parts = urlsplit(url)
    https = parts.scheme in ("https", "wss")
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if "Host" not in headers:
        default = port == (443 if https else 80)
        headers["Host"] = host if default else f"{host}:{port}"
    return (parts.scheme, host, port), target, https


def _quiet(stream: IOStream) -> bool:
    """An idle kept connection with nothing to read: one that the remote closed (EOF) or that
    holds unexpected bytes is readable, and is not used again."""
    socket = stream.socket
    if socket is None:
        return False
    try:
        readable, _, _ = select.select([socket], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
