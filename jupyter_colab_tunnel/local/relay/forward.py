"""One forwarded port (`connect --forward [LOCAL:]REMOTE`): its own listener on 127.0.0.1:LOCAL.

Like `ssh -L`, the port takes no token (it listens on loopback only, and refuses a Host that is
not a loopback name); every request and websocket goes, path and query unchanged, to the remote's
route for REMOTE (forwarding.py) on the relay's current upstream, with the remote token added.
HTTP is streamed both ways (forward_http.py), websockets are pumped (forward_socket.py).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tornado import httputil, web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.routing import Matcher, PathMatches, Rule

from ... import forwarding, http1
from ...http1 import STREAMED_BODY_LIMIT
from ..bounded_wait import finished_within
from . import rules
from .forward_http import ForwardHandler
from .forward_socket import ForwardSocket

if TYPE_CHECKING:
    from .server import Relay

MAX_HEADER_SIZE = 64 * 1024
_SPEC = re.compile(r"(?:(\d+):)?(\d+)")


class ForwardSpecError(ValueError):
    """A --forward value that is not [LOCAL:]REMOTE with ports 1..65535."""


@dataclass(frozen=True)
class ForwardSpec:
    local: int
    remote: int

    @classmethod
    def parse(cls, text: str) -> ForwardSpec:
        m = _SPEC.fullmatch(text.strip())
        if m is None:
            raise ForwardSpecError(
                f"--forward {text!r} is not [LOCAL:]REMOTE: give a port (6006) or a local and "
                "a remote port (16006:6006)"
            )
        remote = int(m.group(2))
        local = int(m.group(1)) if m.group(1) is not None else remote
        for what, port in (("LOCAL", local), ("REMOTE", remote)):
            if not 0 < port < 65536:
                raise ForwardSpecError(
                    f"--forward {text!r}: the {what} port must be between 1 and 65535, not {port}"
                )
        return cls(local, remote)

    def taken_message(self, why: str) -> str:
        return (
            f"cannot listen on 127.0.0.1:{self.local} for --forward {self.local}:{self.remote}: "
            f"{why}. Stop what uses local port {self.local}, or choose another LOCAL port: "
            f"--forward OTHER:{self.remote}"
        )


def parse_forwards(values: list[str], relay_port: int) -> list[ForwardSpec]:
    """The --forward values, checked: valid ports, each LOCAL once and not the relay's own."""
    specs: list[ForwardSpec] = []
    for value in values:
        spec = ForwardSpec.parse(value)
        if spec.local == relay_port:
            raise ForwardSpecError(
                f"--forward {value}: local port {spec.local} is the relay's own (--port); "
                "give the forward another LOCAL port (--forward LOCAL:REMOTE)"
            )
        if any(s.local == spec.local for s in specs):
            raise ForwardSpecError(
                f"--forward {value}: local port {spec.local} is given twice; give each forward "
                "its own LOCAL port (--forward LOCAL:REMOTE)"
            )
        specs.append(spec)
    return specs


@dataclass
class ForwardStats:
    requests: int = 0  # HTTP requests (websockets not counted)
    http_open: int = 0  # HTTP requests in flight
    websockets_open: int = 0
    websockets: int = 0
    websockets_closed_on_switch: int = 0
    bytes_in: int = 0  # local client -> remote (bodies and websocket messages)
    bytes_out: int = 0  # remote -> local client
    errors: int = 0


class _WebSocketUpgrade(Matcher):
    """A websocket handshake: the same paths as HTTP, another handler."""

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        return {} if upgrade and request.method == "GET" else None


class Forward:
    """127.0.0.1:LOCAL -> the remote's 127.0.0.1:REMOTE, through the relay's upstream."""

    def __init__(self, relay: Relay, spec: ForwardSpec) -> None:
        self.relay = relay
        self.spec = spec
        self.stats = ForwardStats()
        self.sockets: set[ForwardSocket] = set()
        self.log = relay.log
        self._server: HTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.local}/"

    def application(self) -> web.Application:
        kwargs = {"forward": self}
        return web.Application(
            [
                Rule(_WebSocketUpgrade(), ForwardSocket, kwargs),
                Rule(PathMatches(r"/.*"), ForwardHandler, kwargs),
            ],
            websocket_max_message_size=forwarding.FORWARD_MAX_MESSAGE,
            log_function=self._log_request,
        )

    def _log_request(self, handler: web.RequestHandler) -> None:
        """Access log without the query (the app's own secrets may be there)."""
        request, status = handler.request, handler.get_status()
        level = logging.INFO if status >= 400 else logging.DEBUG
        self.log.log(
            level,
            "forward %d: %d %s %s %.1f ms",
            self.spec.local,
            status,
            request.method,
            rules.clip(request.path),
            1000.0 * request.request_time(),
        )

    def listen(self) -> None:
        """Bind 127.0.0.1:LOCAL and serve. Raises OSError (a port in use)."""
        sockets = bind_sockets(self.spec.local, address="127.0.0.1")
        self._server = HTTPServer(
            self.application(),
            xheaders=False,
            # Headers (and a kept connection's wait) are bounded; a body is not: an upload is
            # streamed to the remote as it comes, as long as it takes, none of it held here.
            idle_connection_timeout=self.relay.settings.header_timeout,
            max_header_size=MAX_HEADER_SIZE,
            max_body_size=STREAMED_BODY_LIMIT,
        )
        self._server.add_sockets(sockets)

    async def close(self) -> None:
        """Stop listening; open websockets closed with 1012, connections closed."""
        for sock in list(self.sockets):
            sock.restart("the relay is stopping")
        if self._server is not None:
            self._server.stop()
            await finished_within(self._server.close_all_connections(), 2)

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "local": self.spec.local,
            "remote": self.spec.remote,
            "url": self.url,
            "open_connections": s.http_open + s.websockets_open,
            "requests": s.requests,
            "websockets_open": s.websockets_open,
            "websockets": s.websockets,
            "websockets_closed_on_switch": s.websockets_closed_on_switch,
            "bytes_in": s.bytes_in,
            "bytes_out": s.bytes_out,
            "errors": s.errors,
        }

    def refusal(self, request: httputil.HTTPServerRequest) -> tuple[int, str, str] | None:
        """(status, reason, message) for a request the forward does not pass on, else None."""
        refused = rules.host_refusal(request)
        if refused is not None:
            return refused
        if forwarding.escapes(request.path):
            return (
                400,
                "forward_path_refused",
                f"the path {rules.shorten(request.path)} has dot segments or backslashes that "
                f"could resolve out of the remote port {self.spec.remote}'s route",
            )
        return None

    def answer_error(
        self, handler: web.RequestHandler, status: int, reason: str, message: str, hint: str = ""
    ) -> None:
        """Answer one of the forward's own errors (the relay's shape), logged and counted."""
        self.stats.errors += 1
        self.log.warning(
            "forward %d: %s %s -> %d %s: %s",
            self.spec.local,
            handler.request.method,
            rules.clip(handler.request.path),
            status,
            reason,
            message,
        )
        rules.write_error(handler, status, reason, message, hint)

    def route_url(self, base: str, path: str, ws: bool = False) -> str:
        """The remote route's URL for a local path (no query: it travels enveloped)."""
        url = base + forwarding.route_path(self.spec.remote, path)
        return "ws" + url.removeprefix("http") if ws else url

    def hop_headers(self, request: httputil.HTTPServerRequest) -> httputil.HTTPHeaders:
        """The local request's end-to-end headers, enveloped, then the relay's extra headers
        and the remote token: what the remote route needs to pass the request to the app."""
        drop = forward_dropped(request.headers)
        mine = httputil.HTTPHeaders()
        for name, value in request.headers.get_all():
            if name.lower() not in drop:
                mine.add(name, value)
        headers = forwarding.envelop(mine, request.query)
        settings = self.relay.settings
        for name, value in settings.extra_headers.items():
            headers[name] = value
        if settings.extra_headers:  # the hop's own: the route drops them before the app
            headers[forwarding.HOP_HEADER] = ", ".join(settings.extra_headers)
        token = settings.remote_token()
        if token:
            headers["Authorization"] = f"token {token}"
        return headers


# Set again by the hop (the streamed exchange frames the body itself) or by the websocket client.
_HOP_OWN = frozenset(
    {
        "content-length",
        "expect",  # a 100-continue is answered locally (tornado), before the body is read
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)


def forward_dropped(headers: httputil.HTTPHeaders) -> set[str]:
    """Header names (lower case) of a local request that do not cross the hop."""
    return set(http1.HOP_BY_HOP | _HOP_OWN) | http1.connection_tokens(headers)
