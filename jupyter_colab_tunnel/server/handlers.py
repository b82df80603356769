"""Thin HTTP layer: authenticate, parse the request, ask a service, write JSON.

The app puts its services into the tornado settings (as jupyter_server_terminals does with its
manager); `ColabServicesMixin` gives handlers typed access to them. HTTP decisions live here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..problems import Kind, Problem
from ..states import TUNNEL_ACTIONS, TunnelAction

if TYPE_CHECKING:
    from ..gpu.service import GpuService
    from ..tunnel.service import TunnelService
    from .kernels import KernelMapper
    from .ports.forward import Forwarder
    from .ports.service import PortsService
    from .status import StatusReporter

AUTH_RESOURCE = "colab"
NO_CREDENTIALS = (
    "The Jupyter token is missing or wrong. Send the server's token in the header "
    "`Authorization: token <token>`."
)
MAX_LOG_LINES = 100_000
# A tunnel action is a few bytes of JSON: a larger body is refused before it is read whole.
MAX_ACTION_BODY = 64 * 1024
LINGER_BYTES = 1024 * 1024
# How much of a bad value a message (and so the log) quotes.
MAX_QUOTED = 80

# The keys under which the app hands its services to the handlers.
TUNNEL_SETTING = "colab_tunnel"
GPU_SETTING = "colab_gpu"
STATUS_SETTING = "colab_status"
KERNELS_SETTING = "colab_kernels"
PORTS_SETTING = "colab_ports"
FORWARD_SETTING = "colab_forwarder"
FILES_SETTING = "colab_files"


# The kind of Jupyter's own refusals, by status (a missing token, an authorizer's no, a Host).
_REFUSAL_KINDS: dict[int, Kind] = {400: "bad_request", 403: "forbidden", 404: "not_found"}


def jupyter_refusal(status_code: int, reason: str, exc_info: Any) -> Problem:
    """Jupyter's own refusal (raised before or around a handler of ours) as a Problem: the
    HTTPError's message as raised (tornado keeps it as a %-format), else the reason phrase."""
    exc = (exc_info or (None, None, None))[1]
    message = reason
    if isinstance(exc, web.HTTPError) and exc.log_message:
        try:
            message = exc.log_message % exc.args
        except (TypeError, ValueError, KeyError):
            message = exc.log_message
    return Problem(_REFUSAL_KINDS.get(status_code, "server_error"), message)


class ColabServicesMixin:
    """Typed access to the services the app put into the tornado settings."""

    settings: dict[str, Any]

    @property
    def tunnel(self) -> TunnelService:
        return cast("TunnelService", self.settings[TUNNEL_SETTING])

    @property
    def gpu(self) -> GpuService:
        return cast("GpuService", self.settings[GPU_SETTING])

    @property
    def status_reporter(self) -> StatusReporter:
        return cast("StatusReporter", self.settings[STATUS_SETTING])

    @property
    def kernels(self) -> KernelMapper:
        return cast("KernelMapper", self.settings[KERNELS_SETTING])

    @property
    def ports(self) -> PortsService:
        return cast("PortsService", self.settings[PORTS_SETTING])

    @property
    def forwarder(self) -> Forwarder:
        return cast("Forwarder", self.settings[FORWARD_SETTING])


class TokenHintMixin(web.RequestHandler):
    """Put before a JupyterHandler: a refused XSRF check of a request without credentials
    names the missing token (every /colab handler and the forward route)."""

    def check_xsrf_cookie(self) -> None:
        """XSRF as Jupyter checks it; a request with no valid credentials hears about the token.

        A POST with a wrong or missing token fails the XSRF check before authentication, and
        "'_xsrf' argument missing from POST" sends users looking in the wrong place.
        """
        try:
            super().check_xsrf_cookie()
        except web.HTTPError as e:
            if e.status_code == 403 and not self.current_user:
                raise web.HTTPError(403, NO_CREDENTIALS) from None
            raise


class ColabHandler(ColabServicesMixin, TokenHintMixin, ExtensionHandlerMixin, APIHandler):
    """Base of the /colab endpoints: JSON in and out, `colab` permission resource."""

    auth_resource = AUTH_RESOURCE

    @property
    def _track_activity(self) -> bool:  # type: ignore[override]
        # Reads are monitoring (the dashboard's and the relay's polls), not use: counted as
        # activity they would keep `life.idle_seconds` at zero by watching it.
        return self.request.method not in ("GET", "HEAD")

    def write_json(self, body: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        # A trailing newline: `curl` output then ends its line before the shell prompt.
        self.finish(json.dumps(body) + "\n")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Jupyter's JSON error body, with the message as raised and `Allow` on a 405.

        tornado keeps the message of an HTTPError raised without arguments as a %-format, with
        each '%' doubled; APIHandler writes that form, which misquotes input that holds a '%'
        (`{"action": "50%"}` was answered "not '50%%'"). RFC 9110 requires `Allow` on a 405.
        """
        if status_code == 405:
            self.set_header("Allow", ", ".join(self._allowed_methods()))
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if not isinstance(exc, web.HTTPError) or not exc.log_message:
            super().write_error(status_code, **kwargs)
            return
        try:
            message = exc.log_message % exc.args
        except (TypeError, ValueError, KeyError):
            message = exc.log_message
        # tornado has logged the message already (log_exception): not logged twice.
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "reason": exc.reason or self._reason}) + "\n")

    def _allowed_methods(self) -> list[str]:
        return [
            method
            for method in self.SUPPORTED_METHODS
            if getattr(type(self), method.lower(), None)
            is not getattr(web.RequestHandler, method.lower(), None)
        ]


class StatusHandler(ColabHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.status_reporter.status())


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise web.HTTPError(400, f"{name} must be true or false, not {value!r}")


class GpuHandler(ColabHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        processes = _flag(self.get_query_argument("processes", "true"), "processes")
        sample = await self.gpu.sample(processes=processes)
        # Each process entry names the kernel of this server it belongs to (or null).
        self.write_json(await self.kernels.annotate(sample))


class PortsHandler(ColabHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        # Listening ports reachable at 127.0.0.1, each with its holder (or nulls) and flag.
        self.write_json(await self.ports.report())


def _quoted(value: object) -> str:
    """repr() of a value from a request, cut to MAX_QUOTED characters: never echoed whole."""
    text = repr(value)
    if len(text) <= MAX_QUOTED:
        return text
    return f"{text[:MAX_QUOTED]}... ({len(text)} characters)"


@web.stream_request_body
class TunnelHandler(ColabHandler):
    """The body is taken in pieces (stream_request_body) so that one over MAX_ACTION_BODY is
    refused with a 413 as soon as it is known, not after the server has read it all."""

    async def prepare(self) -> None:  # type: ignore[override]
        self._body = bytearray()
        self._oversize = False
        self._received = 0  # body bytes seen, kept or discarded
        await super().prepare()
        length = self.request.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) > MAX_ACTION_BODY:
            if int(length) > MAX_ACTION_BODY + LINGER_BYTES:
                raise web.HTTPError(413, _too_large())
            self._oversize = True  # read on, discarded: the client gets the 413, not a reset

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._received += len(chunk)
        if self._oversize:
            # Read on (discarded) for a while, so that a client still sending gets the 413
            # rather than a reset; a body that does not end is answered and cut.
            if self._received > MAX_ACTION_BODY + LINGER_BYTES:
                self._refuse_size()
            return
        self._body += chunk
        if len(self._body) > MAX_ACTION_BODY:  # chunked, without a Content-Length
            self._body = bytearray()
            self._oversize = True  # answered once the body ends (post)

    def _refuse_size(self) -> None:
        self.send_error(413, exc_info=(web.HTTPError, web.HTTPError(413, _too_large()), None))

    @web.authenticated
    @authorized
    async def get(self) -> None:
        raw = self.get_query_argument("logs", "0")
        try:
            logs = int(raw)
        except ValueError:
            raise web.HTTPError(400, f"logs must be a whole number, not {raw!r}") from None
        if not 0 <= logs <= MAX_LOG_LINES:
            raise web.HTTPError(400, f"logs must be between 0 and {MAX_LOG_LINES}")
        self.write_json(self.tunnel.snapshot(logs=logs))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        if self._oversize:
            raise web.HTTPError(413, _too_large())
        action = _parse_action(bytes(self._body))
        if not self.tunnel.enabled:
            raise web.HTTPError(
                409, "tunnel_mode is 'off': set it to 'quick' or 'named' to run a tunnel"
            )
        await self.tunnel.act(action)
        self.write_json(self.tunnel.snapshot())


def _too_large() -> str:
    return f"the body is over {MAX_ACTION_BODY // 1024} KiB: send JSON such as {_ACTION_FORM}"


_ACTION_FORM = '{"action": "start"} (or "stop", "restart")'


def _parse_action(raw: bytes) -> TunnelAction:
    if not raw.strip():
        raise web.HTTPError(400, f"the body is empty: send JSON such as {_ACTION_FORM}")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPError(400, f"body must be JSON, such as {_ACTION_FORM}") from None
    except RecursionError:  # nesting deeper than the parser's recursion limit
        raise web.HTTPError(400, "body is nested too deeply") from None
    if not isinstance(body, dict):
        raise web.HTTPError(400, f"body must be a JSON object, such as {_ACTION_FORM}")
    action = body.get("action")
    for known in TUNNEL_ACTIONS:
        if action == known:
            break
    else:
        if action is None:
            raise web.HTTPError(400, f'the "action" field is missing: send {_ACTION_FORM}')
        raise web.HTTPError(
            400, f"action must be one of {', '.join(TUNNEL_ACTIONS)}, not {_quoted(action)}"
        )
    unknown = sorted(set(body) - {"action"})
    if unknown:
        shown = ", ".join(_quoted(name) for name in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise web.HTTPError(400, f"unknown fields: {shown}{more}")
    return known


default_handlers: list[tuple[str, type[ColabHandler]]] = [
    ("/colab/status", StatusHandler),
    ("/colab/gpu", GpuHandler),
    ("/colab/tunnel", TunnelHandler),
    ("/colab/ports", PortsHandler),
]
