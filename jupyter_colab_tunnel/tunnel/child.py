"""One cloudflared process: spawn it, tie its life to the server's, read its pipes, stop it.

It knows nothing of tunnel states: every line goes to the owner's callback, and the owner
decides what an exit means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from functools import cache

from .command import TunnelCommand, build_argv, build_env
from .lines import LineSplitter
from .logs import redact

MAX_LINE = 4096
READ_CHUNK = 1 << 16
PR_SET_PDEATHSIG = 1
# After an exit, how long to keep reading what it printed last: a pipe inherited by another
# process may never close.
DRAIN_TIMEOUT = 1.0

# Whether the parent-death mechanism was logged: once per server is enough.
_mechanism_logged: list[bool] = []

# (stream, line): stream is "stdout" or "stderr"; the line is decoded and redacted.
LineSink = Callable[[str, str], None]


@cache
def setpriv_wrapper() -> tuple[str, ...] | None:
    """util-linux `setpriv` as an exec wrapper that sets the parent-death signal, if it can.

    setpriv calls prctl(PR_SET_PDEATHSIG) and then execs cloudflared in the same process, so
    the pid (and /proc/<pid>/cmdline, after the exec) is cloudflared's. Its argv holds only
    cloudflared's argv, never a secret. One gap remains, as with any exec wrapper: a server
    killed between the fork and setpriv's prctl (microseconds) leaves the child running.
    Blocking (it runs `setpriv --help` once): call it off the loop.
    """
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        # An old setpriv (util-linux < 2.33) has no --pdeathsig: it would fail every spawn.
        usage = subprocess.run(
            [path, "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if "--pdeathsig" not in usage.stdout:
        return None
    return (path, "--pdeathsig", "KILL", "--")


def _prctl_setup(parent_pid: int) -> Callable[[], None]:
    """The fallback without setpriv: set the parent-death signal in the child before exec.

    preexec_fn runs Python between fork and exec, which Python documents as unsafe when the
    parent has threads; it is only used where setpriv is missing.
    """
    # Resolved here, in the parent: importing or dlopen-ing after fork can deadlock.
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        prctl = None

    def setup() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the server died before prctl took effect
            os._exit(1)

    return setup


class CloudflaredProcess:
    """A running cloudflared whose output goes, line by line, to a sink."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        on_line: LineSink,
        secrets: Sequence[str],
        log: logging.Logger,
    ) -> None:
        self._proc = proc
        self._on_line = on_line
        self._secrets = list(secrets)
        self._log = log
        self._readers: list[asyncio.Task[None]] = []
        if proc.stdout is not None and proc.stderr is not None:
            self._readers = [
                asyncio.ensure_future(self._read(proc.stderr, "stderr")),
                asyncio.ensure_future(self._read(proc.stdout, "stdout")),
            ]

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        """Its exit code, once it exited and its last lines (its fatal message) were read."""
        try:
            code = await self._proc.wait()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._readers), DRAIN_TIMEOUT)
            return code
        finally:
            for task in self._readers:
                task.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)

    async def terminate(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; returns once it is reaped."""
        proc = self._proc
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), timeout)
        except asyncio.TimeoutError:
            self._log.warning(
                "cloudflared (pid %s) ignored SIGTERM for %gs: killing it", proc.pid, timeout
            )
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _read(self, stream: asyncio.StreamReader, name: str) -> None:
        splitter = LineSplitter(MAX_LINE)
        while True:
            chunk = await stream.read(READ_CHUNK)
            for raw in splitter.feed(chunk) if chunk else splitter.close():
                line = redact(raw.decode("utf-8", errors="replace").rstrip("\r"), self._secrets)
                try:
                    self._on_line(name, line)
                except Exception:
                    # A bug in handling one line must never stop the reading: a pipe nobody
                    # drains blocks cloudflared.
                    self._log.exception("Tunnel: failed to handle a cloudflared line")
            if not chunk:
                return


async def spawn(
    command: TunnelCommand, on_line: LineSink, log: logging.Logger
) -> CloudflaredProcess:
    """Start cloudflared in its own session, tied to this process by a parent-death signal.

    Its own session keeps a Ctrl-C in the server's terminal from reaching it before the
    server asks it to stop; the parent-death signal kills it if the server is SIGKILLed.
    Raises OSError when it cannot be started.
    """
    loop = asyncio.get_running_loop()
    wrapper = await loop.run_in_executor(None, setpriv_wrapper)
    if not _mechanism_logged:
        _mechanism_logged.append(True)
        log.info(
            "cloudflared dies with this server through %s",
            "setpriv --pdeathsig" if wrapper else "prctl in the child (no usable setpriv)",
        )
    argv = build_argv(command)
    spawning = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *(wrapper or ()),
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=build_env(command),
            start_new_session=True,
            preexec_fn=None if wrapper else _prctl_setup(os.getpid()),
            limit=2**16,
        )
    )
    secrets = [command.token] if command.token else []
    try:
        proc = await asyncio.shield(spawning)
    except asyncio.CancelledError:
        # Stopped mid-spawn: the process may exist already; never leave it behind.
        with contextlib.suppress(OSError):
            orphan = CloudflaredProcess(await spawning, lambda _s, _l: None, secrets, log)
            await orphan.terminate(command.stop_timeout)
            await orphan.wait()
        raise
    return CloudflaredProcess(proc, on_line, secrets, log)
