"""cloudflared's output lines -> events, and an exit -> a classified error. Pure functions."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..problems import Problem

# The quick-tunnel URL from the box; the box width varies, so match the URL, not a column.
# The DNS-failure line names https://api.trycloudflare.com/tunnel: the look-arounds and the
# 'api' exclusion keep it from being taken for a tunnel URL.
URL_RE = re.compile(r"(?<![\w./-])https://((?!api\.)[a-z0-9-]+\.trycloudflare\.com)(?![\w./-])")
METRICS_RE = re.compile(r"Starting metrics server on (\S+?)/metrics")
REGISTERED_RE = re.compile(r"Registered tunnel connection\b")
LEVEL_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DBG|INF|WRN|ERR|FTL) ")

_LEVELS = frozenset({"DBG", "INF", "WRN", "ERR", "FTL"})


@dataclass(frozen=True)
class LogEvent:
    """What one line tells the supervisor. All fields optional; most lines tell nothing."""

    url: str | None = None
    metrics: str | None = None
    registered: bool = False
    error: bool = False


def split_level(line: str) -> tuple[str, str]:
    """(level, message) of a text or JSON log line; level '' for plain (fatal/usage) text."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return "", line
        if isinstance(record, dict):
            level = str(record.get("level", "")).upper()[:3]
            extra = " ".join(
                f"{k}={v}" for k, v in record.items() if k not in ("level", "message", "time")
            )
            message = str(record.get("message", ""))
            return ("ERR" if level in ("ERR", "FAT") else level), f"{message} {extra}".strip()
        return "", line
    # Fast path for the default format, "2026-11-25T22:46:51Z INF message": floods are common.
    if len(line) > 24 and line[19] == "Z" and line[20] == " " and line[24] == " ":
        level = line[21:24]
        if level in _LEVELS:
            return level, line[25:]
    m = LEVEL_RE.match(line)
    if m:
        return m.group(1), line[m.end() :]
    return "", line


def parse_line(line: str) -> LogEvent | None:
    """The event carried by one stderr line, or None. Cheap checks first: floods are common."""
    if "trycloudflare.com" in line:
        m = URL_RE.search(line)
        if m:
            return LogEvent(url=f"https://{m.group(1)}")
    if "metrics server on" in line:
        m = METRICS_RE.search(line)
        if m:
            return LogEvent(metrics=m.group(1))
    if "Registered tunnel connection" in line and REGISTERED_RE.search(line):
        return LogEvent(registered=True)
    if " ERR " in line[:26] or (line.startswith("{") and split_level(line)[0] == "ERR"):
        return LogEvent(error=True)
    return None


def redact(line: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in line:
            line = line.replace(secret, "*****")
    return line


_NETWORK_MARKERS = (
    "no such host",
    "dial tcp",
    "dial udp",
    "lookup ",
    "Could not lookup srv records",
    "timeout awaiting response headers",
    "Client.Timeout exceeded",
    "connection refused",
    "network is unreachable",
    "i/o timeout",
    "failed to dial to edge",
    "no recent network activity",
    "TLS handshake timeout",
)


def classify_line(line: str) -> Problem | None:
    """A live error from a line cloudflared printed while running (it retries on its own)."""
    _, message = split_level(line)
    if "error code: 1015" in message or "429 Too Many Requests" in message:
        return Problem("rate_limited", message)
    if "address already in use" in message and "metrics" in message:
        return Problem("metrics_port_in_use", message)
    if any(marker in message for marker in _NETWORK_MARKERS):
        return Problem("network", message)
    return None


def _last_message(lines: Sequence[str]) -> str:
    """cloudflared's own last word: the final plain fatal line, else the last ERR line."""
    for line in reversed(lines):
        level, message = split_level(line)
        # "See 'cloudflared ... --help'." follows the real message: skip it.
        if level == "" and message.strip() and not message.startswith("See '"):
            return message.strip()
    for line in reversed(lines):
        level, message = split_level(line)
        if level == "ERR":
            return message.strip()
    return ""


def signal_name(number: int) -> str:
    """SIGTERM for 15; the number itself for a signal this platform does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def classify_exit(
    returncode: int, stderr_tail: Sequence[str], stdout_tail: Sequence[str]
) -> Problem:
    """Turn an unrequested exit of cloudflared into a classified error."""
    usage = next((ln for ln in stdout_tail if ln.startswith("Incorrect Usage")), None)
    if usage is None:
        usage = next((ln for ln in stderr_tail if ln.startswith("Incorrect Usage")), None)
    if usage is not None:
        # cloudflared exits 0 after a usage error: a configuration error, never a clean stop.
        return Problem("bad_arguments", usage.strip())
    message = _last_message(stderr_tail)
    if returncode == 127:
        # The setpriv wrapper could not exec cloudflared (it vanished after it was found).
        failed = next(
            (ln for ln in stderr_tail if ln.startswith("setpriv: failed to execute")), None
        )
        if failed is not None:
            return Problem("binary_unavailable", failed.strip())
    if returncode < 0:
        return Problem("crashed", f"cloudflared was killed by signal {signal_name(-returncode)}")
    if returncode == 255:
        token_line = next(
            (
                split_level(ln)[1].strip()
                for ln in reversed(stderr_tail)
                if "token is not valid" in ln or "requires the ID or name" in ln
            ),
            None,
        )
        if token_line is not None:
            return Problem("invalid_token", token_line)
        return Problem("crashed", message or "cloudflared exited 255")
    for line in reversed(stderr_tail):
        found = classify_line(line)
        if found is not None:
            return Problem(found.kind, message or found.message)
    if returncode == 0:
        return Problem(
            "crashed", message or "cloudflared exited (code 0) without being asked to stop"
        )
    return Problem("crashed", message or f"cloudflared exited with code {returncode}")
