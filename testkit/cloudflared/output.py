"""The stand-in's output: zerolog-style log lines on stderr (or JSON, or a log file) and stdout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from .golang import go_quote, needs_quote


class _Stderr:
    """Unbuffered, thread-safe writes to fd 2; a broken pipe kills us by SIGPIPE, like Go."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closed = False

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.closed:
                return
            view = memoryview(data)
            while view:
                try:
                    n = os.write(2, view)
                except InterruptedError:
                    continue
                except BrokenPipeError:
                    die_by_signal(signal.SIGPIPE)
                except OSError:
                    self.closed = True
                    return
                view = view[n:]

    def close_stdio(self) -> None:
        with self.lock:
            self.closed = True
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)


STDERR = _Stderr()


def die_by_signal(sig: int) -> NoReturn:
    with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    time.sleep(1)
    os._exit(128 + sig)


LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3, "fatal": 4, "panic": 5}
LEVEL_ABBR = {0: "DBG", 1: "INF", 2: "WRN", 3: "ERR", 4: "FTL", 5: "PNC"}
LEVEL_NAME = {0: "debug", 1: "info", 2: "warn", 3: "error", 4: "fatal", 5: "panic"}
DBG, INF, WRN, ERR = 0, 1, 2, 3

FieldValue = str | int
Fields = Sequence[tuple[str, FieldValue]]


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Logger:
    def __init__(self, level: int = INF, json_mode: bool = False, logfile: str | None = None):
        self.level = level
        self.json_mode = json_mode
        self.logfile = logfile

    def format(self, level: int, message: str, fields: Fields = (), ts: str | None = None) -> str:
        ts = ts or utc_now()
        if self.json_mode:
            record: dict[str, Any] = {"level": LEVEL_NAME[level], "message": message, "time": ts}
            record.update(fields)
            return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        ordered = [f for f in fields if f[0] == "error"] + sorted(
            (f for f in fields if f[0] != "error"), key=lambda f: f[0]
        )
        parts = [ts, LEVEL_ABBR[level], message]
        for key, value in ordered:
            text = value if isinstance(value, str) else str(value)
            if isinstance(value, str) and needs_quote(value):
                text = go_quote(value)
            parts.append(f"{key}={text}")
        return " ".join(parts)

    def log(self, level: int, message: str, *fields: tuple[str, FieldValue]) -> bool:
        """Write one record; returns whether it went to stderr."""
        if level < self.level:
            return False
        ts = utc_now()
        STDERR.write((self.format(level, message, fields, ts) + "\n").encode())
        if self.logfile:
            self._to_file(level, message, fields, ts)
        return True

    def _to_file(self, level: int, message: str, fields: Fields, ts: str) -> None:
        parts = [f'"level":{json.dumps(LEVEL_NAME[level])}']
        parts += [f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in fields]
        parts.append(f'"time":{json.dumps(ts)}')
        parts.append(f'"message":{json.dumps(message, ensure_ascii=False)}')
        line = "{" + ",".join(parts) + "}\n"
        with contextlib.suppress(OSError), open(self.logfile or "", "a", encoding="utf-8") as f:
            f.write(line)

    def info(self, message: str, *fields: tuple[str, FieldValue]) -> bool:
        return self.log(INF, message, *fields)

    def error(self, message: str, *fields: tuple[str, FieldValue]) -> bool:
        return self.log(ERR, message, *fields)

    @staticmethod
    def plain(text: str) -> None:
        """The last line of a fatal exit: no timestamp, no level, even in JSON mode."""
        STDERR.write((text + "\n").encode())


def write_stdout(text: str) -> None:
    with contextlib.suppress(OSError):
        sys.stdout.write(text)
        sys.stdout.flush()
