"""The local JupyterLab's view of the remote: `/colab/remote/*` on the user's own Jupyter server.

A local `jupyter lab` in gateway mode (its kernels on the remote, through the relay) serves the
remote's `/colab/status`, `/colab/gpu` and `/colab/tunnel`, and the relay's `/relay/status`,
under its own auth, fetched over the gateway connection it already has: the browser (the
status-bar item) never holds a remote or relay token. Loaded as a second extension point of the
package; its handlers are imported only when a server loads it.
"""

from __future__ import annotations

from typing import Any


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .handlers import remote_handlers

    serverapp.web_app.add_handlers(".*$", remote_handlers(serverapp.base_url))
