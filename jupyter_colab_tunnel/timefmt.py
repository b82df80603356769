"""Timestamps as the API shows them: ISO 8601, UTC, with a trailing Z."""

from __future__ import annotations

import time
from datetime import datetime, timezone


def iso_utc(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    return iso_utc(time.time()) or ""
