"""The cloudflared stand-in's public names, looked up in a process a test runs.

Cloudflare's DNS sends `<words>.trycloudflare.com` (or a named tunnel's hostname) to its edge.
Here the edge is the stand-in's TLS listener on 127.0.0.1 (testkit/edge_tls.py), which each
stand-in writes into its state file (`hostname`, `edge_tls`; testkit/cloudflared/tunnel.py)
under a test's directory. `StandInResolver` is a tornado `Resolver` that answers such a name,
port 443, with that address, and passes every other name to tornado's default resolver (so a
quick tunnel's name that no stand-in serves fails as a dead one does, with the system's own
lookup error). `install` makes it the resolver of every tornado client in the process: the relay
and `cp` dial only through tornado (http1.KeepAliveClient, websocket_connect), so they dial the
public https URL as they would for real, TLS verified against the name.

The state files are read on the default executor's threads: a lookup never blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tornado.netutil import DefaultLoopResolver, Resolver

from testkit import edge_tls

# A directory under which the stand-ins of the test write their state (any depth).
EDGE_ROOT_ENV = "RELAY_TEST_EDGE_ROOT"


def edge_for(hostname: str, root: Path) -> tuple[str, int] | None:
    """The TLS edge address of the newest stand-in serving `hostname` under `root` (blocking:
    it reads files)."""
    hostname = hostname.lower().rstrip(".")
    newest: tuple[float, str] | None = None
    if root.is_dir():
        for path in root.rglob("fake-state/*.json"):
            try:
                state = json.loads(path.read_text())
                stamp = path.stat().st_mtime
            except (OSError, ValueError):
                continue
            serves = state.get("hostname") == hostname and state.get("edge_tls")
            if serves and (newest is None or stamp > newest[0]):
                newest = (stamp, state["edge_tls"])
    if newest is None:
        return None
    edge = urlsplit(newest[1])
    return edge.hostname or "127.0.0.1", edge.port or 443


class StandInResolver(Resolver):
    """The stand-ins' public names (port 443) to their TLS edge; the rest to the default."""

    def initialize(self, root: Path | None = None, **kwargs: Any) -> None:
        self.root = root
        self.fallback = DefaultLoopResolver()

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        if self.root is not None and port == 443:
            loop = asyncio.get_running_loop()
            edge = await loop.run_in_executor(None, edge_for, host, self.root)
            if edge is not None:
                return [(socket.AF_INET, edge)]
        found: list[tuple[int, Any]] = await self.fallback.resolve(host, port, family)
        return found

    def close(self) -> None:
        self.fallback.close()


def install(root: Path | None = None) -> None:
    """Every tornado client of this process looks names up through `StandInResolver` (under
    `root`, else $RELAY_TEST_EDGE_ROOT; without either, every name goes to the default)."""
    if root is None and os.environ.get(EDGE_ROOT_ENV):
        root = Path(os.environ[EDGE_ROOT_ENV])
    Resolver.configure(StandInResolver, root=root)


def trust_test_ca() -> None:
    """Trust the session's test CA (testkit/edge_tls.py), and only it: SSL_CERT_FILE, read
    when a client makes its TLS context, so set before any is made."""
    ca = edge_tls.ca_file()
    if ca is not None:
        os.environ["SSL_CERT_FILE"] = str(ca)


@contextlib.contextmanager
def reaching(root: Path) -> Iterator[None]:
    """For a while, in this process (a benchmark's in-process `cp`): the stand-ins' names
    under `root` at their TLS edge, the test CA trusted; then both as they were."""
    saved = os.environ.get("SSL_CERT_FILE")
    trust_test_ca()
    install(root)
    try:
        yield
    finally:
        Resolver.configure(None)
        if saved is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = saved
