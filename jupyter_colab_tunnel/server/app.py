"""ColabTunnelApp: the extension's lifecycle: config loading, services, handlers, start and stop.

Its settings are in app_settings.py (ColabTunnelSettings, mixed in); what happens to the
tunnel's URL once known is in url_publisher.py. `python -m jupyter_colab_tunnel.server.app` prints
every setting with its help.
"""

from __future__ import annotations

import asyncio
import os
import time
from copy import deepcopy
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.extension.manager import ExtensionManager
from traitlets.config import Config
from traitlets.traitlets import TraitError

from ..gpu.service import GpuService
from ..problems import ConfigProblem, Problem
from ..runtime import runtime_info
from ..tunnel.service import TunnelService
from ..tunnel.settings import SupervisorSettings
from ..tunnel.supervisor import TunnelSupervisor
from .app_settings import RENAMED, SECRET_TRAITS, ColabTunnelSettings, allowed_values
from .autostart import (
    LAUNCHED_ENV,
    AutostartDecision,
    AutostartFacts,
    decide_autostart,
    explicit_tunnel_config,
    is_kaggle,
)
from .dashboard import dashboard_handlers
from .files.handler import files_handlers
from .files.service import FilesService
from .handlers import (
    FILES_SETTING,
    FORWARD_SETTING,
    GPU_SETTING,
    KERNELS_SETTING,
    PORTS_SETTING,
    STATUS_SETTING,
    TUNNEL_SETTING,
    default_handlers,
)
from .kernels import KernelMapper, kernel_channel_ports
from .life import LifeReporter
from .metrics import MetricsHook
from .ports.forward import Forwarder, forward_handlers
from .ports.policy import PortPolicy, metrics_port
from .ports.service import PortsService
from .serverinfo import auth_enabled, origin_url
from .status import StatusReporter
from .stop_reason import SignalNotes, stop_reason
from .url_publisher import TunnelUrlPublisher

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp


class ColabTunnelApp(ExtensionApp, ColabTunnelSettings):
    """Expose this Jupyter Server through a supervised cloudflared tunnel."""

    name = "jupyter_colab_tunnel"
    description = __doc__ or ""
    load_other_extensions = True

    def __init__(self, **kwargs: Any) -> None:
        self.config_errors: list[ConfigProblem] = []
        self._runtime: dict[str, Any] = {}
        self._signals = SignalNotes()
        self.started_at = time.time()
        super().__init__(**kwargs)

    def _load_config(
        self,
        cfg: Config,
        section_names: list[str] | None = None,
        traits: dict[str, Any] | None = None,
    ) -> None:
        """Load config; a bad value is recorded and its trait keeps its default.

        Private traitlets API, overridden because no public hook sees each value before
        traitlets raises on the first invalid one (which would fail the extension and take the
        /colab endpoints with it). Tested with traitlets 5.7.1 (Colab's) and the newest.
        """
        cfg = self._renamed(cfg)
        try:
            super()._load_config(cfg, section_names, traits)
            return
        except TraitError:
            pass
        mine = self._find_my_config(cfg)
        for key, value in mine.items():
            single = Config({type(self).__name__: {key: deepcopy(value)}})
            try:
                super()._load_config(single, section_names, traits)
            except TraitError as e:
                self._record_config_error(key, e)

    def _renamed(self, cfg: Config) -> Config:
        """Move deprecated setting names to their new ones, with a warning in the log."""
        section = cfg.get(type(self).__name__)
        if not isinstance(section, Config) or not any(old in section for old in RENAMED):
            return cfg
        cfg = deepcopy(cfg)
        section = cfg[type(self).__name__]
        for old, new in RENAMED.items():
            if old not in section:
                continue
            value = section.pop(old)
            self.log.warning(
                "ColabTunnelApp.%s is deprecated: use ColabTunnelApp.%s instead.", old, new
            )
            if new not in section:
                section[new] = value
        return cfg

    def _record_config_error(self, trait: str, error: TraitError) -> None:
        name = f"{type(self).__name__}.{trait}"
        if trait in SECRET_TRAITS:
            # The rejected value may be the secret itself: never echo it.
            message = f"Invalid value for {name}: expected a string. It is ignored."
        else:
            message = f"Invalid value for {name}: {error}"
            allowed = allowed_values(self.traits().get(trait))
            if allowed:
                message += f" Allowed: {allowed}."
            message += f" Using the default ({self.trait_defaults(trait)!r})."
        if any(e.trait == trait for e in self.config_errors):
            return
        self.config_errors.append(ConfigProblem("invalid_value", message, trait=trait))

    def initialize_settings(self) -> None:
        """Build the services and hand them to the handlers through the tornado settings."""
        self.started_at = time.time()
        for error in self.config_errors:
            self.log.error(error.message)
        assert self.serverapp is not None
        serverapp = self.serverapp
        runtime = runtime_info()
        self._runtime = runtime
        self.publisher = TunnelUrlPublisher(
            serverapp,
            self.log,
            connection_file=self.connection_file,
            include_token=self.connection_file_token,
            supervisor=lambda: self.supervisor,
            life=lambda: self.life.snapshot(),
        )
        self.supervisor = TunnelSupervisor(
            self._supervisor_settings(),
            self.log,
            origin=lambda: origin_url(serverapp),
            preflight=self._refuse_insecure,
            on_url=self.publisher.url_changed,
            on_ready=self.publisher.announce,
            on_state=lambda state: self.publisher.write(),
        )
        self.tunnel = TunnelService(
            self.supervisor,
            self.tunnel_mode,
            serverapp.base_url,
            self.config_errors,
            connection_file=self.connection_file,
        )
        self.gpu = GpuService(runtime["tpu_type"], self.gpu_cache_ttl)
        self.life = LifeReporter(
            serverapp,
            runtime,
            os.environ,
            max_lifetime=self.runtime_max_lifetime,
            idle_timeout=self.runtime_idle_timeout,
        )
        forwarder = self._forwarder(serverapp)
        self.settings.update(
            {
                TUNNEL_SETTING: self.tunnel,
                GPU_SETTING: self.gpu,
                STATUS_SETTING: StatusReporter(
                    serverapp, self.started_at, runtime, self.tunnel, self.gpu, self.life
                ),
                KERNELS_SETTING: KernelMapper(serverapp),  # which kernel holds each GPU process
                # /colab/ports says which ports the forward route would refuse, and why.
                PORTS_SETTING: PortsService(
                    kernel_manager=serverapp.kernel_manager, check=forwarder.policy.check
                ),
                FORWARD_SETTING: forwarder,
                FILES_SETTING: self._files(serverapp),
            }
        )
        # Jupyter's /metrics: cached GPU sample and tunnel state only (registered at start).
        gpu = self.gpu
        self.metrics = MetricsHook(
            latest=gpu.latest,
            sample=lambda: gpu.sample(processes=False),
            supervisor=lambda: self.supervisor,
            max_age=self.gpu_cache_ttl,
            files=lambda: self.files.stats,
            life=self.life.seconds,
        )
        if not hasattr(ExtensionManager, "start_all_extensions"):
            # jupyter_server < 2.16 (Colab's 2026.01 runtime ships 2.14) has no start hook:
            # run ours once the server's IOLoop runs.
            serverapp.io_loop.add_callback(self._start_jupyter_server_extension, serverapp)

    def _files(self, serverapp: ServerApp) -> FilesService:
        contents = serverapp.contents_manager
        # The contents manager's root (FileContentsManager's), else the server's.
        root = getattr(contents, "root_dir", None) or serverapp.root_dir
        self.files = FilesService(root, lambda: bool(getattr(contents, "allow_hidden", False)))
        return self.files

    def _forwarder(self, serverapp: ServerApp) -> Forwarder:
        supervisor = self.supervisor
        policy = PortPolicy(
            self.forward_ports,
            serverapp.port,
            metrics_port=lambda: metrics_port(supervisor.metrics_address),
            kernel_ports=lambda: kernel_channel_ports(serverapp.kernel_manager),
        )
        self.forwarder = Forwarder(policy)
        return self.forwarder

    def _supervisor_settings(self) -> SupervisorSettings:
        return SupervisorSettings(
            **{f.name: getattr(self, f.name) for f in fields(SupervisorSettings)}
        )

    def _refuse_insecure(self) -> Problem | None:
        assert self.serverapp is not None
        if auth_enabled(self.serverapp) or self.allow_unauthenticated:
            return None
        return Problem(
            "insecure_config",
            "refusing to open a public tunnel to a Jupyter server without a token or password",
        )

    def _autostart_decision(self, serverapp: ServerApp) -> AutostartDecision:
        configured = set(self.config.get(type(self).__name__, {}).keys())
        gateway = getattr(serverapp, "gateway_config", None)
        runtime = self._runtime
        return decide_autostart(
            AutostartFacts(
                setting=self.autostart,
                hosted=bool(runtime.get("colab")) or is_kaggle(os.environ),
                launched=os.environ.get(LAUNCHED_ENV) == "1",
                explicit_tunnel=explicit_tunnel_config(configured, os.environ),
                gateway_mode=bool(gateway is not None and gateway.gateway_enabled),
            )
        )

    async def _read_life(self) -> None:
        try:
            await self.life.life()
        except Exception as e:
            self.log.warning("Could not read the machine's start time: %s", e)
            return
        self.publisher.write()  # the records carry it from now on

    async def _start_jupyter_server_extension(self, serverapp: ServerApp) -> None:
        """Runs once the IOLoop is up. Never waits on cloudflared: the server starts at once."""
        self.metrics.register()
        self._signals.install(serverapp)
        self.publisher.write()
        # The machine's start (for /colab/status and the records) is read off the loop in the
        # background: the tunnel's start, and the state clients wait on, never wait for it.
        self._life_read = asyncio.ensure_future(self._read_life())
        if self.tunnel_mode == "off":
            return
        if self.config_errors:
            self.supervisor.fail(
                Problem(
                    "invalid_config",
                    "; ".join(e.message for e in self.config_errors),
                )
            )
            return
        if self.tunnel_mode == "named" and not self.public_hostname:
            # Without it the tunnel's Host is unknown here, so Jupyter keeps refusing it.
            self.log.warning(
                "tunnel_mode is 'named' but public_hostname is empty: requests through the "
                "tunnel will be refused (non-local Host). Set c.ColabTunnelApp.public_hostname "
                "to the hostname routed to this server."
            )
        decision = self._autostart_decision(serverapp)
        if decision.start:
            await self.supervisor.start()
        else:
            self.log.info("Tunnel not started: %s", decision.reason)
            self.supervisor.note(decision.reason)

    async def stop_extension(self) -> None:
        life_read: asyncio.Future[None] | None = getattr(self, "_life_read", None)
        if life_read is not None:
            life_read.cancel()  # a server stopped at once: its last record is written below
        self.metrics.unregister()
        await self.supervisor.stop()
        self.publisher.finish(self._stop_reason)
        self._signals.uninstall()
        await self.gpu.close()
        self.forwarder.close()
        self.files.close()

    def _stop_reason(self) -> str:
        assert self.serverapp is not None
        timeout = float(getattr(self.serverapp, "shutdown_no_activity_timeout", 0) or 0)
        idle = self.life.snapshot()["idle_seconds"]
        return stop_reason(self._signals.received, bool(timeout) and idle >= timeout)

    def initialize_handlers(self) -> None:
        self.handlers.extend(default_handlers)
        self.handlers.extend(dashboard_handlers)  # the page at /colab/ (not part of the REST API)
        self.handlers.extend(files_handlers())  # /colab/files/<path>: transfers (cp)
        self.handlers.extend(forward_handlers())  # /colab/forward/<port>/...: the apps' ports


def settings_help() -> str:
    """Every ColabTunnelApp setting with its help and default (`jupyter server --help-all`
    leaves extensions out)."""
    own = ColabTunnelApp.class_own_traits(config=True)
    return "\n".join(ColabTunnelApp.class_get_trait_help(trait) for _, trait in sorted(own.items()))


if __name__ == "__main__":
    print(settings_help())
