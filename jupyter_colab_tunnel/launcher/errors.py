"""The launcher's exception: the Jupyter server itself could not be started or reached."""

from __future__ import annotations

from ..problems import ColabTunnelError, LaunchKind, Problem


class LaunchError(ColabTunnelError):
    """The Jupyter server itself could not be started or reached (a tunnel failure is not one)."""

    def __init__(
        self, kind: LaunchKind, message: str, hint: str = "", log_path: str | None = None
    ) -> None:
        super().__init__(Problem(kind, message, hint))
        self.log_path = log_path
