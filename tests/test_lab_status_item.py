"""The status-bar item of the JupyterLab extension, in a real JupyterLab in headless Chromium.

A remote `jupyter server` with the extension, the cloudflared stand-in and the NVML stand-in (two
fake T4s; GPU 0 holds the remote's kernels), the relay, and a local gateway-mode `jupyter lab`
whose page loads the prebuilt extension (from the wheel's share/jupyter/labextensions, or
`jupyter labextension develop .` in a source tree). The item reads the local server's
/colab/remote/* (tests/test_lab_remote.py tests those on their own).

COLAB_LAB_SCREENSHOT=path writes a screenshot with the panel open there (scripts/lab_screenshot.py
makes docs/jupyterlab.png with it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from dashboard_kit import start_gpu_tunnel_server
from relay_env import start_following_relay, start_local
from test_relay_browser import SELECT_KERNEL, cell, click

from testkit.headless import Chromium, chromium_path
from testkit.relay_process import GATEWAY_ARGS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(chromium_path() is None, reason="needs chromium"),
    pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None, reason="needs jupyterlab"),
]

ITEM = "document.getElementById('jp-colab-remote-item')"
PANEL = "document.getElementById('jp-colab-remote-panel')"
ITEM_TEXT = f"({ITEM}?.innerText || '')"
PANEL_TEXT = f"({PANEL}?.innerText || '')"
NOT_INSTALLED = (
    "the JupyterLab extension jupyter-colab-tunnel is not installed where this JupyterLab looks: "
    "`pip install .` installs the built one; in a source tree run `npm ci && npm run build:prod "
    "&& jupyter labextension develop --overwrite .`"
)
# The extension's requests, as the page's Resource Timing saw them.
REMOTE_REQUESTS = """performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/colab/remote/'))
  .map(e => ({name: e.name.split('/colab/remote/')[1].split('?')[0],
              bytes: e.encodedBodySize, transfer: e.transferSize}))"""


def open_lab(browser: Chromium, url: str) -> None:
    """Load a JupyterLab page; fail (not skip) where the page does not list the extension."""
    browser.navigate(url)
    # The page's config, once the whole script element has loaded (JSON.parse throws before).
    federated = browser.wait_for(
        "JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        ".federated_extensions.map(e => e.name).concat(['(listed)'])",
        timeout=60,
    )
    assert "jupyter-colab-tunnel" in federated, f"{NOT_INSTALLED} (the page lists {federated})"
    browser.wait_for("!!document.querySelector('#jp-main-statusbar')", 90)


def item_visible(browser: Chromium) -> bool:
    return bool(
        browser.eval(f"(() => {{ const i = {ITEM}; return !!i && i.offsetParent !== null; }})()")
    )


def test_status_item_shows_the_remote_follows_a_switch_and_says_when_it_stops(
    server_factory: Any, tmp_path: Path
) -> None:
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    remote = start_gpu_tunnel_server(
        tmp_path / "remote",
        traits={"connection_file": str(connection_file), "tunnel_mode": "quick"},
    )
    relay = None
    browser = None
    try:
        first = remote.wait_state("ready")
        relay = start_following_relay(tmp_path, remote.server.token, connection_file)
        local = start_local(server_factory, relay)
        notebook = {
            "cells": [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {},
                       "outputs": [], "source": "print('hi')"}],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }  # fmt: skip
        (local.root_dir / "train.ipynb").write_text(json.dumps(notebook))
        browser = Chromium(tmp_path / "chromium")
        open_lab(browser, f"{local.url}lab/tree/train.ipynb?token={local.token}")
        browser.wait_for(f"!!({cell(0)}?.querySelector('.jp-InputArea-editor'))", 90)
        deadline = time.monotonic() + 90
        while not remote.server.get_json("api/kernels"):
            assert time.monotonic() < deadline, "no kernel was started on the remote"
            browser.eval(SELECT_KERNEL)
            browser.pump(0.5)
        (kernel,) = remote.server.get_json("api/kernels")

        # The stand-in's GPU 0 (Tesla T4, 73 %, 9830 of 15360 MiB) and the tunnel, in words.
        text = browser.wait_for(
            f"{ITEM_TEXT}.includes('tunnel ready') && {ITEM_TEXT}.includes('T4') && {ITEM_TEXT}",
            60,
        )
        assert text.startswith("T4 73% 9.6/15 GiB"), text
        assert "up " in text or " left" in text, text
        title = browser.eval(f"{ITEM}.getAttribute('aria-label')")
        assert "GPU 0 Tesla T4" in title, title
        assert "tunnel ready" in title, title
        assert browser.eval(f"{ITEM}.classList.contains('jp-ColabRemote-good')")
        assert browser.eval(f"{ITEM}.dataset.remote") == "ok"

        # The panel: every GPU, the notebook's kernel on GPU 0 (matched by the kernel's id, named
        # by the local session's path), the tunnel's URL, the relay.
        click(browser, f"{ITEM}")
        # (the kernel's GPU process shows from the first GPU sample after the kernel started)
        panel = browser.wait_for(
            f"{PANEL_TEXT}.includes('Remote state') && {PANEL_TEXT}.includes('train.ipynb')"
            f" && {PANEL_TEXT}",
            60,
        )
        assert "GPU 0 (this notebook)" in panel, panel
        assert "train.ipynb (this notebook)\t9.0 GiB" in panel, panel
        assert "GPU 1\tTesla T4: 8% busy" in panel, panel
        assert first["url"] in panel, panel
        assert "Uptime" in panel, panel
        # No token of any side in the page's text or markup.
        html = browser.eval("document.documentElement.outerHTML")
        for secret in (remote.server.token, relay.token):
            assert secret not in html
        shot = os.environ.get("COLAB_LAB_SCREENSHOT")
        if shot:
            # JupyterLab's own toasts (the news question) would cover part of the page.
            browser.eval("document.querySelectorAll('.Toastify').forEach(t => t.remove())")
            browser.screenshot(Path(shot), full_page=False)

        # The item closes the panel and opens a new one (a closed popup disposes of its body).
        click(browser, f"{ITEM}")
        browser.wait_for(f"!{PANEL}", 10)
        click(browser, f"{ITEM}")
        browser.wait_for(f"{PANEL_TEXT}.includes('train.ipynb (this notebook)')", 30)

        # A tunnel switch: the item keeps polling through the relay; the open panel shows the
        # new URL.
        assert remote.post("restart").status == 200
        after = remote.server.wait_for(
            "colab/tunnel", lambda b: b["state"] == "ready" and b["url"] != first["url"], 30
        )
        browser.wait_for(f"{PANEL_TEXT}.includes({json.dumps('URL' + chr(9) + after['url'])})", 60)
        # The relay's state is read on every sixth poll (30 s): it follows too.
        panel = browser.wait_for(
            f"{PANEL_TEXT}.includes({json.dumps('Upstream' + chr(9) + after['url'])}) && {PANEL_TEXT}",
            90,
        )
        assert "Switches\t1" in panel, panel
        assert first["url"] not in panel, panel
        browser.wait_for(f"{ITEM_TEXT}.includes('tunnel ready')", 30)
        assert [k["id"] for k in remote.server.get_json("api/kernels")] == [kernel["id"]]

        # What one poll costs, as the page measured it (the report and docs/jupyterlab.md).
        requests = browser.eval(REMOTE_REQUESTS)
        sizes: dict[str, list[int]] = {}
        for r in requests:
            sizes.setdefault(r["name"], []).append(r["bytes"])
        print(
            "bytes per answer:", {k: max(v) for k, v in sizes.items()}, "requests:", len(requests)
        )
        assert set(sizes) == {"gpu", "tunnel", "status", "relay"}, sizes

        # The remote's tunnel stopped: the remote is out of reach, and the item says so in words.
        assert remote.post("stop").status == 200
        text = browser.wait_for(f"{ITEM_TEXT}.startsWith('Remote: ') && {ITEM_TEXT}", 90)
        assert text in (
            "Remote: Remote gone",
            "Remote: Remote tunnel stopped",
            "Remote: No tunnel",
        ), text
        assert browser.eval(f"{ITEM}.classList.contains('jp-ColabRemote-bad')")
        assert item_visible(browser)
        panel = browser.wait_for(f"{PANEL_TEXT}.includes('Hint') && {PANEL_TEXT}", 30)
        assert "Remote state" in panel, panel
    finally:
        if browser is not None:
            browser.close()
        if relay is not None:
            relay.stop()
        remote.server.stop()


@pytest.mark.parametrize("where", ["not_gateway_mode", "no_extension"])
def test_status_item_hides_where_there_is_no_remote_of_ours(
    where: str, server_factory: Any, tmp_path: Path
) -> None:
    if where == "not_gateway_mode":  # kernels run on this JupyterLab's own server
        lab = server_factory(args=["--ColabTunnelApp.tunnel_mode=off"])
    else:  # a plain Jupyter server as the gateway: nothing of ours behind it
        gateway = server_factory(
            config={"ServerApp": {"jpserver_extensions": {"jupyter_colab_tunnel": False}}}
        )
        lab = server_factory(
            args=[f"--gateway-url={gateway.url.rstrip('/')}", *GATEWAY_ARGS],
            env={"JUPYTER_GATEWAY_AUTH_TOKEN": gateway.token},
        )
    with Chromium(tmp_path / "chromium") as browser:
        open_lab(browser, f"{lab.url}lab?token={lab.token}")
        # One answer (404 with that reason), and the item hides; polling has stopped.
        browser.wait_for(f"{ITEM}?.dataset.remote === 'hidden'", 60)
        assert browser.eval(f"({REMOTE_REQUESTS}).map(r => r.name)") == ["gpu"]
        assert lab.request("GET", "colab/remote/gpu").json()["reason"] == where
        assert not item_visible(browser)
        # The status bar itself is there (the item hid, not the bar).
        assert browser.eval("document.querySelector('#jp-main-statusbar').innerText.length > 0")
