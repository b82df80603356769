"""`jupyter colab-tunnel <command>`: the subcommands, one registration each in SUBCOMMANDS."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from .._version import __version__
from ..states import LAUNCHED
from .errors import LaunchError
from .launching import find, start_and_wait
from .report import PREFIX
from .waiting import Interrupted
from .watch import GIVE_UP_AFTER

NOT_RUNNING = "no server started by `jupyter colab-tunnel launch` is running"
CLI_HINTS = {"port_in_use": "pick another --port, or leave --port out to pick a free one"}


@dataclass(frozen=True)
class Subcommand:
    """One `jupyter colab-tunnel NAME`: `configure` adds its options, `run` does it (exit code)."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, list[str]], int]
    # Options it does not know are handed to `run` (launch passes them to jupyter server).
    passthrough: bool = False
    description: str | None = None


def _launch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, help="port (default: 8888 or the next free one)")
    parser.add_argument("--token", help="server token (default: a random one)")
    parser.add_argument("--root-dir", help="root dir and kernels' cwd (default: cwd)")
    parser.add_argument("--tunnel-mode", choices=("quick", "named", "off"))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds (default: 120)")
    parser.add_argument(
        "--give-up-after",
        type=int,
        default=GIVE_UP_AFTER,
        metavar="N",
        help=f"stop waiting after the same tunnel error N times in a row (default: {GIVE_UP_AFTER}; "
        "0: wait for --timeout); the server keeps retrying",
    )
    parser.add_argument("--log", help="server log file")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    parser.add_argument(
        "--connection-file", help="keep the tunnel URL and state in this JSON file (e.g. on Drive)"
    )


def _launch(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        conn = start_and_wait(
            port=args.port,
            token=args.token,
            root_dir=args.root_dir,
            tunnel_mode=args.tunnel_mode,
            timeout=args.timeout,
            log_path=args.log,
            extra_args=rest,
            quiet=args.quiet,
            env=None,
            give_up_after=args.give_up_after or None,
            connection_file=args.connection_file,
        )
    except Interrupted:
        return 130  # the shell's code for "ended by SIGINT"
    except LaunchError as e:
        # The hint in the command line's words, where the Python API's would not fit.
        hint = CLI_HINTS.get(e.kind)
        print(f"{PREFIX} {f'{e.message}: {hint}' if hint else e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"{PREFIX} {e}", file=sys.stderr)
        return 1
    return 0 if conn.error is None else 1


def _status_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print GET /colab/tunnel as JSON")


def _status(args: argparse.Namespace, rest: list[str]) -> int:
    conn, found = find()
    if conn is None:
        note = found.note()
        if note is not None:
            print(f"{PREFIX} {note}")
        print(f"{PREFIX} {NOT_RUNNING}")
        return 1
    body = None
    with contextlib.suppress(LaunchError):
        body = conn.status()
        conn.refresh(body)
    if args.json:
        if body is None:
            print(f"{PREFIX} the server (pid {conn.pid}) does not answer", file=sys.stderr)
            return 1
        print(json.dumps(body, indent=2))
        # stderr: stdout stays JSON.
        print(
            f'{PREFIX} the token is not in this JSON: it is "token" in {conn.record_path}',
            file=sys.stderr,
        )
    else:
        print(conn)
    return 0 if conn.state in LAUNCHED else 1


def _stop(args: argparse.Namespace, rest: list[str]) -> int:
    conn, found = find()
    if conn is None:
        note = found.note()
        if note is not None:
            print(f"{PREFIX} {note}")
        if found.identity == "other_env":
            return 1  # there is a server, but not one this environment may stop
        print(f"{PREFIX} {NOT_RUNNING}")
        return 0
    conn.stop()
    print(f"{PREFIX} stopped the Jupyter server (pid {conn.pid})")
    return 0


def _no_options(parser: argparse.ArgumentParser) -> None:
    pass


# `mcp` is the local side (local/mcp_cli.py): imported only when its parser is built or it runs.
def _mcp_options(parser: argparse.ArgumentParser) -> None:
    from ..local.mcp_cli import configure_mcp_parser

    configure_mcp_parser(parser)


def _mcp(args: argparse.Namespace, rest: list[str]) -> int:
    from ..local.mcp_cli import run_mcp

    return run_mcp(args)


def _ports_options(parser: argparse.ArgumentParser) -> None:
    from ..local.ports_cli import configure_ports_parser

    configure_ports_parser(parser)


def _ports(args: argparse.Namespace, rest: list[str]) -> int:
    from ..local.ports_cli import run_ports

    return run_ports(args)


def _cp_options(parser: argparse.ArgumentParser) -> None:
    from ..local.files.cp_cli import configure_cp_parser

    configure_cp_parser(parser)


def _cp(args: argparse.Namespace, rest: list[str]) -> int:
    from ..local.files.cp_cli import run_cp

    return run_cp(args)


# The local side (the relay) lives in jupyter_colab_tunnel/local/, imported only when used.
def _connect_options(parser: argparse.ArgumentParser) -> None:
    from ..local.cli import add_connect_options

    add_connect_options(parser)


def _connect(args: argparse.Namespace, rest: list[str]) -> int:
    from ..local.cli import run_connect

    return run_connect(args)


SUBCOMMANDS: list[Subcommand] = [
    Subcommand(
        "launch",
        "start the server (or reuse the running one) and wait for the tunnel",
        _launch_options,
        _launch,
        passthrough=True,
        description="Other --Class.trait=value options are passed to jupyter server.",
    ),
    Subcommand(
        "status", "show the running server's tunnel and connect info", _status_options, _status
    ),
    Subcommand("stop", "stop the running server (and its tunnel and kernels)", _no_options, _stop),
    Subcommand(
        "mcp",
        "serve MCP tools (status, GPU, tunnel, ports, files) for AI agents over stdio",
        _mcp_options,
        _mcp,
    ),
    Subcommand(
        "ports",
        "list the remote's listening ports and the --forward flag that reaches each",
        _ports_options,
        _ports,
    ),
    Subcommand(
        "cp",
        "copy files and directories between this machine and the remote (remote:PATH)",
        _cp_options,
        _cp,
    ),
    Subcommand(
        "connect",
        "run a local relay (127.0.0.1) to the remote that follows its tunnel URL",
        _connect_options,
        _connect,
        description=(
            "Relay 127.0.0.1:PORT to the remote Jupyter server, adding its token. With "
            "--connection-file, a new tunnel URL is followed without restarting anything. "
            "Runs until Ctrl-C / SIGTERM."
        ),
    ),
]


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: its errors show its own usage, and a mistyped option is named
    before what it left missing (`connect --urll x` is about --urll, not a missing --url)."""

    passthrough = False
    _words: list[str]

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._words = list(args or [])
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        known = self._option_string_actions  # argparse has no public list of them
        unknown = [
            name
            for name in _option_names(getattr(self, "_words", []))
            if not any(option.startswith(name) for option in known)
        ]
        if unknown and not self.passthrough and "unrecognized arguments" not in message:
            message = f"unrecognized arguments: {' '.join(unknown)}"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    return _parsers()[0]


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each subcommand's (which reports that command's own errors)."""
    parser = argparse.ArgumentParser(
        prog="jupyter colab-tunnel",
        description="Run a Jupyter server with a cloudflared tunnel in the background.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for command in SUBCOMMANDS:
        subparser = sub.add_parser(command.name, help=command.help, description=command.description)
        subparser.passthrough = command.passthrough
        command.configure(subparser)
        subparsers[command.name] = subparser
    return parser, subparsers


def _option_names(words: Sequence[str]) -> list[str]:
    """The options among `words`, without their values: those may be a mistyped secret."""
    return [word.split("=", 1)[0] for word in words if word.startswith("-")]


def _unknown_to_jupyter_server(words: Sequence[str]) -> list[str]:
    """Options that `jupyter server` would not take either: `--Class.trait=value` and its own
    aliases and flags (--ip, --no-browser, ...) are its; anything else is a typo of ours."""
    names = [name for name in _option_names(words) if "." not in name]
    if not names:
        return []
    from jupyter_server.serverapp import aliases, flags

    known = set()
    for key in (*aliases, *flags):
        for name in key if isinstance(key, tuple) else (key,):
            known.add(("-" if len(name) == 1 else "--") + name)
    return [name for name in names if name not in known]


def main(argv: Sequence[str] | None = None) -> int:
    """`jupyter colab-tunnel launch | status | stop | ...` (see SUBCOMMANDS)."""
    parser, subparsers = _parsers()
    args, rest = parser.parse_known_args(argv)
    command = next(c for c in SUBCOMMANDS if c.name == args.command)
    unknown = _unknown_to_jupyter_server(rest) if command.passthrough else _option_names(rest)
    if unknown or (rest and not command.passthrough):
        # The subcommand's own usage, naming the options only (never the words after them).
        subparsers[command.name].error(
            f"unrecognized arguments: {' '.join(unknown) or '(values without an option)'}"
        )
    return command.run(args, rest)
