"""`jupyter colab-tunnel <command>`: the command line's root (the `jupyter-colab-tunnel` script).

The commands of the remote machine (launch, status, stop: launcher/cli.py) and of the user's own
(mcp, ports, cp, connect: local/) each declare a `Subcommand`; this module only parses, routes,
and reports what no command knows (an unknown option, in the command's own usage).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from ._version import __version__
from .launcher.cli import LAUNCH, STATUS, STOP
from .local.connect_cli import CONNECT
from .local.files.cp_cli import CP
from .local.mcp_cli import MCP
from .local.ports_cli import PORTS
from .subcommand import Subcommand, option_names

SUBCOMMANDS: list[Subcommand] = [LAUNCH, STATUS, STOP, MCP, PORTS, CP, CONNECT]


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
            for name in option_names(getattr(self, "_words", []))
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
        subparser.passthrough = command.passthrough is not None
        command.configure(subparser)
        subparsers[command.name] = subparser
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    """`jupyter colab-tunnel launch | status | stop | ...` (see SUBCOMMANDS)."""
    parser, subparsers = _parsers()
    args, rest = parser.parse_known_args(argv)
    command = next(c for c in SUBCOMMANDS if c.name == args.command)
    unknown = command.passthrough(rest) if command.passthrough else option_names(rest)
    if unknown or (rest and command.passthrough is None):
        # The subcommand's own usage, naming the options only (never the words after them).
        subparsers[command.name].error(
            f"unrecognized arguments: {' '.join(unknown) or '(values without an option)'}"
        )
    return command.run(args, rest)
