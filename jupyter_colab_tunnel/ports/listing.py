"""Which TCP ports listen on this machine where 127.0.0.1 reaches them, and who holds them.

Blocking (psutil reads /proc): the service runs it off the event loop and reuses it briefly.
"""

from __future__ import annotations

from dataclasses import dataclass

# Addresses at which a connection to 127.0.0.1 (or ::1) arrives.
LOOPBACK_REACHABLE = frozenset({"127.0.0.1", "0.0.0.0", "::", "::1"})


@dataclass(frozen=True)
class ListeningPort:
    port: int
    address: str
    pid: int | None
    name: str | None  # the process name, when visible
    cmdline: str | None  # shortened, secrets dropped
    kernel_id: str | None = None  # the kernel of this server that started it, if any


def listening_ports() -> list[ListeningPort]:
    """The listening TCP ports reachable at loopback, one entry per port, sorted by port."""
    import psutil  # not at import: psutil stays out of the server's start-up

    found: dict[int, ListeningPort] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        address, port = conn.laddr.ip, conn.laddr.port
        if address not in LOOPBACK_REACHABLE and not address.startswith("127."):
            continue
        if port in found and found[port].pid is not None:
            continue
        name = cmdline = None
        if conn.pid is not None:
            try:
                proc = psutil.Process(conn.pid)
                name = proc.name()
                cmdline = " ".join(proc.cmdline())
            except (psutil.Error, OSError):
                pass
        found[port] = ListeningPort(port, address, conn.pid, name, cmdline)
    return [found[p] for p in sorted(found)]
