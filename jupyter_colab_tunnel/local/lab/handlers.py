"""`GET /colab/remote/{status,gpu,tunnel,relay}`: the remote's answers under Jupyter's own auth.

Thin: authenticate, read through the gateway (gateway_reader.py), write the JSON or the problem.
A failure answers `{"message", "reason", "error": {"kind", "message", "hint"}}` like the relay's.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.utils import url_path_join
from tornado import web

from .gateway_reader import GATEWAY_PATHS, LabRefusal, RemotePath, read_remote

AUTH_RESOURCE = "colab"


class RemoteHandler(APIHandler):
    """The remote's (or the relay's) JSON for one name of GATEWAY_PATHS."""

    auth_resource = AUTH_RESOURCE

    @property
    def _track_activity(self) -> bool:  # type: ignore[override]
        # The status bar's polls are monitoring, not use: they must not keep the server "busy".
        return False

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        path: RemotePath = _known(name)
        try:
            body = await read_remote(GatewayClient.instance(), path)
        except LabRefusal as refusal:
            self.set_status(refusal.status)
            self.log.debug("/colab/remote/%s: %s", path, refusal.problem.kind)
            self.finish(refusal.problem.answer_body() + "\n")
            return
        self.finish(json.dumps(body) + "\n")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:
            self.set_header("Allow", "GET")  # RFC 9110 requires it on a 405
        super().write_error(status_code, **kwargs)


def _known(name: str) -> RemotePath:
    for path in GATEWAY_PATHS:
        if path == name:
            return path
    raise web.HTTPError(404)  # the route's pattern admits only the known names


def remote_handlers(base_url: str) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]]]:
    names = "|".join(GATEWAY_PATHS)
    return [(url_path_join(base_url, rf"/colab/remote/({names})"), RemoteHandler, {})]
