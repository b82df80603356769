"""The guides: a valid Colab notebook, links that resolve, names that exist in the code."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_server.gateway.gateway_client import GatewayClient

from jupyter_colab_tunnel.cli import build_parser
from jupyter_colab_tunnel.launcher import Connection, launch
from jupyter_colab_tunnel.problems import GPU_KINDS, TUNNEL_KINDS
from jupyter_colab_tunnel.server.app import ColabTunnelApp

DOCS = Path(__file__).parent.parent / "docs"
NOTEBOOK = DOCS / "colab_setup.ipynb"
GUIDES = ["colab.md", "connecting.md", "troubleshooting.md", "security.md"]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """Markdown without its fenced code blocks and inline code spans."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)


def test_colab_notebook_is_valid_nbformat_v4() -> None:
    nb = _notebook()
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        # Shipped clean: no outputs (which could hold a token) and no execution counts.
        assert cell.outputs == []
        assert cell.execution_count is None


def test_colab_notebook_code_is_python_and_calls_launch_correctly() -> None:
    params = set(inspect.signature(launch).parameters)
    calls = 0
    for cell in _notebook().cells:
        if cell.cell_type != "code":
            continue
        # IPython magics and shell escapes are not Python.
        source = "\n".join(
            "pass" if line.lstrip().startswith(("%", "!")) else line
            for line in cell.source.splitlines()
        )
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "launch":
                calls += 1
                assert {k.arg for k in node.keywords} <= params, ast.unparse(node)
    assert calls >= 2  # a quick and a named tunnel


def test_relative_links_between_docs_resolve() -> None:
    broken = []
    checked = 0
    for page in sorted(DOCS.glob("*.md")):
        for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            checked += 1
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.name}: {target} (no heading #{anchor})")
    assert checked >= 10
    assert not broken, broken


@pytest.mark.parametrize("kind", sorted(TUNNEL_KINDS))
def test_troubleshooting_covers_every_error_kind(kind: str) -> None:
    assert f"`{kind}`" in (DOCS / "troubleshooting.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", GPU_KINDS)
def test_gpu_guide_explains_every_error_kind(kind: str) -> None:
    assert f"| `{kind}` |" in (DOCS / "gpu.md").read_text(encoding="utf-8")


def test_settings_named_in_the_guides_exist() -> None:
    texts = [(DOCS / name).read_text(encoding="utf-8") for name in GUIDES]
    texts += [cell.source for cell in _notebook().cells]
    text = "\n".join(texts)
    colab = set(re.findall(r"ColabTunnelApp\.([a-z_]+)", text))
    gateway = set(re.findall(r"GatewayClient\.([a-z_]+)", text))
    assert colab
    assert gateway >= {"url", "auth_token", "request_timeout", "headers"}
    assert colab <= set(ColabTunnelApp.class_trait_names(config=True)), colab
    assert gateway <= set(GatewayClient.class_trait_names(config=True)), gateway


# ----- what users copy from the docs works ---------------------------------------------------

ALL_PAGES = [Path(__file__).parent.parent / "README.md", *sorted(DOCS.glob("*.md"))]
CODE_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for page in ALL_PAGES:
        for lang, body in CODE_BLOCK.findall(page.read_text(encoding="utf-8")):
            if lang == language:
                found.append((page.name, body))
    return found


def test_json_blocks_parse() -> None:
    blocks = _blocks("json")
    assert blocks
    for page, body in blocks:
        try:
            json.loads(body)
        except ValueError as e:
            raise AssertionError(f"{page}: {e}\n{body}") from None


def test_python_blocks_compile() -> None:
    blocks = _blocks("python")
    assert blocks
    for page, body in blocks:
        # Notebook magics (%pip) are not Python; everything else must be.
        source = "\n".join(ln for ln in body.splitlines() if not ln.lstrip().startswith(("%", "!")))
        compile(source, page, "exec")


def test_shell_blocks_are_valid_bash() -> None:
    blocks = _blocks("bash")
    assert blocks
    for page, body in blocks:
        result = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
        assert result.returncode == 0, f"{page}: {result.stderr}\n{body}"


def test_shell_lines_are_whole() -> None:
    """No quoted string runs into the next line: `bash -n` accepts one, but a line copied from it
    does something else (colab.md's `printf '%s` broke in two this way)."""
    blocks = _blocks("bash")
    for page, body in blocks:
        for line in body.splitlines():
            words = shlex.shlex(line, posix=True, punctuation_chars=True)
            words.whitespace_split = True
            try:
                list(words)
            except ValueError as e:
                raise AssertionError(f"{page}: {e}: {line}") from None


CONTINUATION = re.compile(r"(or|and|but|which|then|so|to)\b")


def test_no_paragraph_continues_another_one() -> None:
    """A paragraph that begins mid-sentence ("or on the command line: ...") continues a code
    block before it, never another paragraph: one was cut off from its start when a paragraph
    was inserted between them (configuration.md)."""
    for page in ALL_PAGES:
        text = page.read_text(encoding="utf-8")
        previous = ""
        for chunk in re.split(r"(^```.*?^```[^\n]*$)", text, flags=re.M | re.S):
            if chunk.startswith("```"):
                previous = "code"
                continue
            for i, paragraph in enumerate(re.split(r"\n\s*\n", chunk.strip("\n"))):
                if CONTINUATION.match(paragraph) and not (i == 0 and previous == "code"):
                    raise AssertionError(f"{page.name}: a cut sentence: {paragraph[:80]!r}")
                previous = "prose"


def test_request_bodies_in_docs_are_json() -> None:
    bodies = []
    for page in ALL_PAGES:
        text = page.read_text(encoding="utf-8")
        bodies += [(page.name, b) for b in re.findall(r"-d '([^']*)'", text)]
        bodies += [(page.name, b) for b in re.findall(r"POST `?(\{[^{}`]*\})", text)]
    assert bodies
    for page, body in bodies:
        try:
            json.loads(body)
        except ValueError:
            raise AssertionError(f"{page}: not JSON: {body}") from None


def test_readme_links_every_guide() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(docs/([^)#\s]+)", readme))
    shipped = {p.name for p in DOCS.iterdir() if p.suffix in (".md", ".yaml", ".ipynb")}
    assert shipped <= linked, sorted(shipped - linked)


def test_connection_attributes_named_in_the_guides_exist() -> None:
    texts = [(DOCS / name).read_text(encoding="utf-8") for name in GUIDES]
    texts += [cell.source for cell in _notebook().cells]
    texts.append((DOCS.parent / "README.md").read_text(encoding="utf-8"))
    used = set(re.findall(r"\bconn\.([A-Za-z_]+)", "\n".join(texts)))
    assert {"gateway_url", "status", "stop", "wait", "token"} <= used
    fields = {f.name for f in dataclasses.fields(Connection)}
    missing = {name for name in used if name not in fields and not hasattr(Connection, name)}
    assert not missing, missing


# ----- docs/agents.md: the MCP configurations ----------------------------------------------

AGENTS = DOCS / "agents.md"
JSON_FENCE = re.compile(r"^```json\n(.*?)^```", re.M | re.S)
SH_FENCE = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def _agents_configs() -> list[dict[str, Any]]:
    return [json.loads(block) for block in JSON_FENCE.findall(AGENTS.read_text(encoding="utf-8"))]


def test_agents_json_configs_parse_and_pair_both_servers() -> None:
    configs = _agents_configs()
    assert len(configs) >= 2  # Claude Desktop and Cursor
    for config in configs:
        servers = config["mcpServers"]
        assert set(servers) == {"jupyter", "colab"}, servers
        assert servers["jupyter"]["args"] == ["jupyter-mcp-server@latest"]
        assert {"JUPYTER_URL", "JUPYTER_TOKEN"} <= set(servers["jupyter"]["env"])
        colab = servers["colab"]
        assert Path(colab["command"]).name == "jupyter-colab-tunnel"
        args = build_parser().parse_args(colab["args"])  # the real command line accepts them
        assert args.command == "mcp"
        assert args.url.startswith("https://")
        # The token comes from a file or the environment, never from args.
        assert args.token_file or "JUPYTER_COLAB_TUNNEL_TOKEN" in colab.get("env", {})


def test_agents_claude_code_commands_use_the_real_command_line() -> None:
    text = "\n".join(SH_FENCE.findall(AGENTS.read_text(encoding="utf-8")))
    adds = [line for line in text.splitlines() if line.startswith("claude mcp add colab")]
    assert adds
    for line in adds + [
        ln for ln in text.splitlines() if ln.startswith("jupyter colab-tunnel mcp")
    ]:
        argv = shlex.split(line.split(" -- ", 1)[-1])
        start = argv.index("mcp")
        args = build_parser().parse_args(argv[start:])
        assert args.url
        assert args.token_file


def test_agents_tool_table_names_every_tool() -> None:
    from mcp import Client

    from jupyter_colab_tunnel.local.client import ColabClient
    from jupyter_colab_tunnel.local.mcp import build_server

    async def names() -> set[str]:
        async with Client(build_server(ColabClient("http://127.0.0.1:9/"))) as client:
            return {t.name for t in (await client.list_tools()).tools}

    text = AGENTS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(colab_[a-z_]+)` \|", text, re.M))
    assert documented == asyncio.run(names())
