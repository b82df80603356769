"""What `cp` shows: a tqdm bar on a terminal (bytes, rate, ETA), one summary line at the end
(files, bytes, seconds, MiB/s, resumes, bytes sent again), nothing with --quiet; each failed
file on stderr as `[colab-tunnel cp] <path>: <kind>: <message>` and a `Hint:` line."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ...problems import ColabTunnelError

PREFIX = "[colab-tunnel cp]"
MiB = 1024 * 1024


@dataclass
class Tally:
    """The counts of a whole run."""

    files: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    resumed: int = 0  # files that continued from bytes already there (this run or a cut)
    resumed_bytes: int = 0  # bytes found already there when a run started
    resumes: int = 0  # cuts waited out
    sent_again: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        seconds = max(time.monotonic() - self.started, 1e-6)
        rate = self.bytes / MiB / seconds
        text = (
            f"{PREFIX} {self.files} file{'s' if self.files != 1 else ''} copied, "
            f"{self.bytes} bytes in {seconds:.2f} s ({rate:.1f} MiB/s)"
        )
        if self.skipped:
            text += f", {self.skipped} unchanged (skipped)"
        if self.failed:
            text += f", {self.failed} failed"
        text += (
            f"; resumed {self.resumed} (from {self.resumed_bytes} bytes already there, "
            f"{self.resumes} cuts waited out), {self.sent_again} bytes sent again"
        )
        return text


def describe(error: ColabTunnelError, path: str) -> str:
    """An error as cp prints it: `<prefix> <path>: <kind>: <message>` and a `Hint:` line."""
    text = f"{PREFIX} {path}: {error.kind}: {error.message}"
    return text + (f"\n{PREFIX} Hint: {error.hint}" if error.hint else "")


class Reporter:
    """The bar and the lines of one run."""

    def __init__(self, total: int, quiet: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.bar: Any = None
        if not quiet and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.stream,
                dynamic_ncols=True,
                leave=False,
            )

    def advance(self, n: int) -> None:
        if self.bar is not None and n:
            self.bar.update(n)

    def error(self, error: ColabTunnelError, path: str) -> None:
        self.note(describe(error, path))

    def note(self, text: str) -> None:
        """A line on stderr, above the bar when there is one."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self, tally: Tally) -> None:
        if self.bar is not None:
            self.bar.close()
        if not self.quiet:
            print(tally.line(), flush=True)
