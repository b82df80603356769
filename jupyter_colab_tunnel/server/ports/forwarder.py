"""What the forward route's halves share: the Forwarder (the ports it may reach, a kept-alive
client to the apps, counters), its timeouts, and the helpers that strip a hop's headers and word
an error."""

from __future__ import annotations

import dataclasses
import errno
from collections import Counter

from tornado import httputil

from ... import http1
from ...http1 import KeepAliveClient
from ...problems import Kind, Problem
from .policy import PortPolicy

# The app runs on this machine: a connection that is not made in this time never will be.
CONNECT_TIMEOUT = 5.0
# How long an app may think before its answer's head (a model server's whole completion may
# come at once; Cloudflare's edge gives up after 100 s anyway). The body may take any time.
HEADER_TIMEOUT = 300.0
# Not passed on in either direction: they describe one hop (with Proxy-Connection, which old
# clients send in place of Connection).
HOP_BY_HOP = http1.HOP_BY_HOP | {"proxy-connection"}
# Cloudflare Access's credentials of the hop: the relay's service token (CF-Access-Client-Id,
# -Secret, from its --headers-file) and the JWT that Access adds for the origin. They open the
# tunnel: an app is never given them.
HOP_CREDENTIALS_PREFIX = "cf-access-"


@dataclasses.dataclass
class ForwardStats:
    requests: int = 0
    websockets: int = 0
    open_websockets: int = 0
    bytes_to_apps: int = 0
    bytes_from_apps: int = 0
    failures: Counter[str] = dataclasses.field(default_factory=Counter)


class Forwarder:
    """What the route needs: which ports it may reach, a kept-alive client to the apps, counters."""

    def __init__(self, policy: PortPolicy) -> None:
        self.policy = policy
        self.client = KeepAliveClient()
        self.stats = ForwardStats()

    def close(self) -> None:
        self.client.close()


def app_headers(
    headers: httputil.HTTPHeaders, also: frozenset[str] = frozenset()
) -> httputil.HTTPHeaders:
    """Headers without the hop-by-hop ones (and those named in Connection, and `also`)."""
    drop = HOP_BY_HOP | also | http1.connection_tokens(headers)
    out = httputil.HTTPHeaders()
    for name, value in headers.get_all():
        if name.lower() not in drop:
            out.add(name, value)
    return out


def refused_connection(error: BaseException) -> bool:
    """Whether the app's port refused the dial (nothing listens there), through any wrapper."""
    cause = getattr(error, "cause", error)
    cause = getattr(cause, "real_error", None) or cause
    return isinstance(cause, ConnectionRefusedError) or (
        isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
    )


def describe(error: BaseException) -> str:
    """An upstream failure's cause, for a message: `Type: text`."""
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__


def error_body(kind: Kind, message: str, hint: str = "") -> str:
    """The relay's error shape, so that one client reads both (Problem.answer_body)."""
    return Problem(kind, message, hint).answer_body()


def clip(path: str, limit: int = 200) -> str:
    """A path fit for a log line or a message."""
    return path if len(path) <= limit else f"{path[:limit]}... ({len(path)} characters)"
