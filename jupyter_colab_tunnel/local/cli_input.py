"""What the local commands (connect, mcp, ports, cp) share of their input: `UsageError` (bad
input; each command prints it and exits 2), the token's environment variable, the options of a
command that asks the remote's /colab/* API, and the one reader of the files that hold a secret
(a token, extra headers). A secret never comes from the command line, where every user can
read it (ps)."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from typing import Any

from .client import REQUEST_TIMEOUT

TOKEN_ENV = "JUPYTER_COLAB_TUNNEL_TOKEN"  # noqa: S105 - the variable's name
NO_TOKEN = (
    f"no token: pass --token-file PATH or set ${TOKEN_ENV} (the remote Jupyter server's token "
    "for a tunnel URL, the relay's token for the relay)"
)
# Any permission for the group or others: a secret there is readable (or replaceable) by them.
OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


class UsageError(Exception):
    """Bad input from the command line or a file it names: the message says what and what to do."""


class RefuseToken(argparse.Action):
    """--token VALUE is an error that does not repeat VALUE (it would land in logs)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error(
            "the token is not taken on the command line, where other users can read it "
            f"(ps): use --token-file PATH or ${TOKEN_ENV}"
        )


def add_remote_options(parser: argparse.ArgumentParser, timeout_help: str) -> None:
    """--url, --token-file and --timeout of a command that asks the remote's /colab/* API
    (`mcp`, `ports`); a token on the command line is refused."""
    # No prefixes: `--token SECRET` must not be taken for --token-file.
    parser.allow_abbrev = False
    parser.add_argument(
        "--url",
        required=True,
        help="the tunnel URL (with the remote token) or the local relay (with its token)",
    )
    parser.add_argument("--token-file", help=f"a file holding the token (default: ${TOKEN_ENV})")
    parser.add_argument("--token", nargs="?", action=RefuseToken, help=argparse.SUPPRESS)
    parser.add_argument(
        "--timeout",
        type=float,
        default=REQUEST_TIMEOUT,
        help=f"{timeout_help} (default: {REQUEST_TIMEOUT:g})",
    )


def remote_token(args: argparse.Namespace, prefix: str) -> str:
    """The token of add_remote_options' arguments, once they are checked; UsageError if not."""
    token = read_token(args.token_file, prefix)
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    return token


def read_token(token_file: str | None, prefix: str) -> str:
    """The token from the file, else from ${TOKEN_ENV}; UsageError when there is none."""
    token = token_from(token_file, prefix)
    if token is None:
        raise UsageError(NO_TOKEN)
    return token


def token_from(token_file: str | None, prefix: str) -> str | None:
    """The token from the file, else from ${TOKEN_ENV}, else None."""
    if token_file:
        return read_secret_file(token_file, "token", prefix)
    return os.environ.get(TOKEN_ENV, "").strip() or None


def read_secret_file(path: str, what: str, prefix: str) -> str:
    """The file's content, stripped. UsageError (naming the file, never its content) when it is
    missing or unreadable, not a regular file, not UTF-8 or empty; a warning on stderr, after
    the command's `prefix`, when users other than its owner may read or change it.

    Never blocks on a FIFO or a device: only a regular file is opened (O_NONBLOCK, checked
    again with fstat on the open descriptor).
    """
    target = os.path.expanduser(path)
    not_regular = UsageError(f"the {what} file {target} is not a regular file")
    try:
        if not stat.S_ISREG(os.stat(target).st_mode):
            raise not_regular
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):  # swapped for something else in between
                raise not_regular
            data = f.read()
    except OSError as e:
        raise UsageError(f"cannot read the {what} file {target}: {e.strerror or e}") from None
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(f"the {what} file {target} is not UTF-8 text") from None
    if not value:
        raise UsageError(f"the {what} file {target} is empty")
    warning = exposure_warning(target, mode)
    if warning:
        print(f"{prefix} warning: {warning}", file=sys.stderr, flush=True)
    return value


def exposure_warning(path: str, mode: int) -> str | None:
    """A sentence naming the file and the fix when users other than its owner may read or
    change it (its `mode`); None when it is private."""
    if not mode & OPEN_TO_OTHERS:
        return None
    what = "readable" if mode & (stat.S_IRGRP | stat.S_IROTH) else "open"
    return f"{path} is {what} by other users; `chmod 600 {path}`"
