"""What one `jupyter colab-tunnel NAME` gives the command line's root (cli.py): its words (help,
description), its options and what it runs. Each command's module declares its own."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    """`configure` adds its options, `run(args, rest)` does it and returns the exit code."""

    name: str
    help: str  # its line in `jupyter colab-tunnel --help`
    description: str | None
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, list[str]], int]
    # For a command that hands the options it does not know on (launch, to jupyter server):
    # which of them that other program would not take either. None: every unknown one is an error.
    passthrough: Callable[[Sequence[str]], list[str]] | None = None


def option_names(words: Sequence[str]) -> list[str]:
    """The options among `words`, without their values: those may be a mistyped secret."""
    return [word.split("=", 1)[0] for word in words if word.startswith("-")]
