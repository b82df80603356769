"""GET /colab/ and its two assets, with Jupyter's page auth (token or login cookie).

A `?token=` load is answered with a redirect to the same address without it: Jupyter's identity
provider has set its login cookie on that answer, so the token leaves the address bar and the
history, and the page (served `no-store`) is never kept in the browser's cache.

The files are read once from the package and served from memory. Every URL in them is
relative, so the page works under any base_url, through the tunnel and through a relay. The
Content-Security-Policy lets the page talk to this server only: a browser refuses any request
it would make elsewhere.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from urllib.parse import parse_qsl, urlencode

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

AUTH_RESOURCE = "colab"
FILES = {
    "index.html": "text/html; charset=UTF-8",
    "dashboard.css": "text/css; charset=UTF-8",
    "dashboard.js": "text/javascript; charset=UTF-8",
}
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


@cache
def asset(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


def _without_token(handler: JupyterHandler, path: str) -> str:
    """`path` with the request's query minus `token` (the rest, e.g. ?minutes=, is kept)."""
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(handler.request.query, keep_blank_values=True)
            if k != "token"
        ]
    )
    return path + (f"?{query}" if query else "")


class DashboardHandler(ExtensionHandlerMixin, JupyterHandler):
    """The page and its assets; a browser without credentials is sent to Jupyter's login."""

    auth_resource = AUTH_RESOURCE

    @property
    def content_security_policy(self) -> str:
        return POLICY

    @web.authenticated
    @authorized
    def get(self, name: str = "") -> None:
        name = name or "index.html"
        if name not in FILES:
            raise web.HTTPError(404)
        if name == "index.html":
            # The page is never stored (its address may have held the token).
            self.set_header("Cache-Control", "no-store")
            if self.get_query_argument("token", None) is not None:
                # Jupyter has just logged this browser in with its cookie (the token was good,
                # or @web.authenticated would have sent it to the login page): take the token
                # out of the address bar and the history, as the page's API calls need only
                # the cookie.
                self.redirect(_without_token(self, self.request.path))
                return
        else:
            # Revalidated on every load (tornado answers 304 on a matching ETag): fresh after
            # upgrades.
            self.set_header("Cache-Control", "no-cache")
        self.set_header("Content-Type", FILES[name])
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(asset(name))


class SlashHandler(ExtensionHandlerMixin, JupyterHandler):
    """/colab -> /colab/: the page's relative URLs need the trailing slash."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        # Without the token: Jupyter's login cookie is set on this answer already.
        self.redirect(_without_token(self, self.request.path + "/"))


dashboard_handlers: list[tuple[str, type[JupyterHandler]]] = [
    ("/colab", SlashHandler),
    ("/colab/", DashboardHandler),
    (r"/colab/(dashboard\.css|dashboard\.js)", DashboardHandler),
]
