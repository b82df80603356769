"""A forged connection file, end to end: the relay never sends anything where it points.

Real processes: the remote `jupyter server` with the cloudflared stand-in writing signed
records, the relay (`jupyter colab-tunnel connect --connection-file ... --token-file ...`), a
local gateway-mode server with a kernel in use, and an "attacker": a real HTTP server that
records every connection and request it gets.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from e2e_kit import kernel_channel, start_kernel
from relay_env import RelayProcess, check_relay_body, start_local, start_relay, write_secret
from test_relay_e2e import Stack, restart_tunnel
from tunnel_env import TunnelServer

from jupyter_colab_tunnel.connection_record import connection_record, sign, write_connection_file

pytestmark = pytest.mark.e2e


class Attacker:
    """A real HTTP server that answers everything and records who came (never the headers:
    a request that reached it may carry the token)."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[str] = []
        self.saw_token = False
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                attacker.requests.append(f"{self.command} {self.path}")
                attacker.saw_token |= "authorization" in {k.lower() for k in self.headers}
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                attacker.connections += 1
                return True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def summary(self) -> str:
        return f"{self.connections} connections, requests {self.requests}, token {self.saw_token}"


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    a = Attacker()
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def stack(tunnel_server: Any, server_factory: Any, tmp_path: Path) -> Iterator[Stack]:
    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    remote: TunnelServer = tunnel_server(
        traits={"connection_file": str(connection_file), "tunnel_mode": "quick"}
    )
    remote.wait_state("ready")
    token_file = write_secret(tmp_path / "remote_token", remote.server.token)
    relay = start_relay(
        tmp_path / "relay",
        ["--connection-file", str(connection_file), "--token-file", str(token_file)],
        edge_root=tmp_path,
    )
    try:
        yield Stack(remote, relay, start_local(server_factory, relay), connection_file)
    finally:
        relay.stop()


def refused_or_moved(relay: RelayProcess, kind: str, upstream: str | None) -> Any:
    """The status once the relay has refused the file (or, on a broken relay, moved away)."""
    return relay.wait_status(
        lambda s: (
            (s["remote"].get("refused") or {}).get("kind") == kind or s["upstream"] != upstream
        )
    )


def test_a_forged_connection_file_never_receives_a_request(
    stack: Stack, attacker: Attacker
) -> None:
    remote, relay, local, path = stack.remote, stack.relay, stack.local, stack.connection_file
    secret = remote.server.token
    upstream = relay.status()["upstream"]
    genuine = path.read_bytes()
    kernel_id = start_kernel(local)
    forgeries = [
        # The remote's own record with only the URL changed.
        (
            "bad_signature",
            {**json.loads(genuine), "url": attacker.url, "gateway_url": attacker.url},
        ),
        # What anyone could write before: no signature.
        ("unsigned", connection_record(attacker.url, "ready", "/", None)),
        # Signed, but by someone who does not hold the remote token.
        ("bad_signature", connection_record(attacker.url, "ready", "/", "a-token-of-my-own")),
    ]
    with kernel_channel(local, kernel_id) as channel:
        assert channel.execute("n = 0; print('ok')").stdout == "ok\n"
        for n, (kind, forged) in enumerate(forgeries, 1):
            write_connection_file(path, forged)
            status = refused_or_moved(relay, kind, upstream)
            # Traffic keeps flowing, to the genuine remote only.
            listed = relay.request("GET", "api/kernels")
            assert (attacker.connections, attacker.requests) == (0, []), attacker.summary()
            assert listed.json()[0]["id"] == kernel_id
            run = channel.execute("n += 1; print(n)", timeout=60)
            assert (attacker.connections, attacker.requests) == (0, []), attacker.summary()
            assert (run.status, run.stdout) == ("ok", f"{n}\n")
            assert status["upstream"] == upstream
            check_relay_body("RelayStatus", status)
            assert status["remote"]["refused"]["kind"] == kind
            assert status["remote"]["refused"]["hint"]
            assert status["remote"]["gateway_url"] == upstream

        # A genuine change, written by the remote, is still followed; the refusal clears.
        old_url, new_url = restart_tunnel(remote)
        assert new_url != old_url
        status = relay.wait_status(lambda s: s["upstream"] == new_url)
        assert status["remote"]["refused"] is None
        run = channel.execute("print(n)", timeout=60)
        assert (run.status, run.stdout) == ("ok", "3\n")

        # The old, genuinely signed record put back (a replay): refused, the new URL kept.
        write_connection_file(path, json.loads(genuine))
        status = refused_or_moved(relay, "stale", new_url)
        assert status["upstream"] == new_url
        assert "older than the one in use" in status["remote"]["refused"]["message"]
        assert channel.execute("print(n + 1)", timeout=60).stdout == "4\n"

    assert (attacker.connections, attacker.requests) == (0, []), attacker.summary()
    log = relay.log()
    for kind in ("unsigned", "bad_signature", "stale"):
        assert f"refused ({kind})" in log
    assert log.count("refused (unsigned)") == 1  # once per distinct problem
    assert secret not in log + relay.output()
    assert secret not in json.dumps(relay.status())


def test_a_fifo_as_connection_file_neither_hangs_nor_blocks_sigterm(
    stack: Stack, tmp_path: Path
) -> None:
    """Swapped for a FIFO under a running relay, and given as the file to a new relay: the
    relay keeps serving (or waits, saying why) and exits on SIGTERM at once."""
    relay, path = stack.relay, stack.connection_file
    upstream = relay.status()["upstream"]
    fifo = path.with_name("fifo")
    os.mkfifo(fifo)
    os.replace(fifo, path)
    status = refused_or_moved(relay, "not_regular", upstream)
    assert status["upstream"] == upstream
    assert relay.request("GET", "api/kernels").status == 200
    assert stopped_quickly(relay)

    alone = tmp_path / "alone.json"
    os.mkfifo(alone)
    token_file = write_secret(tmp_path / "token2", stack.remote.server.token)
    fresh = start_relay(
        tmp_path / "relay2",
        ["--connection-file", str(alone), "--token-file", str(token_file), "--wait=1"],
    )
    try:
        status = fresh.status()
        assert (status["upstream"], status["remote"]["refused"]["kind"]) == (None, "not_regular")
        check_relay_body("RelayStatus", status)
        r = fresh.request("GET", "api/kernels")
        assert (r.status, r.json()["reason"]) == (503, "no_upstream")
        assert stopped_quickly(fresh)
    finally:
        fresh.stop()


def stopped_quickly(relay: RelayProcess) -> bool:
    started = time.monotonic()
    relay.proc.send_signal(signal.SIGTERM)
    code = relay.proc.wait(timeout=15)
    took = time.monotonic() - started
    assert code == 0, relay.log()[-2000:]
    assert took < 3, f"SIGTERM took {took:.1f} s"
    return True


def test_an_old_unsigned_file_is_refused_with_what_to_do(
    attacker: Attacker, tmp_path: Path
) -> None:
    """The file an older remote wrote (no signature) and hand-written ones: refused at start,
    with the upgrade hint; nothing is sent to their URL, not even the start check. The remote
    token from the environment this time."""
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps({"url": attacker.url, "gateway_url": attacker.url, "state": "ready"})
    )
    relay = start_relay(
        tmp_path / "relay",
        ["--connection-file", str(path)],
        env={"JUPYTER_COLAB_TUNNEL_TOKEN": "the-remote-token-0123456789"},
    )
    try:
        assert (attacker.connections, attacker.requests) == (0, []), attacker.summary()
        refused = relay.status()["remote"]["refused"]
        assert refused["kind"] == "unsigned"
        assert "Update jupyter-colab-tunnel on the remote" in refused["hint"]
        assert "remote check: PROBLEM (unsigned)" in relay.output()
        # Signed with the relay's token, but to plain http on the network: refused too.
        record = sign(
            connection_record("http://jupyter.example.com", "ready", "/", None),
            "the-remote-token-0123456789",
        )
        write_connection_file(path, record)
        status = relay.wait_status(
            lambda s: (s["remote"]["refused"] or {}).get("kind") == "insecure_url"
        )
        assert status["upstream"] is None
        assert "https://" in status["remote"]["refused"]["hint"]
        # Signed with that token, to https: followed.
        record = sign(
            connection_record("https://new.example.com", "ready", "/", None),
            "the-remote-token-0123456789",
        )
        write_connection_file(path, record)
        status = relay.wait_status(lambda s: s["upstream"] == "https://new.example.com")
        assert status["remote"]["refused"] is None
    finally:
        relay.stop()
    assert (attacker.connections, attacker.requests) == (0, []), attacker.summary()
