"""Which ports listen on the remote (`GET /colab/ports`): the listing, its scrubbed command lines,
the kernel that holds each port, and the endpoint on a real server with a real kernel."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from extension_start import run_started

from jupyter_colab_tunnel.server.ports.listing import (
    MAX_CMDLINE,
    ListeningPort,
    Socket,
    collect,
    describe_process,
    listening_ports,
    scrub_cmdline,
    secret_name,
)
from jupyter_colab_tunnel.server.ports.service import PortsService

SECRET = "s3cr3t-Value_42"


# ----- scrubbing ------------------------------------------------------------------------------

HIDDEN = [
    ["jupyter", "lab", "--token", SECRET],
    ["jupyter", "lab", f"--token={SECRET}"],
    ["jupyter", "server", f"--IdentityProvider.token={SECRET}", "--port=8888"],
    ["jupyter", "notebook", "--NotebookApp.password", f"sha1:{SECRET}"],
    ["x", "--password", SECRET],
    ["x", "-password", SECRET],
    ["x", "--passwd", SECRET],
    ["x", f"--db-password={SECRET}"],
    ["x", "--client-secret", SECRET],
    ["x", "--api-key", SECRET],
    ["x", f"--api_key={SECRET}"],
    ["x", "--apikey", SECRET],
    ["x", "--API-KEY", SECRET],
    ["vllm", "serve", "m", "--hf-token", SECRET],
    ["x", "--key", SECRET],
    ["x", "--api-tokens", SECRET],
    ["x", "--ssl-keyfile", SECRET],
    ["x", "--auth-token", "--" + SECRET],  # a value that looks like a flag is still hidden
    ["env", f"OPENAI_API_KEY={SECRET}", "python", "app.py"],
    ["env", f"HF_TOKEN={SECRET}", "python"],
    ["curl", "-H", f"Authorization: token {SECRET}", "http://x"],
    ["curl", "-H", f"authorization:Bearer {SECRET}", "http://x"],
    ["curl", "-H", "Authorization:", f"Bearer {SECRET}"],
    ["curl", "--header", f"Proxy-Authorization: Basic {SECRET}"],
    ["wget", f"http://127.0.0.1:8888/lab?token={SECRET}"],
    ["wget", f"http://h/api?a=1&access_token={SECRET}&b=2"],
    ["git", "clone", f"https://user:{SECRET}@github.com/o/r"],
    ["python", "-c", f'api_key = "{SECRET}"; run()'],
    ["python", "-c", f'cfg = {{"password": "{SECRET}"}}'],
    ["python", "-c", f"requests.get(u, headers={{'Authorization': 'Bearer {SECRET}'}})"],
]


@pytest.mark.parametrize("argv", HIDDEN, ids=lambda argv: " ".join(argv)[:40])
def test_scrub_drops_every_secret(argv: list[str]) -> None:
    shown = scrub_cmdline(argv)
    assert SECRET not in shown
    assert SECRET[:6] not in shown
    assert "***" in shown
    assert shown.split()[0] == argv[0]  # the command itself stays


def test_scrub_keeps_what_is_not_secret() -> None:
    argv = ["tensorboard", "--logdir", "/runs/exp 1", "--port", "6006", "--bind_all"]
    assert scrub_cmdline(argv) == "tensorboard --logdir '/runs/exp 1' --port 6006 --bind_all"
    assert scrub_cmdline(["python", "-m", "http.server", "8000"]) == "python -m http.server 8000"
    assert scrub_cmdline(["gradio", "https://example.com/a?x=1"]) == (
        "gradio 'https://example.com/a?x=1'"
    )
    assert scrub_cmdline(["x", "--token=SECRETLESS", "--port", "1"]) == "x --token=*** --port 1"
    assert scrub_cmdline(["x", "--token"]) == "x --token"  # nothing after: nothing to hide
    vllm = ["vllm", "serve", "m", "--tokenizer", "gpt2", "--max-num-batched-tokens", "512"]
    assert scrub_cmdline(vllm) == " ".join(vllm)
    assert scrub_cmdline(["python", "-c", "f(max_tokens=512)"]) == "python -c 'f(max_tokens=512)'"
    assert scrub_cmdline([]) == ""


def test_scrub_shortens_after_scrubbing() -> None:
    long = ["python", "train.py", *[f"--layer{i}=256" for i in range(60)], "--token", SECRET]
    shown = scrub_cmdline(long)
    assert len(shown) == MAX_CMDLINE
    assert shown.endswith("…")
    assert shown.startswith("python train.py --layer0=256")
    # A secret across the cut is dropped before the cut, never half shown.
    edge = ["x", "a" * 180, "--token", SECRET]
    assert SECRET[:3] not in scrub_cmdline(edge)
    assert len(scrub_cmdline(["y"] * 10, limit=9)) == 9


def test_secret_names() -> None:
    for name in ("--token", "--Token", "--hf_token", "--API-Key", "PASSWORD", "--client-secret"):
        assert secret_name(name), name
    for name in (
        "--port",
        "--logdir",
        "--host",
        "--bind_all",
        "-m",
        "--tokenizer",
        "--max-new-tokens",
    ):
        assert not secret_name(name), name


# ----- the listing ----------------------------------------------------------------------------


def test_collect_keeps_loopback_reachable_ports_one_each() -> None:
    seen: list[int] = []

    def describe(pid: int) -> tuple[str | None, str | None]:
        seen.append(pid)
        return f"p{pid}", f"cmd {pid}"

    sockets = [
        Socket("0.0.0.0", 7860, 10),
        Socket("::", 7860, 10),
        Socket("10.0.0.5", 9999, 11),  # an outside address only: 127.0.0.1 does not reach it
        Socket("127.0.0.2", 9998, 12),
        Socket("::1", 6006, 13),
        Socket("127.0.0.1", 8000, None),  # another user's: no pid
        Socket("::", 8000, 14),  # the same port seen with its holder
        Socket("127.0.0.1", 11434, None),
    ]
    found = collect(sockets, describe)
    assert [p.port for p in found] == [6006, 7860, 8000, 11434]
    by_port = {p.port: p for p in found}
    assert by_port[7860] == ListeningPort(7860, "0.0.0.0", 10, "p10", "cmd 10")
    assert by_port[8000].pid == 14
    assert by_port[11434] == ListeningPort(11434, "127.0.0.1", None, None, None)
    assert sorted(seen) == [10, 13, 14]  # described once each, unknown pids not at all


def test_a_process_that_may_not_be_read_has_nulls() -> None:
    # pid 1 belongs to root: as another user its command line is refused, and a gone pid
    # answers nothing; neither is an error.
    assert describe_process(4_000_000) == (None, None)
    name, cmdline = describe_process(1)
    assert name is None or isinstance(name, str)
    assert cmdline is None or isinstance(cmdline, str)


def test_refused_reads_give_nulls_never_an_error(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on macOS without root: the system-wide socket table is refused, so each process is
    # asked for its own; and another user's process refuses its name and command line.
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise psutil.AccessDenied(os.getpid())

    port = listener.getsockname()[1]
    monkeypatch.setattr(psutil, "net_connections", refused)
    found = {p.port: p for p in listening_ports()}
    assert found[port].pid == os.getpid()  # found through this process's own sockets
    assert found[port].name == psutil.Process().name()
    monkeypatch.setattr(psutil.Process, "name", refused)
    monkeypatch.setattr(psutil.Process, "cmdline", refused)
    assert describe_process(os.getpid()) == (None, None)
    found = {p.port: p for p in listening_ports()}
    assert found[port] == ListeningPort(port, "127.0.0.1", os.getpid(), None, None)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_a_real_listening_socket_is_listed_with_this_process(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    outside = socket.socket()  # bound but not listening: not listed
    outside.bind(("127.0.0.1", 0))
    try:
        found = {p.port: p for p in listening_ports()}
        assert outside.getsockname()[1] not in found
    finally:
        outside.close()
    me = psutil.Process()
    assert found[port] == ListeningPort(
        port, "127.0.0.1", os.getpid(), me.name(), scrub_cmdline(me.cmdline())
    )
    assert list(found) == sorted(found)


async def test_report_names_kernels_and_refusals(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    me = os.getpid()

    class Kernels:  # the attributes kernel_pids reads off a kernel manager
        def list_kernel_ids(self) -> list[str]:
            return ["k-1"]

        def get_kernel(self, kernel_id: str) -> Any:
            return type("K", (), {"provisioner": type("P", (), {"pid": os.getppid()})()})()

    refused = {port + 1: "the server's own port"}
    service = PortsService(kernel_manager=Kernels(), check=refused.get)
    body = await service.report()
    json.dumps(body)  # JSON as it is
    mine = next(p for p in body["ports"] if p["port"] == port)
    # This process descends from its parent, which the manager calls kernel k-1.
    assert mine == {
        "port": port,
        "address": "127.0.0.1",
        "pid": me,
        "name": psutil.Process().name(),
        "cmdline": scrub_cmdline(psutil.Process().cmdline()),
        "kernel_id": "k-1",
        "forwardable": True,
        "refused": None,
        "forward": f"--forward {port}",
    }
    fake = [ListeningPort(port + 1, "::", None, None, None)]
    body = await PortsService(read=lambda: fake, check=refused.get).report()
    assert body == {
        "ports": [
            {
                "port": port + 1,
                "address": "::",
                "pid": None,
                "name": None,
                "cmdline": None,
                "kernel_id": None,
                "forwardable": False,
                "refused": "the server's own port",
                "forward": f"--forward {port + 1}",
            }
        ]
    }
    assert await PortsService(read=lambda: fake).hint() == f"{port + 1} ?"
    assert await PortsService(read=lambda: []).hint() == "nothing"


async def test_concurrent_reports_read_once() -> None:
    reads: list[int] = []

    def read() -> list[ListeningPort]:
        reads.append(1)
        return [ListeningPort(6006, "127.0.0.1", None, None, None)]

    service = PortsService(read=read)
    bodies = await asyncio.gather(*(service.report() for _ in range(5)))
    assert reads == [1]
    assert all(b["ports"][0]["port"] == 6006 for b in bodies)


# ----- the endpoint on a real server with a real kernel --------------------------------------

LISTEN_AND_WAIT = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "print(s.getsockname()[1], flush=True)\n"
    "time.sleep(300)\n"
)


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_ports_of_a_kernel_and_its_child_name_the_kernel(server_factory: Any) -> None:
    from testkit.kernel_channel import KernelChannel, ws_url

    server = server_factory()
    kernel = server.request("POST", "api/kernels", {"name": "python3"}).json()["id"]
    auth = {"Authorization": f"token {server.token}"}
    url = ws_url(server.url) + f"api/kernels/{kernel}/channels"
    with KernelChannel(url, headers=auth) as channel:
        code = (
            "import socket, subprocess, sys\n"
            "own = socket.socket(); own.bind(('127.0.0.1', 0)); own.listen()\n"
            f"child = subprocess.Popen([sys.executable, '-c', {LISTEN_AND_WAIT!r}, "
            f"'--token', {SECRET!r}, '--password={SECRET}'], stdout=subprocess.PIPE, text=True)\n"
            "print(own.getsockname()[1], child.stdout.readline().strip(), child.pid)\n"
        )
        run = channel.execute_eventually(code, timeout=90)
        assert run.status == "ok", run
        own_port, child_port, child_pid = (int(w) for w in run.stdout.split())
        body = server.wait_for(
            "colab/ports",
            lambda b: {own_port, child_port} <= {p["port"] for p in b["ports"]},
        )
        ports = {p["port"]: p for p in body["ports"]}
        kernel_pid = psutil.Process(child_pid).ppid()
        assert ports[own_port]["pid"] == kernel_pid
        assert ports[own_port]["kernel_id"] == kernel
        assert ports[child_port]["pid"] == child_pid
        assert ports[child_port]["kernel_id"] == kernel  # a descendant of the kernel counts
        assert ports[child_port]["name"] == psutil.Process(child_pid).name()
        assert "--token ***" in ports[child_port]["cmdline"]
        assert ports[child_port]["forward"] == f"--forward {child_port}"
        assert ports[child_port]["forwardable"] is True
        # The kernel's own ZMQ channels listen too: listed, never offered as a web app.
        info = channel.execute(
            "import json, ipykernel.connect as c; print(json.loads(c.get_connection_info())['shell_port'])"
        )
        channel_port = int(info.stdout.split()[0])
        assert ports[channel_port]["kernel_id"] == kernel
        assert ports[channel_port]["forwardable"] is False
        assert f"ZMQ channel of kernel {kernel}" in ports[channel_port]["refused"]
        route = server.request("GET", f"colab/forward/{channel_port}/")
        assert route.status == 403
        assert json.loads(route.body)["error"]["kind"] == "port_not_allowed"
        # The server's own port is listed; it was started with its token on the command line.
        assert ports[server.port]["pid"] == server.pid
        assert ports[server.port]["kernel_id"] is None
        assert ports[server.port]["cmdline"].startswith(scrub_cmdline([sys.executable])[:20])
        whole = scrub_cmdline(psutil.Process(server.pid).cmdline(), limit=100_000)
        assert "--IdentityProvider.token=***" in whole
        assert server.token not in whole
        raw = server.request("GET", "colab/ports").body.decode()
        assert SECRET not in raw
        assert server.token not in raw
        assert channel.execute("child.kill(); child.wait()").status == "ok"
    # Without the token: refused, and nothing of the listing shows.
    refused = server.request("GET", "colab/ports", token=None)
    assert refused.status == 403
    assert b"ports" not in refused.body
    wrong = server.request("GET", "colab/ports", token="wrong")
    assert wrong.status == 403
    server.request("DELETE", f"api/kernels/{kernel}")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc of another process")
def test_listing_never_blocks_on_a_gone_process() -> None:
    # A pid that exits between the socket table and the description: nulls, no error.
    found = collect([Socket("127.0.0.1", 5, 4_000_000)], describe_process)
    assert found == [ListeningPort(5, "127.0.0.1", 4_000_000, None, None)]


@pytest.mark.e2e
def test_the_listing_is_loaded_at_the_first_read_not_with_the_server(tmp_path: Path) -> None:
    """Start-up cost: a real ServerApp loads and starts the extension without the listing's
    module (its parsers and patterns); the first ports read loads it and answers."""
    after = """
        listing = "jupyter_colab_tunnel.server.ports.listing"
        print("started:", listing in sys.modules)
        report = await app.web_app.settings["colab_ports"].report()
        print("read:", listing in sys.modules, isinstance(report["ports"], list))
        """
    assert run_started(tmp_path, after=after) == ["started: False", "read: True True"]
