"""The stand-in's command line, parsed the way urfave/cli and Go's flag package do."""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
from dataclasses import dataclass, field
from typing import Any

from .constants import (
    DEFAULT_QUICK_SERVICE,
    ROOT_HELP,
    RUN_HELP,
    TUNNEL_HELP,
    VERSION,
    VERSION_LINE,
    WORDS,
)
from .golang import format_go_duration, parse_go_bool, parse_go_duration


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


def fault_seconds(faults: dict[str, str], name: str, default: float) -> float:
    try:
        return float(faults[name]) if faults.get(name) else default
    except ValueError:
        return default
