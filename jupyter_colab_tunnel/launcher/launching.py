"""`launch()`: start the server (or adopt the one this environment started), wait, report."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..states import as_word
from . import record as rec
from . import server
from .connection import Connection
from .errors import LaunchError
from .ports import pick_port
from .report import Reporter
from .waiting import Interrupted, wait_for_tunnel, wait_interruptibly, wait_serving
from .watch import GIVE_UP_AFTER

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class LaunchOptions:
    """`launch()`'s arguments as one value: its fields are its parameters, with the same names
    and defaults (documented there), so the command line builds one from its flags."""

    port: int | None = None
    token: str | None = None
    root_dir: str | os.PathLike[str] | None = None
    tunnel_mode: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    log_path: str | os.PathLike[str] | None = None
    extra_args: Sequence[str] = ()
    quiet: bool = False
    env: Mapping[str, str] | None = None
    give_up_after: int | None = GIVE_UP_AFTER
    connection_file: str | os.PathLike[str] | None = None


def launch(
    port: int | None = None,
    token: str | None = None,
    root_dir: str | os.PathLike[str] | None = None,
    tunnel_mode: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    log_path: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    quiet: bool = False,
    env: Mapping[str, str] | None = None,
    give_up_after: int | None = GIVE_UP_AFTER,
    connection_file: str | os.PathLike[str] | None = None,
) -> Connection:
    """Start `jupyter server` with the tunnel in the background and wait until it is ready.

    port: 8888, or the next free port after it (never 8080, 9000, 6000 or 3453, Colab's own).
    token: the server's token; a random one by default (given to it through $JUPYTER_TOKEN,
        so it is not on the command line).
    root_dir: the server's root dir and the kernels' working directory (default: the cwd).
    tunnel_mode: "quick", "named" or "off"; default: named with a tunnel token, else quick.
    timeout: seconds to wait for the server and the tunnel together.
    log_path: the server's log (default ~/.jupyter-colab-tunnel/server.log).
    extra_args: more `jupyter server` options, e.g. ["--ColabTunnelApp.protocol=http2"].
    quiet: print nothing (progress, hint and connect info are printed by default).
    env: extra environment variables for the server (and so its kernels and cloudflared).
    give_up_after: stop waiting once the tunnel failed this many times in a row with the same
        error (None: wait for `timeout`). The server keeps retrying in the background.
    connection_file: where the server keeps its tunnel URL and state as JSON (e.g. on Drive),
        for `jupyter colab-tunnel connect --connection-file` on your machine.

    A server that this function started before, from this Python environment, and that still
    runs is reused, not doubled. Raises LaunchError when the server cannot run; a tunnel
    failure is in `Connection.error`. Ctrl-C stops the wait, not the server.
    """
    # The parameters, all of them and nothing else yet (tests/test_launcher_units.py holds
    # them equal to LaunchOptions' fields).
    options = LaunchOptions(**locals())
    try:
        return start_and_wait(options)
    except Interrupted as stopped:
        return stopped.conn


def start_and_wait(options: LaunchOptions) -> Connection:
    """`launch()`, but Ctrl-C during the waits raises `Interrupted` (for the CLI's exit code)."""
    tunnel_mode, give_up_after = options.tunnel_mode, options.give_up_after
    if tunnel_mode is not None and tunnel_mode not in ("quick", "named", "off"):
        raise ValueError(f"tunnel_mode must be 'quick', 'named' or 'off', not {tunnel_mode!r}")
    if give_up_after is not None and give_up_after < 1:
        raise ValueError(f"give_up_after must be at least 1 (or None), not {give_up_after}")
    report = Reporter(options.quiet)
    if options.connection_file is not None:
        path = os.path.abspath(os.path.expanduser(os.fspath(options.connection_file)))
        extra = f"--ColabTunnelApp.connection_file={path}"
        options = replace(options, extra_args=[*options.extra_args, extra])
    directory = rec.state_dir()
    deadline = time.monotonic() + options.timeout
    with rec.locked(directory):
        found = rec.look_up(directory)
        if found.identity == "other_env" and found.record is not None:
            other = found.record
            raise LaunchError(
                "already_running",
                f"a server started from another Python environment ({other.python.prefix}) is "
                f"running (pid {other.pid}, port {other.port}); it is not reused",
                f"Stop it from that environment (`{other.python.executable} -m "
                f"jupyter_colab_tunnel.launcher stop`) or with `kill {other.pid}`, then launch "
                "again.",
                other.log_path,
            )
        note = found.note()
        if note is not None:
            report.line(note)
        if found.identity == "ours" and found.record is not None:
            conn = Connection.from_record(found.record, str(directory / rec.STATE_FILE))
            _check_compatible(conn, options)
            conn.reused = True
            report.line(f"Reusing the Jupyter server started before (pid {conn.pid}).")
        else:
            started = server.spawn(
                port=pick_port(options.port),
                token=options.token or secrets.token_hex(24),
                root_dir=os.path.abspath(os.path.expanduser(options.root_dir or os.getcwd())),
                base_url=server.base_url_of(options.extra_args),
                tunnel_mode=tunnel_mode,
                log_path=str(options.log_path or directory / "server.log"),
                extra_args=list(options.extra_args),
                env=options.env,
            )
            rec.save(directory, started)
            conn = Connection.from_record(started, str(directory / rec.STATE_FILE))
            conn.state = as_word("starting")
            report.line(
                f"Started Jupyter server (pid {conn.pid}) on {conn.local_url}; log: {conn.log_path}"
            )

    def wait() -> None:
        wait_serving(conn, deadline)
        if tunnel_mode is not None and conn.reused:
            mode = conn.status().get("mode")
            if mode != tunnel_mode:
                raise LaunchError(
                    "already_running",
                    f"the running server's tunnel_mode is {mode!r}, not {tunnel_mode!r}",
                    "Stop it first: Connection.stop() or `jupyter colab-tunnel stop`.",
                    conn.log_path,
                )
        wait_for_tunnel(conn, deadline, report, give_up_after)

    wait_interruptibly(conn, report, wait)
    report.text(str(conn))
    # The connection's text shows the relay's command with the connection file, if any.
    return conn


def find() -> tuple[Connection | None, rec.Lookup]:
    """The server this environment started and that still runs, and what the record said."""
    directory = rec.state_dir()
    with rec.locked(directory):
        found = rec.look_up(directory)
    if found.identity == "ours" and found.record is not None:
        return Connection.from_record(found.record, str(directory / rec.STATE_FILE)), found
    return None, found


def running() -> Connection | None:
    """The server that launch() started from this Python environment and that still runs."""
    conn, _ = find()
    if conn is not None:
        with contextlib.suppress(LaunchError):
            conn.refresh(conn.status())
    return conn


def _check_compatible(conn: Connection, options: LaunchOptions) -> None:
    port, token, root_dir = options.port, options.token, options.root_dir
    differences = []
    if port is not None and port != conn.port:
        differences.append(f"port {conn.port}")
    if token is not None and token != conn.token:
        differences.append("another token")
    if root_dir is not None and os.path.abspath(os.path.expanduser(root_dir)) != conn.root_dir:
        differences.append(f"root_dir {conn.root_dir}")
    if differences:
        raise LaunchError(
            "already_running",
            f"a server started before is running (pid {conn.pid}) with {', '.join(differences)}",
            "Stop it first (Connection.stop() or `jupyter colab-tunnel stop`), or call "
            "launch() without those arguments to reuse it.",
            conn.log_path,
        )
