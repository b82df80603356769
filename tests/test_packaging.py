"""pyproject.toml declares what the package imports: an install from it never relies on a package
that only happens to be there because another one pulled it in."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).parent.parent
PACKAGE = REPO / "jupyter_colab_tunnel"
# The modules that only `jupyter colab-tunnel mcp` loads: they may use the [mcp] extra.
MCP_MODULES = {
    "local/mcp.py",
    "local/mcp_errors.py",
    "local/mcp_gpu.py",
    "local/mcp_reach.py",
    "local/mcp_schemas.py",
}


def declared(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def third_party_imports(path: Path) -> set[str]:
    """The top-level names of the modules `path` imports that are neither stdlib nor ours."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != PACKAGE.name}


def test_every_import_is_a_declared_dependency() -> None:
    with (REPO / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    dependencies = declared(project["dependencies"])
    mcp_extra = dependencies | declared(project["optional-dependencies"]["mcp"])
    distributions = packages_distributions()
    undeclared = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        allowed = mcp_extra if module in MCP_MODULES else dependencies
        for name in sorted(third_party_imports(path)):
            provided_by = {canonicalize_name(d) for d in distributions.get(name, [name])}
            if not provided_by & allowed:
                undeclared.append(f"{module}: {name} ({', '.join(sorted(provided_by))})")
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
