"""The dashboard at /colab/ in a real headless Chromium, against a real server.

The server runs the cloudflared stand-in and fake GPUs (tests/dashboard_kit.py) under a
base_url, so the page's relative URLs are exercised; Chromium is Debian's `chromium` driven over
the DevTools protocol (testkit/headless.py), which records every request the page makes.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from dashboard_kit import start_gpu_tunnel_server
from prometheus_client.parser import text_string_to_metric_families

from testkit.fake_nvml import MiB
from testkit.headless import Chromium, chromium_path

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(chromium_path() is None, reason="needs chromium (apt-get install chromium)"),
]

RENDERED = """JSON.stringify({
  pill: document.getElementById('tunnel-pill').textContent,
  url: document.getElementById('tunnel-url').textContent,
  href: document.getElementById('tunnel-url').getAttribute('href'),
  command: document.getElementById('connect-command').textContent,
  names: [...document.querySelectorAll('.gpu .gpu-name')].map(e => e.textContent),
  utils: [...document.querySelectorAll('.gpu .gpu-util')].map(e => e.textContent),
  mems: [...document.querySelectorAll('.gpu .gpu-mem')].map(e => e.textContent),
  charts: [...document.querySelectorAll('.gpu svg.chart')].map(e => e.getAttribute('aria-label')),
  owners: [...document.querySelectorAll('#proc-rows tr')].map(r => r.textContent),
  runtime: document.getElementById('runtime-facts').textContent,
  events: document.querySelectorAll('#event-list li').length,
  problem: document.getElementById('problem').hidden,
  ports: Object.fromEntries([...document.querySelectorAll('#port-rows tr[data-port]')].map(r => [
    r.dataset.port,
    { text: r.textContent,
      flag: (r.querySelector('button.copy') || {}).dataset
        ? document.getElementById(r.querySelector('button.copy').dataset.copy).textContent : null },
  ])),
  location: location.href,
})"""


def start_session(server: Any, path: str) -> str:
    r = server.request(
        "POST",
        "api/sessions",
        body={"path": path, "type": "notebook", "kernel": {"name": "python3"}},
    )
    assert r.status == 201, r.body
    return str(r.json()["kernel"]["id"])


def restarts_total(server: Any) -> float:
    r = server.request("GET", "metrics")
    assert r.status == 200
    for family in text_string_to_metric_families(r.body.decode()):
        if family.name == "colab_tunnel_restarts":
            return float(family.samples[0].value)
    raise AssertionError("no colab_tunnel_restarts_total")


def readme_metrics_lines(server: Any) -> list[str]:
    """The README's /metrics line, run by bash with curl against `server`."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    [line] = [ln for ln in readme.splitlines() if ln.startswith("curl ") and "/metrics" in ln]
    line = line.replace("http://127.0.0.1:8888/", server.url)
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", line],
        env={**os.environ, "TOKEN": server.token},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [ln for ln in done.stdout.splitlines() if ln and not ln.startswith("#")]


def get_no_redirect(server: Any, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", server.base_url + path)
    return conn.getresponse()


@pytest.mark.timeout(240)
def test_dashboard_renders_tunnel_and_gpus(tmp_path: Path) -> None:
    ts = start_gpu_tunnel_server(tmp_path / "remote", base_url="/jct/")
    server = ts.server
    app: ThreadingHTTPServer | None = None
    try:
        tunnel = ts.wait_state("ready")
        kernel_id = start_session(server, "experiments/train.ipynb")
        origin = f"http://127.0.0.1:{server.port}/"

        # Without credentials a browser is sent to Jupyter's login page, never the dashboard.
        r = get_no_redirect(server, "colab/")
        assert r.status == 302
        assert urlparse(r.getheader("Location") or "").path == "/jct/login"
        r = get_no_redirect(server, "colab/dashboard.js")
        assert r.status == 302
        r = get_no_redirect(server, "colab")
        assert r.status == 302
        assert urlparse(r.getheader("Location") or "").path == "/jct/login"
        # With the token: logged in with Jupyter's cookie, and sent to the page without it.
        r = get_no_redirect(server, f"colab?token={server.token}&minutes=2")
        assert (r.status, r.getheader("Location")) == (302, "/jct/colab/?minutes=2")
        assert r.getheader("Cache-Control") == "no-store"

        # A small web app of this test's own, listening as TensorBoard would on the remote.
        app = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
        app_port = app.server_address[1]
        threading.Thread(target=app.serve_forever, daemon=True).start()

        with Chromium(tmp_path / "chromium") as browser:
            browser.navigate(f"{server.url}colab/?token={server.token}")
            browser.wait_for(
                "!!(document.body.dataset.loaded && document.querySelector('#proc-rows code')"
                f" && document.querySelector('#port-rows tr[data-port=\"{app_port}\"]'))"
            )
            page = json.loads(browser.eval(RENDERED))
            assert page["pill"] == "tunnel ready"
            assert page["url"] == page["href"] == tunnel["url"]
            # The relay's commands: the remote token in a private file, never on a command line.
            assert page["command"] == tunnel["connect"]["command"]
            assert f"jupyter colab-tunnel connect --url {tunnel['url']}/jct" in page["command"]
            assert "--token-file ~/.colab-token" in page["command"]
            assert "jupyter lab --gateway-url=http://127.0.0.1:18888" in page["command"]
            assert "auth_token" not in page["command"]
            assert page["names"] == ["Tesla T4", "Tesla T4"]
            assert page["utils"] == ["73%", "8%"]
            assert page["mems"] == ["9.6 GiB", "512 MiB"]
            assert all("over the last 5 minutes" in label for label in page["charts"])
            kernel_rows = [row for row in page["owners"] if kernel_id[:8] in row]
            assert len(kernel_rows) == 1
            assert "experiments/train.ipynb" in kernel_rows[0]
            assert "9.0 GiB" in kernel_rows[0]
            assert any("not a kernel of this server" in row for row in page["owners"])
            assert "Python" in page["runtime"]
            assert page["events"] >= 2
            assert page["problem"] is True  # no error banner
            # The test's app is listed with this process and the flag that forwards it.
            row = page["ports"][str(app_port)]
            assert f"({os.getpid()})" in row["text"]
            assert row["flag"] == f"--forward {app_port}"
            # The server's own port too, its command line without the token.
            assert f"({server.pid})" in page["ports"][str(server.port)]["text"]
            assert server.token not in json.dumps(page["ports"])
            # The server sent the browser on without the token, once its cookie was set: not
            # in the address bar, the history, nor in any page; no answer with it was stored.
            assert "token" not in page["location"]
            assert page["location"] == f"{server.url}colab/"
            history = browser.send("Page.getNavigationHistory")["entries"]
            assert history
            assert not [e["url"] for e in history if server.token in e["url"]]
            assert server.token not in browser.eval("document.documentElement.outerHTML")
            pages = [
                (r["url"], r["status"], {k.lower(): v for k, v in r["headers"].items()})
                for r in browser.responses
                if urlparse(r["url"]).path == "/jct/colab/"
            ]
            assert [(status, urlparse(url).query) for url, status, _ in pages] == [
                (302, f"token={server.token}"),
                (200, ""),
            ]
            assert all(h.get("cache-control") == "no-store" for _, _, h in pages), pages
            # The API calls carry no token: Jupyter's login cookie authenticates them.
            api = [
                r
                for r in browser.sent
                if urlparse(r["url"]).path
                in ("/jct/colab/tunnel", "/jct/colab/gpu", "/jct/colab/status", "/jct/colab/ports")
            ]
            assert api
            assert not [r["url"] for r in api if "authorization" in map(str.lower, r["headers"])]
            assert not [r["url"] for r in api if server.token in r["url"]]

            # Jupyter's login cookie (set on the ?token= load) alone authenticates the API.
            assert browser.eval("fetch('gpu').then(r => r.status)") == 200

            # It keeps polling: the GPU chart grows a second point.
            browser.wait_for(
                "document.querySelector('.gpu svg.chart polyline.util')"
                ".getAttribute('points').split(' ').length >= 2",
                timeout=15,
            )

            # Phone-sized: nothing wider than the screen.
            browser.set_viewport(390, 844, mobile=True)
            browser.pump(0.3)
            assert browser.eval("document.documentElement.scrollWidth") <= 390
            browser.screenshot(tmp_path / "phone.png")

            # Every request went to this server, under its base_url.
            browser.pump(0.2)
            assert browser.requests, "no request recorded"
            offsite = [u for u in browser.requests if not u.startswith(origin + "jct/")]
            assert offsite == [], offsite
            assert any(u.endswith("/jct/colab/gpu") for u in browser.requests)
            assert not [m for m in browser.console if m.startswith("exception")], browser.console

        # The README's `curl ... /metrics | grep ...`, run as written: the gauges, no buckets.
        shown = readme_metrics_lines(server)
        assert not [line for line in shown if "_bucket" in line], shown
        assert any(line.startswith("DCGM_FI_DEV_FB_USED{") for line in shown), shown
        assert any(line.startswith("colab_tunnel_up ") for line in shown), shown
        assert len(shown) < 60, shown

        # The same GPUs and tunnel on /metrics (what Prometheus and `curl | grep DCGM` see).
        r = server.request("GET", "metrics")
        assert r.status == 200
        families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
        used = {s.labels["gpu"]: s.value for s in families["DCGM_FI_DEV_FB_USED"].samples}
        assert used == {"0": 9830, "1": 512}
        assert b"DCGM_FI_DEV_GPU_UTIL{" in r.body
        assert families["colab_tunnel_up"].samples[0].value == 1
        gpu = server.get_json("colab/gpu")
        assert gpu["devices"][0]["memory"]["used"] // MiB == used["0"]

        # cloudflared dies and is restarted: the counter counts it, and a manual restart
        # (which resets /colab/tunnel's `restarts`) never makes the counter go back.
        os.kill(tunnel["pid"], signal.SIGKILL)
        ts.wait_state("ready", restarts=1)
        assert restarts_total(server) == 1
        assert ts.post("restart").status == 200
        ts.wait_state("ready", restarts=0)
        assert restarts_total(server) == 1
    finally:
        if app is not None:
            app.shutdown()
            app.server_close()
        server.stop()
