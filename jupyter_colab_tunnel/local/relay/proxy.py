"""The relay's HTTP side: its own /relay/status and the proxy of REST requests to the remote."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from tornado import httputil, web

from ..failures import Failure, classify_exception, classify_status
from ..pool import Response, UpstreamError
from ..upstream import Upstream
from .rules import NOT_RETURNED, WITH_BODY, connection_tokens, write_error

if TYPE_CHECKING:
    from .server import Relay


class _RelayHandler(web.RequestHandler):
    relay: Relay

    def initialize(self, relay: Relay) -> None:
        self.relay = relay

    def refuse_if_needed(self) -> bool:
        refused = self.relay.refusal(self.request)
        if refused is None:
            return False
        status, reason, message = refused
        self.relay.log.warning("Refused %s %s: %s", self.request.method, self.request.path, reason)
        write_error(self, status, reason, message)
        return True

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # tornado's own errors (a bad request line, an unsupported method) in the relay's shape
        write_error(self, status_code, self._reason, self._reason)


class StatusHandler(_RelayHandler):
    async def get(self) -> None:
        if self.refuse_if_needed():
            return
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self.relay.status()))


class ProxyHandler(_RelayHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def compute_etag(self) -> None:
        return None  # the remote's ETag and 304 answers pass through untouched

    async def get(self) -> None:
        await self.forward()

    async def head(self) -> None:
        await self.forward()

    async def post(self) -> None:
        await self.forward()

    async def delete(self) -> None:
        await self.forward()

    async def patch(self) -> None:
        await self.forward()

    async def put(self) -> None:
        await self.forward()

    async def options(self) -> None:
        await self.forward()

    async def forward(self) -> None:
        if self.refuse_if_needed():
            return
        relay = self.relay
        relay.stats.requests += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + relay.settings.http_wait
        method = self.request.method or "GET"
        failure: Failure | None = None
        while True:
            upstream = await relay.tracker.wait_live(deadline)
            if upstream is None:
                break
            response, failure = await self._send(upstream, method)
            if response is not None:
                self._relay_response(response)
                return
            assert failure is not None
            if not failure.unsent or loop.time() >= deadline:
                break
            # The request never reached the remote: wait for a new URL (or a moment) and resend.
            await relay.tracker.wait_change(upstream, min(0.25, deadline - loop.time()))
        if failure is None:
            state = relay.tracker.state
            failure = Failure(
                "no_upstream",
                f"the remote has no live tunnel URL (its state: {state})",
                "Wait for the remote's tunnel to become ready; see GET /relay/status.",
                503,
                True,
            )
        relay.fail(failure)
        relay.log.warning(
            "%s %s -> %d %s: %s",
            method,
            self.request.path,
            failure.status,
            failure.reason,
            failure.message,
        )
        write_error(self, failure.status, failure.reason, failure.message, failure.hint)

    async def _send(
        self, upstream: Upstream, method: str
    ) -> tuple[Response | None, Failure | None]:
        relay = self.relay
        url = relay.upstream_url(upstream, self.request.uri or "/")
        body = self.request.body if (method in WITH_BODY or self.request.body) else None
        try:
            response = await relay.client.fetch(
                url,
                method,
                relay.upstream_headers(self.request),
                body,
                relay.settings.connect_timeout,
                relay.settings.request_timeout,
            )
        except UpstreamError as e:
            failure = classify_exception(e.cause, upstream.url)
            return None, dataclasses.replace(failure, unsent=e.connecting)
        edge = classify_status(response.code, response.body, upstream.url)
        if edge is not None:
            return None, edge
        return response, None

    def _relay_response(self, response: Response) -> None:
        self.set_status(response.code, response.reason)
        self._headers = httputil.HTTPHeaders()  # drop tornado's defaults (Server, Content-Type)
        drop = NOT_RETURNED | connection_tokens(response.headers)
        for name, value in response.headers.get_all():
            if name.lower() not in drop:
                self.add_header(name, value)
        if response.code in (204, 304) or self.request.method == "HEAD":
            self.finish()
        else:
            self.finish(response.body)
