"""Quick and named tunnel registration: the URL box, connection lines, stalls and log floods."""

from __future__ import annotations

import asyncio
import errno
import os
import pathlib
import threading
import time

from yarl import URL

from .cli import ascii_box, fault_seconds, parse_token, random_hostname
from .constants import (
    CHECKSUM,
    DEFAULT_NAMED_HOSTNAME,
    DEFAULT_QUICK_SERVICE,
    EDGE_IP,
    EDGE_LOCATION,
    GO_VERSION,
    HOSTNAME_ENV,
    ORIGIN_ENV,
    RESOLVER,
    UNREACHABLE_EDGE_IP,
    VERSION,
)
from .output import INF, STDERR, WRN, FieldValue, Logger


class Registration:
    """Part of `Tunnel` (testkit.cloudflared.tunnel), whose state it uses."""

    async def run_quick(self) -> None:
        self.origin = self.make_origin(self.inv.get("url"))
        await self.start_edge()
        self.write_state()
        log = self.log
        log.info(
            "Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a "
            "quick way to experiment and try it out. However, be aware that these account-less "
            "Tunnels have no uptime guarantee, are subject to the Cloudflare Online Services "
            "Terms of Use (https://www.cloudflare.com/website-terms/), and Cloudflare reserves "
            "the right to investigate your use of Tunnels for violations of such terms. If you "
            "intend to use Tunnels in production you should use a pre-created named tunnel by "
            "following: https://developers.cloudflare.com/cloudflare-one/connections/"
            "connect-apps"
        )
        log.info("Requesting new quick Tunnel on trycloudflare.com...")
        service = URL(self.inv.get("quick-service") or DEFAULT_QUICK_SERVICE)
        post = f'Post "{str(service).rstrip("/")}/tunnel"'
        if "dns_failure" in self.faults:
            await asyncio.sleep(0.1)
            Logger.plain(
                f"failed to request quick Tunnel: {post}: dial tcp: lookup {service.host} "
                f"on {RESOLVER}: no such host"
            )
            self.finish(1)
            return
        if "request_timeout" in self.faults:
            await asyncio.sleep(fault_seconds(self.faults, "request_timeout", 15.0))
            Logger.plain(
                f"failed to request quick Tunnel: {post}: net/http: timeout awaiting response "
                "headers (Client.Timeout exceeded while awaiting headers)"
            )
            self.finish(1)
            return
        await asyncio.sleep(fault_seconds(self.faults, "request_delay", 0.05))
        if "rate_limited" in self.faults:
            reason = "invalid character '<' looking for beginning of value"
            log.error(
                "Error unmarshaling QuickTunnel response: <html>error code: 1015</html>",
                ("error", reason),
                ("status_code", "429 Too Many Requests"),
            )
            Logger.plain(f"failed to unmarshal quick Tunnel: {reason}")
            self.finish(1)
            return
        if "no_url" in self.faults:
            await self.forever()
        self.hostname = random_hostname()
        self.public_hostname = self.hostname
        self.write_state()  # before anyone can read the URL: testkit/relay_process.py never waits
        url = f"https://{self.hostname}"
        rows = ascii_box(
            [
                "Your quick Tunnel has been created! Visit it at "
                "(it may take some time to be reachable):",
                url,
            ]
        )
        for i, row in enumerate(rows):
            printed = log.info(row)
            if i == 2 and printed:
                self.url_printed_at = time.time()
        self.write_state()
        self.install_signal_handlers()
        log.info(
            "Cannot determine default configuration path. No file [config.yml config.yaml] in "
            "[~/.cloudflared ~/.cloudflare-warp ~/cloudflare-warp /etc/cloudflared "
            "/usr/local/etc/cloudflared]"
        )
        log.info(f"Version {VERSION} (Checksum {CHECKSUM})")
        log.info(f"GOOS: linux, GOVersion: {GO_VERSION}, GoArch: amd64")
        settings = self.inv.settings()
        settings["ha-connections"] = "1"
        settings.setdefault("protocol", "quic")
        self.protocol = settings["protocol"] if settings["protocol"] != "auto" else "quic"
        log.info(self.settings_line(settings))
        if not await self.start_metrics():
            return
        self.spawn(self.after_metrics())

    @staticmethod
    def settings_line(settings: dict[str, str]) -> str:
        return "Settings: map[" + " ".join(f"{k}:{settings[k]}" for k in sorted(settings)) + "]"

    async def run_named(self) -> None:
        inv = self.inv
        token = inv.raw("token") or ""
        if not token:
            token_file = inv.raw("token-file")
            if token_file:
                try:
                    token = pathlib.Path(token_file).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    self.token_seen = False
                    self.write_state()
                    reason = os.strerror(exc.errno or errno.ENOENT)
                    Logger.plain(
                        f"Failed to read token file: open {token_file}: "
                        f"{reason[:1].lower() + reason[1:]}"
                    )
                    Logger.plain("See 'cloudflared tunnel run --help'.")
                    self.finish(255)
                    return
        self.token_seen = bool(token)
        if len(inv.args) > 1:
            Logger.plain(
                '"cloudflared tunnel run" accepts only one argument, the ID or name of the '
                "tunnel to run."
            )
            Logger.plain("See 'cloudflared tunnel run --help'.")
            self.finish(255)
            return
        if not token:
            self.write_state()
            if inv.args:
                Logger.plain(
                    "Cannot determine default origin certificate path. No file cert.pem in "
                    "[~/.cloudflared ~/.cloudflare-warp ~/cloudflare-warp /etc/cloudflared "
                    "/usr/local/etc/cloudflared]. You need to specify the origin certificate "
                    "path by specifying the origincert option in the configuration file, or set "
                    "TUNNEL_ORIGIN_CERT environment variable"
                )
                self.finish(1)
                return
            Logger.plain(
                '"cloudflared tunnel run" requires the ID or name of the tunnel to run as the '
                "last command line argument or in the configuration file."
            )
            Logger.plain("See 'cloudflared tunnel run --help'.")
            self.finish(255)
            return
        parsed = parse_token(token)
        if parsed is None:
            self.write_state()
            Logger.plain("Provided Tunnel token is not valid.")
            Logger.plain("See 'cloudflared tunnel run --help'.")
            self.finish(255)
            return
        self.hostname = os.environ.get(HOSTNAME_ENV) or DEFAULT_NAMED_HOSTNAME
        self.public_hostname = self.hostname
        self.origin = self.make_origin(inv.raw("url") or os.environ.get(ORIGIN_ENV))
        await self.start_edge()
        self.write_state()
        log = self.log
        log.info("Starting tunnel", ("tunnelID", str(parsed["t"])))
        self.install_signal_handlers()
        log.info(f"Version {VERSION} (Checksum {CHECKSUM})")
        settings = inv.settings()
        if settings:
            log.info(self.settings_line(settings))
        log.info(f"Generated Connector ID: {self.connector_id}")
        log.info(f"Initial protocol {self.protocol}")
        if not await self.start_metrics():
            return
        self.spawn(self.after_metrics())

    async def after_metrics(self) -> None:
        rate = fault_seconds(self.faults, "log_flood", 0.0)
        if rate > 0:
            threading.Thread(target=self.flood, args=(rate,), daemon=True).start()
        if "dns_failure" in self.faults:  # named tunnel: the edge SRV lookup fails
            await self.sleep_until(0.7)
            reason = (
                "Could not lookup srv records on _v2-origintunneld._tcp.argotunnel.com: lookup "
                f"_v2-origintunneld._tcp.argotunnel.com on {RESOLVER}: no such host"
            )
            self.log.error("Initiating shutdown", ("error", reason))
            Logger.plain(reason)
            self.finish(1)
            return
        await asyncio.sleep(fault_seconds(self.faults, "register_delay", 0.05))
        if "never_ready" in self.faults:
            await self.never_ready(fault_seconds(self.faults, "never_ready", 1.0))
            return
        self.registered = True
        self.ready = True
        self.log.info(
            "Registered tunnel connection",
            ("connIndex", 0),
            ("connection", self.connection_id),
            ("event", 0),
            ("ip", EDGE_IP),
            ("location", EDGE_LOCATION),
            ("protocol", self.protocol),
        )
        self.registered_at = time.time()
        self.write_state()
        if "close_stdio" in self.faults:
            STDERR.close_stdio()
        if "stall_after" in self.faults:
            await asyncio.sleep(fault_seconds(self.faults, "stall_after", 0.0))
            if self.shutting_down:
                return
            self.stalled = True
            self.ready = False
            self.log.error(
                "Connection terminated",
                ("error", "timeout: no recent network activity"),
                ("connIndex", 0),
            )
            for task in list(self.ws_tasks):
                task.cancel()
            self.write_state()

    async def never_ready(self, period: float) -> None:
        delays = ["2s", "4s", "8s", "16s", "32s", "1m4s"]
        attempt = 0
        where = (("connIndex", 0), ("event", 0), ("ip", UNREACHABLE_EDGE_IP))
        while not self.shutting_down:
            self.log.error(
                "Failed to dial a quic connection",
                ("error", "failed to dial to edge with quic: timeout: no recent network activity"),
                *where,
            )
            self.log.info(f"Retrying connection in up to {delays[attempt % len(delays)]}", *where)
            attempt += 1
            if attempt == len(delays):
                self.log.info("Switching to fallback protocol http2", *where)
            await asyncio.sleep(period)

    def flood(self, rate: float) -> None:
        size = int(fault_seconds(self.faults, "flood_line_bytes", 120))
        invalid = "flood_invalid_utf8" in self.faults
        start = time.monotonic()
        sent = 0
        host = self.public_hostname or "localhost"
        while not STDERR.closed:
            due = int((time.monotonic() - start) * rate) + 1
            batch: list[bytes] = []
            while sent < due and len(batch) < 10000:
                batch.append(self.flood_line(sent, size, invalid, host))
                sent += 1
            if batch:
                STDERR.write(b"".join(batch))
            time.sleep(0.01 if rate > 100 else max(0.001, 1.0 / rate / 2))

    def flood_line(self, n: int, size: int, invalid: bool, host: str) -> bytes:
        """One flood line of exactly ``size`` bytes plus the newline (when size allows)."""
        level = WRN if n % 2 else INF
        if level < self.log.level:
            return b""
        variants: list[tuple[str, list[tuple[str, FieldValue]]]]
        if level == WRN:
            variants = [
                (
                    "Failed to serve incoming request",
                    [
                        ("error", "stream reset by peer"),
                        ("connIndex", 0),
                        ("event", 1),
                        ("dest", f"https://{host}/api/kernels/PAD"),
                    ],
                ),
                ("Failed to serve incoming request", [("error", "EOF"), ("dest", "/PAD")]),
                ("Request failed", [("dest", "/PAD")]),
            ]
        else:
            variants = [
                (
                    "Request completed",
                    [
                        ("connIndex", 0),
                        ("event", 1),
                        ("dest", f"https://{host}/api/contents/PAD"),
                        ("status", 200),
                    ],
                ),
                ("Request completed", [("dest", "/PAD"), ("status", 200)]),
                ("Request completed", [("dest", "/PAD")]),
            ]
        line = b""
        for message, fields in variants:
            line = self.log.format(level, message, fields).encode()
            if len(line) - 2 <= size:
                break
        pad_len = max(1, size - len(line) + 3)
        pad = (b"x%d-" % n + b"a" * pad_len)[:pad_len]
        if invalid:
            bad = b"\xff\xfe\xc3("
            pad = (bad + pad)[: max(len(bad), pad_len)]
        return line.replace(b"PAD", pad, 1) + b"\n"
