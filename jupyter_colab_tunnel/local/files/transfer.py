"""What an upload (upload.py) and a download (download.py) share; how each works:

Up: the remote keeps what arrived in a hidden partial next to the target, so the upload asks
how much it holds (`op=upload`), checks that those bytes are this file's first bytes (sha256 of
the local prefix), and sends only the rest in PUTs of at most `Where.piece` (32 MiB through
the tunnel, 4 MiB through the local relay, which holds a request's body whole), then commits with the whole file's size and sha256.
Down: the bytes go to `.{name}.colab-partial` next to the target; a partial left by an earlier
run is kept when the remote's prefix hash says it is this file's beginning; the partial is
renamed onto the target only when the remote's sha256 equals the running one.

Disk reads, writes and hashing run off the event loop (1 MiB at a time, the next read or the
previous write overlapping the network). When the remote goes away (a tunnel restart, the relay
answering no_upstream), the transfer waits up to `wait` seconds for it and continues.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..client import RemoteError

MiB = 1024 * 1024
BLOCK = MiB  # one disk read or write
# Answers to retry at once (the remote says where to resume) or shortly (a PUT still arriving).
MAX_RETRIES = 20
BUSY_DELAY = 0.5

# Cuts in a row that moved not a byte: the remote answers, but this transfer cannot get
# through (a proxy cutting long requests, ...). Then the last failure is the file's.
MAX_IDLE_CUTS = 5

Progress = Callable[[int], None]


class CutCounter:
    """Counts the cuts of one transfer, and those in a row that moved nothing."""

    def __init__(self) -> None:
        self.cuts = 0
        self.idle = 0
        self.at: int | None = None

    def cut(self, position: int, error: RemoteError) -> None:
        """A cut at `position` (bytes moved so far): raises `error` after too many idle ones."""
        self.cuts += 1
        self.idle = self.idle + 1 if position == self.at else 0
        self.at = position
        if self.idle >= MAX_IDLE_CUTS:
            raise error


@dataclass
class Outcome:
    """A file that arrived: its size and sha256, the bytes found already there and the bytes
    sent (or fetched) more than once because of a cut, and whether it was skipped (--update)."""

    path: str
    size: int
    sha256: str
    resumed_from: int = 0
    resumes: int = 0
    sent_again: int = 0
    skipped: bool = False


def partial_path(target: str) -> str:
    head, name = os.path.split(target)
    return os.path.join(head, f".{name}.colab-partial")


def local_error(error: OSError, path: str, doing: str) -> RemoteError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return RemoteError(
            "local_disk_full",
            f"this machine's disk is full while {doing} {path} ({error.strerror})",
            "This machine's disk is full: free space here, or copy somewhere else.",
        )
    return RemoteError("local_error", f"{doing} {path}: {error.strerror or error}")


def hash_prefix(path: str, length: int) -> Any:
    """sha256 of the first `length` bytes of a file (run in a thread)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while left > 0:
            block = f.read(min(BLOCK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest


async def file_sha256(path: str) -> str:
    size = (await asyncio.to_thread(os.stat, path)).st_size
    return str((await asyncio.to_thread(hash_prefix, path, size)).hexdigest())
