"""The MCP file tools (colab_upload, colab_download, colab_list) driven by the official SDK's
client against a real in-process Jupyter server with the extension (its /colab/files route):
a script up, listed, its output down; directories both ways; refusals as tool errors with their
kind and hint, the server serving on."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from test_mcp import error_text, ok

from jupyter_colab_tunnel.local.client import ColabClient
from jupyter_colab_tunnel.local.mcp import build_server

FILE_TOOLS = {"colab_upload", "colab_download", "colab_list"}


@pytest.fixture
def remote(jp_serverapp: Any, http_server_client: Any, jp_base_url: str, colab_app: Any) -> Any:
    port = http_server_client.get_http_port()
    return f"http://127.0.0.1:{port}{jp_base_url}", jp_serverapp.identity_provider.token


@pytest.fixture
def root(jp_root_dir: Path) -> Path:
    return Path(jp_root_dir)


def tools_for(url: str, token: str | None) -> Client:
    return Client(build_server(ColabClient(url, token, timeout=10)))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_the_file_tools_are_listed_with_their_arguments(remote: Any) -> None:
    async with tools_for(*remote) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) >= FILE_TOOLS
    for name in ("colab_upload", "colab_download"):
        schema = tools[name].input_schema
        assert set(schema["properties"]) == {"local_path", "remote_path"}, name
        assert sorted(schema["required"]) == ["local_path", "remote_path"], name
        out = tools[name].output_schema or {}
        assert {"path", "bytes", "sha256", "seconds", "files"} <= set(out["properties"]), name
        assert tools[name].annotations.read_only_hint is False  # type: ignore[union-attr]
    listing = tools["colab_list"]
    assert listing.input_schema["properties"]["remote_path"]["default"] == ""
    assert listing.annotations.read_only_hint is True  # type: ignore[union-attr]
    entry = (listing.output_schema or {})["$defs"]["FileEntry"]["properties"]
    assert {"name", "path", "type", "size", "mtime"} <= set(entry)


async def test_a_script_goes_up_is_listed_and_its_output_comes_down(
    remote: Any, root: Path, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('hello from the remote')\n" * 1000)
    async with tools_for(*remote) as client:
        up = ok(
            await client.call_tool(
                "colab_upload", {"local_path": str(script), "remote_path": "train.py"}
            )
        )
        assert up["path"] == "train.py"
        assert up["bytes"] == script.stat().st_size
        assert up["sha256"] == sha(script.read_bytes())
        assert up["seconds"] >= 0
        assert (root / "train.py").read_bytes() == script.read_bytes()

        # What a kernel would write: then listed, and fetched.
        (root / "out").mkdir()
        result = os.urandom(200_000)
        (root / "out" / "result.bin").write_bytes(result)
        listed = ok(await client.call_tool("colab_list", {}))
        names = {e["name"]: e for e in listed["entries"]}
        assert names["train.py"]["type"] == "file"
        assert names["train.py"]["size"] == script.stat().st_size
        assert names["out"]["type"] == "directory"
        assert names["train.py"]["mtime"].endswith("Z")
        inner = ok(await client.call_tool("colab_list", {"remote_path": "out"}))
        assert [e["path"] for e in inner["entries"]] == ["out/result.bin"]

        target = tmp_path / "result.bin"
        down = ok(
            await client.call_tool(
                "colab_download", {"local_path": str(target), "remote_path": "out/result.bin"}
            )
        )
        assert target.read_bytes() == result
        assert down["sha256"] == sha(result)
        assert down["path"] == str(target)
        assert down["bytes"] == len(result)


async def test_directories_go_up_and_down_whole(remote: Any, root: Path, tmp_path: Path) -> None:
    tree = tmp_path / "project"
    (tree / "src" / "pkg").mkdir(parents=True)
    (tree / "src" / "pkg" / "a.py").write_text("a = 1\n")
    (tree / "data.csv").write_text("x,y\n1,2\n")
    async with tools_for(*remote) as client:
        up = ok(
            await client.call_tool("colab_upload", {"local_path": str(tree), "remote_path": ""})
        )
        assert up["path"] == "project"
        assert up["files"] == 2
        assert up["sha256"] is None
        assert (root / "project" / "src" / "pkg" / "a.py").read_text() == "a = 1\n"
        back = tmp_path / "back"
        down = ok(
            await client.call_tool(
                "colab_download", {"local_path": str(back), "remote_path": "project"}
            )
        )
        assert down["files"] == 2
        assert (back / "data.csv").read_text() == "x,y\n1,2\n"
        assert (back / "src" / "pkg" / "a.py").read_text() == "a = 1\n"


@pytest.mark.parametrize(
    ("tool", "args", "kind"),
    [
        (
            "colab_upload",
            {"local_path": "/nonexistent/x.py", "remote_path": "x.py"},
            "path_not_found",
        ),
        ("colab_upload", {"local_path": "LOCAL", "remote_path": "../x.py"}, "path_outside_root"),
        ("colab_upload", {"local_path": "LOCAL", "remote_path": "no/dir/x.py"}, "path_not_found"),
        ("colab_download", {"local_path": "TMP/x", "remote_path": "missing.bin"}, "path_not_found"),
        (
            "colab_download",
            {"local_path": "TMP/x", "remote_path": "/etc/passwd"},
            "path_outside_root",
        ),
        ("colab_list", {"remote_path": "missing"}, "path_not_found"),
        ("colab_list", {"remote_path": "afile.txt"}, "not_a_directory"),
    ],
)
async def test_refusals_are_tool_errors_with_kind_and_hint(
    remote: Any, root: Path, tmp_path: Path, tool: str, args: dict[str, str], kind: str
) -> None:
    (tmp_path / "local.py").write_text("x = 1\n")
    (root / "afile.txt").write_text("a file")
    args = {
        k: v.replace("LOCAL", str(tmp_path / "local.py")).replace("TMP", str(tmp_path))
        for k, v in args.items()
    }
    async with tools_for(*remote) as client:
        text = error_text(await client.call_tool(tool, args))
        assert f"{kind}: " in text
        assert "Hint: " in text
        # The server goes on serving.
        assert ok(await client.call_tool("colab_list", {}))["type"] == "directory"
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in root.iterdir()) == ["afile.txt"]


async def test_a_wrong_token_is_a_tool_error(remote: Any, tmp_path: Path) -> None:
    url, _ = remote
    (tmp_path / "a.txt").write_text("a")
    async with tools_for(url, "wrong-token") as client:
        text = error_text(
            await client.call_tool(
                "colab_upload", {"local_path": str(tmp_path / "a.txt"), "remote_path": "a.txt"}
            )
        )
    assert "forbidden: " in text
    assert "wrong-token" not in text


# ----- an agent's round trip: the real stdio MCP server through the real relay ------------------

SCRIPT = """\
import json, os, platform
os.makedirs("results", exist_ok=True)
with open("results/metrics.json", "w") as f:
    json.dump({"loss": 0.125, "cwd": os.getcwd(), "python": platform.python_version()}, f)
print("done")
"""


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_an_agent_uploads_a_script_runs_it_and_downloads_its_output(
    tunnel_server: Any, tmp_path: Path
) -> None:
    """Issue 20's "done when" for agents: colab_upload a script, run it in a remote kernel
    (through the relay, as jupyter-mcp-server's local JupyterLab does), colab_list and
    colab_download what it wrote; the MCP server is the real `jupyter colab-tunnel mcp`."""
    import asyncio

    from relay_env import start_relay
    from test_mcp import stdio_tools, token_file

    from testkit.kernel_channel import KernelChannel, ws_url

    connection_file = tmp_path / "drive" / "colab-tunnel.json"
    remote = tunnel_server(traits={"connection_file": str(connection_file), "tunnel_mode": "quick"})
    remote.wait_state("ready")
    remote_token = token_file(tmp_path, "remote_token", remote.server.token)
    relay = start_relay(
        tmp_path / "relay",
        ["--connection-file", str(connection_file), "--token-file", str(remote_token)],
        edge_root=tmp_path,
    )
    try:
        local = token_file(tmp_path, "local_token", relay.token)
        script = tmp_path / "agent" / "train.py"
        script.parent.mkdir()
        script.write_text(SCRIPT)
        root = remote.server.root_dir

        async def upload_then_download() -> tuple[Any, Any, Any]:
            async with stdio_tools(relay.url, local) as client:
                up = ok(
                    await client.call_tool(
                        "colab_upload", {"local_path": str(script), "remote_path": "train.py"}
                    )
                )
                run_in_a_kernel()
                listed = ok(await client.call_tool("colab_list", {"remote_path": "results"}))
                down = ok(
                    await client.call_tool(
                        "colab_download",
                        {"local_path": str(tmp_path / "agent"), "remote_path": "results"},
                    )
                )
                return up, listed, down

        def run_in_a_kernel() -> None:
            # In the root directory, as a notebook's kernel there (the path JupyterLab sends).
            body = {"name": "python3", "path": ""}
            kernel = relay.request("POST", "api/kernels", body).json()["id"]
            url = ws_url(relay.url) + f"/api/kernels/{kernel}/channels"
            with KernelChannel(url, headers={"Authorization": f"token {relay.token}"}) as channel:
                run = channel.execute_eventually("exec(open('train.py').read())", timeout=120)
            assert run.status == "ok", run
            assert run.stdout.strip() == "done"

        up, listed, down = asyncio.run(upload_then_download())
        assert up["path"] == "train.py"
        assert up["sha256"] == sha(SCRIPT.encode())
        assert (root / "train.py").read_text() == SCRIPT
        assert [e["name"] for e in listed["entries"]] == ["metrics.json"]
        assert down["path"] == str(tmp_path / "agent" / "results")
        assert down["files"] == 1
        fetched = tmp_path / "agent" / "results" / "metrics.json"
        assert fetched.read_bytes() == (root / "results" / "metrics.json").read_bytes()
        assert json.loads(fetched.read_text())["loss"] == 0.125
    finally:
        relay.stop()
