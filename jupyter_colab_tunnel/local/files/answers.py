"""What the remote's answers mean for a transfer: a cut to wait out and resume after, a
refusal that ends the whole copy, or the remote's own error (client.RemoteError, with the
problems.py kind of its JSON error body)."""

from __future__ import annotations

import json

from tornado import httputil

from ..client import JSONObject, RemoteError, result_or_error
from ..failures import NO_ANSWER_KINDS

# Answers of the local relay and Cloudflare's edge while the remote is away.
CUT_KINDS = frozenset(
    {*NO_ANSWER_KINDS, "no_tunnel", "bad_gateway", "no_upstream", "upstream_lost_request"}
)
CUT_STATUSES = frozenset({502, 503, 504, 530})
# At the start, what says "the tunnel is restarting" rather than "nothing is there".
RESTARTING_KINDS = frozenset({"no_upstream", "no_tunnel", "bad_gateway"})


def cut(error: RemoteError) -> bool:
    """Whether a failure means the remote is away for now (a tunnel restart, a relay waiting
    for a new URL, a dropped connection): worth waiting for, then resuming."""
    return error.kind in CUT_KINDS or (
        error.status in CUT_STATUSES and error.kind in ("server_error", "http_error")
    )


# The remote (or the relay) refused us, or is not a server with the files route: nothing more
# can be copied. (A `forbidden` of the route itself, a write the authorizer refuses, is about
# one file; the token is checked once up front by FilesClient.start.)
REFUSED_KINDS = frozenset({"bad_local_token", "not_found", "invalid_url", "redirected"})


def fatal_reach(error: RemoteError) -> bool:
    """Whether a failure means cp cannot use the remote at all (exit 3)."""
    return cut(error) or error.kind in REFUSED_KINDS


class PutCut(RemoteError):
    """A PUT whose connection failed while its body was being sent."""

    @classmethod
    def of(cls, error: RemoteError) -> PutCut:
        return cls(error.kind, error.message, error.hint, status=error.status, url=error.url)


def answer(
    code: int, headers: httputil.HTTPHeaders, body: bytes, url: str, method: str
) -> JSONObject:
    lower = {k.lower(): v for k, v in headers.get_all()}
    try:
        return result_or_error(code, lower, body, url, method)
    except RemoteError as e:
        received = _received(body)
        if received is not None:
            e.received = received  # type: ignore[attr-defined]
        raise


def _received(body: bytes) -> int | None:
    """`received` of an upload_offset_mismatch answer."""
    try:
        value = json.loads(body).get("received")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
