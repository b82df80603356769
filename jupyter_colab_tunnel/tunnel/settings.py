"""The supervisor's settings: ColabTunnelApp's tunnel traits, by the same names."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .clock import Clock
from .health import HealthWatch, Probe
from .restart import RestartRules


@dataclass(frozen=True)
class SupervisorSettings:
    """ColabTunnelApp's tunnel traits, by the same names; the traits hold the defaults."""

    tunnel_mode: str
    cloudflared_path: str
    tunnel_token: str = field(repr=False)
    tunnel_token_file: str
    public_hostname: str
    protocol: str
    edge_ip_version: str
    cloudflared_args: str | list[str]
    restart_backoff_initial: float
    restart_backoff_max: float
    max_restarts: int
    crash_window: float
    url_timeout: float
    health_interval: float
    stop_timeout: float
    log_lines: int

    @property
    def restart_rules(self) -> RestartRules:
        return RestartRules(
            max_restarts=self.max_restarts,
            crash_window=self.crash_window,
            backoff_initial=self.restart_backoff_initial,
            backoff_max=self.restart_backoff_max,
        )

    @property
    def named_url(self) -> str | None:
        """A named tunnel's URL, known before it runs (when public_hostname says it)."""
        if self.tunnel_mode == "named" and self.public_hostname:
            return f"https://{self.public_hostname}"
        return None

    def health_watch(self, clock: Clock, probe: Probe, wake: asyncio.Event) -> HealthWatch:
        return HealthWatch(
            mode=self.tunnel_mode,
            url_timeout=self.url_timeout,
            interval=self.health_interval,
            clock=clock,
            probe=probe,
            wake=wake,
        )
