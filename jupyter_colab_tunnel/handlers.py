"""Thin HTTP layer: authenticate, parse the request, ask a service, write JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

if TYPE_CHECKING:
    from .app import ColabTunnelApp

AUTH_RESOURCE = "colab"


class ColabHandler(ExtensionHandlerMixin, APIHandler):
    """Base of the /colab endpoints: JSON in and out, `colab` permission resource."""

    auth_resource = AUTH_RESOURCE

    @property
    def colab(self) -> ColabTunnelApp:
        return cast("ColabTunnelApp", self.extensionapp)

    def write_json(self, body: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))

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
        self.set_header("Content-Type", "application/json")
        self.log.warning("wrote error: %r", message)
        self.finish(json.dumps({"message": message, "reason": exc.reason}))

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
        self.write_json(await self.colab.status_reporter.status())


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
        self.write_json(await self.colab.gpu_sampler.get(processes=processes))


TUNNEL_ACTIONS = ("start", "stop", "restart")
MAX_LOG_LINES = 100_000


class TunnelHandler(ColabHandler):
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
        self.write_json(self.colab.tunnel_snapshot(logs=logs))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"")
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPError(
                400, 'body must be JSON: {"action": "start|stop|restart"}'
            ) from None
        except RecursionError:  # nesting deeper than the parser's recursion limit
            raise web.HTTPError(400, "body is nested too deeply") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, 'body must be a JSON object: {"action": "start|stop|restart"}')
        action = body.get("action")
        if not isinstance(action, str) or action not in TUNNEL_ACTIONS:
            raise web.HTTPError(
                400, f"action must be one of {', '.join(TUNNEL_ACTIONS)}, not {action!r}"
            )
        unknown = sorted(set(body) - {"action"})
        if unknown:
            raise web.HTTPError(400, f"unknown fields: {', '.join(map(str, unknown))}")
        await self.colab.tunnel_action(action)
        self.write_json(self.colab.tunnel_snapshot())


default_handlers: list[tuple[str, type[ColabHandler]]] = [
    ("/colab/status", StatusHandler),
    ("/colab/gpu", GpuHandler),
    ("/colab/tunnel", TunnelHandler),
]
