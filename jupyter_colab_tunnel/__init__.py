"""Run and supervise a cloudflared tunnel from a Jupyter Server, and report its state over REST."""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__", "launch"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package (as Jupyter does to load the extension) stays cheap.
    if name == "launch":
        from .launcher import launch

        return launch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import ColabTunnelApp

    return [
        {"module": "jupyter_colab_tunnel.server.app", "app": ColabTunnelApp},
        # The local JupyterLab's /colab/remote/* (gateway mode): the remote in its status bar.
        {"module": "jupyter_colab_tunnel.local.lab"},
    ]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # The prebuilt JupyterLab extension (the status-bar item; built from src/ by the wheel's
    # build hook). The wheel installs it to share/jupyter/labextensions/ too; this is what
    # `jupyter labextension develop .` reads.
    return [{"src": "labextension", "dest": "jupyter-colab-tunnel"}]
