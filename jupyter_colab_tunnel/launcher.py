"""Start a Jupyter server with the tunnel in the background, wait for it, show how to connect.

Made for a notebook cell on the remote machine (Colab and the like)::

    from jupyter_colab_tunnel import launch
    conn = launch()

and for a shell: ``jupyter colab-tunnel launch | status | stop``.

The server runs in its own session (it survives the cell, and a kernel restart), listens on
127.0.0.1 only (the tunnel is its way in), and is recorded in ``~/.jupyter-colab-tunnel/server.json``
so that ``launch()`` again reuses it instead of starting a second one.

Errors: a server that cannot start raises `LaunchError`. A tunnel that fails (or is not ready in
time) does not raise: `launch()` returns the `Connection` with ``.error`` set to the classified
error (kind, message, hint), prints the hint unless ``quiet``, and leaves the server running so
that ``conn.status()`` and the log can be read; ``conn.stop()`` ends it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .connect import connect_info
from .tunnel.errors import TunnelError

DEFAULT_PORT = 8888
# Colab's web app listens on 8080 and its own Jupyter on 9000.
RESERVED_PORTS = frozenset({8080, 9000})
STATE_DIR_NAME = ".jupyter-colab-tunnel"
STATE_FILE = "server.json"
POLL_INTERVAL = 0.25
STOP_TIMEOUT = 15.0
PREFIX = "[colab-tunnel]"
# States after which waiting longer changes nothing by itself.
SETTLED = frozenset({"ready", "failed", "off", "stopped"})

NO_URL_HINT = (
    "The named tunnel is ready but has no URL: set --ColabTunnelApp.public_hostname to the "
    "hostname routed to it (without it, requests through the tunnel are refused with 403)."
)
# Servers started by this process, kept so that stop() can reap them (no zombie in a kernel).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LaunchError(RuntimeError):
    """The Jupyter server itself could not be started or reached."""

    def __init__(self, kind: str, message: str, hint: str = "", log_path: str | None = None):
        super().__init__(f"{kind}: {message}" + (f"\nHint: {hint}" if hint else ""))
        self.kind = kind
        self.message = message
        self.hint = hint
        self.log_path = log_path


@dataclass
class Connection:
    """A Jupyter server started by `launch()`, and how to connect to it through its tunnel."""

    port: int
    token: str = field(repr=False)
    pid: int
    log_path: str
    root_dir: str
    base_url: str = "/"
    url: str | None = None  # the public gateway URL, once the tunnel reported one
    state: str = "unknown"  # the tunnel state last seen (see /colab/tunnel)
    error: TunnelError | None = None  # the classified tunnel error, when it failed or timed out
    reused: bool = False  # True when launch() found this server already running

    @property
    def local_url(self) -> str:
        """The server's own address on this machine (it listens on loopback only)."""
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """GET /colab/tunnel: the tunnel's state, URL, error and connect info (a dict)."""
        code, body = _get_json(self.local_url + "colab/tunnel", self.token, timeout)
        if code != 200 or not isinstance(body, dict):
            raise LaunchError(
                "unreachable" if code == 0 else "http_error",
                f"GET {self.local_url}colab/tunnel answered {code or 'nothing'}",
                f"Is the server still running? See its log: {self.log_path}",
                self.log_path,
            )
        return body

    def alive(self) -> bool:
        return _is_server_process(self.pid, self.port)

    def wait(self, timeout: float = 120.0, quiet: bool = False) -> Connection:
        """Wait until the tunnel is ready or failed; update url/state/error; print progress."""
        report = _Reporter(quiet)
        _wait_for_tunnel(self, timeout, report)
        if self.error is not None and self.error.hint:
            report.line(f"Hint: {self.error.hint}")
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the server (it stops cloudflared and its kernels), SIGKILL after `timeout`."""
        _stop_pid(self.pid, self.port, timeout)
        _forget(self.pid)
        self.state = "stopped"

    def connect(self) -> dict[str, Any] | None:
        """What to run on the local machine (see connect.connect_info); None without a URL."""
        return connect_info(self.url, "/", self.token)

    def __str__(self) -> str:
        lines = [
            f"Jupyter server: pid {self.pid}, {self.local_url} (log: {self.log_path})",
            f"Tunnel: {self.state}" + (f"  {self.url}" if self.url else ""),
        ]
        if self.error is not None:
            lines += [f"Error: {self.error.kind}: {self.error.message}"]
            if self.error.hint:
                lines += [f"Hint: {self.error.hint}"]
        info = self.connect() if self.state == "ready" else None
        if info is None:
            if self.state == "ready":
                lines += [NO_URL_HINT]
            return "\n".join(lines)
        lines += [
            f"Token: {self.token}",
            "",
            "Connect JupyterLab on your machine (kernels run here, notebooks stay there):",
            f"    {info['command']}",
            "",
            "Or put this in jupyter_server_config.py (or jupyter_lab_config.py) on your machine:",
            *(f"    {line}" for line in info["config"].splitlines()),
            "",
            "jupyter-mcp-server config; JUPYTER_URL is your LOCAL server started as above:",
            *(f"    {line}" for line in json.dumps(info["mcp"], indent=2).splitlines()),
        ]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        parts = [
            f"**Jupyter server** pid {self.pid}, `{self.local_url}` (log: `{self.log_path}`)  ",
            f"**Tunnel** {self.state}" + (f": {self.url}" if self.url else ""),
        ]
        if self.error is not None:
            parts += [f"\n**Error** `{self.error.kind}`: {self.error.message}"]
            if self.error.hint:
                parts += [f"\n**Hint** {self.error.hint}"]
        info = self.connect() if self.state == "ready" else None
        if info is None and self.state == "ready":
            parts += [f"\n{NO_URL_HINT}"]
        if info is not None:
            parts += [
                f"\n**Token** `{self.token}`",
                "\nConnect JupyterLab on your machine:",
                f"\n```bash\n{info['command']}\n```",
                "\nOr in `jupyter_server_config.py` on your machine:",
                f"\n```python\n{info['config']}```",
                "\njupyter-mcp-server (`JUPYTER_URL` is your **local** server):",
                f"\n```json\n{json.dumps(info['mcp'], indent=2)}\n```",
            ]
        return "\n".join(parts)


def launch(
    port: int | None = None,
    token: str | None = None,
    root_dir: str | os.PathLike[str] | None = None,
    tunnel_mode: str | None = None,
    timeout: float = 120.0,
    log_path: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    quiet: bool = False,
    env: Mapping[str, str] | None = None,
) -> Connection:
    """Start `jupyter server` with the tunnel in the background and wait until it is ready.

    port: 8888, or the next free port after it (never 8080 or 9000, Colab's own).
    token: the server's token; a random one by default (given to it through $JUPYTER_TOKEN,
        so it is not on the command line).
    root_dir: the server's root dir and the kernels' working directory (default: the cwd).
    tunnel_mode: "quick", "named" or "off"; default: named with a tunnel token, else quick.
    timeout: seconds to wait for the server and the tunnel together.
    log_path: the server's log (default ~/.jupyter-colab-tunnel/server.log).
    extra_args: more `jupyter server` options, e.g. ["--ColabTunnelApp.protocol=http2"].
    quiet: print nothing (progress, hint and connect info are printed by default).
    env: extra environment variables for the server (and so its kernels and cloudflared).

    A server that this function started before and that still runs is reused, not doubled.
    Raises LaunchError when the server cannot run; a tunnel failure is in `Connection.error`.
    """
    if tunnel_mode is not None and tunnel_mode not in ("quick", "named", "off"):
        raise ValueError(f"tunnel_mode must be 'quick', 'named' or 'off', not {tunnel_mode!r}")
    report = _Reporter(quiet)
    state_dir = _state_dir()
    base_url = _base_url(extra_args)
    deadline = time.monotonic() + timeout
    with _locked(state_dir):
        conn = _recorded(state_dir)
        if conn is not None:
            _check_compatible(conn, port, token, root_dir)
            conn.reused = True
            report.line(f"Reusing the Jupyter server started before (pid {conn.pid}).")
        else:
            conn = _start(
                state_dir,
                port=pick_port(port),
                token=token or secrets.token_hex(24),
                root_dir=os.path.abspath(os.path.expanduser(root_dir or os.getcwd())),
                base_url=base_url,
                tunnel_mode=tunnel_mode,
                log_path=str(log_path) if log_path else str(state_dir / "server.log"),
                extra_args=list(extra_args),
                env=env,
            )
            report.line(
                f"Started Jupyter server (pid {conn.pid}) on {conn.local_url}; log: {conn.log_path}"
            )
    _wait_serving(conn, deadline)
    if tunnel_mode is not None and conn.reused:
        mode = conn.status().get("mode")
        if mode != tunnel_mode:
            raise LaunchError(
                "already_running",
                f"the running server's tunnel_mode is {mode!r}, not {tunnel_mode!r}",
                "Stop it first: Connection.stop() or `jupyter colab-tunnel stop`.",
                conn.log_path,
            )
    _wait_for_tunnel(conn, max(0.0, deadline - time.monotonic()), report)
    if not quiet:
        print(str(conn), flush=True)
    return conn


def running() -> Connection | None:
    """The server that launch() started and that still runs, or None."""
    conn = _recorded(_state_dir())
    if conn is None:
        return None
    with contextlib.suppress(LaunchError):
        _refresh(conn, conn.status())
    return conn


def pick_port(requested: int | None = None, start: int = DEFAULT_PORT) -> int:
    """`requested` if it is free; else the first free port from `start`, skipping 8080/9000."""
    if requested is not None:
        if not 0 < requested < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {requested}")
        if requested in RESERVED_PORTS:
            raise ValueError(
                f"port {requested} is reserved on Colab (8080: its web app, 9000: its Jupyter)"
            )
        if not _port_free(requested):
            raise LaunchError(
                "port_in_use",
                f"port {requested} is already in use on 127.0.0.1",
                "Choose another port, or leave port=None to pick a free one.",
            )
        return requested
    for candidate in range(start, min(start + 100, 65536)):
        if candidate not in RESERVED_PORTS and _port_free(candidate):
            return candidate
    while True:  # all taken: let the system choose
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            candidate = int(s.getsockname()[1])
        if candidate not in RESERVED_PORTS:
            return candidate


# ----- internals ----------------------------------------------------------------------------


class _Reporter:
    """Progress lines for a notebook cell or a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def line(self, text: str) -> None:
        if not self.quiet:
            print(f"{PREFIX} {text}", flush=True)


def _state_dir() -> Path:
    """~/.jupyter-colab-tunnel, or a private temp dir where the home is not writable."""
    candidates = [
        Path.home() / STATE_DIR_NAME,
        Path(tempfile.gettempdir()) / f"jupyter-colab-tunnel-{os.getuid()}",
    ]
    for path in candidates:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise LaunchError("no_state_dir", f"cannot create {candidates[0]} or {candidates[1]}")


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One launch at a time per user, so two cells cannot start two servers."""
    with open(state_dir / "lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _base_url(extra_args: Sequence[str]) -> str:
    base = "/"
    for arg in extra_args:
        for flag in ("--ServerApp.base_url=", "--base-url="):
            if arg.startswith(flag):
                base = arg[len(flag) :]
    return "/" + base.strip("/") + "/" if base.strip("/") else "/"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # Like tornado: a port in TIME_WAIT is usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start(
    state_dir: Path,
    *,
    port: int,
    token: str,
    root_dir: str,
    base_url: str,
    tunnel_mode: str | None,
    log_path: str,
    extra_args: list[str],
    env: Mapping[str, str] | None,
) -> Connection:
    if not os.path.isdir(root_dir):
        raise LaunchError("bad_root_dir", f"root_dir {root_dir} is not a directory")
    argv = [
        sys.executable,
        "-m",
        "jupyter_server",
        f"--port={port}",
        "--port-retries=0",  # we announce this port: never let it move to another
        "--ip=127.0.0.1",  # the tunnel is the way in; nothing listens on other interfaces
        "--no-browser",
        f"--ServerApp.root_dir={root_dir}",
        # Enabled explicitly: a user config that leaves the extension off must not win here.
        "--ServerApp.jpserver_extensions=jupyter_colab_tunnel=True",
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")  # Colab runs everything as root
    if tunnel_mode is not None:
        argv.append(f"--ColabTunnelApp.tunnel_mode={tunnel_mode}")
    argv += extra_args
    child_env = {**os.environ, **(env or {})}
    # Through the environment: argv is visible to every user (ps).
    child_env["JUPYTER_TOKEN"] = token
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        os.chmod(log_path, 0o600)
        proc = subprocess.Popen(
            argv,
            cwd=root_dir,  # kernels started without a path run in the server's cwd
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the cell, a kernel restart and its Ctrl-C
        )
    _CHILDREN[proc.pid] = proc
    conn = Connection(
        port=port,
        token=token,
        pid=proc.pid,
        log_path=log_path,
        root_dir=root_dir,
        base_url=base_url,
        state="starting",
    )
    _write_state(state_dir, conn)
    return conn


def _write_state(state_dir: Path, conn: Connection) -> None:
    record = {
        "pid": conn.pid,
        "port": conn.port,
        "token": conn.token,
        "log_path": conn.log_path,
        "root_dir": conn.root_dir,
        "base_url": conn.base_url,
        "started_at": time.time(),
    }
    # It holds the token: owner-only, written atomically.
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".server-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, state_dir / STATE_FILE)


def _recorded(state_dir: Path) -> Connection | None:
    """The recorded server if it is still running; a stale record is removed."""
    path = state_dir / STATE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        conn = Connection(
            port=int(record["port"]),
            token=str(record["token"]),
            pid=int(record["pid"]),
            log_path=str(record["log_path"]),
            root_dir=str(record["root_dir"]),
            base_url=str(record.get("base_url") or "/"),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    if not _is_server_process(conn.pid, conn.port):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return conn


def _forget(pid: int) -> None:
    path = _state_dir() / STATE_FILE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()


def _is_server_process(pid: int, port: int) -> bool:
    """A live (not zombie) jupyter server on this port: guards against a reused pid."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "jupyter_server" in cmdline and f"--port={port}" in cmdline


def _check_compatible(
    conn: Connection,
    port: int | None,
    token: str | None,
    root_dir: str | os.PathLike[str] | None,
) -> None:
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


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def _get_json(url: str, token: str, timeout: float) -> tuple[int, Any]:
    """(status, JSON body); status 0 when nothing answered."""
    # Only ever http://127.0.0.1:<port>/... built here.
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})  # noqa: S310
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            status, raw = int(r.status), r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (OSError, ValueError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            text = f.read()[-20000:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_serving(conn: Connection, deadline: float) -> None:
    """Until /api/status answers with our token; LaunchError if the server dies or refuses."""
    while True:
        code, _ = _get_json(conn.local_url + "api/status", conn.token, 2.0)
        if code == 200:
            return
        proc = _CHILDREN.get(conn.pid)
        exited = proc.poll() is not None if proc is not None else not conn.alive()
        if exited:
            _CHILDREN.pop(conn.pid, None)
            _forget(conn.pid)
            raise LaunchError(
                "server_exited",
                f"jupyter server exited during start-up; its log ends with:\n"
                f"{_log_tail(conn.log_path)}",
                f"Read the whole log: {conn.log_path}",
                conn.log_path,
            )
        if code in (401, 403):
            raise LaunchError(
                "token_rejected",
                f"the server on port {conn.port} refuses the recorded token",
                "Stop it (`jupyter colab-tunnel stop`) and launch again.",
                conn.log_path,
            )
        if time.monotonic() >= deadline:
            raise LaunchError(
                "server_timeout",
                f"jupyter server did not answer on {conn.local_url} in time; its log ends with:\n"
                f"{_log_tail(conn.log_path)}",
                "Raise timeout, or read the log. The server is still running: stop() it.",
                conn.log_path,
            )
        time.sleep(POLL_INTERVAL)


def _refresh(conn: Connection, body: dict[str, Any]) -> None:
    conn.state = str(body.get("state") or "unknown")
    info = body.get("connect")
    conn.url = info.get("gateway_url") if isinstance(info, dict) else None
    error = body.get("error")
    conn.error = (
        TunnelError(str(error.get("kind")), str(error.get("message")), str(error.get("hint") or ""))
        if isinstance(error, dict)
        else None
    )


def _wait_for_tunnel(conn: Connection, timeout: float, report: _Reporter) -> None:
    deadline = time.monotonic() + timeout
    seen: tuple[str, str | None, str | None] | None = None
    while True:
        code, body = _get_json(conn.local_url + "colab/tunnel", conn.token, 5.0)
        if code == 404:
            raise LaunchError(
                "extension_missing",
                "the server answers, but not /colab/tunnel: jupyter_colab_tunnel is not loaded",
                "Install jupyter-colab-tunnel in the Python that runs the server "
                f"({sys.executable}) and check `jupyter server extension list`.",
                conn.log_path,
            )
        if code == 200 and isinstance(body, dict):
            _refresh(conn, body)
            now = (conn.state, conn.url, conn.error.kind if conn.error else None)
            if now != seen:
                seen = now
                detail = f" {conn.url}" if conn.url else ""
                if conn.error is not None:
                    detail += f" ({conn.error.kind}: {conn.error.message})"
                report.line(f"tunnel {conn.state}{detail}")
            if conn.state in SETTLED:
                break
        elif not conn.alive():
            raise LaunchError(
                "server_exited",
                f"jupyter server exited; its log ends with:\n{_log_tail(conn.log_path)}",
                f"Read the whole log: {conn.log_path}",
                conn.log_path,
            )
        if time.monotonic() >= deadline:
            if conn.error is None:
                conn.error = TunnelError(
                    "timeout",
                    f"the tunnel was not ready within {timeout:g}s (state {conn.state})",
                    "The server keeps trying: call conn.wait() or read conn.status(); "
                    "raise timeout= on slow networks.",
                )
            break
        time.sleep(POLL_INTERVAL)
    if conn.state == "stopped" and conn.error is None:
        conn.error = TunnelError(
            "not_started",
            "the tunnel is stopped (autostart is off)",
            'Start it: POST {"action": "start"} to /colab/tunnel.',
        )


def _stop_pid(pid: int, port: int, timeout: float) -> None:
    proc = _CHILDREN.pop(pid, None)
    if proc is None and not _is_server_process(pid, port):
        return
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, proc, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, proc, 5.0)
    # Kernels and cloudflared normally go with the server; never leave one behind.
    _, alive = psutil.wait_procs(children, timeout=3)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    if proc is not None:  # our child: reap it
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


# ----- command line -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`jupyter colab-tunnel launch | status | stop | mcp`."""
    parser = argparse.ArgumentParser(
        prog="jupyter colab-tunnel",
        description="Run a Jupyter server with a cloudflared tunnel in the background.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser(
        "launch",
        help="start the server (or reuse the running one) and wait for the tunnel",
        description="Other --Class.trait=value options are passed to jupyter server.",
    )
    start.add_argument("--port", type=int, help="port (default: 8888 or the next free one)")
    start.add_argument("--token", help="server token (default: a random one)")
    start.add_argument("--root-dir", help="root dir and kernels' cwd (default: cwd)")
    start.add_argument("--tunnel-mode", choices=("quick", "named", "off"))
    start.add_argument("--timeout", type=float, default=120.0, help="seconds (default: 120)")
    start.add_argument("--log", help="server log file")
    start.add_argument("--quiet", action="store_true", help="print nothing")
    show = sub.add_parser("status", help="show the running server's tunnel and connect info")
    show.add_argument("--json", action="store_true", help="print GET /colab/tunnel as JSON")
    sub.add_parser("stop", help="stop the running server (and its tunnel and kernels)")
    # --- `mcp` (local side, issue 13): MCP tools over stdio; imports the SDK only when run.
    from .local.mcp_cli import add_mcp_parser, run_mcp

    add_mcp_parser(sub)
    # --- end of `mcp`
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "launch":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "mcp":  # issue 13
        return run_mcp(args)
    if args.command == "launch":
        try:
            conn = launch(
                port=args.port,
                token=args.token,
                root_dir=args.root_dir,
                tunnel_mode=args.tunnel_mode,
                timeout=args.timeout,
                log_path=args.log,
                extra_args=rest,
                quiet=args.quiet,
            )
        except (LaunchError, ValueError) as e:
            print(f"{PREFIX} {e}", file=sys.stderr)
            return 1
        return 0 if conn.error is None else 1
    found = running()
    if found is None:
        print(f"{PREFIX} no server started by `jupyter colab-tunnel launch` is running")
        return 0 if args.command == "stop" else 1
    if args.command == "stop":
        found.stop()
        print(f"{PREFIX} stopped the Jupyter server (pid {found.pid})")
        return 0
    if args.json:
        print(json.dumps(found.status(), indent=2))
    else:
        print(found)
    return 0 if found.state in ("ready", "off") else 1


if __name__ == "__main__":
    sys.exit(main())
