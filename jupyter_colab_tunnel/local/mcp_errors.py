"""The MCP tools' own errors: a ToolError whose text reads like every other problem's."""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ToolError

from ..problems import Kind, Problem


def tool_error(kind: Kind, message: str, hint: str = "") -> ToolError:
    """A tool error whose text is the problem's: `kind: message` and a `Hint:` line."""
    return ToolError(str(Problem(kind, message, hint)))
