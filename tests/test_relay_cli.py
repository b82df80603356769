"""The `connect` command as a user starts it: what it says first, and what it does not say.

Real relay processes (testkit/relay_process.py) against real sockets: a port already taken, a
remote that accepts a connection and never answers, a plain-HTTP server dialled with https://.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from relay_env import relay_command, start_relay
from server_process import free_port

pytestmark = pytest.mark.e2e


def run_connect(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_COLAB_TUNNEL")}
    full.update(env or {})
    done = subprocess.run(relay_command(args), env=full, capture_output=True, text=True, timeout=90)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def silent_remote() -> Iterator[str]:
    """A remote that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


class _Plain(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"message": "plain"}'
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def plain_http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Plain)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_a_taken_port_is_said_before_the_remote_is_checked(
    silent_remote: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out, err = run_connect(
            ["--url", silent_remote, f"--port={port}", f"--local-token-file={tmp_path / 't'}"]
        )
    assert code == 2, (out, err)
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Choose another --port" in err
    # Said at once: the (15 s) check of the hung remote never ran.
    assert "remote check" not in out + err


def test_https_at_a_plain_http_server_gives_only_the_verdict(
    plain_http_port: int, tmp_path: Path
) -> None:
    code, out, err = run_connect(["--check", "--url", f"https://127.0.0.1:{plain_http_port}"])
    assert code == 1, (out, err)
    assert "SSL Error" not in err
    assert "WRONG_VERSION_NUMBER" not in err  # said once, in the verdict
    assert "PROBLEM (tls_error)" in out
    assert f"use --url http://127.0.0.1:{plain_http_port}" in out  # the hint

    # Serving: a request is answered 502 `tls`; the log has no raw tornado SSL line either.
    relay = start_relay(
        tmp_path / "relay", ["--url", f"https://127.0.0.1:{plain_http_port}", "--wait=1"]
    )
    try:
        r = relay.request("GET", "api/kernels")
        assert r.status == 502, r.body
        assert r.json()["reason"] == "tls_error"
    finally:
        relay.stop()
    assert "SSL Error" not in relay.log()


def test_the_first_line_about_a_fixed_url_says_what_the_check_found(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    relay = start_relay(tmp_path / "relay", ["--url", url, "--wait=1"])
    relay.stop()
    lines = [line for line in relay.log().splitlines() if url in line]
    assert lines, relay.log()
    # Not "Upstream none -> <url> (remote tunnel state: ready)": nothing was known to be ready.
    assert "Upstream none" not in relay.log()
    assert "remote tunnel state: ready" not in relay.log()
    assert lines[0].endswith(f"Remote {url}: PROBLEM (connection_refused)"), lines


def test_token_files_others_can_read_are_warned_about(tmp_path: Path) -> None:
    token_file = tmp_path / "remote_token"
    token_file.write_text("remote-secret\n")
    token_file.chmod(0o644)
    args = ["--check", "--url", f"http://127.0.0.1:{free_port()}", "--token-file", str(token_file)]
    code, out, err = run_connect(args)
    assert code == 1, (out, err)
    assert f"warning: {token_file} is readable by other users; `chmod 600 {token_file}`" in err
    assert "remote-secret" not in out + err
    token_file.chmod(0o600)
    code, out, err = run_connect(args)
    assert code == 1, (out, err)
    assert "warning" not in err
