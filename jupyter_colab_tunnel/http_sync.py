"""The package's one blocking HTTP request: for `ColabClientSync` (command lines, notebook
cells) and `launch()`'s questions to the server it started.

urllib, on purpose: measured against httpx's pooled sync client, a new urllib connection each
time was faster on loopback and through the tunnel stand-in, and urllib costs a third of httpx's
import (docs/performance.md, "Request paths"). Redirects are never followed: a redirect is an
answer the caller classifies (e.g. Cloudflare Access), and the token must not follow it.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# The environment's proxies apply to a remote; loopback (launch()'s own server) takes none.
_VIA_ENV = urllib.request.build_opener(_NoRedirect)
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def request(
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    *,
    timeout: float,
    max_body: int,
    direct: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of any HTTP answer. Raises OSError (or
    ValueError) when nothing answered: the caller names it (local/failures.py).

    `url` is an http(s) URL of the caller's making; `direct`: no proxy, for loopback."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))  # noqa: S310
    opener = _DIRECT if direct else _VIA_ENV
    try:
        with opener.open(req, timeout=timeout) as r:
            status, raw = int(r.status), r.read(max_body)
            answer = {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:  # an answer all the same (4xx, 5xx, 3xx not followed)
        with e:
            status, raw = e.code, e.read(max_body)
            answer = {k.lower(): v for k, v in (e.headers or {}).items()}
    return status, answer, raw
