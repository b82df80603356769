"""What went wrong between the local side and the remote, as problems.py kinds and hints.

The two classifiers of the local side, used by the relay, the REST client (and so the MCP tools)
and the relay's start check alike, so one failure has one name everywhere:

- `no_answer`: no HTTP answer came back (dns_error, tls_error, connection_refused, timeout,
  unreachable);
- `edge_answer`: an answer written by Cloudflare's edge, not by the remote Jupyter server
  (no_tunnel, bad_gateway).

`Failure` is the relay's form of a problem: what it answers a local client, and whether the
request may be sent again.
"""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from tornado.httpclient import HTTPClientError
from tornado.iostream import StreamClosedError

from ..problems import Kind, Problem

# Cloudflare answers 530 with "error code: 1033" when no tunnel is connected behind a hostname
# (a quick tunnel that was replaced, a named tunnel whose cloudflared is down).
CLOUDFLARE_NO_TUNNEL = 530

# The kinds where no HTTP answer came back from the remote.
NO_ANSWER_KINDS: frozenset[Kind] = frozenset(
    {"dns_error", "connection_refused", "tls_error", "timeout", "unreachable"}
)
# More specific than the defaults of "timeout" and "unreachable", which are launch()'s.
TIMEOUT_HINT = (
    "The remote may be overloaded, or the network slow: try again, or raise the timeout (the "
    "client's timeout=, the relay's --request-timeout). If it persists, check the remote "
    "server's log."
)
UNREACHABLE_HINT = (
    "Check the URL (or the connection file) and your network, and that the remote server and "
    "its tunnel are running."
)


@dataclass(frozen=True)
class Failure(Problem):
    """A problem as the relay answers it: `status` is the HTTP status it answers a local
    client; `unsent` is True when the request certainly did not reach the remote Jupyter server
    (safe to send again)."""

    status: int = 502
    unsent: bool = False

    @property
    def reason(self) -> Kind:
        """The kind, under the name of the `reason` field of the relay's error body."""
        return self.kind

    @property
    def problem(self) -> Problem:
        return Problem(self.kind, self.message, self.hint)

    @classmethod
    def of(cls, problem: Problem, status: int, unsent: bool) -> Failure:
        return cls(problem.kind, problem.message, problem.hint, status, unsent)


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: what failure messages name (never a path or query)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: causes, contexts, urllib's `reason`, tornado's `real_error`."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        inner = todo.pop(0)
        if inner is None or id(inner) in seen:
            continue
        seen.add(id(inner))
        yield inner
        reason = (
            getattr(inner, "reason", None) if isinstance(inner, urllib.error.URLError) else None
        )
        real = inner.real_error if isinstance(inner, StreamClosedError) else None
        todo += [
            reason if isinstance(reason, BaseException) else None,
            real,
            inner.__cause__,
            inner.__context__,
        ]


def _is_timeout(exc: BaseException) -> bool:
    # HTTPTimeoutError is tornado's HTTPClientError 599 "Timeout while connecting" / "Timeout".
    return isinstance(exc, TimeoutError) or (
        isinstance(exc, HTTPClientError) and exc.code == 599 and "Timeout" in str(exc)
    )


def no_answer(exc: BaseException, url: str, timeout: float | None = None) -> Problem:
    """The problem of a request to `url` that got no HTTP answer, from the exception (or the
    one it wraps); `timeout` (seconds), when known, is named in a timeout's message."""
    where = origin(url)
    host = urllib.parse.urlsplit(url).hostname or url
    for inner in _causes(exc):
        if _is_timeout(inner):
            within = f"within {timeout:g} s" if timeout is not None else "in time"
            return Problem("timeout", f"{url} did not answer {within}", TIMEOUT_HINT)
        if isinstance(inner, socket.gaierror):
            return Problem(
                "dns_error", f"the host name {host} does not resolve ({inner.strerror or inner})"
            )
        if isinstance(inner, ConnectionRefusedError):
            return Problem("connection_refused", f"nothing listens at {where} (connection refused)")
        if isinstance(inner, ssl.SSLError):
            why = getattr(inner, "reason", None) or inner
            return Problem("tls_error", f"TLS with {host} failed: {why}")
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, StreamClosedError) and exc.real_error is not None:
        detail = str(exc.real_error) or detail
    return Problem("unreachable", f"could not reach {where}: {detail}", UNREACHABLE_HINT)


def edge_answer(status: int, body: bytes, url: str) -> Problem | None:
    """The problem an answer from Cloudflare's edge means, or None for any other answer (the
    remote Jupyter server's own, which is relayed or surfaced as it is)."""
    text = body[:200].decode("utf-8", "replace").strip()
    if status == CLOUDFLARE_NO_TUNNEL or (status == 502 and "error code: 1033" in text):
        said = f"Cloudflare {status}" + (", error 1033" if "1033" in text else "")
        return Problem("no_tunnel", f"no tunnel is connected behind {origin(url)} ({said})")
    if status == 502 and text.startswith("error code: 502"):
        return Problem(
            "bad_gateway",
            f"the tunnel at {origin(url)} cannot reach the remote Jupyter server (Cloudflare 502)",
        )
    return None


def classify_exception(exc: BaseException, url: str) -> Failure:
    """The relay's failure for a request to `url` that got no HTTP answer."""
    problem = no_answer(exc, url)
    if problem.kind == "timeout":
        # Only a connect timeout is certain not to have sent anything.
        timeout = next(inner for inner in _causes(exc) if _is_timeout(inner))
        return Failure.of(problem, 504, "connect" in str(timeout).lower())
    unsent = problem.kind != "unreachable" or isinstance(exc, OSError)
    return Failure.of(problem, 502, unsent)


def classify_status(status: int, body: bytes, url: str) -> Failure | None:
    """The relay's failure for an answer from Cloudflare's edge (which the remote Jupyter
    server never saw), or None for the remote's own answer, which is relayed as it is."""
    problem = edge_answer(status, body, url)
    return None if problem is None else Failure.of(problem, 502, True)


def no_upstream(state: str) -> Failure:
    """No live tunnel URL to send a request to (within the relay's wait)."""
    return Failure(
        "no_upstream",
        f"the remote has no live tunnel URL (its state: {state})",
        "Wait for the remote's tunnel to become ready; see GET /relay/status.",
        503,
        True,
    )
