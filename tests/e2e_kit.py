"""Helpers for end-to-end tests: a kernel websocket client, a browser-like HTTP client, ports."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import psutil
import server_process
from server_process import Response, ServerProcess

from testkit.kernel_channel import KernelChannel, ws_url


@contextlib.contextmanager
def fixed_port(port: int) -> Iterator[None]:
    """Make the next start_server() listen on `port`.

    start_server() always picks its own port with free_port() and puts `--port` on the command
    line, where a second `--port` is an error; the named-tunnel test must know the remote's
    port before the start (it goes into the stand-in's origin), so swap free_port() meanwhile.
    """
    original = server_process.free_port
    server_process.free_port = lambda: port
    try:
        yield
    finally:
        server_process.free_port = original


def http(
    method: str,
    url: str,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP request; HTTP errors are returned, not raised, and redirects are not followed."""
    hdrs = dict(headers or {})
    data: bytes | None
    if isinstance(body, dict):
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    else:
        data = body
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            return Response(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, dict(e.headers), e.read())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def wait_until_listening(server: ServerProcess, timeout: float = 30.0) -> None:
    """Wait for the server to authenticate requests, using an endpoint that needs no kernels.

    start_server() waits on /api/status, which counts kernels: in gateway mode it asks the
    remote, so with a refused token it answers 403 for ever.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited {server.proc.returncode}:\n{server.log()[-4000:]}")
        with contextlib.suppress(OSError):
            if server.request("GET", "api/me", timeout=2).status == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"server did not answer in {timeout}s:\n{server.log()[-4000:]}")


def start_kernel(server: ServerProcess, timeout: float = 60.0) -> str:
    r = server.request("POST", "api/kernels", body={"name": "python3"}, timeout=timeout)
    assert r.status == 201, (r.status, r.body, server.log()[-3000:])
    return str(r.json()["id"])


def kernel_channel(server: ServerProcess, kernel_id: str) -> KernelChannel:
    """The kernel websocket of a server process, authenticated by its token."""
    return KernelChannel(
        ws_url(server.url) + f"api/kernels/{kernel_id}/channels",
        headers={"Authorization": f"token {server.token}"},
        origin=f"http://127.0.0.1:{server.port}",
    )


@dataclass
class Browser:
    """What a browser does with the tunnel URL: cookies, Origin, and XSRF on writes.

    `edge` is where the request goes (the stand-in's edge listener, standing in for DNS);
    `host` is the public hostname the browser believes it talks to.
    """

    edge: str
    host: str
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"https://{self.host}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        hdrs = {"Origin": self.origin, **(headers or {})}
        if self.cookies:
            hdrs["Cookie"] = self.cookie_header()
        if method not in ("GET", "HEAD") and "_xsrf" in self.cookies:
            hdrs.setdefault("X-XSRFToken", self.cookies["_xsrf"])
        r = http(method, self.edge.rstrip("/") + path, body=body, headers=hdrs)
        self._keep_cookies(r)
        return r

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _keep_cookies(self, r: Response) -> None:
        # urllib folds repeated Set-Cookie headers into one comma-joined value; SimpleCookie
        # parses that form too (cookie values here never contain commas).
        raw = [v for k, v in r.headers.items() if k.lower() == "set-cookie"]
        for value in raw:
            jar: SimpleCookie = SimpleCookie()
            jar.load(value)
            for name, morsel in jar.items():
                if morsel.value == "" or "1970" in morsel["expires"]:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def login(self, token: str) -> Response:
        """The login form: GET it (sets the _xsrf cookie), POST the token as the password."""
        page = self.request("GET", "/login")
        assert page.status == 200, (page.status, page.body[:500])
        assert "_xsrf" in self.cookies, page.headers
        form = urllib.parse.urlencode({"password": token, "_xsrf": self.cookies["_xsrf"]})
        return self.request(
            "POST",
            "/login?next=%2F",
            body=form.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    def kernel_channel(self, kernel_id: str, origin: str | None = None) -> KernelChannel:
        return KernelChannel(
            ws_url(self.edge.rstrip("/")) + f"/api/kernels/{kernel_id}/channels",
            headers={"Cookie": self.cookie_header()},
            origin=origin or self.origin,
        )


class RssPeak:
    """The most each process's RSS grew above its level at the start, sampled in a thread."""

    def __init__(self, pids: dict[str, int], period: float = 0.02) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.before = {name: p.memory_info().rss for name, p in self.procs.items()}
        self.peak = dict(self.before)
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss)
            self._stop.wait(self.period)

    def growth(self) -> dict[str, int]:
        return {name: self.peak[name] - self.before[name] for name in self.procs}

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
