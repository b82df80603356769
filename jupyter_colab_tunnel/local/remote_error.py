"""What an answer of the remote (or of the local relay in front of it) means: the JSON object
of a 200, else one `RemoteError` with the kind, message and hint of problems.py.

Shared by both REST clients (client.py) and the relay's start check (local/check.py), so that
one answer has one name everywhere; local/failures.py names what got no answer at all and
Cloudflare's own answers. Never puts the token in a message: only URLs built from the
normalized base (no credentials, no query) appear.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..problems import KINDS, ColabTunnelError, Kind, Problem
from .failures import NO_ANSWER_KINDS, edge_answer, no_answer

JSONObject = dict[str, Any]


class RemoteError(ColabTunnelError):
    """A request to the remote REST API failed: its `problem` (kind, message, hint), the HTTP
    `status` (None when nothing answered) and the request `url` (which never holds the token).
    """

    def __init__(
        self,
        kind: Kind,
        message: str,
        hint: str = "",
        *,
        status: int | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(Problem(kind, message, hint))
        self.status = status
        self.url = url

    @classmethod
    def from_problem(
        cls, problem: Problem, *, status: int | None = None, url: str | None = None
    ) -> RemoteError:
        return cls(problem.kind, problem.message, problem.hint, status=status, url=url)

    @property
    def unreachable(self) -> bool:
        return self.kind in NO_ANSWER_KINDS

    def as_dict(self) -> dict[str, str]:
        return self.problem.as_dict()


def error_for_exception(exc: BaseException, url: str, timeout: float) -> RemoteError:
    """A network failure (nothing answered) as a RemoteError: local/failures.py names it."""
    return RemoteError.from_problem(no_answer(exc, url, timeout), url=url)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def result_or_error(
    status: int, headers: Mapping[str, str], body: bytes, url: str, method: str = "GET"
) -> JSONObject:
    """The JSON object of a 200 answer, else the RemoteError that the answer means.

    `headers` has lower-case names.
    """
    parsed = _json(body)
    if status == 200:
        if isinstance(parsed, dict):
            return parsed
        raise RemoteError(
            "bad_response",
            f"{method} {url} answered 200 without a JSON object "
            f"({headers.get('content-type') or 'no Content-Type'})",
            status=status,
            url=url,
        )
    raise _http_error(status, headers, body, parsed, url, method)


def _http_error(
    status: int, headers: Mapping[str, str], body: bytes, parsed: Any, url: str, method: str
) -> RemoteError:
    said = f"{method} {url} answered {status}"
    remote = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(remote, dict) and isinstance(remote.get("kind"), str):
        # A structured error of ours (the relay, a newer server): its own kind and hint.
        kind = remote["kind"]
        said_there = str(remote.get("message") or said)
        if kind not in KINDS:  # a kind this version does not know: keep its name in the text
            said_there = f"[{kind}] {said_there}"
        problem = Problem.from_dict({**remote, "message": said_there})
        assert problem is not None
        return RemoteError.from_problem(problem, status=status, url=url)
    message = parsed.get("message") if isinstance(parsed, dict) else None
    text = body[:200].decode("utf-8", "replace").strip()
    detail = f"{said}: {message}" if isinstance(message, str) and message else said

    def error(kind: Kind, hint: str = "", what: str = detail) -> RemoteError:
        return RemoteError(kind, what, hint, status=status, url=url)

    edge = edge_answer(status, body, url)
    if edge is not None:
        return error(edge.kind, edge.hint, f"{said}: {edge.message}")
    if 300 <= status < 400:
        location = headers.get("location") or ""
        if "cloudflareaccess.com" in location:
            return error(
                "forbidden",
                "Cloudflare Access protects this hostname: send a service token "
                "(CF-Access-Client-Id / CF-Access-Client-Secret headers) or allow this client "
                "in the Access policy.",
                f"{said}: redirected to the Cloudflare Access login",
            )
        return error(
            "redirected", what=f"{said}: redirected to {location.split('?')[0] or 'nowhere'}"
        )
    if status in (401, 403):
        return error("forbidden", what=f"{detail} (the token is missing or wrong)")
    if status == 404:
        return error("not_found")
    if status in (502, 503, 504, 520, 521, 522, 523, 524):
        return error(
            "bad_gateway",
            what=f"{said}: {message or text or 'no answer from the server behind it'}",
        )
    if status == 400:
        return error("bad_request")
    if status == 409:
        return error("conflict")
    if status >= 500:
        return error("server_error")
    return error("http_error", "See the message; check the URL and the token.")
