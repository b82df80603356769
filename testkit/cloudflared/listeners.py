"""Listening sockets from cloudflared-style addresses (``host:port``, ``localhost:0``)."""

from __future__ import annotations

import errno
import os
import socket


class BindError(Exception):
    pass


def bind_listener(address: str) -> socket.socket:
    """Bind and listen like Go's net.Listen("tcp", address); BindError carries Go's text."""
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise BindError(f"listen tcp: address {address}: missing port in address")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise BindError(f"listen tcp: lookup tcp/{port_text}: unknown port") from None
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        raise BindError(f"listen tcp: lookup {host}: no such host") from None
    infos.sort(key=lambda info: 0 if info[0] == socket.AF_INET else 1)
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno or errno.EINVAL)
        reason = reason[:1].lower() + reason[1:]
        raise BindError(f"listen tcp {address}: bind: {reason}") from None
    sock.setblocking(False)
    return sock


def sock_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        return f"[{host}]:{port}"
    return f"{host}:{port}"
