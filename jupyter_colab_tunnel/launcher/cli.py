"""`jupyter colab-tunnel launch | status | stop`: the remote machine's commands (the root that
routes to them is jupyter_colab_tunnel/cli.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence

from ..states import LAUNCHED
from ..subcommand import Subcommand, option_names
from .errors import LaunchError
from .launching import DEFAULT_TIMEOUT, LaunchOptions, find, start_and_wait
from .report import PREFIX
from .waiting import Interrupted
from .watch import GIVE_UP_AFTER

NOT_RUNNING = "no server started by `jupyter colab-tunnel launch` is running"
CLI_HINTS = {"port_in_use": "pick another --port, or leave --port out to pick a free one"}


def _launch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, help="port (default: 8888 or the next free one)")
    parser.add_argument("--token", help="server token (default: a random one)")
    parser.add_argument("--root-dir", help="root dir and kernels' cwd (default: cwd)")
    parser.add_argument("--tunnel-mode", choices=("quick", "named", "off"))
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds (default: {DEFAULT_TIMEOUT:g})",
    )
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
            LaunchOptions(
                port=args.port,
                token=args.token,
                root_dir=args.root_dir,
                tunnel_mode=args.tunnel_mode,
                timeout=args.timeout,
                log_path=args.log,
                extra_args=rest,
                quiet=args.quiet,
                give_up_after=args.give_up_after or None,
                connection_file=args.connection_file,
            )
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


def _unknown_to_jupyter_server(words: Sequence[str]) -> list[str]:
    """Options that `jupyter server` would not take either: `--Class.trait=value` and its own
    aliases and flags (--ip, --no-browser, ...) are its; anything else is a typo of ours."""
    names = [name for name in option_names(words) if "." not in name]
    if not names:
        return []
    from jupyter_server.serverapp import aliases, flags

    known = set()
    for key in (*aliases, *flags):
        for name in key if isinstance(key, tuple) else (key,):
            known.add(("-" if len(name) == 1 else "--") + name)
    return [name for name in names if name not in known]


def _no_options(parser: argparse.ArgumentParser) -> None:
    pass


LAUNCH = Subcommand(
    "launch",
    "start the server (or reuse the running one) and wait for the tunnel",
    "Other --Class.trait=value options are passed to jupyter server.",
    _launch_options,
    _launch,
    passthrough=_unknown_to_jupyter_server,
)
STATUS = Subcommand(
    "status", "show the running server's tunnel and connect info", None, _status_options, _status
)
STOP = Subcommand(
    "stop", "stop the running server (and its tunnel and kernels)", None, _no_options, _stop
)
