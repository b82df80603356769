"""Facts about the Jupyter Server this extension runs in: auth, its own address, kernels."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import jupyter_server
from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp

_STOCK_PROVIDERS = ("IdentityProvider", "PasswordIdentityProvider", "LegacyIdentityProvider")


def auth_method(serverapp: ServerApp) -> str:
    """'password', 'token', 'none', or 'custom' for a third-party identity provider."""
    idp = serverapp.identity_provider
    if not isinstance(idp, IdentityProvider) or type(idp).__name__ not in _STOCK_PROVIDERS:
        return "custom"
    if isinstance(idp, PasswordIdentityProvider) and idp.hashed_password:
        return "password"
    if idp.token:
        return "token"
    return "none"


def auth_enabled(serverapp: ServerApp) -> bool:
    """Whether a request needs credentials. Custom providers are trusted to authenticate."""
    if auth_method(serverapp) == "custom":
        return bool(getattr(serverapp.identity_provider, "auth_enabled", True))
    return auth_method(serverapp) != "none"


def origin_url(serverapp: ServerApp) -> str:
    """This server's address as cloudflared should reach it (loopback where possible).

    No path: cloudflared forwards each request's path unchanged, so base_url stays in the URL
    clients use (`https://<tunnel host><base_url>`).
    """
    scheme = "https" if serverapp.certfile else "http"
    ip = serverapp.ip
    if ip in ("", "0.0.0.0", "localhost", "*"):
        host = "127.0.0.1"
    elif ip in ("::", "[::]"):
        host = "[::1]"
    elif ":" in ip:
        host = f"[{ip}]"
    else:
        host = ip
    return f"{scheme}://{host}:{serverapp.port}"


def server_section(serverapp: ServerApp, started_at: str, uptime_s: float) -> dict[str, Any]:
    """The `server` section of /colab/status."""
    try:
        kernels = len(serverapp.kernel_manager.list_kernel_ids())
    except Exception:  # a gateway-backed or custom manager may not list locally
        kernels = None
    return {
        "version": jupyter_server.__version__,
        "started_at": started_at,
        "uptime_s": round(uptime_s, 3),
        "base_url": serverapp.base_url,
        "root_dir": serverapp.root_dir,
        "kernels": kernels,
        "auth": auth_method(serverapp),
        "hostname": socket.gethostname(),
    }
