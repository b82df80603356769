"""Which port the server gets: the one asked for, or a free one that Colab does not use."""

from __future__ import annotations

import socket

from .errors import LaunchError

DEFAULT_PORT = 8888
# Busy on every Colab VM: 8080 its public-facing proxy, 9000 its own Jupyter server,
# 6000 KMP_LISTEN_PORT, 3453 its file handler.
RESERVED_PORTS = frozenset({8080, 9000, 6000, 3453})
_RESERVED_WHY = "8080: its proxy, 9000: its Jupyter, 6000: KMP_LISTEN_PORT, 3453: its file handler"


def pick_port(requested: int | None = None, start: int = DEFAULT_PORT) -> int:
    """`requested` if it is free; else the first free port from `start`, skipping Colab's."""
    if requested is not None:
        if not 0 < requested < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {requested}")
        if requested in RESERVED_PORTS:
            raise ValueError(f"port {requested} is reserved on Colab ({_RESERVED_WHY})")
        if not port_free(requested):
            raise LaunchError(
                "port_in_use",
                f"port {requested} is already in use on 127.0.0.1",
                "Choose another port, or leave port=None to pick a free one.",
            )
        return requested
    for candidate in range(start, min(start + 100, 65536)):
        if candidate not in RESERVED_PORTS and port_free(candidate):
            return candidate
    while True:  # all taken: let the system choose
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            candidate = int(s.getsockname()[1])
        if candidate not in RESERVED_PORTS:
            return candidate


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # Like tornado: a port in TIME_WAIT is usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
