"""The MCP tools (jupyter_colab_tunnel/local/mcp.py), driven by the official SDK's clients.

In memory (`mcp.Client(server)`) against a real in-process Jupyter server with the extension,
every tool and error path; a real `jupyter colab-tunnel mcp` subprocess driven by the SDK's stdio
client against a real remote server and its tunnel (the cloudflared stand-in), marker e2e.
Tool results are compared with the REST answers of the same moment.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from e2e_kit import fixed_port
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult
from server_process import free_port
from tunnel_env import NAMED_HOST, TunnelServer, named_tunnel_env

from jupyter_colab_tunnel.local.client import ColabClient
from jupyter_colab_tunnel.local.mcp import build_server
from testkit.fake_nvml import FakeGpu, FakeProcess, install

MiB = 1024 * 1024
TOOLS = {
    "colab_status",
    "colab_gpu",
    "colab_tunnel",
    "colab_tunnel_action",
    "colab_wait_gpu_memory",
    "colab_ports",
    "colab_upload",
    "colab_download",
    "colab_list",
}
VOLATILE_STATUS = {
    ("server", "uptime_s"),
    ("resources", "load_1m"),
    ("resources", "memory"),
    ("life", "uptime_seconds"),
    ("life", "idle_seconds"),
}


@pytest.fixture
def remote(jp_serverapp: Any, http_server_client: Any, jp_base_url: str, colab_app: Any) -> Any:
    """(base URL, token) of the in-process server, which listens on a loopback port."""
    port = http_server_client.get_http_port()
    return f"http://127.0.0.1:{port}{jp_base_url}", jp_serverapp.identity_provider.token


def tools_for(url: str, token: str | None, **kwargs: Any) -> Client:
    server = build_server(ColabClient(url, token, timeout=10), **kwargs)
    return Client(server)


async def rest(jp_fetch: Any, *path: str, **kwargs: Any) -> Any:
    r = await jp_fetch(*path, **kwargs)
    assert r.code == 200
    return json.loads(r.body)


def ok(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    body = result.structured_content
    assert isinstance(body, dict)
    # The same JSON as text, for clients that only read content blocks.
    assert json.loads(result.content[0].text) == body  # type: ignore[union-attr]
    return body


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result
    return "\n".join(block.text for block in result.content)  # type: ignore[union-attr]


def without(body: dict[str, Any], paths: set[tuple[str, str]]) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    for section, key in paths:
        copy[section].pop(key, None)
    return copy


# ----- in memory ----------------------------------------------------------------------------


async def test_tools_are_listed_with_schemas_and_annotations(remote: Any) -> None:
    async with tools_for(*remote) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert len(tool.description or "") > 150, name
        assert (tool.output_schema or {}).get("type") == "object", name
        assert tool.annotations is not None, name
        assert tool.title, name
    for name in ("colab_status", "colab_gpu", "colab_tunnel", "colab_wait_gpu_memory"):
        assert tools[name].annotations.read_only_hint is True, name  # type: ignore[union-attr]
    action = tools["colab_tunnel_action"]
    assert action.annotations.read_only_hint is False  # type: ignore[union-attr]
    assert action.annotations.destructive_hint is True  # type: ignore[union-attr]
    assert action.input_schema["properties"]["action"]["enum"] == ["start", "stop", "restart"]
    assert action.input_schema["required"] == ["action"]
    # Units are part of what an agent is told.
    assert "bytes" in tools["colab_gpu"].description  # type: ignore[operator]
    assert "MiB" in tools["colab_wait_gpu_memory"].description  # type: ignore[operator]
    gpu_props = tools["colab_gpu"].output_schema["properties"]  # type: ignore[index]
    assert {"available", "devices", "error", "sampled_at"} <= set(gpu_props)
    process = tools["colab_gpu"].output_schema["$defs"]["GpuProcess"]["properties"]  # type: ignore[index]
    assert {"kernel_id", "notebook_path"} <= set(process)
    assert tools["colab_gpu"].input_schema["properties"]["processes"]["type"] == "boolean"


async def test_each_tool_returns_the_rest_json(
    remote: Any, jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, [FakeGpu.t4(processes=[FakeProcess(4242)]), FakeGpu.a100_mig()])
    colab_app.gpu.sampler.cache_ttl = 30.0  # one sample for the tool and for jp_fetch
    async with tools_for(*remote) as client:
        gpu = ok(await client.call_tool("colab_gpu", {"processes": True}))
        assert gpu == await rest(jp_fetch, "colab", "gpu")
        assert gpu["devices"][0]["processes"][0]["pid"] == 4242
        assert gpu["devices"][0]["processes"][0]["kernel_id"] is None  # not a kernel there
        lean = ok(await client.call_tool("colab_gpu", {}))
        assert lean == await rest(jp_fetch, "colab", "gpu", params={"processes": "false"})
        assert lean["devices"][0]["processes"] is None

        tunnel = ok(await client.call_tool("colab_tunnel", {}))
        assert tunnel == await rest(jp_fetch, "colab", "tunnel")
        logged = ok(await client.call_tool("colab_tunnel", {"logs": 20}))
        assert logged == await rest(jp_fetch, "colab", "tunnel", params={"logs": "20"})
        assert isinstance(logged["logs"], list)

        status = ok(await client.call_tool("colab_status", {}))
        expected = await rest(jp_fetch, "colab", "status")
        assert without(status, VOLATILE_STATUS) == without(expected, VOLATILE_STATUS)
        assert status["gpu"]["names"] == ["Tesla T4", "NVIDIA A100-SXM4-40GB"]


async def test_ports_tool_lists_a_real_listening_port_with_its_flag(remote: Any) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        async with tools_for(*remote) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            schema = tools["colab_ports"].output_schema or {}
            assert {"ports", "how_to_forward"} <= set(schema["properties"])
            assert tools["colab_ports"].annotations.read_only_hint is True  # type: ignore[union-attr]
            body = ok(await client.call_tool("colab_ports", {}))
    finally:
        listener.close()
    mine = next(p for p in body["ports"] if p["port"] == port)
    assert mine["pid"] == os.getpid()
    assert mine["name"] == psutil.Process().name()
    assert mine["kernel_id"] is None
    assert mine["forward"] == f"--forward {port}"
    assert "jupyter colab-tunnel connect --url <tunnel URL> --forward" in body["how_to_forward"]
    assert [p["port"] for p in body["ports"]] == sorted(p["port"] for p in body["ports"])


async def test_remote_refusals_are_tool_errors_and_serving_goes_on(remote: Any) -> None:
    url, token = remote
    async with tools_for(url, token) as client:
        # tunnel_mode is off on this remote: it answers 409, and says why.
        text = error_text(await client.call_tool("colab_tunnel_action", {"action": "restart"}))
        assert "conflict:" in text
        assert "tunnel_mode is 'off'" in text
        assert "Hint:" in text
        assert ok(await client.call_tool("colab_tunnel", {}))["state"] == "off"
        # Arguments outside the schema are refused before anything is asked.
        assert "Input should be 'start', 'stop' or 'restart'" in error_text(
            await client.call_tool("colab_tunnel_action", {"action": "reboot"})
        )
        assert "greater than or equal to 0" in error_text(
            await client.call_tool("colab_tunnel", {"logs": -1})
        )
        assert ok(await client.call_tool("colab_tunnel", {}))["mode"] == "off"


@pytest.mark.parametrize("token", ["not-the-token", None], ids=["wrong", "missing"])
async def test_a_refused_token_is_a_tool_error_with_a_hint(remote: Any, token: str | None) -> None:
    url, real = remote
    async with tools_for(url, token) as client:
        for name, args in [
            ("colab_status", {}),
            ("colab_gpu", {}),
            ("colab_tunnel", {}),
            ("colab_tunnel_action", {"action": "stop"}),
            ("colab_wait_gpu_memory", {"min_free_mib": 1}),
        ]:
            text = error_text(await client.call_tool(name, args))
            assert "forbidden:" in text, name
            assert "token is missing or wrong" in text
            assert "--token-file" in text
            assert real not in text
            assert not token or token not in text
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS


async def test_an_unreachable_remote_is_a_tool_error(remote: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with tools_for(f"http://127.0.0.1:{port}/", "tok") as client:
        for name in ("colab_status", "colab_gpu", "colab_tunnel"):
            text = error_text(await client.call_tool(name, {}))
            assert "connection_refused:" in text
            assert "Hint: Is the server (or the relay) running" in text
        # Nothing was sent, so nothing was cut: a plain error, not tunnel_cut.
        for action in ("stop", "restart"):
            text = error_text(await client.call_tool("colab_tunnel_action", {"action": action}))
            assert text.startswith("Error executing tool colab_tunnel_action: connection_refused:")
            assert "tunnel_cut" not in text
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS


async def test_wait_gpu_memory_met_at_once(
    remote: Any, jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpus = [FakeGpu.t4(memory_used=14000 * MiB), FakeGpu.a100_mig()]
    install(monkeypatch, gpus)
    colab_app.gpu.sampler.cache_ttl = 30.0  # the REST answer below is the same sample
    async with tools_for(*remote) as client:
        body = ok(await client.call_tool("colab_wait_gpu_memory", {"min_free_mib": 20000}))
    free = gpus[1].memory_free / MiB
    assert body["met"] is True
    assert body["gpu_index"] == 1  # the GPU with the most free memory
    assert body["free_mib"] == round(free, 1)
    assert body["total_mib"] == 40960
    assert body["samples"] == 1
    assert f"GPU 1 has {round(free, 1):g} MiB free" in body["message"]
    same = await rest(jp_fetch, "colab", "gpu", params={"processes": "false"})
    assert body["sampled_at"] == same["sampled_at"]


async def test_wait_gpu_memory_until_it_is_freed(
    remote: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpus = [FakeGpu.t4(memory_used=15000 * MiB)]  # 104 MiB free of 15360
    fake = install(monkeypatch, gpus)
    colab_app.gpu.sampler.cache_ttl = 0.0
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def free_it() -> None:
        while fake.calls["nvmlDeviceGetCount"] < 3:  # after the tool's third sample
            await asyncio.sleep(0.005)
        gpus[0].memory_used = 1000 * MiB

    async with tools_for(*remote, poll_interval=0.02) as client:
        freeing = asyncio.ensure_future(free_it())
        result = await client.call_tool(
            "colab_wait_gpu_memory",
            {"min_free_mib": 8000, "gpu_index": 0, "timeout_s": 30},
            progress_callback=on_progress,
        )
        await freeing
    body = ok(result)
    assert body["met"] is True
    assert body["gpu_index"] == 0
    assert body["free_mib"] == round(gpus[0].memory_free / MiB, 1)
    assert body["samples"] >= 4
    assert 3 * 0.02 <= body["waited_s"] < 30  # it slept between its samples
    assert len(progress) >= 3, "no progress notifications"
    assert progress[0][1] == 30
    assert "GPU 0: 104 MiB free" in (progress[0][2] or "")


async def test_wait_gpu_memory_times_out_without_error(
    remote: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, [FakeGpu.t4()])
    colab_app.gpu.sampler.cache_ttl = 0.0
    async with tools_for(*remote, poll_interval=0.02) as client:
        body = ok(
            await client.call_tool(
                "colab_wait_gpu_memory", {"min_free_mib": 100_000, "timeout_s": 0.1}
            )
        )
    assert body["met"] is False
    assert body["gpu_index"] == 0
    assert body["samples"] >= 2
    assert body["waited_s"] >= 0.1
    assert "less than 100000 MiB" in body["message"]


async def test_wait_gpu_memory_without_a_gpu_is_an_error(
    remote: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, [])  # NVML works but sees no GPU
    async with tools_for(*remote) as client:
        # An error at once, with the remote's kind and hint.
        text = error_text(await client.call_tool("colab_wait_gpu_memory", {"min_free_mib": 1}))
    assert "no_devices: the remote has no usable GPU" in text
    assert "Hint: NVML works but sees no GPU" in text


async def test_wait_gpu_memory_bad_arguments(
    remote: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, [FakeGpu.t4()])
    async with tools_for(*remote) as client:
        text = error_text(
            await client.call_tool("colab_wait_gpu_memory", {"min_free_mib": 1, "gpu_index": 3})
        )
        assert "no_such_gpu: the remote has no GPU 3 (1 GPUs" in text
        assert "Hint: Call colab_gpu for the list" in text
        assert "greater than or equal to 1" in error_text(
            await client.call_tool("colab_wait_gpu_memory", {"min_free_mib": 0})
        )
        assert "less than or equal to 600" in error_text(
            await client.call_tool("colab_wait_gpu_memory", {"min_free_mib": 1, "timeout_s": 9999})
        )
        assert ok(await client.call_tool("colab_wait_gpu_memory", {"min_free_mib": 1}))["met"]


# ----- the command line ---------------------------------------------------------------------


def run_cli(args: list[str], env: dict[str, str] | None = None, hide_mcp: bool = False) -> Any:
    code = "import sys\n"
    if hide_mcp:  # as if the [mcp] extra were not installed
        code += "sys.modules['mcp'] = None\n"
    code += "from jupyter_colab_tunnel.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    full_env = {k: v for k, v in os.environ.items() if k != "JUPYTER_COLAB_TUNNEL_TOKEN"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.e2e  # runs the command in a subprocess
def test_cli_without_the_sdk_says_how_to_install_it() -> None:
    run = run_cli(
        ["mcp", "--url", "http://127.0.0.1:9/"],
        env={"JUPYTER_COLAB_TUNNEL_TOKEN": "abc"},
        hide_mcp=True,
    )
    assert run.returncode == 1
    assert "pip install 'jupyter-colab-tunnel[mcp]'" in run.stderr
    assert run.stdout == ""


@pytest.mark.e2e  # runs the command in a subprocess
def test_cli_warns_about_a_token_file_others_can_read(tmp_path: Path) -> None:
    shared = tmp_path / "token"
    shared.write_text("s3cret-value\n")
    shared.chmod(0o644)
    run = run_cli(["mcp", "--url", "http://h/", "--token-file", str(shared)], hide_mcp=True)
    assert run.returncode == 1  # it read the token, then found no SDK
    assert f"warning: {shared} is readable by other users; `chmod 600 {shared}`" in run.stderr
    assert "s3cret-value" not in run.stderr
    shared.chmod(0o600)
    quiet = run_cli(["mcp", "--url", "http://h/", "--token-file", str(shared)], hide_mcp=True)
    assert "warning" not in quiet.stderr


@pytest.mark.e2e  # runs the command in a subprocess
def test_cli_needs_a_token_and_a_usable_url(tmp_path: Path) -> None:
    run = run_cli(["mcp", "--url", "https://x.trycloudflare.com"])
    assert run.returncode == 2
    assert "no token: pass --token-file PATH or set $JUPYTER_COLAB_TUNNEL_TOKEN" in run.stderr
    missing = tmp_path / "nope"
    run = run_cli(["mcp", "--url", "https://x.trycloudflare.com", "--token-file", str(missing)])
    assert run.returncode == 2
    assert f"cannot read the token file {missing}: No such file or directory" in run.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    run = run_cli(["mcp", "--url", "https://x.trycloudflare.com", "--token-file", str(empty)])
    assert run.returncode == 2
    assert f"the token file {empty} is empty" in run.stderr
    run = run_cli(["mcp", "--url", "ftp://x"], env={"JUPYTER_COLAB_TUNNEL_TOKEN": "abc"})
    assert run.returncode == 2
    assert "invalid_url" in run.stderr
    # The token is never an argument, and a refused one is not repeated.
    for flag in (["--token", "s3cret-value"], ["--token=s3cret-value"]):
        run = run_cli(["mcp", "--url", "http://h/", *flag])
        assert run.returncode == 2
        assert "s3cret-value" not in run.stderr + run.stdout
        assert "not taken on the command line" in run.stderr
        assert "--token-file PATH or $JUPYTER_COLAB_TUNNEL_TOKEN" in run.stderr


# ----- a real stdio server against a real remote through the tunnel (stand-in) --------------


def stdio_tools(url: str, token_file: Path, mode: str = "auto") -> Client:
    """`jupyter colab-tunnel mcp` as an agent starts it: a subprocess speaking MCP on stdio."""
    command = Path(sys.executable).parent / "jupyter-colab-tunnel"
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_COLAB_TUNNEL_TOKEN"}
    params = StdioServerParameters(
        command=str(command),
        args=["mcp", "--url", url, "--token-file", str(token_file)],
        env=env,
    )
    return Client(params, read_timeout_seconds=90, mode=mode)


def token_file(tmp_path: Path, name: str, token: str) -> Path:
    path = tmp_path / name
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def ready_remote(tunnel_server: Any, **kwargs: Any) -> tuple[TunnelServer, str]:
    ts: TunnelServer = tunnel_server(**kwargs)
    body = ts.wait_state("ready")
    edge = ts.fake_state(body["pid"])["edge"]
    assert edge, body
    return ts, edge


@pytest.mark.e2e
def test_stdio_server_through_the_tunnel(tunnel_server: Any, tmp_path: Path) -> None:
    ts, edge = ready_remote(tunnel_server)
    good = token_file(tmp_path, "token", ts.server.token)
    wrong = token_file(tmp_path, "wrong", "not-" + ts.server.token)

    async def scenario() -> None:
        async with stdio_tools(edge, good) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            tunnel = ok(await client.call_tool("colab_tunnel", {"logs": 5}))
            assert tunnel == ts.tunnel(logs=5)
            assert tunnel["state"] == "ready"
            assert tunnel["logs"]
            gpu = ok(await client.call_tool("colab_gpu", {"processes": True}))
            rest_gpu = ts.server.get_json("colab/gpu")
            assert {**gpu, "sampled_at": None} == {**rest_gpu, "sampled_at": None}
            ports = ok(await client.call_tool("colab_ports", {}))
            served = next(p for p in ports["ports"] if p["port"] == ts.server.port)
            assert served["pid"] == ts.server.pid
            assert ts.server.token not in json.dumps(ports)
            status = ok(await client.call_tool("colab_status", {}))
            expected = ts.server.get_json("colab/status")
            assert without(status, VOLATILE_STATUS) == without(expected, VOLATILE_STATUS)
        async with stdio_tools(edge, wrong) as client:
            text = error_text(await client.call_tool("colab_gpu", {}))
            assert "forbidden:" in text
            assert "--token-file" in text
            assert ts.server.token not in text
            # The server keeps answering after a refusal.
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            assert "forbidden:" in error_text(await client.call_tool("colab_tunnel", {}))

    asyncio.run(scenario())


@pytest.mark.e2e
def test_stdio_restart_of_a_quick_tunnel_explains_the_cut(
    tunnel_server: Any, tmp_path: Path
) -> None:
    ts, edge = ready_remote(tunnel_server)
    first = ts.tunnel()
    good = token_file(tmp_path, "token", ts.server.token)

    async def scenario() -> None:
        async with stdio_tools(edge, good) as client:
            result = await client.call_tool(
                "colab_tunnel_action", {"action": "restart", "wait_s": 5}
            )
            text = error_text(result)
            assert "tunnel_cut: the restart request went through the tunnel it restarts" in text
            assert "NEW URL" in text
            # The remote restarted it all the same, under a new URL; the old one is dead.
            again = ts.server.wait_for(
                "colab/tunnel", lambda b: b["state"] == "ready" and b["pid"] != first["pid"]
            )
            assert again["url"] != first["url"]
            down = error_text(await client.call_tool("colab_status", {}))
            assert "connection_refused:" in down or "no_tunnel:" in down
            assert "Hint:" in down
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS

    asyncio.run(scenario())


@pytest.mark.e2e
def test_stdio_restart_of_a_named_tunnel(tunnel_server: Any, tmp_path: Path) -> None:
    remote_port, edge_port = free_port(), free_port()
    env = named_tunnel_env(remote_port, edge_port)
    with fixed_port(remote_port):
        ts, edge = ready_remote(tunnel_server, env=env, traits={"public_hostname": NAMED_HOST})
    first = ts.tunnel()
    good = token_file(tmp_path, "token", ts.server.token)

    async def scenario() -> None:
        async with stdio_tools(edge, good) as client:
            body = ok(await client.call_tool("colab_tunnel_action", {"action": "restart"}))
            assert body["state"] == "ready"
            assert body["pid"] != first["pid"]
            assert body["url"] == first["url"] == f"https://{NAMED_HOST}"
            assert body == ts.tunnel()
            assert ts.alive_spawned() == [body["pid"]]
            # start on a running tunnel changes nothing.
            same = ok(await client.call_tool("colab_tunnel_action", {"action": "start"}))
            assert (same["state"], same["pid"]) == ("ready", body["pid"])
            # stop through the tunnel it stops: the answer is lost, and the tool says so.
            text = error_text(await client.call_tool("colab_tunnel_action", {"action": "stop"}))
            assert "tunnel_cut: the stop request went through the tunnel it stops" in text
            assert "Hint: The tunnel is stopped" in text
            assert ts.wait_state("stopped")["pid"] is None

    asyncio.run(scenario())


@pytest.mark.e2e
def test_stdio_server_outlives_the_remote(tunnel_server: Any, tmp_path: Path) -> None:
    ts, edge = ready_remote(tunnel_server)
    good = token_file(tmp_path, "token", ts.server.token)

    async def scenario() -> None:
        # The initialize handshake of clients older than MCP 2026-07-28 (Claude Desktop, ...).
        async with stdio_tools(edge, good, mode="legacy") as client:
            assert ok(await client.call_tool("colab_tunnel", {}))["state"] == "ready"
            ts.server.stop()  # the remote goes away, and its tunnel with it
            for name in ("colab_status", "colab_gpu", "colab_tunnel"):
                text = error_text(await client.call_tool(name, {}))
                assert "connection_refused:" in text or "no_tunnel:" in text, text
                assert "Hint:" in text
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS

    asyncio.run(scenario())


@pytest.mark.e2e  # runs the command in a subprocess
def test_the_local_side_never_imports_the_extension() -> None:
    code = (
        "import sys, json\n"
        "import jupyter_colab_tunnel.local.mcp, jupyter_colab_tunnel.local.mcp_cli\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('jupyter_colab_tunnel', 'jupyter_server', 'pynvml')))))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(run.stdout)
    assert "jupyter_colab_tunnel.local.client" in loaded
    assert not [m for m in loaded if m.startswith(("jupyter_server", "pynvml"))], loaded
    for extension_module in ("app", "handlers", "gpu", "tunnel", "status", "launcher"):
        assert f"jupyter_colab_tunnel.{extension_module}" not in loaded, loaded


# ----- through the local relay: the stable URL an agent is configured with --------------------


@pytest.mark.e2e
def test_stdio_server_through_the_relay(tunnel_server: Any, tmp_path: Path) -> None:
    from relay_env import start_relay

    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    ts: TunnelServer = tunnel_server(
        traits={"connection_file": str(connection_file), "tunnel_mode": "quick"}
    )
    ts.wait_state("ready")
    remote_token = token_file(tmp_path, "remote_token", ts.server.token)
    relay = start_relay(
        tmp_path / "relay",
        ["--connection-file", str(connection_file), "--token-file", str(remote_token)],
        edge_root=tmp_path,
    )
    local = token_file(tmp_path, "local_token", relay.token)
    wrong = token_file(tmp_path, "wrong", "not-" + relay.token)

    async def scenario() -> None:
        async with stdio_tools(relay.url, local) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            before = ok(await client.call_tool("colab_tunnel", {}))
            assert before == ts.tunnel()
            gpu = ok(await client.call_tool("colab_gpu", {"processes": True}))
            rest_gpu = ts.server.get_json("colab/gpu")
            assert {**gpu, "sampled_at": None} == {**rest_gpu, "sampled_at": None}
            # A restart through the relay: the quick tunnel gets a new URL, the relay follows
            # it, and the tool reports the new tunnel ready.
            after = ok(
                await client.call_tool("colab_tunnel_action", {"action": "restart", "wait_s": 60})
            )
            assert after["state"] == "ready"
            assert after["url"] != before["url"]
            assert len(ts.spawned_pids()) == 2  # restarted once, not once per relay retry
            assert ok(await client.call_tool("colab_tunnel", {}))["url"] == after["url"]
            # The remote goes away: a tool error that says so, and the server keeps serving.
            ts.server.stop()
            text = error_text(await client.call_tool("colab_status", {}))
            assert "Hint:" in text
            assert ts.server.token not in text
            assert relay.token not in text
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        async with stdio_tools(relay.url, wrong) as client:
            # The relay's own kind and hint, not a generic "forbidden".
            text = error_text(await client.call_tool("colab_gpu", {}))
            assert "bad_local_token:" in text
            assert "Hint: Send the relay's own token" in text
            assert relay.token not in text

    try:
        asyncio.run(scenario())
    finally:
        relay.stop()
