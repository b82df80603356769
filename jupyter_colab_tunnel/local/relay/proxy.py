"""The relay's HTTP side: its own /relay/status and the proxy of REST requests to the remote.

A request is checked (host, origin, token, path, size) on its headers alone: its body is read
only once it is allowed, and only up to MAX_FORWARDED_BODY.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from tornado import httputil, web

from ... import http1
from ...http1 import IDEMPOTENT, Response, UpstreamError
from ..failures import Failure, classify_exception, classify_status, no_upstream
from ..upstream import Upstream
from . import rules
from .rules import NOT_RETURNED, WITH_BODY, write_error

# Kernel and REST bodies are small; a cap keeps one request from filling the relay's memory.
MAX_FORWARDED_BODY = 64 * 1024 * 1024
# A body over the cap by at most this much is read on (and discarded), so that a client still
# sending gets the 413 rather than a reset; beyond that the connection is cut.
LINGER_BYTES = 4 * 1024 * 1024

if TYPE_CHECKING:
    from .server import Relay


class _RelayHandler(web.RequestHandler):
    relay: Relay

    def initialize(self, relay: Relay) -> None:
        self.relay = relay
        self.set_default_headers()  # tornado set the defaults before there was a relay

    def set_default_headers(self) -> None:
        # Every answer to an allowed --allow-origin page, the relay's errors included.
        relay: Relay | None = getattr(self, "relay", None)
        origin = self.request.headers.get("Origin")
        if relay is not None and origin is not None and origin in relay.settings.allowed_origins:
            for name, value in rules.cors_headers(origin).items():
                self.set_header(name, value)

    def refuse_if_needed(self, check_token: bool = True) -> bool:
        refused = self.relay.refusal(self.request, check_token)
        if refused is None:
            return False
        status, reason, message = refused
        self.relay.log.warning(
            "Refused %s %s: %s", self.request.method, rules.clip(self.request.path), reason
        )
        write_error(self, status, reason, message)
        return True

    def answer_preflight(self) -> None:
        """A browser's CORS preflight carries no credentials: answered here, never forwarded."""
        if not self.refuse_if_needed(check_token=False):
            for name, value in rules.cors_headers(self.request.headers["Origin"], True).items():
                self.set_header(name, value)
            self.set_status(204)
            self.finish()

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

    async def options(self) -> None:
        if rules.is_preflight(self.request):
            self.answer_preflight()
        else:
            self.send_error(405)  # as tornado answers any other method here


@web.stream_request_body
class ProxyHandler(_RelayHandler):
    SUPPORTED_METHODS = rules.PROXIED_METHODS

    def compute_etag(self) -> None:
        return None  # the remote's ETag and 304 answers pass through untouched

    async def prepare(self) -> None:
        """Decide on the headers alone; a refused request's body is never read (tornado closes
        the connection once the answer is written)."""
        self._body = bytearray()
        self._oversize = False
        self._received = 0  # body bytes seen, kept or discarded
        request = self.request
        if rules.is_preflight(request):
            self.answer_preflight()
            return
        if self.refuse_if_needed():
            return
        if not rules.forwarded(request.path):
            self.relay.log.warning(
                "Refused %s %s: not forwarded", request.method, rules.shorten(request.path)
            )
            write_error(
                self,
                404,
                "not_forwarded",
                rules.not_forwarded_message(request.path),
                "Use the relay as a local Jupyter server's --gateway-url, or for /colab/*.",
            )
            return
        length = request.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) > MAX_FORWARDED_BODY:
            if int(length) > MAX_FORWARDED_BODY + LINGER_BYTES:
                self._too_large()
            else:
                self._oversize = True  # read on, discarded: the 413 rather than a reset

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._received += len(chunk)
        if self._oversize:
            if self._received > MAX_FORWARDED_BODY + LINGER_BYTES:
                self._too_large()  # it does not end: answer now, and cut it
            return
        self._body += chunk
        if len(self._body) > MAX_FORWARDED_BODY:  # chunked, without a Content-Length
            self._body = bytearray()
            self._oversize = True  # answered 413 once the body ends (forward)

    def _too_large(self) -> None:
        self.relay.log.warning(
            "Refused %s %s: body over %d bytes",
            self.request.method,
            rules.clip(self.request.path),
            MAX_FORWARDED_BODY,
        )
        write_error(
            self,
            413,
            "body_too_large",
            f"The request body is over the relay's limit of {MAX_FORWARDED_BODY // 2**20} MiB.",
            "Kernel and REST requests are small; move large data with files, not requests.",
        )

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
        if self._oversize:
            self._too_large()
            return
        relay = self.relay
        relay.stats.requests += 1
        loop = asyncio.get_running_loop()
        # A remote that is gone is not waited for: one try (it may be back), then the answer.
        deadline = loop.time() + (0.0 if relay.life.gone else relay.settings.http_wait)
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
            if not failure.unsent or loop.time() >= deadline or relay.life.gone:
                break
            # Safe to send again (it never reached the remote, or its method is idempotent):
            # wait for a new URL (or a moment) and resend.
            await relay.tracker.wait_change(upstream, min(0.25, deadline - loop.time()))
        if failure is None:
            failure = no_upstream(relay.tracker.state)
        relay.fail(failure)
        failure = relay.life.failure(failure)
        relay.log.warning(
            "%s %s -> %d %s: %s",
            method,
            rules.clip(self.request.path),
            failure.status,
            failure.reason,
            failure.message,
        )
        write_error(self, failure.status, failure.reason, failure.message, failure.hint)

    async def _send(
        self, upstream: Upstream, method: str
    ) -> tuple[Response | None, Failure | None]:
        """One try. The failure's `unsent` says whether another try is safe."""
        relay = self.relay
        url = relay.upstream_url(upstream, self.request.uri or "/")
        body = bytes(self._body) if (method in WITH_BODY or self._body) else None
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
            if e.connecting:
                return None, dataclasses.replace(failure, unsent=True)
            if method in IDEMPOTENT:
                # Lost on the way back: sending it again does no harm (RFC 9110 9.2.2); a
                # timeout is not retried, the wait for it is already spent.
                return None, dataclasses.replace(failure, unsent=failure.reason != "timeout")
            return None, lost_request(method, self.request.path, upstream.url, failure)
        if rules.carries_token(response, relay.settings.remote_token()):
            return None, token_withheld(method, self.request.path)
        edge = classify_status(response.code, response.body, upstream.url)
        if edge is None:
            relay.reachability.answered()  # the remote's own answer: any failure streak ends
        if edge is not None:
            # Cloudflare's "no tunnel" answer never reached the remote; its 502 from a broken
            # origin connection may have: a non-idempotent request is not sent again then.
            if edge.reason != "no_tunnel" and method not in IDEMPOTENT:
                return None, dataclasses.replace(edge, unsent=False)
            return None, edge
        return response, None

    def _relay_response(self, response: Response) -> None:
        self.set_status(response.code, response.reason)
        self._headers = httputil.HTTPHeaders()  # drop tornado's defaults (Server, Content-Type)
        self.set_default_headers()
        drop = NOT_RETURNED | http1.connection_tokens(response.headers)
        for name, value in response.headers.get_all():
            if name.lower() not in drop:
                self.add_header(name, value)
        if response.code in (204, 304) or self.request.method == "HEAD":
            self.finish()
        else:
            self.finish(response.body)


def lost_request(method: str, path: str, url: str, cause: Failure) -> Failure:
    """A non-idempotent request whose answer was lost after it was sent: never sent again."""
    return Failure(
        "upstream_lost_request",
        f"the connection to the remote ({url}) was lost after {method} {rules.shorten(path)} "
        f"was sent ({cause.reason}: {cause.message}); the remote may or may not have "
        "processed it, and the relay does not send it again",
        "Check the remote's state (e.g. GET the resource, or colab_tunnel_status) before "
        "retrying: a retry could do it twice.",
        502,
        False,
    )


def token_withheld(method: str, path: str) -> Failure:
    """An answer that holds the remote token (an HTML page of the remote's): not passed on."""
    return Failure(
        "remote_token_withheld",
        f"the remote's answer to {method} {rules.shorten(path)} contains the remote token "
        "(one of its pages?); the relay does not pass it on",
        "Open the remote's pages through its tunnel URL, not through the relay.",
        502,
        False,
    )
