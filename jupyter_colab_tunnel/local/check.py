"""The relay's start check: one look at the remote, and a plain sentence about what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .failures import classify_exception, classify_status


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    kind: str  # ok | gateway_only | forbidden | no_tunnel | dns | tls | timeout | ...
    message: str
    hint: str = ""


async def check_remote(
    client: AsyncHTTPClient,
    url: str | None,
    headers: dict[str, str],
    timeout: float = 15.0,
    ca_certs: str | None = None,
) -> CheckResult:
    """GET /colab/status (then /api/kernelspecs) on the remote `url` with `headers`."""
    if not url:
        return CheckResult(
            False,
            "no_url",
            "the remote has no live tunnel URL yet",
            "Wait for the remote's tunnel to become ready (its connection file says its state).",
        )

    async def get(path: str) -> tuple[int, bytes]:
        request = HTTPRequest(
            url.rstrip("/") + path,
            headers=headers,
            connect_timeout=timeout,
            request_timeout=timeout,
            follow_redirects=False,
            validate_cert=True,
            ca_certs=ca_certs,
        )
        response = await client.fetch(request, raise_error=False)
        if response.code == 599:
            raise response.error or OSError("no answer")
        return response.code, response.body or b""

    try:
        code, body = await get("/colab/status")
        edge = classify_status(code, body, url)
        if edge is not None:
            return CheckResult(False, edge.reason, edge.message, edge.hint)
        if code == 200:
            return CheckResult(
                True, "ok", f"the remote at {url} answers, with jupyter-colab-tunnel"
            )
        if code == 403:
            return CheckResult(
                False,
                "forbidden",
                f"the remote at {url} refused the token (403)",
                "Pass the remote Jupyter server's token with --token-file or "
                "$JUPYTER_COLAB_TUNNEL_TOKEN (or write it into the connection file with "
                "c.ColabTunnelApp.connection_file_token = True).",
            )
        if code == 404:
            code, body = await get("/api/kernelspecs")
            if code == 200:
                return CheckResult(
                    True,
                    "gateway_only",
                    f"the remote at {url} is a Jupyter server without jupyter-colab-tunnel: it "
                    "still works as a gateway (kernels), but /colab/* is not there",
                )
            if code == 403:
                return CheckResult(
                    False, "forbidden", f"the remote at {url} refused the token (403)"
                )
        return CheckResult(
            False,
            "http_error",
            f"the remote at {url} answered {code}",
            "Is this the URL of a Jupyter server (with its base_url)?",
        )
    except Exception as e:
        failure = classify_exception(e, url)
        return CheckResult(False, failure.reason, failure.message, failure.hint)
