"""cp against a remote that lies: a listing whose entries would land outside the local target
(`..`, absolute paths) is refused before a byte is written, and nothing appears outside it.

The remote here is a small real HTTP server (http.server in a thread) answering the files
protocol with such a listing: what a compromised or buggy remote could send."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

pytestmark = pytest.mark.e2e  # the real cp command as a child process

TOKEN = "hostile-test-token"
ENTRY = {"size": 5, "mtime": "2026-12-06T07:00:00Z"}


class Liar(BaseHTTPRequestHandler):
    entries: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path.removeprefix("/colab/files").lstrip("/"))
        op = parse_qs(parts.query).get("op", ["content"])[0]
        if op == "stat":
            kind = "directory" if path in ("", "evil") else "file"
            self.answer({"path": path, "type": kind, "size": 5, "etag": '"1-5-1"', **ENTRY})
        elif op == "list":
            self.answer(
                {"path": path, "type": "directory", "entries": self.entries, "truncated": False}
            )
        else:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"owned")

    def answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def liar() -> Iterator[tuple[str, type[Liar]]]:
    handler = type("Handler", (Liar,), {"entries": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "bad",
    [
        "evil/../escape.txt",
        "evil/a/../../escape.txt",
        "evil//escape.txt",
        "other/escape.txt",
        "evil/",
    ],
)
def test_a_listing_that_leaves_the_target_is_refused(
    liar: tuple[str, type[Liar]], tmp_path: Path, bad: str
) -> None:
    url, handler = liar
    handler.entries = [
        {"path": "evil/fine.txt", "name": "fine.txt", "type": "file", **ENTRY},
        {"path": bad, "name": "escape.txt", "type": "file", **ENTRY},
    ]
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "JUPYTER_COLAB_TUNNEL_TOKEN": TOKEN}
    code = "import sys\nfrom jupyter_colab_tunnel.cli import main\nsys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "cp", "--url", url, "-r", "remote:evil", "out"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "bad_response" in done.stderr
    assert "outside" in done.stderr
    # Nothing was written, not even the good entry: the plan is refused whole.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["work"]
