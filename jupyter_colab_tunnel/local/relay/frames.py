"""Kernel frames from the local side: refused when larger than the remote accepts; held while
the upstream is re-dialled (in order, bounded), then written to the new upstream each awaited,
or dropped. Never lost in silence: the caller counts what these functions log. And the close of
an upstream, which waits for the remote's own close frame."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from tornado import websocket

TOO_BIG = 1009  # the websocket close code for "message too big"


def oversize(message: str | bytes, limit: int) -> int | None:
    """The frame's size in bytes when it is over `limit`, else None."""
    if len(message) * (4 if isinstance(message, str) else 1) <= limit:
        return None  # a character is at most 4 bytes of UTF-8: no need to encode
    size = len(message.encode() if isinstance(message, str) else message)
    return size if size > limit else None


def too_big_reason(limit: int | None) -> str:
    """The close reason sent to the local side (a close frame's reason is short)."""
    return f"message too big: the remote accepts {f'at most {limit} bytes' if limit else 'less'}"


class HeldFrames:
    def __init__(self, kernel_id: str, max_frames: int, max_bytes: int) -> None:
        self.kernel_id = kernel_id
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.frames: deque[str | bytes] = deque()
        self.size = 0

    def __len__(self) -> int:
        return len(self.frames)

    def hold(self, message: str | bytes, log: logging.Logger) -> bool:
        """Hold a frame; False (logged) when the buffer is full: the caller counts it dropped."""
        size = len(message)
        if len(self.frames) >= self.max_frames or self.size + size > self.max_bytes:
            log.warning(
                "Kernel %s: dropped a %d-byte frame from the local side: the hold buffer is full "
                "(%d frames) while the upstream is re-dialled",
                self.kernel_id,
                size,
                len(self.frames),
            )
            return False
        self.frames.append(message)
        self.size += size
        return True

    async def flush(self, conn: websocket.WebSocketClientConnection) -> bool:
        """Write the held frames in order, each awaited. Frames the local side sends meanwhile
        are appended (the socket has no upstream yet), so order is kept as long as the caller
        switches to `conn` right after, with no await between. False: `conn` closed meanwhile
        (the frame being written is held again, first)."""
        while self.frames:
            message = self.frames.popleft()
            self.size -= len(message)
            try:
                await conn.write_message(message, binary=isinstance(message, bytes))
            except websocket.WebSocketClosedError:
                self.frames.appendleft(message)
                self.size += len(message)
                return False
        return True

    def drop(self, why: str, log: logging.Logger) -> int:
        """Forget every held frame (logged); return how many were dropped."""
        dropped = len(self.frames)
        if dropped:
            log.warning(
                "Kernel %s: dropped %d frames held for the upstream: %s",
                self.kernel_id,
                dropped,
                why,
            )
        self.frames.clear()
        self.size = 0
        return dropped


async def close_upstream(
    conn: websocket.WebSocketClientConnection, code: int, reason: str, timeout: float = 2.0
) -> None:
    """Close an upstream websocket and wait (bounded) until the remote has closed it too."""
    conn.close(code, reason)

    async def drained() -> None:
        while await conn.read_message() is not None:
            pass

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(drained(), timeout)
