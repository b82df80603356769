#!/usr/bin/env python3
"""A stand-in for the ``cloudflared`` binary (version 2026.8.2), for tests.

It behaves as the real binary does (command line, flag placement, log lines,
the quick-tunnel URL box, the metrics server, exit codes and signals) and really forwards HTTP
and WebSocket traffic: a local "edge" port on 127.0.0.1 stands in for the public hostname.

Test controls, all through the environment:

``FAKE_CLOUDFLARED_FAULT``
    comma-separated ``name`` or ``name=value`` items, see ``FAULT_NAMES``.
``FAKE_CLOUDFLARED_STATE_DIR``
    write ``<pid>.json`` there (atomically, rewritten on every change): ``pid argv mode
    hostname url edge metrics token_seen url_printed_at registered_at ready``, see
    ``Tunnel.write_state``. Tests use ``edge`` (``http://127.0.0.1:<port>``) in place of DNS.
``FAKE_CLOUDFLARED_ORIGIN``
    origin of a named tunnel when no ``--url`` is given.
``FAKE_CLOUDFLARED_HOSTNAME``
    public hostname of a named tunnel (default ``tunnel.example.com``).
``FAKE_CLOUDFLARED_EDGE_PORT``
    port of the local edge listener (default 0: random).
``FAKE_CLOUDFLARED_DEBUG``
    non-empty: let Python/aiohttp tracebacks through to stderr (normally silenced).

Times in faults (``crash_after``, ``exit_clean_after``) count from process start;
``stall_after`` counts from registration.

Importing this module has no side effects; ``install(bin_dir)`` writes an executable
``cloudflared`` wrapper that runs ``main()``.
"""

from __future__ import annotations

import os
import signal
import sys

if __name__ == "__main__":
    # Before the slower imports: like the real binary, a signal that arrives before the
    # handlers exist kills the process by that signal (Python would raise KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if "ignore_sigterm" in [
        item.split("=", 1)[0].strip()
        for item in os.environ.get("FAKE_CLOUDFLARED_FAULT", "").split(",")
    ]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

import asyncio
import base64
import binascii
import contextlib
import errno
import json
import logging
import pathlib
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

VERSION = "2026.8.2"
BUILD_TIME = "2026-11-25-22:44 UTC"
VERSION_LINE = f"cloudflared version {VERSION} (built {BUILD_TIME})"
CHECKSUM = "b856a4c3d21f0e9b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"
GO_VERSION = "go1.27.3"
EDGE_IP = "198.41.200.13"
UNREACHABLE_EDGE_IP = "198.41.192.7"
EDGE_LOCATION = "fra08"
DEFAULT_QUICK_SERVICE = "https://api.trycloudflare.com"
DEFAULT_NAMED_HOSTNAME = "tunnel.example.com"
RESOLVER = "10.255.255.53:53"
FAULT_ENV = "FAKE_CLOUDFLARED_FAULT"
STATE_DIR_ENV = "FAKE_CLOUDFLARED_STATE_DIR"
ORIGIN_ENV = "FAKE_CLOUDFLARED_ORIGIN"
HOSTNAME_ENV = "FAKE_CLOUDFLARED_HOSTNAME"
EDGE_PORT_ENV = "FAKE_CLOUDFLARED_EDGE_PORT"

FAULT_NAMES = frozenset(
    {
        "crash_after",  # =SECONDS since process start: ERR line, then exit crash_code
        "crash_code",  # =N exit code for crash_after (default 1)
        "crash_signal",  # =KILL|SEGV|... die by this signal instead of exiting
        "no_url",  # quick tunnel: "Requesting new quick Tunnel..." then hang forever
        "dns_failure",  # quick: API lookup fails (exit 1); named: edge SRV lookup fails (exit 1)
        "rate_limited",  # quick: HTTP 429 / error code 1015 (exit 1)
        "request_timeout",  # [=SECONDS, default 15] quick-tunnel service hangs, then exit 1
        "ignore_sigterm",  # SIGTERM and SIGINT are ignored
        "log_flood",  # =LINES_PER_SECOND WRN/INF lines after the metrics server started
        "flood_line_bytes",  # =N bytes per flood line without the newline (default 120)
        "flood_invalid_utf8",  # put invalid UTF-8 bytes into the flood lines
        "never_ready",  # [=SECONDS between dial attempts, default 1] edge never reachable
        "stall_after",  # =SECONDS after registration: connection lost, /ready 503
        "close_stdio",  # close fds 1 and 2 after the Registered line, keep running
        "register_delay",  # =SECONDS between metrics start and registration (default 0.05)
        "request_delay",  # =SECONDS of the quick-tunnel request (default 0.05)
        "exit_clean_after",  # =SECONDS since process start: graceful lines, exit 0
    }
)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
WS_HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)

_WORDS_TEXT = (
    "able acid aged also area army away baby back ball band bank base bath bear beat been "
    "beer bell belt best bill bird blow blue boat body bold bone book boom born boss both "
    "bowl bulk burn bush busy cafe cake call calm came camp card care cars case cash cast "
    "cell chat chip city club coal coat code cold come cook cool cope copy core cost crew "
    "crop dark data date dawn days dead deal dear debt deep deny desk dial diet disc disk "
    "does done door dose down draw drew drop drug dual duke dust duty each earn ease east "
    "easy edge else even ever evil exit face fact fail fair fall farm fast fate fear feed "
    "feel fell file fill film find fine fire firm fish five flat flow food foot ford form "
    "fort four free from fuel full fund gain game gate gave gear gene gift girl give glad "
    "goal goes gold golf gone good gray grew grey grow gulf hair half hall hand hang hard "
    "harm hate have head hear heat held hell help here hero high hill hire hold hole holy "
    "home hope host hour huge hung hunt hurt idea inch into iron item jack jane jean john "
    "join jump jury just keen keep kent kept kick kind king knee knew know lack lady laid "
    "lake land lane last late lead left less life lift like line link list live load loan "
    "lock logo long look lord lose loss lost love luck made mail main make male many mark "
    "mass matt meal mean meat meet menu mere mike mile milk mill mind mine miss mode mood "
    "moon more most move much must name navy near neck need news next nice nick nine none "
    "nose note okay once only open oral over pace pack page paid pain pair palm park part "
    "pass past path peak pick pink pipe plan play plot plug plus poll pool poor port post "
    "pull pure push race rail rain rank rare rate read real rear rely rent rest rice rich "
    "ride ring rise risk road rock role roll roof room root rose rule rush safe said sake "
    "sale salt same sand save seat seed seek seem seen self sell send sent sept ship shop "
    "shot show shut sick side sign site size skin slip slow snow soft soil sold sole some "
    "song soon sort soul spot star stay step stop such suit sure take tale talk tall tank "
    "tape task team tech tell tend term test text than that them then they thin this thus "
    "till time tiny told toll tone tony took tool tour town tree trip true tune turn twin "
    "type unit upon used user vary vast very vice view vote wage wait wake walk wall want "
    "ward warm wash wave ways weak wear week well went were west what when whom wide wife "
    "wild will wind wine wing wire wise wish with wood word wore work yard yeah year your "
    "zero zone "
)
WORDS = tuple(_WORDS_TEXT.split())

ROOT_HELP = """NAME:
   cloudflared - Cloudflare's command-line tool and agent

USAGE:
   cloudflared [global options] [command] [command options]

VERSION:
   2026.8.2 (built 2026-11-25-22:44 UTC)

DESCRIPTION:
   cloudflared connects your machine or user identity to Cloudflare's global network.
     You can use it to authenticate a session to reach an API behind Access, route web traffic to
     this machine, and configure access control.

     See https://developers.cloudflare.com/cloudflare-one/connections/connect-apps for more in-depth
     documentation.

COMMANDS:
   update     Update the agent if a new version exists
   version    Print the version
   tunnel     Use Cloudflare Tunnel to expose private services to the Internet or to Cloudflare
              connected private users.
   help, h    Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --url URL                      Connect to the local webserver at URL. (default:
                                  "http://localhost:8080") [$TUNNEL_URL]
   --metrics value                Listen address for metrics reporting. [$TUNNEL_METRICS]
   --loglevel value               Application logging level {debug, info, warn, error, fatal}.
                                  (default: "info") [$TUNNEL_LOGLEVEL]
   --no-autoupdate                Disable periodic check for updates, restarting the server with
                                  the new version. (default: false) [$NO_AUTOUPDATE]
   --help, -h                     show help
   --version, -v, -V              Print the version
"""

TUNNEL_HELP = """NAME:
   cloudflared tunnel - Use Cloudflare Tunnel to expose private services to the Internet or to
   Cloudflare connected private users.

USAGE:
   cloudflared tunnel [tunnel command options] [subcommand options]

DESCRIPTION:
   Cloudflare Tunnel allows to expose private services without opening any ingress port on this
   machine. It can expose:
     A) Locally reachable HTTP-based private services to the Internet on DNS with Cloudflare as
        authority (which you can then protect with Cloudflare Access).
     B) Locally reachable TCP/UDP-based private services to Cloudflare connected private users
        in the same account, e.g., those enrolled to a Zero Trust WARP Client.

   To start a quick tunnel for testing:
     cloudflared tunnel --url http://localhost:8080

COMMANDS:
   run      Proxy a local web server by running the given tunnel
   help, h  Shows a list of commands or help for one command

OPTIONS:
   --metrics value          Listen address for metrics reporting. [$TUNNEL_METRICS]
   --grace-period value     When cloudflared receives SIGINT/SIGTERM it will stop accepting new
                            requests, wait for in-progress requests to terminate, then shutdown.
                            Waiting for in-progress requests will timeout after this grace
                            period, or when a second SIGTERM/SIGINT is received. (default: 30s)
                            [$TUNNEL_GRACE_PERIOD]
   --edge-ip-version value  Cloudflare Edge IP address version to connect with. {4, 6, auto}
                            (default: "4") [$TUNNEL_EDGE_IP_VERSION]
   --no-autoupdate          Disable periodic check for updates, restarting the server with the
                            new version. (default: false) [$NO_AUTOUPDATE]
   --loglevel value         Application logging level {debug, info, warn, error, fatal}.
                            (default: "info") [$TUNNEL_LOGLEVEL]
   --logfile value          Save application log to this file for reporting issues.
                            [$TUNNEL_LOGFILE]
   --output value           Output format for the logs (default, json) (default: "default")
                            [$TUNNEL_MANAGEMENT_OUTPUT, $TUNNEL_LOG_OUTPUT]
   --retries value          Maximum number of retries for connection/protocol errors.
                            (default: 5) [$TUNNEL_RETRIES]
   --url URL                Connect to the local webserver at URL. (default:
                            "http://localhost:8080") [$TUNNEL_URL]
   --http-host-header value Sets the HTTP Host header for the local webserver.
                            [$TUNNEL_HTTP_HOST_HEADER]
   --no-tls-verify          Disables TLS verification of the certificate presented by your
                            origin. (default: false) [$NO_TLS_VERIFY]
   --origin-ca-pool value   Path to the CA for the certificate of your origin.
                            [$TUNNEL_ORIGIN_CA_POOL]
   --help, -h               show help
"""

RUN_HELP = """NAME:
   cloudflared tunnel run - Proxy a local web server by running the given tunnel

USAGE:
   cloudflared tunnel [tunnel command options] run [subcommand options] [TUNNEL]

DESCRIPTION:
   Runs the tunnel identified by name or UUID, creating highly available connections
     between your server and the Cloudflare edge. You can provide name or UUID of tunnel to run
     either as command line argument or in the configuration file using "tunnel: TUNNEL".

     This command requires the tunnel credentials file created when "cloudflared tunnel create"
     was run. If you need to specify a custom location, use the --credentials-file flag.

OPTIONS:
   --token value           The Tunnel token. When provided along with credentials, this will
                           take precedence. Also takes precedence over token-file
                           [$TUNNEL_TOKEN]
   --token-file value      Filepath at which to read the tunnel token. When provided along with
                           credentials, this will take precedence. [$TUNNEL_TOKEN_FILE]
   --url URL               Connect to the local webserver at URL. (default:
                           "http://localhost:8080") [$TUNNEL_URL]
   --http-host-header value Sets the HTTP Host header for the local webserver.
                           [$TUNNEL_HTTP_HOST_HEADER]
   --no-tls-verify         Disables TLS verification of the certificate presented by your
                           origin. (default: false) [$NO_TLS_VERIFY]
   --origin-ca-pool value  Path to the CA for the certificate of your origin.
                           [$TUNNEL_ORIGIN_CA_POOL]
   --help, -h              show help
"""


# --------------------------------------------------------------------------------------------
# Go-style values


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds; ValueError when invalid."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(text)
    total = 0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or (not m.group(1) and not m.group(2)):
            raise ValueError(text)
        unit = _DURATION_UNITS[m.group(3)]
        total += int(m.group(1) or "0") * unit
        frac = m.group(2) or ""
        if frac:
            total += int(frac) * unit // (10 ** len(frac))
        pos = m.end()
    return sign * total


def _fmt_frac(value: int, scale: int) -> str:
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    ns = abs(ns)
    if ns < 1_000:
        out = f"{ns}ns"
    elif ns < 1_000_000:
        out = _fmt_frac(ns, 1_000) + "µs"
    elif ns < 1_000_000_000:
        out = _fmt_frac(ns, 1_000_000) + "ms"
    else:
        hours, rest = divmod(ns, 3_600_000_000_000)
        minutes, rest = divmod(rest, 60_000_000_000)
        out = _fmt_frac(rest, 1_000_000_000) + "s"
        if hours or minutes:
            out = f"{minutes}m" + out
        if hours:
            out = f"{hours}h" + out
    return ("-" if neg else "") + out


def parse_go_bool(text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(text)


def go_quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _needs_quote(value: str) -> bool:
    return any(c < " " or c > "~" or c in ' \\"' for c in value)


# --------------------------------------------------------------------------------------------
# Output


class _Stderr:
    """Unbuffered, thread-safe writes to fd 2; a broken pipe kills us by SIGPIPE, like Go."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closed = False

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.closed:
                return
            view = memoryview(data)
            while view:
                try:
                    n = os.write(2, view)
                except InterruptedError:
                    continue
                except BrokenPipeError:
                    _die_by_signal(signal.SIGPIPE)
                except OSError:
                    self.closed = True
                    return
                view = view[n:]

    def close_stdio(self) -> None:
        with self.lock:
            self.closed = True
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)


STDERR = _Stderr()


def _die_by_signal(sig: int) -> NoReturn:
    with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    time.sleep(1)
    os._exit(128 + sig)


LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3, "fatal": 4, "panic": 5}
LEVEL_ABBR = {0: "DBG", 1: "INF", 2: "WRN", 3: "ERR", 4: "FTL", 5: "PNC"}
LEVEL_NAME = {0: "debug", 1: "info", 2: "warn", 3: "error", 4: "fatal", 5: "panic"}
DBG, INF, WRN, ERR = 0, 1, 2, 3

FieldValue = str | int
Fields = Sequence[tuple[str, FieldValue]]


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Logger:
    def __init__(self, level: int = INF, json_mode: bool = False, logfile: str | None = None):
        self.level = level
        self.json_mode = json_mode
        self.logfile = logfile

    def format(self, level: int, message: str, fields: Fields = (), ts: str | None = None) -> str:
        ts = ts or utc_now()
        if self.json_mode:
            record: dict[str, Any] = {"level": LEVEL_NAME[level], "message": message, "time": ts}
            record.update(fields)
            return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        ordered = [f for f in fields if f[0] == "error"] + sorted(
            (f for f in fields if f[0] != "error"), key=lambda f: f[0]
        )
        parts = [ts, LEVEL_ABBR[level], message]
        for key, value in ordered:
            text = value if isinstance(value, str) else str(value)
            if isinstance(value, str) and _needs_quote(value):
                text = go_quote(value)
            parts.append(f"{key}={text}")
        return " ".join(parts)

    def log(self, level: int, message: str, *fields: tuple[str, FieldValue]) -> bool:
        """Write one record; returns whether it went to stderr."""
        if level < self.level:
            return False
        ts = utc_now()
        STDERR.write((self.format(level, message, fields, ts) + "\n").encode())
        if self.logfile:
            self._to_file(level, message, fields, ts)
        return True

    def _to_file(self, level: int, message: str, fields: Fields, ts: str) -> None:
        parts = [f'"level":{json.dumps(LEVEL_NAME[level])}']
        parts += [f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in fields]
        parts.append(f'"time":{json.dumps(ts)}')
        parts.append(f'"message":{json.dumps(message, ensure_ascii=False)}')
        line = "{" + ",".join(parts) + "}\n"
        with contextlib.suppress(OSError), open(self.logfile or "", "a", encoding="utf-8") as f:
            f.write(line)

    def info(self, message: str, *fields: tuple[str, FieldValue]) -> bool:
        return self.log(INF, message, *fields)

    def error(self, message: str, *fields: tuple[str, FieldValue]) -> bool:
        return self.log(ERR, message, *fields)

    @staticmethod
    def plain(text: str) -> None:
        """The last line of a fatal exit: no timestamp, no level, even in JSON mode."""
        STDERR.write((text + "\n").encode())


def write_stdout(text: str) -> None:
    with contextlib.suppress(OSError):
        sys.stdout.write(text)
        sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# Command line (urfave/cli + Go's flag package)


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str  # "str" | "bool" | "duration" | "int" | "slice"
    envs: tuple[str, ...] = ()
    default: str = ""
    aliases: tuple[str, ...] = ()
    secret: bool = False


TUNNEL_LEVEL_FLAGS = (
    Flag("metrics", "str", ("TUNNEL_METRICS",)),
    Flag("grace-period", "duration", ("TUNNEL_GRACE_PERIOD",), "30s"),
    Flag("edge-ip-version", "str", ("TUNNEL_EDGE_IP_VERSION",), "4"),
    Flag("no-autoupdate", "bool", ("NO_AUTOUPDATE",)),
    Flag("loglevel", "str", ("TUNNEL_LOGLEVEL",), "info"),
    Flag("logfile", "str", ("TUNNEL_LOGFILE",)),
    Flag("output", "str", ("TUNNEL_MANAGEMENT_OUTPUT", "TUNNEL_LOG_OUTPUT"), "default"),
    Flag("retries", "int", ("TUNNEL_RETRIES",), "5"),
    Flag("edge", "slice", ("TUNNEL_EDGE",)),
    Flag("hostname", "str", ("TUNNEL_HOSTNAME",)),
    Flag("quick-service", "str", (), DEFAULT_QUICK_SERVICE),
)
EITHER_SIDE_FLAGS = (
    Flag("url", "str", ("TUNNEL_URL",)),
    Flag("protocol", "str", ("TUNNEL_TRANSPORT_PROTOCOL",), "auto"),
    Flag("http-host-header", "str", ("TUNNEL_HTTP_HOST_HEADER",)),
    Flag("no-tls-verify", "bool", ("NO_TLS_VERIFY",)),
    Flag("origin-ca-pool", "str", ("TUNNEL_ORIGIN_CA_POOL",)),
)
RUN_ONLY_FLAGS = (
    Flag("token", "str", ("TUNNEL_TOKEN",), secret=True),
    Flag("token-file", "str", ("TUNNEL_TOKEN_FILE",)),
)
ROOT_FLAGS = (
    *TUNNEL_LEVEL_FLAGS,
    *EITHER_SIDE_FLAGS,
    Flag("version", "bool", (), aliases=("v", "V")),
)
TUNNEL_FLAGS = TUNNEL_LEVEL_FLAGS + EITHER_SIDE_FLAGS
RUN_FLAGS = EITHER_SIDE_FLAGS + RUN_ONLY_FLAGS
TUNNEL_SUBCOMMANDS = frozenset(
    {
        "login",
        "create",
        "route",
        "vnet",
        "list",
        "ready",
        "info",
        "ingress",
        "delete",
        "cleanup",
        "token",
        "diag",
    }
)
ROOT_COMMANDS = frozenset({"update", "access", "forward", "login", "proxy-dns", "service", "tail"})


class UsageError(Exception):
    def __init__(self, message: str, help_text: str):
        super().__init__(message)
        self.help_text = help_text


class HelpRequested(Exception):
    def __init__(self, help_text: str):
        super().__init__("help")
        self.help_text = help_text


@dataclass
class Context:
    """One command level: the flags it defines and the values given on the command line."""

    flags: tuple[Flag, ...]
    values: dict[str, list[str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def spec(self, name: str) -> Flag | None:
        for f in self.flags:
            if name == f.name or name in f.aliases:
                return f
        return None


def parse_flags(args: list[str], ctx: Context, help_text: str) -> list[str]:
    """Go's flag.FlagSet.Parse: flags until the first non-flag argument or ``--``."""
    while args:
        arg = args[0]
        if len(arg) < 2 or arg[0] != "-":
            break
        minuses = 1
        if arg[1] == "-":
            minuses = 2
            if len(arg) == 2:
                args = args[1:]
                break
        name = arg[minuses:]
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {arg}", help_text)
        args = args[1:]
        has_value = False
        value = ""
        if "=" in name:
            name, value = name.split("=", 1)
            has_value = True
        spec = ctx.spec(name)
        if spec is None:
            if name in ("help", "h"):
                raise HelpRequested(help_text)
            raise UsageError(f"flag provided but not defined: -{name}", help_text)
        if spec.kind == "bool":
            if has_value:
                try:
                    parse_go_bool(value)
                except ValueError:
                    raise UsageError(
                        f'invalid boolean value "{value}" for -{name}: parse error', help_text
                    ) from None
            else:
                value = "true"
        else:
            if not has_value:
                if not args:
                    raise UsageError(f"flag needs an argument: -{name}", help_text)
                value, args = args[0], args[1:]
            try:
                if spec.kind == "duration":
                    parse_go_duration(value)
                elif spec.kind == "int":
                    int(value, 0)
            except ValueError:
                raise UsageError(
                    f'invalid value "{value}" for flag -{name}: parse error', help_text
                ) from None
        if spec.kind == "slice":
            ctx.values.setdefault(spec.name, []).append(value)
        else:
            ctx.values[spec.name] = [value]
        if spec.name not in ctx.order:
            ctx.order.append(spec.name)
    return args


@dataclass
class Invocation:
    action: str  # "version" | "help" | "usage" | "quick" | "named" | "error"
    contexts: list[Context] = field(default_factory=list)  # innermost first
    text: str = ""
    exit_code: int = 0
    args: list[str] = field(default_factory=list)

    def flag_spec(self, name: str) -> Flag | None:
        for ctx in self.contexts:
            spec = ctx.spec(name)
            if spec is not None:
                return spec
        return None

    def given(self, name: str) -> bool:
        return any(name in ctx.values for ctx in self.contexts)

    def raw(self, name: str) -> str | None:
        """The value from the command line (innermost first), else from the environment."""
        for ctx in self.contexts:
            if name in ctx.values:
                return ctx.values[name][-1]
        spec = self.flag_spec(name)
        if spec is not None:
            for env in spec.envs:
                if os.environ.get(env):
                    return os.environ[env]
        return None

    def get(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            spec = self.flag_spec(name)
            return spec.default if spec else ""
        return value

    def get_bool(self, name: str) -> bool:
        try:
            return parse_go_bool(self.get(name) or "false")
        except ValueError:
            return False

    def settings(self) -> dict[str, str]:
        """Flags given on the command line, formatted like Go's ``%v`` of their values."""
        out: dict[str, str] = {}
        for ctx in reversed(self.contexts):
            for name in ctx.order:
                spec = ctx.spec(name)
                assert spec is not None
                values = ctx.values[name]
                if spec.secret:
                    out[name] = "*****"
                elif spec.kind == "duration":
                    out[name] = format_go_duration(parse_go_duration(values[-1]))
                elif spec.kind == "bool":
                    out[name] = "true" if parse_go_bool(values[-1]) else "false"
                elif spec.kind == "slice":
                    out[name] = "[" + " ".join(values) + "]"
                else:
                    out[name] = values[-1]
        return out


def parse_command_line(argv: list[str]) -> Invocation:
    root = Context(ROOT_FLAGS)
    help_text = ROOT_HELP
    try:
        rest = parse_flags(list(argv), root, ROOT_HELP)
        if root.values.get("version"):
            return Invocation("version", text=VERSION_LINE + "\n")
        if rest and rest[0] in ("help", "h"):
            return Invocation("help", text=ROOT_HELP)
        if rest and rest[0] == "version":
            short = "--short" in rest[1:] or "-s" in rest[1:]
            return Invocation("version", text=(VERSION if short else VERSION_LINE) + "\n")
        if rest and rest[0] in ROOT_COMMANDS:
            return Invocation(
                "error", text=f"fake cloudflared: `{rest[0]}` is not implemented", exit_code=1
            )
        if not rest or rest[0] != "tunnel":
            inv = Invocation("tunnel", [root], args=rest)
            if not argv:
                return Invocation("help", text=ROOT_HELP)
            return _tunnel_action(inv)
        tunnel = Context(TUNNEL_FLAGS)
        help_text = TUNNEL_HELP
        rest = parse_flags(rest[1:], tunnel, TUNNEL_HELP)
        if rest and rest[0] in ("help", "h"):
            return Invocation("help", text=TUNNEL_HELP)
        if rest and rest[0] == "run":
            run = Context(RUN_FLAGS)
            help_text = RUN_HELP
            rest = parse_flags(rest[1:], run, RUN_HELP)
            return Invocation("named", [run, tunnel, root], args=rest)
        if rest and rest[0] in TUNNEL_SUBCOMMANDS:
            return Invocation(
                "error",
                text=f"fake cloudflared: `tunnel {rest[0]}` is not implemented",
                exit_code=1,
            )
        return _tunnel_action(Invocation("tunnel", [tunnel, root], args=rest))
    except UsageError as exc:
        return Invocation("usage", text=f"Incorrect Usage. {exc}\n\n{exc.help_text}")
    except HelpRequested as exc:
        return Invocation("help", text=exc.help_text or help_text)


def _tunnel_action(inv: Invocation) -> Invocation:
    if inv.raw("url") and inv.get("quick-service"):
        inv.action = "quick"
        return inv
    if inv.raw("hostname"):
        inv.action = "error"
        inv.exit_code = 1
        inv.text = (
            "Classic tunnels have been deprecated, please use Named Tunnels. "
            "(https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/"
            "get-started/)"
        )
        return inv
    inv.action = "error"
    inv.exit_code = 1
    inv.text = (
        "Use `cloudflared tunnel run` to start tunnel. For more information, see "
        "https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/"
        "get-started/"
    )
    return inv


def parse_faults(text: str) -> dict[str, str]:
    faults: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, value = item.partition("=")
        faults[name.strip()] = value.strip()
    return faults


def parse_token(text: str) -> dict[str, Any] | None:
    """A token is base64 (standard alphabet, padded) of JSON with string keys a, t and s."""
    try:
        data = json.loads(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    if not isinstance(data, dict):
        return None
    if not all(isinstance(data.get(k), str) for k in ("a", "t", "s")):
        return None
    return data


def random_hostname() -> str:
    rng = random.SystemRandom()
    return "-".join(rng.choice(WORDS) for _ in range(4)) + ".trycloudflare.com"


def ascii_box(lines: list[str], padding: int = 2) -> list[str]:
    width = max(len(line) for line in lines)
    spacer = " " * padding
    border = "+" + "-" * (width + 2 * padding) + "+"
    rows = [border]
    rows += ["|" + spacer + line + " " * (width - len(line)) + spacer + "|" for line in lines]
    rows.append(border)
    return rows


# --------------------------------------------------------------------------------------------
# Listeners


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


# --------------------------------------------------------------------------------------------
# The tunnel


def _seconds(faults: dict[str, str], name: str, default: float) -> float:
    try:
        return float(faults[name]) if faults.get(name) else default
    except ValueError:
        return default


def _valid_close_code(code: object) -> int:
    if isinstance(code, int) and (1000 <= code <= 1003 or 1007 <= code <= 1014 or code >= 3000):
        return code
    return 1000


@dataclass
class Origin:
    base: URL
    ssl_context: ssl.SSLContext | bool

    def target(self, raw_path: str) -> URL:
        scheme = {"ws": "http", "wss": "https"}.get(self.base.scheme, self.base.scheme)
        return URL(f"{scheme}://{self.base.raw_authority}{raw_path}", encoded=True)


class Tunnel:
    def __init__(self, inv: Invocation, log: Logger, faults: dict[str, str], start: float):
        self.inv = inv
        self.log = log
        self.faults = faults
        self.start = start
        self.mode = "quick" if inv.action == "quick" else "named"
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[int] = self.loop.create_future()
        self.connector_id = str(uuid.uuid4())
        self.connection_id = str(uuid.uuid4())
        self.hostname: str | None = None
        self.public_hostname = ""
        self.protocol = inv.get("protocol") or "auto"
        if self.protocol == "auto":
            self.protocol = "quic"
        self.origin: Origin | None = None
        self.host_header = inv.raw("http-host-header")
        self.token_seen = False
        self.url_printed_at: float | None = None
        self.registered_at: float | None = None
        self.metrics_started_at: float | None = None
        self.metrics_address: str | None = None
        self.edge_port: int | None = None
        self.registered = False
        self.ready = False
        self.stalled = False
        self.shutting_down = False
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.ws_tasks: set[asyncio.Task[Any]] = set()
        self.background: set[asyncio.Task[Any]] = set()
        self.session: aiohttp.ClientSession | None = None
        self.runners: list[web.AppRunner] = []
        self.grace_ns = parse_go_duration(inv.get("grace-period") or "30s")
        self.state_dir = os.environ.get(STATE_DIR_ENV) or None
        self.requests_total = 0
        self.request_errors = 0
        self.responses_by_code: dict[int, int] = {}

    # --- plumbing -------------------------------------------------------------------------

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def finish(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)

    async def forever(self) -> NoReturn:
        while True:
            await asyncio.sleep(3600)

    def write_state(self) -> None:
        if not self.state_dir:
            return
        state = {
            "pid": os.getpid(),
            "argv": sys.argv,
            "mode": self.mode,
            "hostname": self.hostname,
            "url": f"https://{self.hostname}" if self.hostname else None,
            "edge": f"http://127.0.0.1:{self.edge_port}" if self.edge_port else None,
            "metrics": self.metrics_address,
            "token_seen": self.token_seen,
            "url_printed_at": self.url_printed_at,
            "registered_at": self.registered_at,
            "ready": self.ready,
        }
        path = pathlib.Path(self.state_dir) / f"{os.getpid()}.json"
        tmp = path.with_name(f".{os.getpid()}.json.tmp")
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, path)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    async def sleep_until(self, since_start: float) -> None:
        await asyncio.sleep(max(0.0, since_start - self.elapsed()))

    # --- startup --------------------------------------------------------------------------

    def make_origin(self, url_text: str | None) -> Origin | None:
        if not url_text:
            return None
        if "://" not in url_text:
            url_text = "http://" + url_text
        base = URL(url_text)
        ctx: ssl.SSLContext | bool = True
        if self.inv.get_bool("no-tls-verify"):
            ctx = False
        elif self.inv.get("origin-ca-pool"):
            with contextlib.suppress(OSError, ssl.SSLError):
                ctx = ssl.create_default_context(cafile=self.inv.get("origin-ca-pool"))
        return Origin(base, ctx)

    async def run(self) -> None:
        self.spawn(self.fault_timers())
        if self.mode == "quick":
            await self.run_quick()
        else:
            await self.run_named()

    async def fault_timers(self) -> None:
        tasks: list[Awaitable[Any]] = []
        if "crash_after" in self.faults:
            tasks.append(self.crash(_seconds(self.faults, "crash_after", 0.0)))
        if "exit_clean_after" in self.faults:
            tasks.append(self.exit_clean(_seconds(self.faults, "exit_clean_after", 0.0)))
        if tasks:
            await asyncio.gather(*tasks)

    async def crash(self, after: float) -> None:
        await self.sleep_until(after)
        reason = f"fake cloudflared crash (crash_after={self.faults['crash_after']})"
        self.log.error("Initiating shutdown", ("error", reason))
        sig_name = self.faults.get("crash_signal", "").upper()
        if sig_name:
            if not sig_name.startswith("SIG"):
                sig_name = "SIG" + sig_name
            sig = getattr(signal, sig_name, signal.SIGKILL)
            _die_by_signal(int(sig))
        Logger.plain(reason)
        try:
            code = int(self.faults.get("crash_code") or "1")
        except ValueError:
            code = 1
        self.finish(code)

    async def exit_clean(self, after: float) -> None:
        await self.sleep_until(after)
        self.shutting_down = True
        self.log.info("Initiating graceful shutdown due to signal terminated ...")
        await self.stop_lines()
        self.finish(0)

    async def start_edge(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=timeout,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{tail:.*}", self.edge_handler)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            max_line_size=65536,
            max_field_size=65536,
            max_headers=1024,
        )
        await runner.setup()
        self.runners.append(runner)
        try:
            port = int(os.environ.get(EDGE_PORT_ENV) or "0")
        except ValueError:
            port = 0
        sock = bind_listener(f"127.0.0.1:{port}")
        self.edge_port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()

    def install_signal_handlers(self) -> None:
        if "ignore_sigterm" in self.faults:
            return
        for sig, name in ((signal.SIGTERM, "terminated"), (signal.SIGINT, "interrupt")):
            self.loop.add_signal_handler(sig, self.on_signal, sig, name)

    def on_signal(self, sig: int, name: str) -> None:
        if self.shutting_down:
            _die_by_signal(sig)
        self.shutting_down = True
        for s in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(s, _die_by_signal, int(s))
        self.spawn(self.graceful(name))

    async def graceful(self, name: str) -> None:
        self.log.info(f"Initiating graceful shutdown due to signal {name} ...")
        if self.registered and self.inflight:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.idle.wait(), self.grace_ns / 1e9)
        await self.stop_lines()
        self.finish(0)

    async def stop_lines(self) -> None:
        if self.metrics_started_at is not None:
            since = time.monotonic() - self.metrics_started_at
            if since < 0.5:
                await asyncio.sleep(max(0.0, 0.47 - since))
        self.ready = False
        self.log.info("Tunnel server stopped")
        if self.metrics_started_at is not None:
            self.log.info("Metrics server stopped")

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
            await asyncio.sleep(_seconds(self.faults, "request_timeout", 15.0))
            Logger.plain(
                f"failed to request quick Tunnel: {post}: net/http: timeout awaiting response "
                "headers (Client.Timeout exceeded while awaiting headers)"
            )
            self.finish(1)
            return
        await asyncio.sleep(_seconds(self.faults, "request_delay", 0.05))
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

    async def start_metrics(self) -> bool:
        explicit = self.inv.raw("metrics")
        sock: socket.socket | None = None
        if explicit:
            try:
                sock = bind_listener(explicit)
            except BindError as exc:
                reason = f"failed to bind to address ({explicit}): {exc}"
                self.log.error("Error opening metrics server listener", ("error", reason))
                Logger.plain(f"Error opening metrics server listener: {reason}")
                self.finish(1)
                return False
        else:
            for port in range(20241, 20246):
                with contextlib.suppress(BindError):
                    sock = bind_listener(f"localhost:{port}")
                    break
            if sock is None:
                sock = bind_listener("localhost:0")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.metrics_handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self.runners.append(runner)
        await web.SockSite(runner, sock).start()
        self.metrics_address = sock_address(sock)
        self.metrics_started_at = time.monotonic()
        self.log.info(f"Starting metrics server on {self.metrics_address}/metrics")
        self.write_state()
        return True

    async def after_metrics(self) -> None:
        rate = _seconds(self.faults, "log_flood", 0.0)
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
        await asyncio.sleep(_seconds(self.faults, "register_delay", 0.05))
        if "never_ready" in self.faults:
            await self.never_ready(_seconds(self.faults, "never_ready", 1.0))
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
            await asyncio.sleep(_seconds(self.faults, "stall_after", 0.0))
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
        size = int(_seconds(self.faults, "flood_line_bytes", 120))
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

    # --- metrics server -------------------------------------------------------------------

    def text(self, body: str, status: int = 200) -> web.Response:
        return web.Response(
            status=status, body=body.encode(), content_type="text/plain", charset="utf-8"
        )

    async def metrics_handler(self, request: web.Request) -> web.Response:
        path = request.path
        if path == "/ready":
            count = 1 if self.ready else 0
            status = 200 if count else 503
            body = json.dumps(
                {"status": status, "readyConnections": count, "connectorId": self.connector_id},
                separators=(",", ":"),
            )
            return self.text(body, status)
        if path == "/healthcheck":
            return self.text("OK\n")
        if path == "/quicktunnel":
            name = self.hostname if self.mode == "quick" and self.hostname else ""
            return self.text(json.dumps({"hostname": name}, separators=(",", ":")))
        if path == "/metrics":
            return self.text(self.prometheus())
        return self.text("404 page not found\n", 404)

    def prometheus(self) -> str:
        families: list[tuple[str, str, str, list[tuple[str, float]]]] = [
            (
                "build_info",
                "Build and version information",
                "gauge",
                [
                    (
                        f'{{goversion="{GO_VERSION}",revision="{BUILD_TIME}",type="",'
                        f'version="{VERSION}"}}',
                        1,
                    )
                ],
            ),
            (
                "cloudflared_tunnel_concurrent_requests_per_tunnel",
                "Concurrent requests proxied through each tunnel",
                "gauge",
                [("", self.inflight)],
            ),
            (
                "cloudflared_tunnel_ha_connections",
                "Number of active ha connections",
                "gauge",
                [("", 1)],
            ),
            (
                "cloudflared_tunnel_request_errors",
                "Amount of errors due to proxying",
                "counter",
                [("", self.request_errors)],
            ),
            (
                "cloudflared_tunnel_response_by_code",
                "Count of responses by HTTP status code",
                "counter",
                [(f'{{status_code="{c}"}}', n) for c, n in sorted(self.responses_by_code.items())],
            ),
            (
                "cloudflared_tunnel_total_requests",
                "Amount of requests proxied through all the tunnels",
                "counter",
                [("", self.requests_total)],
            ),
        ]
        lines: list[str] = []
        for name, help_text, kind, samples in families:
            if not samples:
                continue
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)
        return "\n".join(lines) + "\n"

    # --- edge -----------------------------------------------------------------------------

    def edge_error(self, status: int, code: str) -> web.Response:
        return self.text(f"error code: {code}", status)

    async def edge_handler(self, request: web.Request) -> web.StreamResponse:
        if not self.registered or self.stalled or self.shutting_down:
            return self.edge_error(530, "1033")
        if self.origin is None:
            return web.Response(status=503)
        self.inflight += 1
        self.idle.clear()
        self.requests_total += 1
        try:
            is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
            if is_ws:
                task = asyncio.current_task()
                assert task is not None
                self.ws_tasks.add(task)
                try:
                    return await self.proxy_ws(request, self.origin)
                finally:
                    self.ws_tasks.discard(task)
            return await self.proxy_http(request, self.origin)
        finally:
            self.inflight -= 1
            if not self.inflight:
                self.idle.set()

    def forward_headers(self, request: web.Request, websocket: bool) -> CIMultiDict[str]:
        connection_tokens = {
            t.strip().lower() for t in request.headers.get("Connection", "").split(",")
        }
        headers: CIMultiDict[str] = CIMultiDict()
        for key, value in request.headers.items():
            lower = key.lower()
            if lower in HOP_BY_HOP or lower in connection_tokens:
                continue
            if lower in ("host", "content-length"):
                continue
            if websocket and lower in WS_HANDSHAKE_HEADERS:
                continue
            headers.add(key, value)
        headers["Host"] = self.host_header or self.public_hostname
        peer = request.remote or "127.0.0.1"
        previous = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
        headers["X-Forwarded-Proto"] = "https"
        headers["Cf-Connecting-Ip"] = "127.0.0.1"
        headers["Cf-Visitor"] = '{"scheme":"https"}'
        return headers

    def origin_failed(self, request: web.Request, origin: Origin, exc: BaseException) -> None:
        self.request_errors += 1
        port = origin.base.port
        reason = f"dial tcp {origin.base.host}:{port}: connect: connection refused"
        if not isinstance(exc, aiohttp.ClientConnectorError):
            reason = f"{type(exc).__name__}: {exc}"
        self.log.error(
            "Request failed",
            (
                "error",
                "Unable to reach the origin service. The service may be down or it may not be "
                f"responding to traffic from cloudflared: {reason}",
            ),
            ("connIndex", 0),
            ("dest", f"https://{self.public_hostname}{request.raw_path}"),
            ("event", 0),
            ("ip", EDGE_IP),
            ("type", "websocket" if request.headers.get("Upgrade") else "http"),
        )

    def count(self, status: int) -> None:
        self.responses_by_code[status] = self.responses_by_code.get(status, 0) + 1

    async def proxy_http(self, request: web.Request, origin: Origin) -> web.StreamResponse:
        assert self.session is not None
        headers = self.forward_headers(request, websocket=False)
        # Streamed as it arrives, as the real binary does: a large upload is never held here.
        # A body of known length keeps it; one sent chunked goes on chunked.
        body = request.content if request.body_exists else None
        if body is not None and request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        try:
            resp = await asyncio.wait_for(
                self.session.request(
                    request.method,
                    origin.target(request.raw_path),
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    skip_auto_headers=("Content-Type",),
                    ssl=origin.ssl_context,
                ),
                100,
            )
        except asyncio.TimeoutError:
            self.count(524)
            return self.edge_error(524, "524")
        except (aiohttp.ClientError, OSError) as exc:
            self.origin_failed(request, origin, exc)
            self.count(502)
            return self.edge_error(502, "502")
        try:
            out = web.StreamResponse(status=resp.status, reason=resp.reason)
            tokens = {t.strip().lower() for t in resp.headers.get("Connection", "").split(",")}
            for key, value in resp.headers.items():
                lower = key.lower()
                if lower in HOP_BY_HOP or lower in tokens:
                    continue
                out.headers.add(key, value)
            self.count(resp.status)
            await out.prepare(request)
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out
        finally:
            resp.release()

    async def proxy_ws(self, request: web.Request, origin: Origin) -> web.StreamResponse:
        assert self.session is not None
        headers = self.forward_headers(request, websocket=True)
        protocols = [
            p.strip()
            for value in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in value.split(",")
            if p.strip()
        ]
        try:
            upstream = await self.session.ws_connect(
                origin.target(request.raw_path),
                headers=headers,
                protocols=protocols,
                autoclose=False,
                autoping=True,
                max_msg_size=0,
                compress=0,
                ssl=origin.ssl_context,
            )
        except aiohttp.WSServerHandshakeError as exc:
            self.count(exc.status)
            skip = HOP_BY_HOP | WS_HANDSHAKE_HEADERS | {"content-length"}
            hdrs = [(k, v) for k, v in (exc.headers or {}).items() if k.lower() not in skip]
            return web.Response(status=exc.status, headers=CIMultiDict(hdrs))
        except (aiohttp.ClientError, OSError) as exc:
            self.origin_failed(request, origin, exc)
            self.count(502)
            return self.edge_error(502, "502")
        self.count(101)
        downstream: web.WebSocketResponse = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else [],
            autoclose=False,
            autoping=True,
            max_msg_size=0,
            compress=False,
        )
        try:
            await downstream.prepare(request)
            pumps = [
                asyncio.ensure_future(_pump(downstream, upstream)),
                asyncio.ensure_future(_pump(upstream, downstream)),
            ]
            try:
                await asyncio.gather(*pumps)
            finally:
                for task in pumps:
                    task.cancel()
        finally:
            if not upstream.closed:
                await upstream.close(code=1001)
            if not downstream.closed:
                with contextlib.suppress(Exception):
                    await downstream.close(code=1001)
        return downstream


WebSocket = web.WebSocketResponse[bool] | aiohttp.ClientWebSocketResponse[bool]


async def _pump(src: WebSocket, dst: WebSocket) -> None:
    """Copy messages from src to dst; a close frame is passed on with its code."""
    while True:
        msg = await src.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type == aiohttp.WSMsgType.CLOSE:
            code = _valid_close_code(msg.data)
            extra = (msg.extra or "").encode() if isinstance(msg.extra, str) else b""
            with contextlib.suppress(Exception):
                await dst.close(code=code, message=extra)
            with contextlib.suppress(Exception):
                await src.close(code=code, message=extra)
            return
        elif msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
            continue
        else:  # CLOSING, CLOSED, ERROR
            if not dst.closed:
                with contextlib.suppress(Exception):
                    await dst.close(code=1001)
            return


# --------------------------------------------------------------------------------------------
# Entry points


def _silence_logging(loop: asyncio.AbstractEventLoop, debug: bool) -> None:
    root = logging.getLogger()
    if debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    else:
        root.addHandler(logging.NullHandler())
        loop.set_exception_handler(lambda _loop, _ctx: None)


async def _amain(inv: Invocation, log: Logger, faults: dict[str, str], start: float) -> int:
    loop = asyncio.get_running_loop()
    _silence_logging(loop, bool(os.environ.get("FAKE_CLOUDFLARED_DEBUG")))
    tunnel = Tunnel(inv, log, faults, start)
    tunnel.spawn(tunnel.run())
    return await tunnel.done


def main(argv: list[str] | None = None) -> int:
    """Run like ``cloudflared``; returns only for the usage/version paths (else os._exit)."""
    start = time.monotonic()
    args = list(sys.argv[1:] if argv is None else argv)
    faults = parse_faults(os.environ.get(FAULT_ENV, ""))
    if "ignore_sigterm" in faults:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    inv = parse_command_line(args)
    if inv.action in ("version", "help", "usage"):
        write_stdout(inv.text)
        return 0
    if inv.action == "error":
        Logger.plain(inv.text)
        return inv.exit_code
    level = LEVELS.get((inv.get("loglevel") or "info").lower(), INF)
    json_mode = (inv.get("output") or "default").lower() == "json"
    log = Logger(level, json_mode, inv.get("logfile") or None)
    code = asyncio.run(_amain(inv, log, faults, start))
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    os._exit(code)


def install(bin_dir: pathlib.Path) -> pathlib.Path:
    """Write an executable ``cloudflared`` into bin_dir that runs this script; return its path."""
    bin_dir = pathlib.Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / "cloudflared"
    script = pathlib.Path(__file__).resolve()
    target.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(script.parent)!r}); sys.argv[0] = {str(target)!r}\n"
        f"runpy.run_module({script.stem!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    target.chmod(0o755)
    return target


if __name__ == "__main__":
    sys.exit(main())
