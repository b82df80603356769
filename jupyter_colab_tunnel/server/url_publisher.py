"""Where the tunnel's URL goes once known: Jupyter's Host allow-list, the connection file, the log.

TunnelUrlPublisher is ColabTunnelApp's side of the supervisor's `on_url`, `on_ready` and
`on_state` callbacks: it lets exactly the tunnel's hostname through Jupyter's Host check,
keeps the (signed) connection file for `jupyter colab-tunnel connect --connection-file` up
to date, and logs the relay command the first time the tunnel is ready.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..connect import TOKEN_PLACEHOLDER, connect_info
from ..connection_record import ConnectionFileWriter, connection_record

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp

    from ..tunnel.supervisor import TunnelSupervisor


class TunnelUrlPublisher:
    """Publishes the tunnel's URL and state for one server (see the module's docstring).

    `supervisor` and `life` are read when needed (the app builds them after this), `life`
    giving LifeReporter's in-memory snapshot.
    """

    def __init__(
        self,
        serverapp: ServerApp,
        log: logging.Logger,
        *,
        connection_file: str,
        include_token: bool,
        supervisor: Callable[[], TunnelSupervisor],
        life: Callable[[], dict[str, Any]],
    ) -> None:
        self._serverapp = serverapp
        self._log = log
        self._connection_file = connection_file
        self._include_token = include_token
        self._supervisor = supervisor
        self._life = life
        self._tunnel_host: str | None = None
        self._announced = False
        self._writer: ConnectionFileWriter | None = None
        self._unsigned_warned = False

    def url_changed(self, url: str | None) -> None:
        """The supervisor's `on_url`: a new tunnel URL, or none any more."""
        self._allow_tunnel_host(url)
        self.write()

    def write(self, reason: str | None = None) -> None:
        """Record the tunnel's URL and state for the local relay (off the event loop).

        With a `reason`, this is the last record: state 'stopped' and why.
        """
        if not self._connection_file:
            return
        if self._writer is None:
            self._writer = ConnectionFileWriter(self._connection_file, self._log)
        # Signed with the server's token: the relay follows only a record signed with the
        # token it holds. Without a token there is nothing to sign with (say so once).
        token = self._serverapp.identity_provider.token or None
        if token is None and not self._unsigned_warned:
            self._unsigned_warned = True
            self._log.warning(
                "This server has no token, so its connection file %s cannot be signed and "
                "`jupyter colab-tunnel connect --connection-file` will refuse it. Give the "
                "server a token (e.g. launch(token=...)), or connect with --url.",
                self._connection_file,
            )
        supervisor = self._supervisor()
        life = self._life()  # in memory: the machine's start is read at start
        self._writer.update(
            connection_record(
                supervisor.url,
                "stopped" if reason is not None else supervisor.state,
                self._serverapp.base_url,
                token,
                include_token=self._include_token,
                machine_started_at=life["machine_started_at"],
                estimated_end_at=life["estimated_end_at"],
                reason=reason,
            )
        )

    def finish(self, reason: Callable[[], str]) -> None:
        """At stop: if a connection file was written, write its last record and close it."""
        if self._writer is None:
            return
        self.write(reason=reason())
        self._writer.close()

    def _allow_tunnel_host(self, url: str | None) -> None:
        """Accept the tunnel's public Host header, and only that one.

        cloudflared forwards `Host: <tunnel host>`; Jupyter blocks non-local hosts unless
        allow_remote_access. Adding exactly this hostname to `local_hostnames` lets gateway
        clients and browsers in (a browser's Origin then matches its Host) while every other
        foreign Host stays blocked.
        """
        settings = self._serverapp.web_app.settings
        if self._tunnel_host:
            hosts = [h for h in settings.get("local_hostnames", []) if h != self._tunnel_host]
            settings["local_hostnames"] = hosts
            self._tunnel_host = None
        if url:
            host = urlparse(url).hostname
            if host:
                settings["local_hostnames"] = [*settings.get("local_hostnames", []), host]
                self._tunnel_host = host

    def announce(self, supervisor: TunnelSupervisor) -> None:
        """The supervisor's `on_ready`: log how to connect the first time the tunnel is ready.

        The supervisor has just logged `Tunnel ready: <url>` itself (on every ready
        transition): this adds the commands only, once. No token: the log is no place for it.
        """
        if self._announced or not supervisor.url:
            return
        self._announced = True
        info = connect_info(
            supervisor.url, self._serverapp.base_url, connection_file=self._connection_file or None
        )
        assert info is not None
        self._log.info(
            "Connect from your machine through the relay (%s is this server's token):\n%s",
            TOKEN_PLACEHOLDER,
            "\n".join(f"    {line}" for line in info["command"].splitlines()),
        )
