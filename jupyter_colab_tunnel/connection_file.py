"""The connection file: where the local relay learns the tunnel's current URL.

Written by the remote side at start and on every change of the tunnel's URL or state. A reader
(possibly through a synced folder such as Google Drive) must never see half a file, so it is
written to a temporary file in the same directory and renamed over the old one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .connect import gateway_url
from .timefmt import now_iso


def connection_record(
    url: str | None, state: str, base_url: str, token: str | None = None
) -> dict[str, Any]:
    """The JSON object of the file. `token` is included only when given."""
    record: dict[str, Any] = {
        "url": url,
        "gateway_url": gateway_url(url, base_url) if url else None,
        "state": state,
        "updated_at": now_iso(),
    }
    if token:
        record["token"] = token
    return record


def write_connection_file(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Atomically replace `path` with `record` as JSON, mode 0600. Raises OSError."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class ConnectionFileWriter:
    """Writes records in order on one worker thread: a slow (synced) disk never blocks the loop."""

    def __init__(self, path: str, log: logging.Logger) -> None:
        self.path = path
        self.log = log
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="connection-file")
        self._failed = False

    def update(self, record: dict[str, Any]) -> None:
        self._pool.submit(self._write, record)

    def _write(self, record: dict[str, Any]) -> None:
        try:
            write_connection_file(self.path, record)
            if self._failed:
                self.log.info("Connection file %s written again", self.path)
            self._failed = False
        except OSError as e:
            if not self._failed:  # once per failure streak, not once per state change
                self.log.error(
                    "Cannot write the connection file %s: %s. Check that its folder exists "
                    "and is writable (for Drive: is it mounted?).",
                    self.path,
                    e.strerror or e,
                )
            self._failed = True

    def close(self) -> None:
        """Finish pending writes (the last state) and stop the worker."""
        self._pool.shutdown(wait=True)
