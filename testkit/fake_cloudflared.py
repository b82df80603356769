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
    hostname url edge edge_tls metrics token_seen url_printed_at registered_at ready``, see
    ``Tunnel.write_state``. Tests use ``edge`` (``http://127.0.0.1:<port>``) in place of DNS;
    relays and ``cp`` that tests start reach ``edge_tls`` by the public name
    (testkit/edge_dns.py).
``FAKE_CLOUDFLARED_ORIGIN``
    origin of a named tunnel when no ``--url`` is given.
``FAKE_CLOUDFLARED_HOSTNAME``
    public hostname of a named tunnel (default ``tunnel.example.com``).
``FAKE_CLOUDFLARED_EDGE_PORT``
    port of the local edge listener (default 0: random).
``TESTKIT_EDGE_TLS_DIR``
    a directory with ``edge.pem`` and ``edge-key.pem`` (testkit/edge_tls.py, made once per test
    session): the edge also serves TLS on a second port (``edge_tls``), as Cloudflare's does
    for the public name.
``FAKE_CLOUDFLARED_DEBUG``
    non-empty: let Python/aiohttp tracebacks through to stderr (normally silenced).

Times in faults (``crash_after``, ``exit_clean_after``) count from process start;
``stall_after`` counts from registration.

Importing this module has no side effects; ``install(bin_dir)`` writes an executable
``cloudflared`` wrapper that runs ``main()``. The parts live in `testkit.cloudflared`: the command
line (``cli``), log lines (``output``), the metrics server, the edge that proxies to the origin,
registration and the tunnel's lifecycle.
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
    # Run as a script (`python testkit/fake_cloudflared.py`, or the `install`ed wrapper), the
    # parts are found as the `testkit` package from the repository root.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import asyncio
import contextlib
import logging
import pathlib
import time

from testkit.cloudflared.cli import Invocation, parse_command_line, parse_faults
from testkit.cloudflared.cli import ascii_box as ascii_box
from testkit.cloudflared.constants import FAULT_ENV
from testkit.cloudflared.constants import STATE_DIR_ENV as STATE_DIR_ENV
from testkit.cloudflared.golang import format_go_duration as format_go_duration
from testkit.cloudflared.golang import parse_go_duration as parse_go_duration
from testkit.cloudflared.output import INF, LEVELS, Logger, write_stdout
from testkit.cloudflared.tunnel import Tunnel

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
