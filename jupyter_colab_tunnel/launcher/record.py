"""The state record: which server `launch()` started, so that it is reused, and only it stopped.

A pid alone does not name a process: pids are recycled, and a user's own `jupyter server` may
get the pid of ours after it exited. The record also keeps the process's creation time and the
Python environment that started it; a server from another environment is never adopted (its
packages, and so its extensions and kernels, are not ours).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from .errors import LaunchError

STATE_DIR_NAME = ".jupyter-colab-tunnel"
STATE_FILE = "server.json"
# psutil adds the boot time, a whole second that can move when the wall clock is stepped;
# a recycled pid cannot start within this much of the original anyway.
CREATE_TIME_SLACK = 1.5

# ours: adopt it. gone: it exited. replaced: the pid is another process now. other_env: started
# by another Python environment. unverifiable: a record without identity (an older version).
Identity = Literal["ours", "gone", "replaced", "other_env", "unverifiable"]


@dataclass(frozen=True)
class PythonEnv:
    """The Python environment a server was started from: its prefix and its interpreter."""

    prefix: str
    executable: str

    @classmethod
    def current(cls) -> PythonEnv:
        # realpath: `python` and `python3` of one venv are the same environment.
        return cls(os.path.realpath(sys.prefix), os.path.realpath(sys.executable))


@dataclass(frozen=True)
class ServerRecord:
    """What `launch()` knows about the server it started (the file holds the token)."""

    pid: int
    create_time: float
    python: PythonEnv
    port: int
    token: str = field(repr=False)
    log_path: str
    root_dir: str
    base_url: str = "/"
    started_at: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "create_time": self.create_time,
            "python": {"prefix": self.python.prefix, "executable": self.python.executable},
            "port": self.port,
            "token": self.token,
            "log_path": self.log_path,
            "root_dir": self.root_dir,
            "base_url": self.base_url,
            "started_at": self.started_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> ServerRecord:
        """Raises KeyError, TypeError or ValueError for anything but a complete record."""
        python = data["python"]
        return cls(
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            python=PythonEnv(str(python["prefix"]), str(python["executable"])),
            port=int(data["port"]),
            token=str(data["token"]),
            log_path=str(data["log_path"]),
            root_dir=str(data["root_dir"]),
            base_url=str(data.get("base_url") or "/"),
            started_at=float(data.get("started_at") or 0.0),
        )


@dataclass(frozen=True)
class ProcessFacts:
    """What the system says about a live pid."""

    create_time: float
    cmdline: tuple[str, ...]
    zombie: bool


def process_facts(pid: int) -> ProcessFacts | None:
    """None when no process has this pid (or it cannot be inspected)."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return ProcessFacts(
                proc.create_time(),
                tuple(proc.cmdline()),
                proc.status() == psutil.STATUS_ZOMBIE,
            )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def looks_like_server(cmdline: Sequence[str], port: int) -> bool:
    """The command line `launch()` gives its servers."""
    return "jupyter_server" in cmdline and f"--port={port}" in cmdline


def is_process(pid: int, create_time: float | None, port: int) -> bool:
    """This pid is still the server it was: alive, not a zombie, and the same process.

    Without a creation time (a Connection made by hand) the command line has to do.
    """
    facts = process_facts(pid)
    if facts is None or facts.zombie:
        return False
    if create_time is not None:
        return same_start(facts.create_time, create_time)
    return looks_like_server(facts.cmdline, port)


def same_start(seen: float, recorded: float) -> bool:
    """One pid and one creation time name one process: a server never execs, so its command
    line adds nothing (and reads empty for a moment right after it was started)."""
    return abs(seen - recorded) <= CREATE_TIME_SLACK


def identify(record: ServerRecord, facts: ProcessFacts | None, here: PythonEnv) -> Identity:
    """Whose process the record's pid is now (pure: the facts are gathered by the caller)."""
    if facts is None or facts.zombie:
        return "gone"
    if not same_start(facts.create_time, record.create_time):
        return "replaced"
    if record.python != here:
        return "other_env"
    return "ours"


@dataclass(frozen=True)
class Lookup:
    """The recorded server and whose it is; `record` is None when there is none to speak of."""

    identity: Identity | None
    record: ServerRecord | None = None
    pid: int | None = None  # the recorded pid, also for a record that could not be read whole

    def note(self) -> str | None:
        """What a user should know about a record that is not adopted; None when nothing."""
        pid = self.pid
        if self.identity == "replaced":
            return (
                f"The server recorded as pid {pid} is gone and that pid now belongs to another "
                "process, which is left alone; the record is forgotten."
            )
        if self.identity == "unverifiable":
            return (
                f"The record of pid {pid} does not say which process it is (written by an older "
                f"version); it is forgotten and pid {pid} is left alone. If that is still a "
                f"server you started, stop it with `kill {pid}`."
            )
        if self.identity == "other_env" and self.record is not None:
            r = self.record
            return (
                f"The running server (pid {r.pid}, port {r.port}) was started from another "
                f"Python environment ({r.python.prefix}), so it is left alone. Stop it from that "
                f"environment (`{r.python.executable} -m jupyter_colab_tunnel.launcher stop`) "
                f"or with `kill {r.pid}`."
            )
        return None


def state_dir() -> Path:
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
def locked(directory: Path) -> Iterator[None]:
    """One reader or writer of the record at a time, so two cells cannot start two servers."""
    with open(directory / "lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def save(directory: Path, record: ServerRecord) -> None:
    """Write the record owner-only (it holds the token) and atomically."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".server-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record.as_json(), f, indent=1)
    os.replace(tmp, directory / STATE_FILE)


def look_up(directory: Path, here: PythonEnv | None = None) -> Lookup:
    """The recorded server and whose it is. A record of a server that is no longer there
    (gone, replaced, unverifiable or unreadable) is removed; call it under `locked`."""
    path = directory / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Lookup(None)
    except (OSError, ValueError):
        _remove(path)
        return Lookup(None)
    try:
        record = ServerRecord.from_json(data)
    except (KeyError, TypeError, ValueError):
        pid = data.get("pid") if isinstance(data, dict) else None
        _remove(path)
        if isinstance(pid, int) and process_facts(pid) is not None:
            return Lookup("unverifiable", pid=pid)
        return Lookup(None)
    identity = identify(record, process_facts(record.pid), here or PythonEnv.current())
    if identity != "ours" and identity != "other_env":
        _remove(path)
    return Lookup(identity, record, record.pid)


def forget(directory: Path, pid: int) -> None:
    """Remove the record if it is still the one of `pid` (a newer launch may have replaced it)."""
    path = directory / STATE_FILE
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()


def new_record(
    pid: int,
    *,
    port: int,
    token: str,
    log_path: str,
    root_dir: str,
    base_url: str,
) -> ServerRecord:
    """The record of a server this process just started."""
    facts = process_facts(pid)
    return ServerRecord(
        pid=pid,
        # A child that already exited has no creation time: it is then never adopted.
        create_time=facts.create_time if facts is not None else 0.0,
        python=PythonEnv.current(),
        port=port,
        token=token,
        log_path=log_path,
        root_dir=root_dir,
        base_url=base_url,
        started_at=time.time(),
    )


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
