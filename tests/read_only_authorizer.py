"""A Jupyter Server Authorizer for tests: reading is allowed, every `write` is refused.

Configured with ``--ServerApp.authorizer_class=read_only_authorizer.ReadOnlyAuthorizer`` and
tests/ on the server's PYTHONPATH (tests/test_files_endpoint.py).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.authorizer import Authorizer


class ReadOnlyAuthorizer(Authorizer):
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return action != "write"
