"""What a start needs before cloudflared can run: the named tunnel's token, and the binary.

Each step answers with its result or the Problem that fails the start; both keep blocking
work (a file read, `cloudflared --version`, maybe a download) off the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from ..problems import Problem
from .binary import Binary, BinaryUnavailable


async def tunnel_token(mode: str, token: str, token_file: str) -> str | Problem:
    """The token a named tunnel runs with ('' for a quick one): `token`, else `token_file`'s."""
    if mode != "named":
        return ""
    if not token and token_file:
        loop = asyncio.get_running_loop()
        try:
            read = await loop.run_in_executor(None, _read_token, token_file)
        except OSError as e:
            return Problem(
                "token_unavailable", f"cannot read tunnel_token_file {token_file}: {e.strerror}"
            )
        token = read.strip()
    if not token:
        return Problem("token_unavailable", "no tunnel token configured")
    return token


class BinaryLookup:
    """Finds cloudflared once, and keeps the one lookup in flight across a stop.

    A thread cannot be cancelled: a stop during `resolve` leaves it running. The next start
    awaits that one instead of starting another `cloudflared --version` (a burst of
    start/stop would otherwise run several at once).
    """

    def __init__(self, resolve: Callable[[str], Binary]) -> None:
        self._resolve = resolve
        self._resolving: asyncio.Future[Binary] | None = None

    async def find(self, configured: str) -> Binary | Problem:
        if self._resolving is None:
            loop = asyncio.get_running_loop()
            self._resolving = loop.run_in_executor(None, self._resolve, configured)
            self._resolving.add_done_callback(_retrieve)
        resolving = self._resolving
        try:
            return await asyncio.shield(resolving)
        except BinaryUnavailable as e:
            return e.error
        finally:
            if resolving.done() and self._resolving is resolving:
                self._resolving = None


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a background result as seen, so an unawaited failure is not logged at exit."""
    if not future.cancelled():
        future.exception()


def _read_token(path: str) -> str:
    with open(os.path.expanduser(path), encoding="utf-8") as f:
        return f.read()
