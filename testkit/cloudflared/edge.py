"""The local edge: a port on 127.0.0.1 that forwards HTTP and WebSocket traffic to the origin."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .constants import EDGE_IP, HOP_BY_HOP, WS_HANDSHAKE_HEADERS


def valid_close_code(code: object) -> int:
    if isinstance(code, int) and (1000 <= code <= 1003 or 1007 <= code <= 1014 or code >= 3000):
        return code
    return 1000


@dataclass
class Origin:
    base: URL
    ssl_context: ssl.SSLContext | bool

    def target(self, raw_path: str) -> URL:
        scheme = {"ws": "http", "wss": "https"}.get(self.base.scheme, self.base.scheme)
        return URL(f"{scheme}://{self.base.raw_authority}{raw_path}", encoded=True)


class Edge:
    """Part of `Tunnel` (testkit.cloudflared.tunnel), whose state it uses."""

    # --- edge -----------------------------------------------------------------------------

    def edge_error(self, status: int, code: str) -> web.Response:
        return self.text(f"error code: {code}", status)

    async def edge_handler(self, request: web.Request) -> web.StreamResponse:
        if not self.registered or self.stalled or self.shutting_down:
            return self.edge_error(530, "1033")
        if self.origin is None:
            return web.Response(status=503)
        self.inflight += 1
        self.idle.clear()
        self.requests_total += 1
        try:
            is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
            if is_ws:
                task = asyncio.current_task()
                assert task is not None
                self.ws_tasks.add(task)
                try:
                    return await self.proxy_ws(request, self.origin)
                finally:
                    self.ws_tasks.discard(task)
            return await self.proxy_http(request, self.origin)
        finally:
            self.inflight -= 1
            if not self.inflight:
                self.idle.set()

    def forward_headers(self, request: web.Request, websocket: bool) -> CIMultiDict[str]:
        connection_tokens = {
            t.strip().lower() for t in request.headers.get("Connection", "").split(",")
        }
        headers: CIMultiDict[str] = CIMultiDict()
        for key, value in request.headers.items():
            lower = key.lower()
            if lower in HOP_BY_HOP or lower in connection_tokens:
                continue
            if lower in ("host", "content-length"):
                continue
            if websocket and lower in WS_HANDSHAKE_HEADERS:
                continue
            headers.add(key, value)
        headers["Host"] = self.host_header or self.public_hostname
        peer = request.remote or "127.0.0.1"
        previous = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
        headers["X-Forwarded-Proto"] = "https"
        headers["Cf-Connecting-Ip"] = "127.0.0.1"
        headers["Cf-Visitor"] = '{"scheme":"https"}'
        return headers

    def origin_failed(self, request: web.Request, origin: Origin, exc: BaseException) -> None:
        self.request_errors += 1
        port = origin.base.port
        reason = f"dial tcp {origin.base.host}:{port}: connect: connection refused"
        if not isinstance(exc, aiohttp.ClientConnectorError):
            reason = f"{type(exc).__name__}: {exc}"
        self.log.error(
            "Request failed",
            (
                "error",
                "Unable to reach the origin service. The service may be down or it may not be "
                f"responding to traffic from cloudflared: {reason}",
            ),
            ("connIndex", 0),
            ("dest", f"https://{self.public_hostname}{request.raw_path}"),
            ("event", 0),
            ("ip", EDGE_IP),
            ("type", "websocket" if request.headers.get("Upgrade") else "http"),
        )

    def count(self, status: int) -> None:
        self.responses_by_code[status] = self.responses_by_code.get(status, 0) + 1

    async def proxy_http(self, request: web.Request, origin: Origin) -> web.StreamResponse:
        assert self.session is not None
        headers = self.forward_headers(request, websocket=False)
        # Streamed as it arrives, as the real binary does: a large upload is never held here.
        # A body of known length keeps it; one sent chunked goes on chunked.
        body = request.content if request.body_exists else None
        if body is not None and request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        try:
            resp = await asyncio.wait_for(
                self.session.request(
                    request.method,
                    origin.target(request.raw_path),
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    skip_auto_headers=("Content-Type",),
                    ssl=origin.ssl_context,
                ),
                100,
            )
        except asyncio.TimeoutError:
            self.count(524)
            return self.edge_error(524, "524")
        except (aiohttp.ClientError, OSError) as exc:
            self.origin_failed(request, origin, exc)
            self.count(502)
            return self.edge_error(502, "502")
        try:
            out = web.StreamResponse(status=resp.status, reason=resp.reason)
            tokens = {t.strip().lower() for t in resp.headers.get("Connection", "").split(",")}
            for key, value in resp.headers.items():
                lower = key.lower()
                if lower in HOP_BY_HOP or lower in tokens:
                    continue
                out.headers.add(key, value)
            self.count(resp.status)
            await out.prepare(request)
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out
        finally:
            resp.release()

    async def proxy_ws(self, request: web.Request, origin: Origin) -> web.StreamResponse:
        assert self.session is not None
        headers = self.forward_headers(request, websocket=True)
        protocols = [
            p.strip()
            for value in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in value.split(",")
            if p.strip()
        ]
        try:
            upstream = await self.session.ws_connect(
                origin.target(request.raw_path),
                headers=headers,
                protocols=protocols,
                autoclose=False,
                autoping=True,
                max_msg_size=0,
                compress=0,
                ssl=origin.ssl_context,
            )
        except aiohttp.WSServerHandshakeError as exc:
            self.count(exc.status)
            skip = HOP_BY_HOP | WS_HANDSHAKE_HEADERS | {"content-length"}
            hdrs = [(k, v) for k, v in (exc.headers or {}).items() if k.lower() not in skip]
            return web.Response(status=exc.status, headers=CIMultiDict(hdrs))
        except (aiohttp.ClientError, OSError) as exc:
            self.origin_failed(request, origin, exc)
            self.count(502)
            return self.edge_error(502, "502")
        self.count(101)
        downstream: web.WebSocketResponse = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else [],
            autoclose=False,
            autoping=True,
            max_msg_size=0,
            compress=False,
        )
        try:
            await downstream.prepare(request)
            pumps = [
                asyncio.ensure_future(pump(downstream, upstream)),
                asyncio.ensure_future(pump(upstream, downstream)),
            ]
            try:
                await asyncio.gather(*pumps)
            finally:
                for task in pumps:
                    task.cancel()
        finally:
            if not upstream.closed:
                await upstream.close(code=1001)
            if not downstream.closed:
                with contextlib.suppress(Exception):
                    await downstream.close(code=1001)
        return downstream


WebSocket = web.WebSocketResponse[bool] | aiohttp.ClientWebSocketResponse[bool]


async def pump(src: WebSocket, dst: WebSocket) -> None:
    """Copy messages from src to dst; a close frame is passed on with its code."""
    while True:
        msg = await src.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type == aiohttp.WSMsgType.CLOSE:
            code = valid_close_code(msg.data)
            extra = (msg.extra or "").encode() if isinstance(msg.extra, str) else b""
            with contextlib.suppress(Exception):
                await dst.close(code=code, message=extra)
            with contextlib.suppress(Exception):
                await src.close(code=code, message=extra)
            return
        elif msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
            continue
        else:  # CLOSING, CLOSED, ERROR
            if not dst.closed:
                with contextlib.suppress(Exception):
                    await dst.close(code=1001)
            return
