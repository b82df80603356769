"""A Jupyter Server Authorizer for tests: everything is allowed except `write` on `colab`.

Configured with ``--ServerApp.authorizer_class=deny_write_authorizer.DenyWriteAuthorizer``
and tests/ on the server's PYTHONPATH (tests/test_security.py).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.authorizer import Authorizer


class DenyWriteAuthorizer(Authorizer):
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        allowed = not (resource == "colab" and action == "write")
        handler.log.info("DenyWriteAuthorizer: %s on %s -> %s", action, resource, allowed)
        return allowed
