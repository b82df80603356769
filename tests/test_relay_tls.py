"""TLS to the remote is verified against the trust store; SSL_CERT_FILE is honoured.

A real HTTPS server with a self-signed certificate (made by the `openssl` command) stands in
for the tunnel's edge; the relay's `--check` runs as a real process against it.
"""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from relay_env import relay_command, start_relay

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
