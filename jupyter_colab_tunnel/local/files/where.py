"""Where the remote is: a fixed URL, or the connection file the remote rewrites on every tunnel
restart (read again when the remote goes away, to follow a new URL). The record is accepted as
the relay accepts it (connection_record.accept_record): signed with the token, or whole under
the token it carries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ...client import RemoteError, normalize_url
from ...connection_record import RecordRefused, accept_record, check_remote_url
from ..upstream import read_record_file

Resolve = Callable[[str], str]


class Where:
    """Where the remote is: `base` (public, for messages), `dial` (what is dialled) and the
    token. `refresh()` reads again where it is (a connection file); False when nothing new."""

    base: str = ""
    dial: str = ""
    token: str | None = None

    async def refresh(self) -> bool:
        return False


class FixedURL(Where):
    def __init__(self, url: str, token: str | None, resolve: Resolve) -> None:
        self.base = normalize_url(url)
        try:
            check_remote_url(self.base)
        except RecordRefused as e:
            raise RemoteError("invalid_url", e.message, e.hint) from None
        self.dial = _dial(self.base, resolve)
        self.token = token


class ConnectionFile(Where):
    """The remote the connection file names (a record accepted as the relay accepts it: signed
    with the token, or whole under the token it carries)."""

    def __init__(self, path: str, token: str | None, resolve: Resolve) -> None:
        self.path = path
        self.fixed_token = token
        self.resolve = resolve
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
        base = normalize_url(url)
        self.base, self.dial = base, _dial(base, self.resolve)
        self.token = self.fixed_token or info.token
        return True


def _dial(base: str, resolve: Resolve) -> str:
    dialled = resolve(base)
    return dialled if dialled.endswith("/") else dialled + "/"
