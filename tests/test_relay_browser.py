"""A real JupyterLab in headless Chromium, through a local gateway server and the relay.

The notebook opens on a live kernel (its first cell runs, no reload); the remote tunnel then
restarts with a new URL, and the open tab runs its next cell on the same kernel, again without a
reload. Needs jupyterlab (test extra) and Debian's `chromium`; skipped without them.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import pytest
from relay_env import start_following_relay, start_local
from tunnel_env import TunnelServer

from testkit.headless import Chromium, chromium_path

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(chromium_path() is None, reason="needs chromium"),
    pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None, reason="needs jupyterlab"),
]

CELLS = ["x = 41; print('set', x)", "print(x + 1)"]
RELOADS = 4
SELECT_KERNEL = """(() => {
  const button = [...document.querySelectorAll('.jp-Dialog button')]
    .find(b => b.innerText.trim() === 'Select');
  if (!button) return false;
  button.click();
  return true;
})()"""


def cell(i: int) -> str:
    return f"document.querySelectorAll('.jp-Notebook .jp-Cell')[{i}]"


def output_of(i: int) -> str:
    return f"({cell(i)}?.querySelector('.jp-OutputArea-output')?.innerText || '')"


def click(browser: Chromium, element: str) -> None:
    """Click the middle of the element that the JS expression `element` returns."""
    x, y = browser.eval(
        f"(() => {{ const r = ({element}).getBoundingClientRect();"
        " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    for kind in ("mousePressed", "mouseReleased"):
        browser.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def shift_enter(browser: Chromium) -> None:
    for kind in ("keyDown", "keyUp"):
        browser.send(
            "Input.dispatchKeyEvent",
            type=kind,
            key="Enter",
            code="Enter",
            windowsVirtualKeyCode=13,
            modifiers=8,  # Shift
        )


def run_cell(browser: Chromium, i: int, expect: str, timeout: float = 90.0) -> str:
    click(browser, f"{cell(i)}.querySelector('.jp-InputArea-editor')")
    shift_enter(browser)
    return str(
        browser.wait_for(
            f"{output_of(i)}.includes({json.dumps(expect)}) && {output_of(i)}", timeout
        )
    )


def test_jupyterlab_tab_survives_a_tunnel_switch(
    tunnel_server: Any, server_factory: Any, tmp_path: Path
) -> None:
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    remote: TunnelServer = tunnel_server(
        traits={"connection_file": str(connection_file), "tunnel_mode": "quick"}
    )
    remote.wait_state("ready")
    relay = start_following_relay(tmp_path, remote.server.token, connection_file)
    browser = None
    try:
        local = start_local(server_factory, relay)
        notebook = {
            "cells": [
                {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
                 "outputs": [], "source": source}
                for i, source in enumerate(CELLS)
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }  # fmt: skip
        (local.root_dir / "nb.ipynb").write_text(json.dumps(notebook))
        browser = Chromium(tmp_path / "chromium")
        browser.navigate(f"{local.url}lab/tree/nb.ipynb?token={local.token}")
        browser.wait_for(f"!!({cell(1)} && {cell(1)}.querySelector('.jp-InputArea-editor'))", 90)
        # JupyterLab may ask which kernel to start for this notebook: take the default.
        deadline = time.monotonic() + 90
        while not remote.server.get_json("api/kernels"):
            assert time.monotonic() < deadline, "no kernel was started on the remote"
            browser.eval(SELECT_KERNEL)
            time.sleep(0.5)
        # The status bar shows the kernel of the active notebook: focus it, then wait for idle.
        click(browser, f"{cell(0)}.querySelector('.jp-InputArea-editor')")
        browser.wait_for("document.body.innerText.includes('| Idle')", 60)
        # A live kernel on the first try: the cell runs and prints, no reload.
        assert "set 41" in run_cell(browser, 0, "set 41")
        kernels = remote.server.get_json("api/kernels")
        assert len(kernels) == 1

        before = remote.tunnel()
        assert remote.post("restart").status == 200
        after = remote.server.wait_for(
            "colab/tunnel", lambda b: b["state"] == "ready" and b["pid"] != before["pid"], 30
        )
        assert after["url"] != before["url"]
        relay.wait_status(lambda s: s["upstream"] == after["url"])
        # The open tab, the same kernel (x is still 41), without a reload.
        assert "42" in run_cell(browser, 1, "42")
        assert [k["id"] for k in remote.server.get_json("api/kernels")] == [kernels[0]["id"]]

        # Page loads on the running kernel: live every time, never two upstreams left.
        for _ in range(RELOADS):
            browser.eval("window.beforeReload = true")
            browser.send("Page.reload")
            browser.wait_for(
                f"!window.beforeReload && !!({cell(1)}?.querySelector('.jp-InputArea-editor'))", 90
            )
            click(browser, f"{cell(1)}.querySelector('.jp-InputArea-editor')")
            browser.wait_for("document.body.innerText.includes('| Idle')", 60)
            assert "42" in run_cell(browser, 1, "42")
        remote_kernel = remote.server.get_json(f"api/kernels/{kernels[0]['id']}")
        assert remote_kernel["connections"] == 1
    finally:
        if browser is not None:
            browser.close()
        relay.stop()
