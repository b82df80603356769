"""A real TensorBoard (the `tensorboard` package, a test-only dependency) with scalars of our own.

The scalars are written as event files with TensorBoard's own writer and protos, so neither
TensorFlow nor torch is needed. TensorBoard listens on 127.0.0.1 only, as the forwarded app on
the remote machine would.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from testkit.processes import stop_process

# A tag no TensorBoard page shows by itself: when the page shows it, it read our scalars.
TAG = "forward_probe/loss_7e3b"
RUN = "run_fwd"


def write_scalars(
    logdir: Path, tag: str = TAG, values: tuple[float, ...] = (1.0, 0.5, 0.25)
) -> Path:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    run_dir = logdir / RUN
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(run_dir))
    for step, value in enumerate(values):
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
        writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))
    writer.close()
    return run_dir


@dataclass
class TensorBoard:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, 10)


def start(workdir: Path, logdir: Path, port: int, timeout: float = 90.0) -> TensorBoard:
    """TensorBoard on 127.0.0.1:port; returns once it lists our run's scalar tag."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "tensorboard.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                f"--logdir={logdir}",
                "--host=127.0.0.1",
                f"--port={port}",
                "--load_fast=false",
                "--reload_interval=1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    board = TensorBoard(proc, port, log_path)
    deadline = time.monotonic() + timeout
    url = f"{board.url}/data/plugin/scalars/tags"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tensorboard exited {proc.returncode}:\n{board.log()[-3000:]}")
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(url, timeout=5) as r,
        ):
            if TAG in json.loads(r.read()).get(RUN, {}):
                return board
        time.sleep(0.1)
    board.stop()
    raise RuntimeError(f"tensorboard did not list {TAG} in {timeout}s:\n{board.log()[-3000:]}")
