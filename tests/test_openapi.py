"""docs/openapi.yaml is valid, matches the code, and the response hooks enforce it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openapi_check
import pytest
from openapi_check import SpecViolation, check_response
from openapi_spec_validator import validate
from server_process import ServerProcess, free_port
from tornado.httpclient import HTTPClientError

from jupyter_colab_tunnel import forwarding, gpu, problems, states
from jupyter_colab_tunnel.connect import connect_info
from jupyter_colab_tunnel.local.lab.gateway_reader import GATEWAY_PATHS
from jupyter_colab_tunnel.local.lab.handlers import remote_handlers
from jupyter_colab_tunnel.server import handlers
from jupyter_colab_tunnel.server.files.handler import files_handlers
from jupyter_colab_tunnel.server.ports import forward

JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def schema(name: str) -> dict[str, Any]:
    found = openapi_check.spec()["components"]["schemas"][name]
    assert isinstance(found, dict)
    return found


def test_spec_is_valid_openapi_3_1() -> None:
    document = openapi_check.spec()
    assert document["openapi"].startswith("3.1")
    validate(document)
    assert document["components"]["securitySchemes"]["jupyterToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": document["components"]["securitySchemes"]["jupyterToken"]["description"],
    }


def test_spec_has_exactly_the_routes_and_methods_of_the_code() -> None:
    in_code = {
        (path, method)
        for path, handler in handlers.default_handlers
        for method in ("get", "post", "put", "patch", "delete")
        if getattr(handler, method) is not getattr(handlers.APIHandler, method)
    }
    # The forward route takes every method (head and options too) under one templated path.
    ((route, forward_handler),) = forward.forward_handlers()
    assert route == forwarding.ROUTE
    in_code |= {
        ("/colab/forward/{port}/{path}", method)
        for method in ("get", "head", "post", "put", "patch", "delete", "options")
        if method.upper() in forward_handler.SUPPORTED_METHODS
    }
    ((files_route, files_handler),) = files_handlers()
    assert files_route == r"/colab/files(?:/(.*))?"
    in_code |= {
        ("/colab/files/{path}", method.lower()) for method in files_handler.SUPPORTED_METHODS
    }
    # The local JupyterLab's view of the remote (gateway mode): one GET route over four names.
    ((remote_route, remote_handler, _),) = remote_handlers("/")
    assert remote_route == "/colab/remote/(status|gpu|tunnel|relay)"
    in_code |= {(f"/colab/remote/{name}", "get") for name in GATEWAY_PATHS}
    assert remote_handler.get is not handlers.APIHandler.get
    in_spec = {
        (path, method)
        for path, item in openapi_check.spec()["paths"].items()
        for method in item
        if method in openapi_check.METHODS
    }
    assert in_spec == in_code


def test_forward_error_kinds_are_the_codes() -> None:
    kinds = set(schema("ForwardErrorKind")["enum"])
    assert kinds >= set(problems.FORWARD_KINDS)
    assert kinds <= set(problems.KINDS)


def test_files_error_kinds_are_the_codes() -> None:
    kinds = set(schema("FilesErrorKind")["enum"])
    # download_mismatch, local_disk_full and local_error are the local side's (cp).
    assert kinds >= set(problems.FILES_KINDS) - {
        "download_mismatch",
        "local_disk_full",
        "local_error",
    }
    assert kinds <= set(problems.KINDS)


def test_spec_enums_are_the_codes() -> None:
    assert schema("TunnelState")["enum"] == list(states.TUNNEL_STATES)
    assert set(schema("TunnelErrorKind")["enum"]) == set(problems.TUNNEL_KINDS)
    assert schema("GpuErrorKind")["enum"] == list(gpu.ERROR_KINDS)
    post = openapi_check.spec()["paths"]["/colab/tunnel"]["post"]
    assert schema("TunnelAction")["properties"]["action"]["enum"] == list(states.TUNNEL_ACTIONS)
    assert handlers.TUNNEL_ACTIONS is states.TUNNEL_ACTIONS  # the one list the route accepts
    logs = openapi_check.spec()["paths"]["/colab/tunnel"]["get"]["parameters"][0]["schema"]
    assert logs["maximum"] == handlers.MAX_LOG_LINES
    assert set(post["responses"]) == {"200", "400", "403", "409", "413"}


async def test_real_answers_validate(jp_fetch: Any, colab_app: Any) -> None:
    before = openapi_check.STATS["validated"]
    for parts, kwargs in [
        (("colab", "status"), {}),
        (("colab", "gpu"), {}),
        (("colab", "gpu"), {"params": {"processes": "false"}}),
        (("colab", "tunnel"), {}),
        (("colab", "tunnel"), {"params": {"logs": "5"}}),
    ]:
        r = await jp_fetch(*parts, **kwargs)
        assert r.code == 200
    for kwargs, code in [
        ({"method": "POST", "body": json.dumps({"action": "start"})}, 409),  # tunnel_mode off
        ({"method": "POST", "body": "{"}, 400),
        ({"params": {"logs": "-1"}}, 400),
        ({"headers": {"Authorization": "token wrong"}}, 403),
    ]:
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("colab", "tunnel", **kwargs)
        assert e.value.code == code
    assert openapi_check.STATS["validated"] - before == 9


def _snapshot(colab_app: Any) -> dict[str, Any]:
    body = colab_app.tunnel.snapshot(logs=3)
    body["state"] = "ready"
    body["url"] = "https://a-b-c.trycloudflare.com"
    body["pid"] = 4242
    body["error"] = {"kind": "network", "message": "dial tcp: i/o timeout", "hint": "h"}
    body["last_exit"] = {"code": None, "signal": "SIGKILL", "at": "2026-11-25T23:01:02.5Z"}
    # What the server itself says (connect.py), for this URL.
    body["connect"] = connect_info(
        "https://a-b-c.trycloudflare.com", "/", connection_file="/f.json"
    )
    body["logs"] = ["line"]
    return json.loads(json.dumps(body))  # type: ignore[no-any-return]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value

    return mutate


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.pop(key)


WRONG_SNAPSHOTS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("a missing field", _drop("restarts")),
    ("an unknown field", _set("surprise", 1)),
    ("a state outside the machine", _set("state", "running")),
    ("a pid as text", _set("pid", "4242")),
    ("a negative restart count", _set("restarts", -1)),
    ("an unknown error kind", _set("error.kind", "gremlins")),
    ("an error without hint", lambda body: body["error"].pop("hint")),
    ("a timestamp that is not one", _set("started_at", "yesterday")),
    ("a plain-http URL", _set("url", "http://a.trycloudflare.com")),
    ("logs that are not lines", _set("logs", [1, 2])),
    ("an event with an unknown state", _set("events", [{"at": "2026-11-25T00:00:00Z", "state": "x", "detail": ""}])),
    ("last_exit without its time", _set("last_exit", {"code": 1, "signal": None})),
    ("connect without connection_file", lambda body: body["connect"].pop("connection_file")),
    ("a token on the command line", _set("connect.command", "jupyter lab --gateway-url=https://x --GatewayClient.auth_token=T")),
]  # fmt: skip


def test_a_real_snapshot_validates(colab_app: Any) -> None:
    check_response("GET", "/colab/tunnel", 200, JSON, json.dumps(_snapshot(colab_app)).encode())


@pytest.mark.parametrize(("what", "mutate"), WRONG_SNAPSHOTS, ids=[w for w, _ in WRONG_SNAPSHOTS])
def test_a_wrong_shape_is_rejected(
    colab_app: Any, what: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    body = _snapshot(colab_app)
    mutate(body)
    with pytest.raises(SpecViolation, match=r"does not match docs/openapi\.yaml"):
        check_response("GET", "/colab/tunnel", 200, JSON, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("status", "headers", "body", "match"),
    [
        (500, JSON, b'{"message": "Unhandled error", "reason": null}', "not declared"),
        (409, JSON, b'{"message": "x", "reason": null}', "not declared"),  # GET has no 409
        (403, {"Content-Type": "text/html"}, b"<html>", "Content-Type"),
        (403, JSON, b"Forbidden", "not JSON"),
        (403, JSON, b'{"reason": null}', "does not match"),
        (200, {"Content-Type": "application/json"}, b"{}", "Cache-Control"),
        (200, {**JSON, "Cache-Control": "max-age=60"}, b"{}", "Cache-Control"),
    ],
)
def test_wrong_answers_are_rejected(
    status: int, headers: dict[str, str], body: bytes, match: str
) -> None:
    with pytest.raises(SpecViolation, match=match):
        check_response("GET", "/colab/status", status, headers, body)


def test_gpu_and_status_shapes(colab_app: Any) -> None:
    sample = colab_app.gpu.sampler.reader.sample()
    check_response("GET", "/colab/gpu", 200, JSON, json.dumps(sample).encode())
    sample["devices"] = [{"index": 0, "name": "T4"}]
    with pytest.raises(SpecViolation, match="devices/0"):
        check_response("GET", "/colab/gpu", 200, JSON, json.dumps(sample).encode())


async def test_drift_in_the_code_fails_jp_fetch(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = colab_app.tunnel.snapshot

    def drifted(logs: int = 0) -> dict[str, Any]:
        body = copy.deepcopy(real(logs))
        body["uptime"] = 1.0  # a field the spec does not know
        return body  # type: ignore[no-any-return]

    monkeypatch.setattr(colab_app.tunnel, "snapshot", drifted)
    with pytest.raises(SpecViolation, match="uptime"):
        await jp_fetch("colab", "tunnel")


FAKE_SERVER = textwrap.dedent(
    """
    import http.server, json, sys

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            answers = {
                "/api/status": (200, {"started": "now"}),
                "/colab/status": (200, {"version": 1}),
                "/colab/gpu": (500, {"message": "Unhandled error", "reason": None}),
            }
            code, body = answers.get(self.path.split("?")[0], (404, {}))
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


@pytest.fixture
def wrong_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real HTTP server whose /colab/ answers break the spec, driven like a Jupyter one."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, str(port)])
    server = ServerProcess(
        proc=proc,
        port=port,
        token="t",
        base_url="/",
        workdir=tmp_path,
        root_dir=tmp_path,
        log_path=tmp_path / "none.log",
        env={},
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            server.request("GET", "api/status", timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline, "the fake server did not start"
            time.sleep(0.05)
    yield server
    server.stop()


def test_drift_fails_server_process_requests(wrong_server: ServerProcess) -> None:
    # Outside /colab/ nothing is checked; under it, a wrong shape and a 500 fail the caller.
    assert wrong_server.request("GET", "api/status").status == 200
    with pytest.raises(SpecViolation, match="does not match"):
        wrong_server.request("GET", "colab/status")
    with pytest.raises(SpecViolation, match="status 500 is not declared"):
        wrong_server.request("GET", "/colab/gpu?processes=true")
    # Not swallowed by helpers that poll and retry on AssertionError.
    with pytest.raises(SpecViolation):
        wrong_server.wait_for("colab/status", lambda body: True, timeout=2)
