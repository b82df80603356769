"""Start a Jupyter server with the tunnel in the background, wait for it, show how to connect.

Made for a notebook cell on the remote machine (Colab and the like)::

    from jupyter_colab_tunnel import launch
    conn = launch()

and for a shell: ``jupyter colab-tunnel launch | status | stop``.

The server runs in its own session (it survives the cell, and a kernel restart), listens on
127.0.0.1 only (the tunnel is its way in), and is recorded in ``~/.jupyter-colab-tunnel/server.json``
so that ``launch()`` again reuses it instead of starting a second one.

Errors: a server that cannot start raises `LaunchError`. A tunnel that fails, keeps failing the
same way, or is not ready in time does not raise: `launch()` returns the `Connection` with
``.error`` set to the classified error (kind, message, hint), prints it unless ``quiet``, and
leaves the server running (and retrying) so that ``conn.status()`` and the log can be read;
``conn.stop()`` ends it.

Modules, one job each: `connection` (the Connection and how it is shown), `record` (the state
file: which server is ours), `server` (the process), `waiting` and `watch` (the waits and when
to stop waiting), `poll` (the one wait loop), `ports`, `launching` (launch() itself), `cli`
(the launch, status and stop commands; the command line's root is jupyter_colab_tunnel/cli.py).
"""

from collections.abc import Sequence

from .connection import Connection
from .errors import LaunchError
from .launching import launch, running
from .ports import DEFAULT_PORT, RESERVED_PORTS, pick_port


def main(argv: Sequence[str] | None = None) -> int:
    """`jupyter colab-tunnel ...` (jupyter_colab_tunnel.cli.main). Kept for the
    `jupyter-colab-tunnel` scripts written before the root moved there, which import this one:
    an editable install keeps its script until it is installed again."""
    from ..cli import main as root_main

    return root_main(argv)


__all__ = [
    "DEFAULT_PORT",
    "RESERVED_PORTS",
    "Connection",
    "LaunchError",
    "launch",
    "main",
    "pick_port",
    "running",
]
