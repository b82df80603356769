"""Which remote ports the forward route may reach (`ColabTunnelApp.forward_ports`).

Pure: the setting's text in, a reason to refuse (or None) out. Some ports are never forwarded,
whatever the setting: the Jupyter server's own (the route would reach its API with a second
name), cloudflared's metrics server (it can stop the tunnel), and Colab's own services.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_FORWARD_PORTS = "1024-65535"
MAX_PORT = 65535
# Colab's own services on its VMs (its public-facing proxy, its own token-less Jupyter server,
# KMP_LISTEN_PORT, its file handler): a route to them would hand the runtime to the caller.
COLAB_PORTS: dict[int, str] = {
    8080: "Colab's public-facing proxy",
    9000: "Colab's own Jupyter server",
    6000: "Colab's KMP_LISTEN_PORT service",
    3453: "Colab's file handler",
}


def parse_ports(spec: str) -> tuple[tuple[int, int], ...]:
    """The ranges of a setting such as "6006,7860,8000-8100" ("" = none). Raises ValueError
    with a message that names the bad part."""
    ranges: list[tuple[int, int]] = []
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            if spec.strip():
                raise ValueError(f"empty item in {spec!r}: use e.g. '6006,7860,8000-8100'")
            continue
        low_text, dash, high_text = part.partition("-")
        try:
            low = int(low_text.strip())
            high = int(high_text.strip()) if dash else low
        except ValueError:
            raise ValueError(
                f"{part!r} is not a port or a range: use e.g. '6006,7860,8000-8100'"
            ) from None
        if not 1 <= low <= high <= MAX_PORT:
            raise ValueError(f"{part!r} is not within 1-{MAX_PORT} (a range goes from low to high)")
        ranges.append((low, high))
    return tuple(ranges)


class PortPolicy:
    """`check(port)`: None when the route may reach 127.0.0.1:port, else why not."""

    def __init__(
        self,
        spec: str,
        server_port: int,
        metrics_port: Callable[[], int | None] = lambda: None,
        kernel_ports: Callable[[], dict[int, str]] = dict,
    ) -> None:
        self.spec = spec
        self.ranges = parse_ports(spec)
        self.server_port = server_port
        self._metrics_port = metrics_port
        self._kernel_ports = kernel_ports

    def check(self, port: int) -> str | None:
        if not 1 <= port <= MAX_PORT:
            return f"{port} is not a TCP port (1-{MAX_PORT})"
        if port == self.server_port:
            return f"port {port} is this Jupyter server's own: it is never forwarded"
        if port == self._metrics_port():
            return f"port {port} is cloudflared's metrics server: it is never forwarded"
        if port in COLAB_PORTS:
            return f"port {port} is {COLAB_PORTS[port]}: it is never forwarded"
        kernel_id = self._kernel_ports().get(port)
        if kernel_id is not None:
            # ZMQ, not HTTP: listed by /colab/ports (the kernel listens there), never a web app.
            return f"port {port} is a ZMQ channel of kernel {kernel_id}, not a web app"
        if not self.ranges:
            return "port forwarding is off on this server (ColabTunnelApp.forward_ports is empty)"
        if not any(low <= port <= high for low, high in self.ranges):
            return (
                f"port {port} is not in ColabTunnelApp.forward_ports ({self.spec!r}) on this server"
            )
        return None


def metrics_port(address: str | None) -> int | None:
    """The port of a metrics address ("127.0.0.1:40123"), or None."""
    if not address:
        return None
    _, _, port = address.rpartition(":")
    return int(port) if port.isdigit() else None
