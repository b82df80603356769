"""The local side: what runs on the user's own machine (the relay, the MCP tools).

Never imports the extension."""
