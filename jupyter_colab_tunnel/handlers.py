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


class StatusHandler(ColabHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.colab.status_reporter.status())


default_handlers: list[tuple[str, type[ColabHandler]]] = [
    ("/colab/status", StatusHandler),
]
