"""The local side: what runs on the user's own machine (MCP tools; never the extension)."""
