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
from mcp.types import CallToolResult

from jupyter_colab_tunnel.client import ColabClient
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


def ok(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    body = result.structured_content
    assert isinstance(body, dict)
    assert json.loads(result.content[0].text) == body  # type: ignore[union-attr]
    return body


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result
    return "\n".join(block.text for block in result.content)  # type: ignore[union-attr]


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
