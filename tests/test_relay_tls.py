"""TLS to the remote is verified against the trust store; SSL_CERT_FILE is honoured.

A real HTTPS server with a self-signed certificate (made by the `openssl` command) stands in
for the tunnel's edge; the relay's `--check` runs as a real process against it. Then the
cloudflared stand-in's own TLS edge, reached by its public name as every relay test reaches it
(testkit/relay_process.py): the name's certificate is verified there too.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from relay_env import relay_command, start_relay
from tunnel_env import VALID_TOKEN

from testkit import fake_cloudflared
from testkit.processes import stop_process
from testkit.relay_process import EDGE_ROOT_ENV

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


class _Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == "token remote-token-for-tls"
        body = b'{"version": "x"}' if ok else b'{"message": "Forbidden"}'
        self.send_response(200 if ok else 403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_remote(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def _check(url: str, env: dict[str, str]) -> tuple[int, str]:
    full = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    full.update(env, JUPYTER_COLAB_TUNNEL_TOKEN="remote-token-for-tls")
    done = subprocess.run(
        relay_command(["--check", "--url", url]),
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_untrusted_certificate_is_a_tls_failure(https_remote: tuple[str, Path]) -> None:
    url, _ = https_remote
    code, out = _check(url, {})
    assert code == 1, out
    assert "PROBLEM (tls_error)" in out
    assert "SSL_CERT_FILE" in out  # the hint


def test_ssl_cert_file_is_honoured(https_remote: tuple[str, Path]) -> None:
    url, cert = https_remote
    code, out = _check(url, {"SSL_CERT_FILE": str(cert)})
    assert code == 0, out
    assert "remote check: OK (ok)" in out


def test_relay_forwards_over_verified_tls(https_remote: tuple[str, Path], tmp_path: Path) -> None:
    url, cert = https_remote
    env = {"JUPYTER_COLAB_TUNNEL_TOKEN": "remote-token-for-tls", "SSL_CERT_FILE": str(cert)}
    relay = start_relay(tmp_path / "trusted", ["--url", url], env=env)
    try:
        for _ in range(3):  # over one kept-alive TLS connection
            r = relay.request("GET", "colab/status")
            assert (r.status, r.json()) == (200, {"version": "x"})
    finally:
        relay.stop()
    untrusted = start_relay(
        tmp_path / "untrusted", ["--url", url, "--wait=1"], env={**env, "SSL_CERT_FILE": ""}
    )
    try:
        r = untrusted.request("GET", "colab/status")
        assert r.status == 502, r.body
        assert r.json()["reason"] == "tls_error"
    finally:
        untrusted.stop()


@pytest.fixture
def plain_remote() -> Iterator[str]:
    """The same remote over plain http on loopback: a stand-in's origin."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _stand_in(root: Path, args: list[str], env: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """A cloudflared stand-in writing its state under `root`, and that state once registered."""
    state_dir = root / "fake-state"
    state_dir.mkdir(parents=True, exist_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TUNNEL_", "FAKE_"))}
    full.update(env, FAKE_CLOUDFLARED_STATE_DIR=str(state_dir))
    proc = subprocess.Popen(
        [sys.executable, fake_cloudflared.__file__, "tunnel", "--no-autoupdate", *args],
        env=full,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            state: dict[str, Any] = json.loads((state_dir / f"{proc.pid}.json").read_text())
            if state.get("registered_at") and state.get("edge_tls"):
                return proc, state
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, "the stand-in exited"
        assert time.monotonic() < deadline, "the stand-in never registered"
        time.sleep(0.02)


def test_the_stand_in_is_reached_by_name_over_verified_tls(
    plain_remote: str, tmp_path: Path
) -> None:
    """The relay dials the public https URL itself; the test only says where the name lives
    (testkit/edge_dns.py) and which CA to trust: the certificate is checked for the name."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    env.update(JUPYTER_COLAB_TUNNEL_TOKEN="remote-token-for-tls")
    env[EDGE_ROOT_ENV] = str(tmp_path)
    quick, state = _stand_in(tmp_path / "quick", ["--url", plain_remote], {})
    # A named tunnel under a name the edge's certificate does not carry.
    named, named_state = _stand_in(
        tmp_path / "named",
        ["run"],
        {"TUNNEL_TOKEN": VALID_TOKEN, "FAKE_CLOUDFLARED_ORIGIN": plain_remote,
         "FAKE_CLOUDFLARED_HOSTNAME": "jupyter.internal"},
    )  # fmt: skip
    try:
        assert named_state["hostname"] == "jupyter.internal"
        url = f"https://{state['hostname']}"
        done = subprocess.run(
            relay_command(["--check", "--url", url]), env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "remote check: OK (ok)" in done.stdout
        done = subprocess.run(
            relay_command(["--check", "--url", "https://jupyter.internal"]), env=env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        assert "PROBLEM (tls_error)" in done.stdout
    finally:
        stop_process(quick)
        stop_process(named)
