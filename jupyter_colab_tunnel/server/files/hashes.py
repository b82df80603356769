"""sha256 kept between requests, so that verifying a transfer never reads a file twice.

A transfer comes in pieces (ranges of at most 32 MiB, one request each): the running hash of a
sequential download is kept under the file's ETag, that of a partial upload under the partial's
path, each with the length it covers. The next piece continues it; anything else (a resumed
transfer after a restart of the server, two clients at once) hashes the prefix again from the
disk, off the loop. Whole files' digests are kept by ETag for `?op=stat&sha256=1`.

The book is used on the event loop only; the hashing itself runs in worker threads.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import Any

# One read off the disk (and one piece written to the socket or the disk).
PIECE = 1024 * 1024
# Transfers in flight that the book remembers; the oldest is dropped (and rehashed if resumed).
KEEP = 64

Hasher = Any  # hashlib's _Hash, which typeshed does not export


class HashBook:
    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._states: OrderedDict[tuple[str, ...], tuple[int, Hasher]] = OrderedDict()
        self._digests: OrderedDict[tuple[str, str], str] = OrderedDict()

    def take(self, key: tuple[str, ...], length: int) -> Hasher | None:
        """The running hash under `key` if it covers exactly `length` bytes (it is removed:
        one transfer continues it at a time)."""
        state = self._states.pop(key, None)
        if state is None or state[0] != length:
            return None
        return state[1]

    def keep(self, key: tuple[str, ...], length: int, hasher: Hasher) -> None:
        self._states[key] = (length, hasher)
        self._states.move_to_end(key)
        while len(self._states) > self._keep:
            self._states.popitem(last=False)

    def peek(self, key: tuple[str, ...], length: int) -> str | None:
        """The hex digest of the running hash under `key` if it covers `length` bytes."""
        state = self._states.get(key)
        return state[1].copy().hexdigest() if state and state[0] == length else None

    def forget(self, key: tuple[str, ...]) -> None:
        self._states.pop(key, None)

    def digest(self, path: str, etag: str) -> str | None:
        return self._digests.get((path, etag))

    def remember(self, path: str, etag: str, hexdigest: str) -> None:
        self._digests[(path, etag)] = hexdigest
        self._digests.move_to_end((path, etag))
        while len(self._digests) > self._keep * 4:
            self._digests.popitem(last=False)


def hash_prefix(path: str, length: int) -> Hasher:
    """sha256 of the file's first `length` bytes (blocking). OSError if it is shorter."""
    hasher = hashlib.sha256()
    if length == 0:
        return hasher  # the file need not exist
    with open(path, "rb", buffering=0) as f:
        left = length
        while left > 0:
            piece = f.read(min(PIECE, left))
            if not piece:
                raise OSError(f"{path} is shorter than {length} bytes")
            hasher.update(piece)
            left -= len(piece)
    return hasher


def size_of(path: str) -> int:
    """The file's size, 0 when it does not exist (blocking)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
