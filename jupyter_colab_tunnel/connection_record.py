"""The connection file's record: written by the remote, read and verified by the local relay.

The remote writes its tunnel's URL and state at start and on every change; the relay follows it.
The file usually lives in a synced folder (Google Drive) that others may be able to write, and
following it means sending the remote token wherever it points. So the remote signs every record
and the relay follows only a record signed with the token it holds:

    signature = HMAC-SHA256(key, canonical JSON of every other field)
    key       = HMAC-SHA256(remote Jupyter token, "jupyter-colab-tunnel connection record v1")

The canonical JSON has sorted keys, no whitespace and ASCII escapes. The token itself is never
written as key material: the file holds only an HMAC made with it (and the token only with
`connection_file_token`, where the file is then the secret).

A reader (possibly through a synced folder) must never see half a file, so it is written to a
temporary file in the same directory and renamed over the old one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .connect import gateway_url
from .problems import ColabTunnelError, Problem, RecordKind
from .states import LIVE, TunnelState
from .timefmt import now_iso

SIGNATURE = "signature"
KEY_CONTEXT = b"jupyter-colab-tunnel connection record v1"
# A record is a few hundred bytes; anything much larger is not one (and is not read whole).
MAX_RECORD_BYTES = 64 * 1024
# A URL is live only when the remote says its tunnel is ready; a record without a state
# ("") is taken at its word.
LIVE_STATES: frozenset[str] = frozenset({*LIVE, ""})

# ----- writing (the remote) -------------------------------------------------------------------


def record_key(token: str) -> bytes:
    """The signing key: derived from the token, so the token is never used (or stored) as is."""
    return hmac.new(token.encode("utf-8"), KEY_CONTEXT, hashlib.sha256).digest()


def canonical(fields: dict[str, Any]) -> bytes:
    """The bytes that are signed: every field but the signature, sorted, no whitespace."""
    unsigned = {k: v for k, v in fields.items() if k != SIGNATURE}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def record_signature(fields: dict[str, Any], token: str) -> str:
    return hmac.new(record_key(token), canonical(fields), hashlib.sha256).hexdigest()


def sign(fields: dict[str, Any], token: str) -> dict[str, Any]:
    """`fields` with their signature under `token` added (any old signature replaced)."""
    unsigned = {k: v for k, v in fields.items() if k != SIGNATURE}
    return {**unsigned, SIGNATURE: record_signature(unsigned, token)}


def connection_record(
    url: str | None,
    state: TunnelState,
    base_url: str,
    token: str | None,
    include_token: bool = False,
    *,
    machine_started_at: str | None = None,
    estimated_end_at: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The JSON object of the file, signed with `token` (unsigned without one: the relay will
    refuse it). The token itself is included only with `include_token`.

    `machine_started_at` and `estimated_end_at` are /colab/status `life`'s (null when not
    known); `reason` says why the server stopped, in its last record only.
    """
    record: dict[str, Any] = {
        "url": url,
        "gateway_url": gateway_url(url, base_url) if url else None,
        "state": state,
        "updated_at": now_iso(),
        "machine_started_at": machine_started_at,
        "estimated_end_at": estimated_end_at,
    }
    if reason is not None:
        record["reason"] = reason
    if token and include_token:
        record["token"] = token
    return sign(record, token) if token else record


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


# ----- reading (the relay) --------------------------------------------------------------------

RefusalKind = RecordKind  # the kinds, with their default hints, live in problems.py

UPDATE_REMOTE = (
    "Update jupyter-colab-tunnel on the remote and restart its server (it then writes signed "
    "records), or connect with --url instead."
)
PRIVATE_FOLDER = "Keep the connection file in a folder only you can write."


class RecordRefused(ColabTunnelError):
    """Why the relay does not follow what the connection file says: kind, message and hint."""

    def __init__(self, kind: RefusalKind, message: str, hint: str = "") -> None:
        super().__init__(Problem(kind, message, hint))
        self.record_kind: RefusalKind = kind

    def __str__(self) -> str:
        return self.problem.message

    def as_dict(self) -> dict[str, str]:
        return self.problem.as_dict()


@dataclass(frozen=True)
class ConnectionInfo:
    """An accepted record. `gateway_url` is the URL to forward to (url + base_url)."""

    gateway_url: str | None
    state: str  # the remote's word: a TunnelState from this version, "" from none
    token: str | None = None
    updated_at: str | None = None
    # Issue 21: why a stopped remote stopped, and its runtime's life (null/absent from an
    # older remote, and read leniently: the record is signed, so only the remote wrote them).
    reason: str | None = None
    machine_started_at: str | None = None
    estimated_end_at: str | None = None

    @property
    def live_url(self) -> str | None:
        return self.gateway_url if self.state in LIVE_STATES else None


def is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_origin(url: str) -> str:
    """scheme://host[:port] of `url`, without user info, path or query (safe to log)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return repr(url[:40])
    return f"{parts.scheme}://{host}{port}"


def check_remote_url(url: str) -> None:
    """Refuse a remote URL the relay must not send the token to. Raises RecordRefused."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise RecordRefused(
            "bad_url",
            f"{url[:80]!r} is not an http(s) URL with a host",
            "Give the remote's URL, e.g. https://<words>.trycloudflare.com (plus any base_url).",
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise RecordRefused(
            "insecure_url",
            f"{safe_origin(url)} is plain http:// to a host that is not loopback: the remote "
            "token would cross the network in clear text",
            "Use the remote's https:// URL (a tunnel URL is always https://). Plain http:// is "
            "allowed only to this machine: 127.0.0.1, ::1 or localhost.",
        )


def decode_record(raw: bytes) -> dict[str, Any]:
    """The JSON object in the file's bytes. Raises RecordRefused."""
    if len(raw) > MAX_RECORD_BYTES:
        raise RecordRefused(
            "too_large",
            f"larger than {MAX_RECORD_BYTES // 1024} KiB (a record is a few hundred bytes)",
            "Check that --connection-file names the file the remote writes "
            "(ColabTunnelApp.connection_file).",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordRefused(
            "not_utf8",
            "not UTF-8 text",
            "Check that --connection-file names the JSON file the remote writes.",
        ) from None
    try:
        data = json.loads(text)
    except ValueError as e:
        where = f" ({e.msg} at line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise RecordRefused(
            "not_json",
            f"not JSON{where}",
            "A file being synced can be partial for a moment: it is read again when it "
            "changes. Otherwise check that --connection-file names the file the remote writes.",
        ) from None
    if not isinstance(data, dict):
        raise RecordRefused(
            "bad_record", "not a JSON object", "Check that --connection-file names the right file."
        )
    return data


def parse_time(value: str) -> datetime | None:
    """An ISO 8601 time as an aware datetime (UTC when it names no zone), or None."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _fields(data: dict[str, Any]) -> ConnectionInfo:
    url = data.get("gateway_url") or data.get("url")
    if url is not None and not isinstance(url, str):
        raise RecordRefused("bad_record", "'gateway_url' is not a string", UPDATE_REMOTE)
    if url:
        check_remote_url(url)
    state, token, updated = data.get("state", ""), data.get("token"), data.get("updated_at")
    if not isinstance(state, str) or not (token is None or isinstance(token, str)):
        raise RecordRefused("bad_record", "'state' or 'token' is not a string", UPDATE_REMOTE)
    if not isinstance(updated, str) or parse_time(updated) is None:
        raise RecordRefused("bad_record", "'updated_at' is not an ISO 8601 time", UPDATE_REMOTE)
    return ConnectionInfo(
        gateway_url=url.rstrip("/") if url else None,
        state=state,
        token=token or None,
        updated_at=updated,
        reason=_text(data.get("reason")),
        machine_started_at=_time_text(data.get("machine_started_at")),
        estimated_end_at=_time_text(data.get("estimated_end_at")),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _time_text(value: Any) -> str | None:
    return value if isinstance(value, str) and parse_time(value) is not None else None


def _verify(data: dict[str, Any], token: str | None) -> None:
    signature = data.get(SIGNATURE)
    if not isinstance(signature, str) or not signature:
        raise RecordRefused(
            "unsigned",
            "the record has no signature: it was written by an older jupyter-colab-tunnel on "
            "the remote, by a server without a token, or by someone else",
            f"{UPDATE_REMOTE} {PRIVATE_FOLDER}",
        )
    if token is None:
        raise RecordRefused(
            "no_key",
            "the record is signed, but this relay has no remote token to check it with",
            "Give the relay the remote Jupyter token with --token-file or "
            "$JUPYTER_COLAB_TUNNEL_TOKEN.",
        )
    try:
        expected = record_signature(data, token)
    except ValueError:  # e.g. NaN in a field: nothing the remote writes
        expected = ""
    if not hmac.compare_digest(signature.encode("utf-8"), expected.encode("ascii")):
        raise RecordRefused(
            "bad_signature",
            "the record's signature does not match the remote token this relay holds: "
            "someone without the token wrote it, or the remote's token changed",
            "If the remote has a new token, put it in --token-file and restart the relay. "
            + PRIVATE_FOLDER,
        )


def accept_record(
    raw: bytes, token: str | None, in_use: ConnectionInfo | None = None
) -> ConnectionInfo:
    """The record in `raw` if the relay may follow it, else RecordRefused.

    `token` is the relay's own remote token (--token-file or the environment). Without one, a
    record that carries the token is checked against it: that proves the file whole, not who
    wrote it (the file is then the secret). `in_use` is the record followed now: an older one
    (by `updated_at`) is refused as a replay.
    """
    data = decode_record(raw)
    key = token
    if key is None:
        carried = data.get("token")
        key = carried if isinstance(carried, str) and carried else None
    _verify(data, key)
    info = _fields(data)
    if in_use is not None and in_use.updated_at and info.updated_at:
        new, old = parse_time(info.updated_at), parse_time(in_use.updated_at)
        if new is not None and old is not None and new < old:
            raise RecordRefused(
                "stale",
                f"the record (updated_at {info.updated_at}) is older than the one in use "
                f"({in_use.updated_at}): an old copy put back, by a sync conflict or by someone "
                "replaying it",
                "The relay keeps its current remote; the remote's next change is followed. If "
                "the remote's clock went back, restart the relay.",
            )
    return info
