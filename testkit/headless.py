"""A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol.

Only `websocket-client` (a jupyter_server dependency) is needed: no Playwright, no driver
download. The browser runs in its own process group with a fresh profile; `close()` kills the
whole group, so no renderer or zygote process outlives a test. Every request the page makes is
recorded (`requests`, `sent`), which is how tests prove a page loads nothing from elsewhere, and
every answer with its headers (`responses`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

FLAGS = [
    "--headless",
    "--no-sandbox",  # as root (CI containers, Colab) Chromium refuses to start otherwise
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-port=0",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    def __init__(self, workdir: Path, width: int = 1280, height: int = 900) -> None:
        path = chromium_path()
        if path is None:
            raise RuntimeError("chromium is not installed: apt-get install -y chromium")
        workdir.mkdir(parents=True, exist_ok=True)
        self._log_path = workdir / "chromium.log"
        log = self._log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                path,
                *FLAGS,
                f"--user-data-dir={workdir / 'profile'}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self.requests: list[str] = []
        # Each request as sent (url, method, headers) and each answer (url, status, headers).
        self.sent: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.console: list[str] = []
        self._events: list[dict[str, Any]] = []
        self._next_id = 0
        try:
            port = self._devtools_port()
            # No Origin header: Chromium 111+ refuses DevTools websockets that send one unless
            # started with --remote-allow-origins, which would let any page drive the browser.
            self._ws = websocket.create_connection(
                self._page_ws(port), timeout=30, suppress_origin=True
            )
            self.send("Network.enable")
            self.send("Page.enable")
            self.send("Runtime.enable")
            self.set_viewport(width, height)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self._log_path.read_text(errors="replace")
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", text)
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited {self.proc.returncode}:\n{text[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"chromium did not open DevTools in {timeout}s")

    @staticmethod
    def _page_ws(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.loads(r.read())
        page = next(t for t in targets if t.get("type") == "page")
        return str(page["webSocketDebuggerUrl"])

    # ----- protocol --------------------------------------------------------------------------

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
            self.sent.append(params["request"])
            if "redirectResponse" in params:  # the redirect answer itself has no event of its own
                self.responses.append(params["redirectResponse"])
        elif method == "Network.responseReceived":
            self.responses.append(params["response"])
        elif method == "Runtime.consoleAPICalled":
            self.console.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Page.javascriptDialogOpening":
            # "Leave this page?" (a JupyterLab tab with unsaved changes, on reload): leave, as
            # the reload asked. The reply to this call is read later as an event, and ignored.
            self._next_id += 1
            self._ws.send(
                json.dumps(
                    {
                        "id": self._next_id,
                        "method": "Page.handleJavaScriptDialog",
                        "params": {"accept": True},
                    }
                )
            )
        elif method == "Runtime.exceptionThrown":
            self.console.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
        self._events.append(message)

    def pump(self, seconds: float) -> None:
        """Read events for `seconds` (requests and console messages get recorded)."""
        deadline = time.monotonic() + seconds
        self._ws.settimeout(0.05)
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(websocket.WebSocketTimeoutException):
                    self._event(json.loads(self._ws.recv()))
        finally:
            self._ws.settimeout(30)

    # ----- conveniences ----------------------------------------------------------------------

    def set_viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def eval(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Evaluate until the value is truthy; return it."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                value = self.eval(expression)
                if value:
                    return value
            self.pump(0.05)
        raise AssertionError(f"timed out waiting for {expression}; last {value!r}; {self.console}")

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ws.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # Renderers may outlive the main process briefly: the group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
