"""`jupyter colab-tunnel cp [-r] [--update] [--quiet] [--wait S] (--url URL | --connection-file
PATH) [--token-file PATH] SRC... DST`: files between this machine and the remote.

A remote path is `remote:PATH`, relative to the remote server's root directory (or absolute
inside it). Exit status: 0 every file arrived whole and verified; 1 some file failed (the others
were copied, each failure printed); 2 bad input refused before any transfer; 3 the remote could
not be reached or refused the token; 130 interrupted (partial files are kept: run the same
command again to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time

from ...problems import ColabTunnelError
from ...subcommand import Subcommand
from ..cli_input import TOKEN_ENV, RefuseToken, UsageError, read_token, token_from
from ..client import RemoteError
from .answers import fatal_reach
from .progress import PREFIX, Reporter, describe
from .remote import FilesClient
from .runner import Unreachable, execute
from .specs import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Direction,
    Plan,
    SpecError,
    parse_args,
)
from .where import ConnectionFile, FixedURL, Where

DEFAULT_WAIT = 120.0
WAIT_NOTE_EVERY = 10.0  # seconds between two "the remote is away" lines of one kind
INTERRUPTED = (
    f"{PREFIX} interrupted: targets were left as they were; the bytes already moved are kept, "
    "so running the same command again resumes"
)
HELP = "copy files and directories between this machine and the remote (remote:PATH)"
DESCRIPTION = (
    "Copy files to or from the remote Jupyter server, like scp: `cp data.csv remote:data/` up, "
    "`cp -r remote:runs/ckpt ./ckpt` down. A remote path is remote:PATH, relative to the "
    "remote server's root directory (or absolute inside it). Transfers stream, resume from the "
    "bytes already there (after a tunnel restart, or on running the same command again) and are "
    "checked with sha256; a target is replaced only when whole. The remote is --url (the tunnel "
    "URL with the remote token, or the local relay http://127.0.0.1:PORT with its token) or "
    f"--connection-file; the token is read from --token-file, else ${TOKEN_ENV} (else, with a "
    "connection file, the token it carries). Exit status: 0 all copied and verified, 1 some "
    "file failed, 2 bad input (nothing copied), 3 remote unreachable or token refused, 130 "
    "interrupted."
)
# Kinds of the remote that mean the input itself is wrong (refused before any transfer).
INPUT_KINDS = frozenset(
    {
        "path_outside_root",
        "path_hidden",
        "path_not_found",
        "is_a_directory",
        "not_a_directory",
        "bad_request",
        "local_error",
    }
)


def configure_cp_parser(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "%(prog)s [-r] [--update] [-q] [--wait S] (--url URL | --connection-file PATH) "
        "[--token-file PATH] SRC... DST"
    )
    parser.allow_abbrev = False  # `--token SECRET` must not be taken for --token-file
    parser.add_argument("-r", "--recursive", action="store_true", help="copy directories")
    parser.add_argument(
        "--update", action="store_true", help="skip files whose size and sha256 already match"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT,
        help="seconds to wait for the remote to come back when a transfer is cut, then resume "
        f"(default {DEFAULT_WAIT:g})",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--url", help="the tunnel URL (remote token) or the local relay's URL (its token)"
    )
    where.add_argument(
        "--connection-file",
        help="the JSON file the remote writes (follows a new tunnel URL by itself)",
    )
    parser.add_argument(
        "--token-file",
        help=f"a file holding the token (default: ${TOKEN_ENV}, else the connection file's)",
    )
    parser.add_argument("--token", nargs="?", action=RefuseToken, help=argparse.SUPPRESS)
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="SRC... DST: the sources, then the target"
    )


def _token(args: argparse.Namespace) -> str | None:
    if args.connection_file:  # without a token here: the connection file's own, if it has one
        return token_from(args.token_file, PREFIX)
    return read_token(args.token_file, PREFIX)


def run_cp(args: argparse.Namespace) -> int:
    """Copy; the exit status as documented above."""
    try:
        direction = parse_args(list(args.paths))
        if not args.wait >= 0:
            raise UsageError(f"--wait must be 0 or more seconds, not {args.wait}")
        token = _token(args)
    except (ValueError, UsageError) as e:
        print(f"{PREFIX} error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        where: Where = (
            ConnectionFile(args.connection_file, token)
            if args.connection_file
            else FixedURL(args.url, token)
        )
    except RemoteError as e:
        print(describe(e, "--url"), file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_copy(where, direction, args))
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED


async def _copy(where: Where, direction: Direction, args: argparse.Namespace) -> int:
    client = FilesClient(where)
    reporters: list[Reporter] = []  # the one made once the plan is known
    task = asyncio.current_task()
    assert task is not None

    def on_interrupt() -> None:
        # tornado logs the cancellation of a read it was delivering: not an error here.
        logging.getLogger("tornado.application").disabled = True
        client.interrupt()
        task.cancel()

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        return await _run(client, where, direction, args, reporters)
    except asyncio.CancelledError:
        if not client.interrupted:
            raise
        for reporter in reporters:
            _close(reporter)
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        client.close()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


async def _run(
    client: FilesClient,
    where: Where,
    direction: Direction,
    args: argparse.Namespace,
    reporters: list[Reporter],
) -> int:
    reporter: Reporter | None = None

    def on_plan(plan: Plan) -> None:
        nonlocal reporter
        reporter = Reporter(plan.total_bytes, args.quiet)
        reporters.append(reporter)

    def progress(n: int) -> None:
        if reporter is not None:
            reporter.advance(n)

    def on_error(error: ColabTunnelError, path: str) -> None:
        if reporter is not None:
            reporter.error(error, path)

    said: dict[str, float] = {}

    def on_wait(error: RemoteError, seconds: float) -> None:
        # Several files may wait at once (small ones go a few at a time): said once a while.
        now = time.monotonic()
        if args.quiet or now - said.get(error.kind, -60.0) < WAIT_NOTE_EVERY:
            return
        said[error.kind] = now
        text = (
            f"{PREFIX} the remote is away ({error.kind}: {error.message}); waiting up to "
            f"{seconds:.0f} s for it, then resuming"
        )
        if reporters:
            reporters[0].note(text)
        else:
            print(text, file=sys.stderr, flush=True)

    client.on_wait = on_wait
    try:
        await client.start(args.wait)
    except RemoteError as e:  # the connection file, the token or the remote itself
        print(describe(_explained(e, where), "remote"), file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        run = await execute(
            client,
            direction,
            recursive=args.recursive,
            update=args.update,
            wait=args.wait,
            on_plan=on_plan,
            progress=progress,
            on_error=on_error,
        )
    except SpecError as e:
        print(describe(e, e.path), file=sys.stderr)
        return EXIT_USAGE
    except Unreachable as e:
        _close(reporter)
        print(describe(e.error, e.path), file=sys.stderr)
        print(f"{PREFIX} the remote is unreachable: the rest was not copied", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RemoteError as e:  # before any transfer (planning)
        print(describe(_explained(e, where), "remote"), file=sys.stderr)
        if fatal_reach(e) or e.kind == "forbidden":
            return EXIT_UNREACHABLE
        return EXIT_USAGE if e.kind in INPUT_KINDS else EXIT_FAILED
    assert reporter is not None
    reporter.close(run.tally)
    return EXIT_FAILED if run.failures else EXIT_OK


def _close(reporter: Reporter | None) -> None:
    if reporter is not None and reporter.bar is not None:
        reporter.bar.close()


def _explained(error: RemoteError, where: Where) -> RemoteError:
    """A refused connection to this machine: most likely the relay is not running."""
    local = where.base.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))
    if error.kind == "connection_refused" and error.status is None and local:
        return RemoteError(
            error.kind,
            error.message,
            "Is the local relay running? Start it with `jupyter colab-tunnel connect "
            "--connection-file ...` (or give the tunnel URL with the remote token).",
            status=error.status,
            url=error.url,
        )
    return error


CP = Subcommand("cp", HELP, DESCRIPTION, configure_cp_parser, lambda args, rest: run_cp(args))
