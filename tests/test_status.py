"""GET /colab/status in an in-process server: auth, every field with real values, base_url."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import jupyter_server
import psutil
import pytest
from tornado.httpclient import HTTPClientError

from jupyter_colab_tunnel import __version__
from jupyter_colab_tunnel.server import status

ENDPOINTS = ["colab/status"]


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_needs_credentials(jp_fetch: Any, colab_app: Any, path: str) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(path, headers={"Authorization": ""})
    assert e.value.code == 403
    assert e.value.response is not None
    assert e.value.response.headers["Content-Type"].startswith("application/json")
    assert "message" in json.loads(e.value.response.body)


async def test_wrong_token_is_forbidden(jp_fetch: Any, colab_app: Any) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("colab/status", headers={"Authorization": "token wrong"})
    assert e.value.code == 403


async def test_status_fields(
    jp_fetch: Any, colab_app: Any, jp_serverapp: Any, jp_root_dir: Any, jp_base_url: str
) -> None:
    # A count of running kernels is checked in test_kernels.py (a real kernel takes seconds).
    r = await jp_fetch("colab/status")
    assert r.code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = json.loads(r.body)
    assert set(body) == {"version", "server", "runtime", "resources", "tunnel", "gpu", "life"}
    assert body["version"] == __version__

    server = body["server"]
    assert server["version"] == jupyter_server.__version__
    started = datetime.fromisoformat(server["started_at"].replace("Z", "+00:00"))
    assert started.tzinfo is not None
    assert 0 <= server["uptime_s"] < 600
    assert server["base_url"] == jp_base_url
    assert server["root_dir"] == str(jp_root_dir)
    assert server["kernels"] == 0
    assert server["auth"] == "token"

    runtime = body["runtime"]
    assert runtime["colab"] is False
    assert runtime["accelerator"] == "none"
    assert runtime["tpu_type"] is None
    assert runtime["python"]
    assert runtime["platform"].startswith("Linux")
    assert runtime["user"]

    res = body["resources"]
    assert res["cpu_count"] == psutil.cpu_count()
    assert res["memory"]["total"] == psutil.virtual_memory().total
    assert 0 < res["memory"]["used"] < res["memory"]["total"]
    assert res["disk"]["path"] == str(jp_root_dir)
    assert res["disk"]["total"] == psutil.disk_usage(str(jp_root_dir)).total
    assert isinstance(body["tunnel"], dict)
    assert isinstance(body["gpu"], dict)


async def test_resources_are_read_once_per_ttl_and_again_after_it(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch, hand_clock: Any
) -> None:
    reads: list[str] = []
    real = status.resources

    def counting(root_dir: str) -> dict[str, Any]:
        reads.append(root_dir)
        return real(root_dir)

    monkeypatch.setattr(status, "resources", counting)
    reporter = status.StatusReporter(
        colab_app.serverapp, time.time(), {}, colab_app.tunnel, colab_app.gpu, clock=hand_clock
    )
    for _ in range(5):
        await reporter.status()
        hand_clock.advance(status.RESOURCES_TTL / 10)
    assert len(reads) == 1
    hand_clock.advance(status.RESOURCES_TTL)
    await reporter.status()
    assert len(reads) == 2


@pytest.mark.parametrize("jp_base_url", ["/deep/base/path/"])
async def test_non_default_base_url(jp_fetch: Any, colab_app: Any, jp_base_url: str) -> None:
    r = await jp_fetch("colab/status")
    assert json.loads(r.body)["server"]["base_url"] == "/deep/base/path/"
