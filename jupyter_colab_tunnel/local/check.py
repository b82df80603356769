"""The relay's start check: one look at the remote, and a plain sentence about what is wrong.

What is wrong is a `Problem` named as the REST client names it (client.py's classification of
answers, local/failures.py's of network failures), so `connect --check`, the relay and the MCP
tools say the same thing about the same remote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tornado.httputil import HTTPHeaders

from ..http1 import KeepAliveClient, UpstreamError
from ..problems import Kind, Problem
from .failures import no_answer
from .remote_error import RemoteError, result_or_error

# The outcomes where the relay can serve: the remote has the extension, or is a plain Jupyter
# server (kernels work, /colab/* does not).
Outcome = Literal["ok", "gateway_only"]

FORBIDDEN_HINT = (
    "Pass the remote Jupyter server's token with --token-file or $JUPYTER_COLAB_TUNNEL_TOKEN "
    "(or write it into the connection file with c.ColabTunnelApp.connection_file_token = True)."
)


@dataclass(frozen=True)
class CheckResult:
    """What the check found: the remote works (`problem` is None, `kind` ok or gateway_only),
    or the `problem` that stops it (its kind, message and hint)."""

    kind: Outcome | Kind
    message: str
    problem: Problem | None = None

    @classmethod
    def failed(cls, problem: Problem) -> CheckResult:
        return cls(problem.kind, problem.message, problem)

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def hint(self) -> str:
        return self.problem.hint if self.problem is not None else ""


async def check_remote(
    client: KeepAliveClient,
    url: str | None,
    headers: dict[str, str],
    timeout: float = 15.0,
) -> CheckResult:
    """GET /colab/status (then /api/kernelspecs) on the remote `url` with `headers`, over
    `client` (the relay's kept connections: the second GET reuses the first's)."""
    if not url:
        return CheckResult.failed(
            Problem(
                "no_upstream",
                "the remote has no live tunnel URL yet",
                "Wait for the remote's tunnel to become ready (its connection file says its "
                "state).",
            )
        )
    base = url.rstrip("/")

    async def get(path: str) -> None:
        """Returns when the answer is a JSON object; raises RemoteError (or the network's)."""
        target = base + path
        try:
            response = await client.fetch(
                target, "GET", HTTPHeaders(headers), None, timeout, timeout
            )
        except UpstreamError as e:
            raise e.cause from None  # named below, as nothing answered
        answer = {k.lower(): v for k, v in response.headers.get_all()}
        result_or_error(response.code, answer, response.body, target)

    try:
        try:
            await get("/colab/status")
            return CheckResult("ok", f"the remote at {url} answers, with jupyter-colab-tunnel")
        except RemoteError as e:
            if e.kind != "not_found":
                raise
        await get("/api/kernelspecs")
        return CheckResult(
            "gateway_only",
            f"the remote at {url} is a Jupyter server without jupyter-colab-tunnel: it still "
            "works as a gateway (kernels), but /colab/* is not there",
        )
    except RemoteError as e:
        problem = e.problem
        if problem.kind == "forbidden" and e.status in (401, 403):
            # The token at stake here is the remote's, whatever the client's hint says.
            said = f"the remote at {url} refused the token ({e.status})"
            problem = Problem("forbidden", said, FORBIDDEN_HINT)
        return CheckResult.failed(problem)
    except Exception as e:
        return CheckResult.failed(no_answer(e, url, timeout))
