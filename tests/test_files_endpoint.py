"""The remote's /colab/files route on a real `jupyter server`: uploads in pieces, resumed and
verified, downloads with Range, the path rules, Jupyter's authorization, a full disk.

Every answer under /colab/ is checked against docs/openapi.yaml (server_process.request).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from server_process import Response, ServerProcess, start_server

from testkit.processes import jupyter_server_command

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("files"), args=["--ColabTunnelApp.tunnel_mode=off"])
    yield srv
    srv.stop()


def files(server: ServerProcess, method: str, rel: str, query: str = "", **kw: Any) -> Response:
    path = "colab/files/" + quote(rel, safe="/") + (f"?{query}" if query else "")
    return server.request(method, path, **kw)


def error_kind(r: Response) -> str:
    body = r.json()
    assert body["reason"] == body["error"]["kind"]
    assert body["error"]["hint"], body
    return str(body["error"]["kind"])


def header(r: Response, name: str) -> str | None:
    return next((v for k, v in r.headers.items() if k.lower() == name.lower()), None)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(server: ServerProcess, rel: str, data: bytes, piece: int = 3 * MiB) -> Response:
    for at in range(0, len(data), piece):
        r = files(server, "PUT", rel, f"offset={at}", body=data[at : at + piece])
        assert r.status == 200, r.body
        assert r.json() == {"path": rel, "received": min(at + piece, len(data))}
    return files(server, "POST", rel, f"op=commit&size={len(data)}&sha256={sha(data)}")


def test_an_upload_in_pieces_lands_whole_and_verified(server: ServerProcess) -> None:
    data = os.urandom(7 * MiB + 5)
    (server.root_dir / "up").mkdir()
    r = upload(server, "up/data.bin", data)
    assert r.status == 200, r.body
    body = r.json()
    assert body["sha256"] == sha(data)
    assert body["size"] == len(data)
    assert body["type"] == "file"
    assert body["path"] == "up/data.bin"
    assert (server.root_dir / "up" / "data.bin").read_bytes() == data
    # No partial is left behind, and the new file's permissions are the umask's.
    assert sorted(p.name for p in (server.root_dir / "up").iterdir()) == ["data.bin"]
    assert (server.root_dir / "up" / "data.bin").stat().st_mode & 0o777 == 0o644


def test_a_commit_that_does_not_match_leaves_the_target_untouched(server: ServerProcess) -> None:
    target = server.root_dir / "kept.txt"
    target.write_bytes(b"the old content")
    data = b"new content " * 1000
    assert files(server, "PUT", "kept.txt", "offset=0", body=data).status == 200
    short = files(server, "POST", "kept.txt", f"op=commit&size={len(data) + 1}&sha256={sha(data)}")
    assert short.status == 409
    assert error_kind(short) == "upload_offset_mismatch"
    assert short.json()["received"] == len(data)
    wrong = files(server, "POST", "kept.txt", f"op=commit&size={len(data)}&sha256={'0' * 64}")
    assert wrong.status == 422
    assert error_kind(wrong) == "upload_mismatch"
    assert target.read_bytes() == b"the old content"
    assert not (server.root_dir / ".kept.txt.colab-partial").exists()  # removed with the error


def test_an_upload_resumes_from_what_arrived(server: ServerProcess) -> None:
    data = os.urandom(4 * MiB)
    assert files(server, "PUT", "resume.bin", "offset=0", body=data[: 3 * MiB]).status == 200
    state = files(server, "GET", "resume.bin", "op=upload").json()
    assert state == {"path": "resume.bin", "received": 3 * MiB, "sha256": sha(data[: 3 * MiB])}
    ahead = files(server, "PUT", "resume.bin", f"offset={3 * MiB + 1}", body=b"x")
    assert ahead.status == 409
    assert error_kind(ahead) == "upload_offset_mismatch"
    assert ahead.json()["received"] == 3 * MiB
    # A piece sent again (a retry after a lost answer) replaces what follows its offset.
    assert (
        files(server, "PUT", "resume.bin", f"offset={2 * MiB}", body=data[2 * MiB :]).status == 200
    )
    r = files(server, "POST", "resume.bin", f"op=commit&size={len(data)}&sha256={sha(data)}")
    assert r.status == 200, r.body
    assert (server.root_dir / "resume.bin").read_bytes() == data


def test_a_cut_upload_keeps_what_arrived(server: ServerProcess) -> None:
    """The client's connection dies mid-body: the bytes that came are on disk for the resume."""
    sent = os.urandom(3 * MiB)
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            (
                f"PUT {server.base_url}colab/files/cut.bin?offset=0 HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nAuthorization: token {server.token}\r\n"
                f"Content-Length: {10 * MiB}\r\n\r\n"
            ).encode()
            + sent
        )
        time.sleep(0.3)  # let the server read it (the assertion below waits on the state)
    deadline = time.monotonic() + 20
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = files(server, "GET", "cut.bin", "op=upload").json()
        if state["received"] == len(sent) and state["sha256"]:
            break
        time.sleep(0.05)
    assert state == {"path": "cut.bin", "received": len(sent), "sha256": sha(sent)}
    assert not (server.root_dir / "cut.bin").exists()


def test_downloads_with_ranges_and_a_verified_sha256(server: ServerProcess) -> None:
    data = os.urandom(3 * MiB + 17)
    (server.root_dir / "down.bin").write_bytes(data)
    stat = files(server, "GET", "down.bin", "op=stat").json()
    assert stat["size"] == len(data)
    assert "sha256" not in stat
    whole = files(server, "GET", "down.bin")
    assert whole.status == 200
    assert whole.body == data
    assert header(whole, "Content-Type") == "application/octet-stream"
    assert header(whole, "ETag") == stat["etag"]
    part = files(server, "GET", "down.bin", headers={"Range": "bytes=100-199"})
    assert part.status == 206
    assert part.body == data[100:200]
    assert header(part, "Content-Range") == f"bytes 100-199/{len(data)}"
    tail = files(server, "GET", "down.bin", headers={"Range": f"bytes={MiB}-"})
    assert tail.body == data[MiB:]
    hashed = files(server, "GET", "down.bin", "op=stat&sha256=1&prefix=1000").json()
    assert hashed["sha256"] == sha(data)
    assert hashed["prefix"] == 1000
    assert hashed["prefix_sha256"] == sha(data[:1000])
    beyond = files(server, "GET", "down.bin", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status == 416
    assert error_kind(beyond) == "range_not_satisfiable"
    changed = files(server, "GET", "down.bin", headers={"If-Match": '"0-0-0"'})
    assert changed.status == 412
    assert error_kind(changed) == "file_changed"


def test_an_empty_file_goes_both_ways(server: ServerProcess) -> None:
    r = files(server, "POST", "empty.txt", f"op=commit&size=0&sha256={sha(b'')}")
    assert r.status == 200
    assert r.json()["size"] == 0
    assert (server.root_dir / "empty.txt").read_bytes() == b""
    got = files(server, "GET", "empty.txt")
    assert got.status == 200
    assert got.body == b""


def test_directories_listing_and_mkdir(server: ServerProcess) -> None:
    r = files(server, "POST", "tree/a/b", "op=mkdir")
    assert r.status == 200
    assert r.json()["type"] == "directory"
    (server.root_dir / "tree" / "a" / "b" / "f.txt").write_text("x")
    (server.root_dir / "tree" / ".hidden").write_text("secret")
    (server.root_dir / "tree" / ".f.txt.colab-partial").write_text("half")
    (server.root_dir / "tree" / "out").symlink_to("/etc")
    listing = files(server, "GET", "tree", "op=list&recursive=1").json()
    assert [e["path"] for e in listing["entries"]] == ["tree/a", "tree/a/b", "tree/a/b/f.txt"]
    assert listing["entries"][2]["size"] == 1
    assert listing["truncated"] is False
    flat = files(server, "GET", "tree", "op=list").json()
    assert [e["name"] for e in flat["entries"]] == ["a"]
    root = files(server, "GET", "", "op=stat").json()
    assert root["root"] == os.path.realpath(server.root_dir)
    assert root["type"] == "directory"
    in_the_way = files(server, "POST", "tree/a/b/f.txt/c", "op=mkdir")
    assert in_the_way.status == 409
    assert error_kind(in_the_way) == "not_a_directory"


@pytest.mark.parametrize(
    ("method", "rel", "query", "status", "kind"),
    [
        ("GET", "tree", "", 409, "is_a_directory"),
        ("GET", "tree/a/b/f.txt", "op=list", 409, "not_a_directory"),
        ("GET", "nowhere.txt", "op=stat", 404, "path_not_found"),
        ("PUT", "no/such/dir/f.txt", "offset=0", 404, "path_not_found"),
        ("PUT", "tree", "offset=0", 409, "is_a_directory"),
        ("PUT", "tree/x", "offset=-1", 400, "bad_request"),
        ("GET", "tree", "op=delete", 400, "bad_request"),
        ("POST", "tree/x", "op=commit&size=1&sha256=zz", 400, "bad_request"),
        ("GET", "tree/../../etc/passwd", "op=stat", 403, "path_outside_root"),
        ("GET", "tree/out/passwd", "", 403, "path_outside_root"),
        ("PUT", "tree/out/new.txt", "offset=0", 403, "path_outside_root"),
        ("GET", "tree/.hidden", "", 403, "path_hidden"),
        ("PUT", ".bashrc", "offset=0", 403, "path_hidden"),
    ],
)
def test_bad_requests_get_a_kind_and_a_hint(
    server: ServerProcess, method: str, rel: str, query: str, status: int, kind: str
) -> None:
    if not (server.root_dir / "tree" / "a" / "b" / "f.txt").exists():
        test_directories_listing_and_mkdir(server)
    body = b"x" if method == "PUT" else None
    r = files(server, method, rel, query, body=body)
    assert (r.status, error_kind(r)) == (status, kind), r.body
    assert not (server.root_dir / "tree" / "out" / "new.txt").exists()
    assert server.request("GET", "api/status").status == 200  # the server goes on


def test_the_token_is_required(server: ServerProcess) -> None:
    (server.root_dir / "private.txt").write_text("mine")
    for token in (None, "wrong"):
        r = files(server, "GET", "private.txt", token=token)
        assert r.status == 403
        assert error_kind(r) == "forbidden"
        assert b"mine" not in r.body
    put = files(server, "PUT", "private.txt", "offset=0", token=None, body=b"theirs")
    assert put.status == 403
    assert (server.root_dir / "private.txt").read_text() == "mine"


def test_a_read_only_authorizer_refuses_every_write(tmp_path: Path) -> None:
    srv = start_server(
        tmp_path,
        args=[
            "--ColabTunnelApp.tunnel_mode=off",
            "--ServerApp.authorizer_class=read_only_authorizer.ReadOnlyAuthorizer",
        ],
        env={
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
        },
    )
    try:
        (srv.root_dir / "seen.txt").write_text("readable")
        assert files(srv, "GET", "seen.txt").body == b"readable"
        for method, rel, query in [
            ("PUT", "seen.txt", "offset=0"),
            ("POST", "seen.txt", f"op=commit&size=0&sha256={sha(b'')}"),
            ("POST", "newdir", "op=mkdir"),
        ]:
            r = files(srv, method, rel, query, body=b"x" if method == "PUT" else None)
            assert (r.status, error_kind(r)) == (403, "forbidden"), r.body
            assert "contents" in r.json()["error"]["message"]
        assert (srv.root_dir / "seen.txt").read_text() == "readable"
        assert not (srv.root_dir / "newdir").exists()
        assert not (srv.root_dir / ".seen.txt.colab-partial").exists()
    finally:
        srv.stop()


def test_a_full_remote_disk_removes_the_partial_and_says_so(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the remote's writes fail (EFBIG) as a full disk does (ENOSPC)."""
    limit = 4 * MiB
    srv = start_server(
        tmp_path,
        args=["--ColabTunnelApp.tunnel_mode=off"],
        command=["prlimit", f"--fsize={limit}", "--", *jupyter_server_command()],
    )
    try:
        data = os.urandom(6 * MiB)
        r = files(srv, "PUT", "big.bin", "offset=0", body=data)
        assert (r.status, error_kind(r)) == (507, "disk_full"), r.body
        assert "remote's disk" in r.json()["error"]["message"]
        assert not (srv.root_dir / ".big.bin.colab-partial").exists()
        assert not (srv.root_dir / "big.bin").exists()
        assert files(srv, "GET", "", "op=stat").status == 200  # it goes on serving
    finally:
        srv.stop()


def received_total(server: ServerProcess) -> float:
    text = server.request("GET", "metrics").body.decode()
    return float(
        next(
            line.split()[1]
            for line in text.splitlines()
            if line.startswith("colab_files_received_bytes_total ")
        )
    )


def test_metrics_count_the_bytes_that_arrived(server: ServerProcess) -> None:
    before = received_total(server)
    data = os.urandom(MiB + 3)
    assert upload(server, "counted.bin", data).status == 200
    assert received_total(server) - before == len(data)


def test_answers_name_no_token(server: ServerProcess) -> None:
    for r in (
        files(server, "GET", "nowhere", "op=stat"),
        files(server, "GET", "", "op=list"),
    ):
        assert server.token not in r.body.decode()
        json.loads(r.body)
