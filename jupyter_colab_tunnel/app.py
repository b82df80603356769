"""ColabTunnelApp: the configuration surface of the extension and its start/stop wiring."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from copy import deepcopy
from dataclasses import fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.extension.manager import ExtensionManager
from traitlets import Bool, Enum, Float, Int, List, Unicode, Union, default, validate
from traitlets.config import Config
from traitlets.traitlets import TraitError

from .autostart import (
    LAUNCHED_ENV,
    AutostartDecision,
    AutostartFacts,
    decide_autostart,
    explicit_tunnel_config,
    is_kaggle,
)
from .connect import TOKEN_PLACEHOLDER, connect_info
from .connection_record import ConnectionFileWriter, connection_record
from .dashboard import dashboard_handlers
from .files.handler import files_handlers
from .files.service import FilesService
from .gpu_service import GpuService
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
from .ports.policy import DEFAULT_FORWARD_PORTS, PortPolicy, metrics_port, parse_ports
from .ports.service import PortsService
from .problems import ConfigProblem, Problem
from .runtime import runtime_info
from .serverinfo import auth_enabled, origin_url
from .status import StatusReporter
from .stop_reason import SignalNotes, stop_reason
from .tunnel.command import split_args
from .tunnel.service import TunnelService
from .tunnel.settings import SupervisorSettings
from .tunnel.supervisor import TunnelSupervisor

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp


class _ArgvList(List):  # type: ignore[type-arg]
    """A list of strings that also takes one string, split the way a shell would."""

    def set(self, obj: Any, value: Any) -> None:
        # traitlets' List would take a string as a one-item list.
        if isinstance(value, str):
            try:
                value = split_args(value)
            except ValueError as e:
                raise TraitError(f"cannot split {value!r} into arguments: {e}") from None
        super().set(obj, value)


class ColabTunnelApp(ExtensionApp):
    """Expose this Jupyter Server through a supervised cloudflared tunnel."""

    name = "jupyter_colab_tunnel"
    description = __doc__ or ""
    load_other_extensions = True

    tunnel_mode = Enum(
        ["quick", "named", "off"],
        help=(
            "Which tunnel to run. 'quick' opens a free trycloudflare.com tunnel with a new random "
            "URL on every start; 'named' runs the Cloudflare Tunnel of `tunnel_token` under your "
            "own hostname; 'off' runs none. Default: 'named' when a tunnel token is configured "
            "(tunnel_token, tunnel_token_file or $TUNNEL_TOKEN), else 'quick'."
        ),
    ).tag(config=True)

    autostart = Union(
        [Bool(), Enum(["auto"])],
        default_value="auto",
        help=(
            "Start the tunnel when the server starts. True: always; False: never (start it with "
            "POST /colab/tunnel). 'auto': only on a hosted runtime (Colab, Kaggle), a server "
            "started by launch(), or with an explicit tunnel configuration (tunnel_mode, "
            "tunnel_token, tunnel_token_file, $TUNNEL_TOKEN); never in gateway mode."
        ),
    ).tag(config=True)

    connection_file = Unicode(
        "",
        help=(
            "Write the tunnel's URL and state as JSON to this path (atomically, mode 0600) at "
            "start and on every change, for `jupyter colab-tunnel connect --connection-file`, "
            "signed with a key derived from this server's token (the relay follows nothing "
            "else; a server without a token cannot sign). Empty: none."
        ),
    ).tag(config=True)

    connection_file_token = Bool(
        False,
        help=(
            "Also write this server's Jupyter token into connection_file, so the relay needs no "
            "--token-file. Whoever can read the file then controls this server, and whoever can "
            "write it chooses where the relay goes: keep it private."
        ),
    ).tag(config=True)

    cloudflared_path = Unicode(
        "",
        help=(
            "Path of the cloudflared executable. Empty: use `cloudflared` on PATH, else the "
            "binary managed by pycloudflared (downloaded on first use)."
        ),
    ).tag(config=True)

    tunnel_token = Unicode(
        help=(
            "Token of a named Cloudflare Tunnel (secret). Defaults to $TUNNEL_TOKEN. It is passed "
            "to cloudflared only through its environment, never on its command line."
        ),
    ).tag(config=True)

    tunnel_token_file = Unicode(
        "",
        help="File holding the named-tunnel token (read at each start). Used when tunnel_token is empty.",
    ).tag(config=True)

    public_hostname = Unicode(
        "",
        help=(
            "Public hostname routed to this server in the named tunnel's dashboard "
            "(e.g. 'jupyter.example.com'); reported as https://<public_hostname>."
        ),
    ).tag(config=True)

    protocol = Enum(
        ["auto", "quic", "http2"],
        default_value="auto",
        help="Transport between cloudflared and Cloudflare's edge. Use 'http2' where UDP 7844 is blocked.",
    ).tag(config=True)

    edge_ip_version = Enum(
        ["auto", "4", "6"],
        default_value="auto",
        help="IP version used to reach Cloudflare's edge.",
    ).tag(config=True)

    cloudflared_args = _ArgvList(
        Unicode(),
        help=(
            "Extra tunnel-level flags for cloudflared, placed before `--url`/`run`, one flag or "
            "value per item (e.g. ['--edge', 'region1.v2.argotunnel.com:7844']); a single "
            "string is split the way a shell would. Never put the token here. Formerly "
            "`extra_args`, which still works for now."
        ),
    ).tag(config=True)

    restart_backoff_initial = Float(
        1.0, min=0.0, help="Seconds to wait before the first restart after cloudflared exits."
    ).tag(config=True)

    restart_backoff_max = Float(
        60.0, min=0.0, help="Upper bound in seconds of the exponential restart backoff."
    ).tag(config=True)

    max_restarts = Int(
        10,
        min=0,
        help=(
            "Give up (state 'failed', kind 'crash_loop') after more crashes or stalls than this "
            "within crash_window. Network failures and rate limits never count: they are retried "
            "for as long as the server runs."
        ),
    ).tag(config=True)

    crash_window = Float(
        600.0, min=1.0, help="Seconds over which exits are counted against max_restarts."
    ).tag(config=True)

    url_timeout = Float(
        30.0, min=1.0, help="Seconds to wait for the tunnel URL before restarting cloudflared."
    ).tag(config=True)

    health_interval = Float(
        5.0, min=0.05, help="Seconds between health checks of cloudflared's /ready endpoint."
    ).tag(config=True)

    stop_timeout = Float(
        5.0,
        min=0.0,
        help="Seconds cloudflared gets to exit after SIGTERM (also its --grace-period) before SIGKILL.",
    ).tag(config=True)

    log_lines = Int(
        1000, min=10, help="How many of cloudflared's log lines to keep in memory."
    ).tag(config=True)

    allow_unauthenticated = Bool(
        False,
        help=(
            "Allow a public tunnel to a server that has neither a token nor a password. "
            "Anyone who learns the URL could then run code on this machine."
        ),
    ).tag(config=True)

    gpu_cache_ttl = Float(
        1.0, min=0.0, help="Seconds an NVML sample is reused by /colab/gpu and /colab/status."
    ).tag(config=True)

    forward_ports = Unicode(
        DEFAULT_FORWARD_PORTS,
        help=(
            "The ports on this machine that /colab/forward/<port>/ (`jupyter colab-tunnel "
            "connect --forward`) may reach at 127.0.0.1, for holders of the Jupyter token: "
            "comma-separated ports and ranges, e.g. '6006,7860,8000-8100'. Empty: forwarding "
            "off. This server's own port, cloudflared's metrics port and Colab's own (8080, "
            "9000, 6000, 3453) are never forwarded, whatever this says."
        ),
    ).tag(config=True)

    runtime_max_lifetime = Float(
        None,
        allow_none=True,
        min=0.0,
        help=(
            "Seconds a runtime lives at most, for the estimated end in /colab/status `life` "
            "(e.g. 86400 on a paid Colab tier or a rented VM with a 24-hour lease). None: the "
            "detected platform's figure (Colab: 12 h, Kaggle: 12 h, 9 h on TPU); 0: not known."
        ),
    ).tag(config=True)

    runtime_idle_timeout = Float(
        None,
        allow_none=True,
        min=0.0,
        help=(
            "Seconds without activity after which the platform recycles the runtime, for the "
            "estimated end in /colab/status `life`. None: the detected platform's figure "
            "(Colab: 5400, what users report; Kaggle: 1200); 0: not known."
        ),
    ).tag(config=True)

    @validate("forward_ports")
    def _valid_forward_ports(self, proposal: Any) -> str:
        value = str(proposal["value"])
        try:
            parse_ports(value)
        except ValueError as e:
            raise TraitError(str(e)) from None
        return value

    @default("tunnel_token")
    def _default_tunnel_token(self) -> str:
        return os.environ.get("TUNNEL_TOKEN", "")

    @default("tunnel_mode")
    def _default_tunnel_mode(self) -> str:
        return "named" if (self.tunnel_token or self.tunnel_token_file) else "quick"

    def __init__(self, **kwargs: Any) -> None:
        self.config_errors: list[ConfigProblem] = []
        self._tunnel_host: str | None = None
        self._announced = False
        self._connection_writer: ConnectionFileWriter | None = None
        self._unsigned_warned = False
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
        if trait in _SECRET_TRAITS:
            # The rejected value may be the secret itself: never echo it.
            message = f"Invalid value for {name}: expected a string. It is ignored."
        else:
            message = f"Invalid value for {name}: {error}"
            allowed = _allowed_values(self.traits().get(trait))
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
        self.supervisor = TunnelSupervisor(
            self._supervisor_settings(),
            self.log,
            origin=lambda: origin_url(serverapp),
            preflight=self._refuse_insecure,
            on_url=self._on_tunnel_url,
            on_ready=self._announce,
            on_state=lambda state: self._write_connection_file(),
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
            life=self.life.snapshot,
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

    def _on_tunnel_url(self, url: str | None) -> None:
        self._allow_tunnel_host(url)
        self._write_connection_file()

    def _write_connection_file(self, reason: str | None = None) -> None:
        """Record the tunnel's URL and state for the local relay (off the event loop).

        With a `reason`, this is the last record: state 'stopped' and why.
        """
        if not self.connection_file:
            return
        assert self.serverapp is not None
        if self._connection_writer is None:
            self._connection_writer = ConnectionFileWriter(self.connection_file, self.log)
        # Signed with the server's token: the relay follows only a record signed with the
        # token it holds. Without a token there is nothing to sign with (say so once).
        token = self.serverapp.identity_provider.token or None
        if token is None and not self._unsigned_warned:
            self._unsigned_warned = True
            self.log.warning(
                "This server has no token, so its connection file %s cannot be signed and "
                "`jupyter colab-tunnel connect --connection-file` will refuse it. Give the "
                "server a token (e.g. launch(token=...)), or connect with --url.",
                self.connection_file,
            )
        life = self.life.snapshot()  # in memory: the machine's start is read at start
        self._connection_writer.update(
            connection_record(
                self.supervisor.url,
                "stopped" if reason is not None else self.supervisor.state,
                self.serverapp.base_url,
                token,
                include_token=self.connection_file_token,
                machine_started_at=life["machine_started_at"],
                estimated_end_at=life["estimated_end_at"],
                reason=reason,
            )
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

    def _allow_tunnel_host(self, url: str | None) -> None:
        """Accept the tunnel's public Host header, and only that one.

        cloudflared forwards `Host: <tunnel host>`; Jupyter blocks non-local hosts unless
        allow_remote_access. Adding exactly this hostname to `local_hostnames` lets gateway
        clients and browsers in (a browser's Origin then matches its Host) while every other
        foreign Host stays blocked.
        """
        assert self.serverapp is not None
        settings = self.serverapp.web_app.settings
        if self._tunnel_host:
            hosts = [h for h in settings.get("local_hostnames", []) if h != self._tunnel_host]
            settings["local_hostnames"] = hosts
            self._tunnel_host = None
        if url:
            host = urlparse(url).hostname
            if host:
                settings["local_hostnames"] = [*settings.get("local_hostnames", []), host]
                self._tunnel_host = host

    def _announce(self, supervisor: TunnelSupervisor) -> None:
        """Log how to connect the first time the tunnel is ready.

        The supervisor has just logged `Tunnel ready: <url>` itself (on every ready
        transition): this adds the commands only, once. No token: the log is no place for it.
        """
        if self._announced or not supervisor.url:
            return
        self._announced = True
        assert self.serverapp is not None
        info = connect_info(
            supervisor.url, self.serverapp.base_url, connection_file=self.connection_file or None
        )
        assert info is not None
        self.log.info(
            "Connect from your machine through the relay (%s is this server's token):\n%s",
            TOKEN_PLACEHOLDER,
            "\n".join(f"    {line}" for line in info["command"].splitlines()),
        )

    async def _start_jupyter_server_extension(self, serverapp: ServerApp) -> None:
        """Runs once the IOLoop is up. Never waits on cloudflared: the server starts at once."""
        self.metrics.register()
        self._signals.install(serverapp)
        await self.life.life()  # reads the machine's start (off the loop) for the records
        self._write_connection_file()
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
        self.metrics.unregister()
        await self.supervisor.stop()
        if self._connection_writer is not None:
            self._write_connection_file(reason=self._stop_reason())
            self._connection_writer.close()
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


_SECRET_TRAITS = frozenset({"tunnel_token"})

# Deprecated setting name -> its replacement.
RENAMED = {"extra_args": "cloudflared_args"}


def _allowed_values(trait: Any) -> str:
    values: Iterable[Any] | None = getattr(trait, "values", None)
    if values is not None:
        return ", ".join(repr(v) for v in values)
    low, high = getattr(trait, "min", None), getattr(trait, "max", None)
    if high is not None and high == float("inf"):
        high = None
    if low is not None and high is not None:
        return f"a number from {low} to {high}"
    if low is not None:
        return f"a number >= {low}"
    return ""


def settings_help() -> str:
    """Every ColabTunnelApp setting with its help and default (`jupyter server --help-all`
    leaves extensions out)."""
    own = ColabTunnelApp.class_own_traits(config=True)
    return "\n".join(ColabTunnelApp.class_get_trait_help(trait) for _, trait in sorted(own.items()))


if __name__ == "__main__":
    print(settings_help())
