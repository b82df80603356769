"""Where the remote is: a fixed URL, or the connection file the remote rewrites on every tunnel
restart (read again when the remote goes away, to follow a new URL). The record is accepted as
the relay accepts it (connection_record.accept_record): signed with the token, or whole under
the token it carries."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from ...connection_record import RecordRefused, accept_record, check_remote_url
from ..client import RemoteError, normalize_url
from ..upstream import read_record_file

MiB = 1024 * 1024
TUNNEL_PIECE = 32 * MiB
RELAY_PIECE = 4 * MiB


class Where:
    """Where the remote is: `base` (its URL, with one trailing slash) and the token.
    `refresh()` reads again where it is (a connection file); False when nothing new."""

    base: str = ""
    token: str | None = None
    # The most one request carries. Through the tunnel, large pieces keep the pauses between
    # requests rare; the local relay holds a whole piece before it sends it on, and re-sends it
    # whole after a tunnel switch, so a cut costs at most one piece: small ones there.
    piece: int = TUNNEL_PIECE

    async def refresh(self) -> bool:
        return False


class FixedURL(Where):
    def __init__(self, url: str, token: str | None) -> None:
        self.base = normalize_url(url)
        try:
            check_remote_url(self.base)
        except RecordRefused as e:
            raise RemoteError("invalid_url", e.message, e.hint) from None
        self.token = token
        # Plain http:// is allowed to loopback only: the local relay (or a server on this
        # machine, where the piece size costs little).
        if urlsplit(self.base).scheme == "http":
            self.piece = RELAY_PIECE


class ConnectionFile(Where):
    """The remote the connection file names (a record accepted as the relay accepts it: signed
    with the token, or whole under the token it carries)."""

    def __init__(self, path: str, token: str | None) -> None:
        self.path = path
        self.fixed_token = token
        self.info: Any = None
        self.refused: RecordRefused | None = None

    async def refresh(self) -> bool:
        try:
            _, raw = await asyncio.to_thread(read_record_file, self.path)
            info = accept_record(raw, self.fixed_token, self.info)
        except RecordRefused as e:
            self.refused = e
            return False
        self.refused = None
        self.info = info
        url = info.live_url
        if not url:
            return False
        self.base = normalize_url(url)
        self.token = self.fixed_token or info.token
        return True
