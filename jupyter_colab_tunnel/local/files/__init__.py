"""`jupyter colab-tunnel cp` and the MCP file tools: the local side of /colab/files.

specs.py parses and plans (pure), remote.py speaks the protocol (docs/files.md), transfer.py
moves one file either way with resume and sha256, progress.py shows it, cp_cli.py is the
command.
"""
