"""What /colab/tunnel shows and does: the supervisor's snapshot with connect info, and actions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..connect import connect_info
from ..problems import ConfigProblem
from ..states import TunnelAction
from .supervisor import TunnelSupervisor


class TunnelService:
    """The tunnel as the REST API sees it; the supervisor stays free of HTTP and server facts."""

    def __init__(
        self,
        supervisor: TunnelSupervisor,
        mode: str,
        base_url: str,
        config_errors: Sequence[ConfigProblem] = (),
        connection_file: str = "",
    ) -> None:
        self.supervisor = supervisor
        self.mode = mode
        self.base_url = base_url
        self.config_errors = config_errors
        self.connection_file = connection_file  # shown in the connect command when set

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def snapshot(self, logs: int = 0) -> dict[str, Any]:
        body = self.supervisor.snapshot(logs=logs)
        body["connect"] = connect_info(
            self.supervisor.url, self.base_url, connection_file=self.connection_file or None
        )
        body["config_errors"] = [e.as_dict() for e in self.config_errors]
        return body

    def summary(self) -> dict[str, Any]:
        return self.supervisor.summary()

    async def act(self, action: TunnelAction) -> None:
        if action == "start":
            await self.supervisor.start()
        elif action == "stop":
            await self.supervisor.stop()
        elif action == "restart":
            await self.supervisor.restart()
