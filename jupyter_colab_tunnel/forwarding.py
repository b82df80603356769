"""What both sides of a forwarded port agree on: the remote route, and the headers that cross it.

`connect --forward 6006` puts the remote's 127.0.0.1:6006 at the local 127.0.0.1:6006. The relay
sends each request to the remote's route `<base_url>colab/forward/6006<path>`; the route sends
it on to the app with the path and query as the local client sent them.

A forwarded request is the local client's own: its Host, Origin, Authorization and Cookie are the
app's business (an OpenAI client's API key, a Gradio session cookie, a Streamlit origin check),
and so is its query. Through the tunnel those names belong to the hop instead: Host routes the
tunnel, Authorization carries the Jupyter token, Jupyter checks Origin and reads `?token=` as its
own. So the relay moves them under ENVELOPE_PREFIX names (`envelop`), and the route drops the
hop's own and puts the app's back (`unwrap`): the app sees what `ssh -L` would show it, and never
the Jupyter token.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode

from tornado import httputil

ROUTE_PREFIX = "/colab/forward/"
# The route under the server's base_url: the remote port, then the app's path (may be empty).
ROUTE = r"/colab/forward/(\d+)(/.*)?"
ENVELOPE_PREFIX = "X-Colab-Forward-"
ENVELOPED = ("Host", "Origin", "Authorization", "Cookie")
# The local query travels as this header, never in the route's URL (see the module's comment).
QUERY_HEADER = ENVELOPE_PREFIX + "Query"
# The names of the headers the relay added for the hop itself (its --headers-file: Cloudflare
# Access or a proxy's credentials): the route drops them, so an app never gets them.
HOP_HEADER = ENVELOPE_PREFIX + "Hop"
# The largest websocket message a forward carries, either way, on both sides (tornado's default
# of 10 MiB would cut a Gradio upload; each message is held whole once, so not unbounded).
FORWARD_MAX_MESSAGE = 256 * 1024 * 1024

# A path an edge or a server could resolve out of the route: a dot segment (raw or encoded) or
# a backslash. Cloudflare normalizes URLs at its edge, so `/colab/forward/6006/../../api/x`
# would reach the remote's own API with the Jupyter token the relay adds.
_ESCAPING = re.compile(r"(^|/)\.{1,2}(/|$)|\\", re.IGNORECASE)


# Close codes a close frame may never carry (RFC 6455 7.4.1): they only report how a socket ended.
_NOT_SENT = frozenset({1005, 1006, 1015})


def close_code_to_pass(code: int | None) -> int | None:
    """The close code one side of a forwarded websocket ended with, as the other side may send
    it on: None for a code that no close frame carries."""
    if code is None or code in _NOT_SENT or not 1000 <= code < 5000:
        return None
    return code


def route_path(remote_port: int, path: str) -> str:
    """The route's path (under the remote's base_url) for a local path."""
    return f"{ROUTE_PREFIX}{remote_port}{path if path.startswith('/') else '/' + path}"


def escapes(path: str) -> bool:
    """Whether a local path could leave the route once resolved (dot segments, backslashes),
    as written or percent-decoded (once or twice)."""
    once = unquote(path)
    return any(_ESCAPING.search(p) for p in (path, once, unquote(once)))


def envelop(headers: httputil.HTTPHeaders, query: str) -> httputil.HTTPHeaders:
    """The local request's end-to-end headers with the app's Host, Origin, Authorization and
    Cookie (and its query) moved under ENVELOPE_PREFIX, ready for the hop's own to be added."""
    out = httputil.HTTPHeaders()
    for name, value in headers.get_all():
        if name.lower().startswith(ENVELOPE_PREFIX.lower()):
            continue  # only the relay writes these
        if name.title() in ENVELOPED:
            out.add(ENVELOPE_PREFIX + name.title(), value)
        else:
            out.add(name, value)
    if query:
        out[QUERY_HEADER] = query
    return out


def unwrap(
    headers: httputil.HTTPHeaders, url_query: str, default_host: str
) -> tuple[httputil.HTTPHeaders, str]:
    """The headers the app gets, and its query: the hop's Host, Origin, Authorization and
    Cookie dropped, the enveloped ones put back. Without an envelope (the route used directly)
    the app gets the route's own query less its `token` (Jupyter's), and sees `default_host`,
    as a local client of it would send."""
    out = httputil.HTTPHeaders()
    query = urlencode([(k, v) for k, v in parse_qsl(url_query, True) if k != "token"])
    hop_own = {n.strip().lower() for n in headers.get(HOP_HEADER, "").split(",") if n.strip()}
    for name, value in headers.get_all():
        title = name.title()
        if title in ENVELOPED or name.lower() in hop_own:
            continue  # the hop's own: the tunnel's Host, the Jupyter token, Jupyter's cookie
        if title == QUERY_HEADER:
            query = value
        elif title.startswith(ENVELOPE_PREFIX):
            inner = title[len(ENVELOPE_PREFIX) :]
            if inner in ENVELOPED:
                out.add(inner, value)
        else:
            out.add(name, value)
    if "Host" not in out:
        out["Host"] = default_host
    return out, query
