"""What the MCP file tools do (local/mcp.py registers them): copy one file or directory up or
down with cp's code, and list a remote directory. Each returns the tool's JSON, or raises a
ColabTunnelError (kind, message, hint) that the tool turns into an error result."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from ...problems import ColabTunnelError
from ..client import ColabClient, JSONObject, RemoteError
from .remote import FilesClient
from .runner import Run, Unreachable, execute
from .specs import Direction, Location, remote_relative
from .where import FixedURL

# Seconds a transfer waits for the remote to come back after a cut (cp's --wait).
WAIT = 120.0


def files_client(client: ColabClient) -> FilesClient:
    """A /colab/files client for the same remote and token as the REST client."""
    return FilesClient(FixedURL(client.url, client.token))


async def copy(client: ColabClient, local_path: str, remote_path: str, upload: bool) -> JSONObject:
    """Copy local_path up to remote_path (or remote_path down to local_path): a file, or a
    directory with everything in it, by cp's rules (an existing directory as target receives
    the source under its own name)."""
    local = await asyncio.to_thread(os.path.expanduser, local_path)
    if not local:
        raise RemoteError("local_error", "local_path is empty", "Give a local file or directory.")
    here, there = Location(False, local), Location(True, remote_path)
    direction = Direction(upload, [here] if upload else [there], there if upload else here)
    files = files_client(client)
    started = time.monotonic()
    try:
        await files.start()
        run = await execute(files, direction, recursive=True, update=False, wait=WAIT)
    except Unreachable as e:
        raise e.error from None
    finally:
        files.close()
    return _transfer_result(run, time.monotonic() - started)


def _transfer_result(run: Run, seconds: float) -> JSONObject:
    if run.failures:
        path, error = run.failures[0]
        more = f" (and {len(run.failures) - 1} more)" if len(run.failures) > 1 else ""
        rest = f"; {len(run.outcomes)} other files were copied" if run.outcomes else ""
        raise ColabTunnelError(
            type(error.problem)(error.kind, f"{path}: {error.message}{more}{rest}", error.hint)
        )
    plan = run.plan
    single = [kind for _, kind in plan.landings] == ["file"]
    body: dict[str, Any] = {
        "path": plan.landings[0][0],
        "bytes": sum(o.size for o in run.outcomes if not o.skipped),
        "sha256": run.outcomes[0].sha256 if single else None,
        "seconds": round(seconds, 3),
        "resumed_from": sum(o.resumed_from for o in run.outcomes),
    }
    if not single:
        body["files"] = len(run.outcomes)
    return body


async def listing(client: ColabClient, remote_path: str) -> JSONObject:
    """The entries of a remote directory (not recursive)."""
    files = files_client(client)
    try:
        root = await files.start()
        path = remote_relative(
            remote_path, root.get("root") if remote_path.startswith("/") else None
        )
        return await files.list(path)
    finally:
        files.close()
