"""What went wrong between the relay and the remote, in words a user can act on."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from tornado.httpclient import HTTPClientError

# Cloudflare answers 530 with "error code: 1033" when no tunnel is connected behind a hostname
# (a quick tunnel that was replaced, a named tunnel whose cloudflared is down).
CLOUDFLARE_NO_TUNNEL = 530


@dataclass(frozen=True)
class Failure:
    """reason: a short machine-readable kind; status: what the relay answers a local client."""

    reason: str
    message: str
    hint: str
    status: int
    # True when the request certainly did not reach the remote Jupyter server (safe to resend).
    unsent: bool


def classify_exception(exc: BaseException, url: str) -> Failure:
    """A failure to get any HTTP answer from `url`."""
    inner: BaseException | None = exc
    while inner is not None:
        if isinstance(inner, socket.gaierror):
            return Failure(
                "dns",
                f"cannot resolve the remote's host name ({url})",
                "A quick tunnel's name disappears when its cloudflared restarts: check that the "
                "remote is running and that the URL (or connection file) is current.",
                502,
                True,
            )
        if isinstance(inner, ssl.SSLError):
            return Failure(
                "tls",
                f"TLS failure talking to {url}: {getattr(inner, 'reason', None) or inner}",
                "The certificate is checked against the system trust store; behind a "
                "TLS-inspecting proxy point SSL_CERT_FILE at its CA bundle.",
                502,
                True,
            )
        if isinstance(inner, ConnectionRefusedError):
            return Failure(
                "refused",
                f"connection refused by {url}",
                "Nothing listens there: is the remote (or its tunnel) running?",
                502,
                True,
            )
        if isinstance(inner, TimeoutError) or (
            isinstance(inner, HTTPClientError) and inner.code == 599 and "Timeout" in str(inner)
        ):
            connect = "connect" in str(inner).lower()
            return Failure(
                "timeout",
                f"the remote did not answer in time ({url})",
                "The remote or its tunnel may be overloaded or gone; try again, or raise the "
                "relay's --request-timeout for slow operations.",
                504,
                connect,
            )
        inner = inner.__cause__ or inner.__context__
    return Failure(
        "unreachable",
        f"cannot reach the remote at {url}: {type(exc).__name__}: {exc}",
        "Check that the remote is running and that the URL (or connection file) is current.",
        502,
        isinstance(exc, OSError),
    )


def classify_status(status: int, body: bytes, url: str) -> Failure | None:
    """An answer that comes from Cloudflare's edge, not from the remote Jupyter server."""
    text = body[:200].decode("utf-8", "replace")
    if status == CLOUDFLARE_NO_TUNNEL or (status in (502, 530) and "error code: 1033" in text):
        return Failure(
            "no_tunnel",
            f"no tunnel is connected behind {url} (Cloudflare {status}, error 1033)",
            "The remote's cloudflared is restarting or gone; a quick tunnel gets a new URL "
            "when it restarts (follow it with --connection-file).",
            502,
            True,
        )
    if status == 502 and text.startswith("error code: 502"):
        return Failure(
            "origin_down",
            f"the tunnel at {url} cannot reach the remote Jupyter server (Cloudflare 502)",
            "Is the remote Jupyter server running?",
            502,
            True,
        )
    return None
