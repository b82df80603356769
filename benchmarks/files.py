"""File transfers (`jupyter colab-tunnel cp`, issue 20) against raw HTTP through the same tunnel.

Ours: the cp command's own code (`run_cp`, the parsed command line, run in this process on its
own asyncio loop, so Python's start-up is not timed) copying to and from a real `jupyter server`
with the extension, through its cloudflared stand-in quick tunnel: the public
`https://<words>.trycloudflare.com` URL, whose name testkit/edge_dns.py looks up at the
stand-in's TLS edge (the test CA trusted, as for the relay in testkit/relay_process.py). cp hashes every byte, writes uploads to a partial file
on the remote and commits them, and writes downloads to a local partial that it fsyncs and
renames.

The baseline, in the same run: a second cloudflared stand-in pointed straight at
testkit/forward_app.py, its TLS edge dialled directly with `http.client` (the same stand-in program;
no Jupyter, no route, no disk on the far side, no hashing on this side): a streamed `PUT /upload`
of the same file (the app hashes and discards it) and a streamed `GET /download?size=N` of the same number of
bytes, read in 1 MiB reads and discarded. Ours and the baseline alternate transfer by transfer;
each transfer opens its own connection (cp does, once per command).

- Upload / download throughput: one file of N MiB (200; 16 in --quick), MB/s, medians.
- Small files: `cp -r` of a directory of 500 files of 1-4 KB (100 in --quick) against `cp` of
  one file of the same total size; target: at most 2x that time plus 5 ms per file.
- Memory: the peak RSS growth (sampled every 20 ms in a thread) of the remote `jupyter server`
  during our transfers, against the forward app's during the baseline's; and this process's own
  growth during our transfers (the in-process cp engine), against its growth during the
  baseline's. Target: under 64 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.forward import DirectTunnel, wait_answering
from benchmarks.report import Figure, Summary
from benchmarks.servers import Fleet, Server
from jupyter_colab_tunnel.local.files.cp_cli import configure_cp_parser, run_cp
from testkit import edge_dns, edge_tls, forward_app

MiB = 1024 * 1024
MB = 1_000_000
BLOCK = MiB  # the baseline's reads and writes, as cp's
RSS_TARGET_MB = 64.0


class Meter:
    """Per phase (the one the main thread is in): each process's RSS peak, sampled every
    `period` in a thread, and the CPU seconds it used. RSS growth is measured from each
    process's RSS when the meter was made."""

    def __init__(self, pids: dict[str, int], period: float = 0.02) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.start = {name: p.memory_info().rss for name, p in self.procs.items()}
        self.peak: dict[tuple[str, str], int] = {}
        self.cpu: dict[tuple[str, str], float] = {}
        self.phase = ""
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, phase: str) -> None:
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                key = (name, phase)
                self.peak[key] = max(self.peak.get(key, 0), proc.memory_info().rss)

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                out[name] = t.user + t.system
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            if phase := self.phase:
                self._sample(phase)
            self._stop.wait(self.period)

    @contextlib.contextmanager
    def during(self, phase: str) -> Iterator[None]:
        before = self._cpu()
        self.phase = phase
        try:
            yield
        finally:
            self._sample(phase)  # a short phase is never unseen
            self.phase = ""
            for name, seconds in self._cpu().items():
                key = (name, phase)
                self.cpu[key] = self.cpu.get(key, 0.0) + seconds - before.get(name, seconds)

    def growth_mb(self, name: str, *phases: str) -> float:
        top = max(self.peak.get((name, phase), 0) for phase in phases)
        return max(0, top - self.start[name]) / MB

    def cpu_seconds(self, phase: str) -> dict[str, float]:
        return {name: self.cpu.get((name, phase), 0.0) for name in self.procs}

    def __enter__(self) -> Meter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Bench:
    """The two paths: cp to the remote through its tunnel, raw HTTP to the app through its own."""

    remote: Server
    url: str  # the remote's public tunnel URL
    token_file: Path
    direct: int  # the TLS edge port of the stand-in pointed straight at the app
    direct_host: str  # that stand-in's public hostname (the certificate's name)
    work: Path
    parser: argparse.ArgumentParser = field(default_factory=argparse.ArgumentParser)

    def __post_init__(self) -> None:
        configure_cp_parser(self.parser)

    @property
    def root(self) -> Path:
        return self.remote.workdir / "root"

    def cp(self, *paths: str, recursive: bool = False) -> float:
        """One `jupyter colab-tunnel cp -q ...` in this process; seconds."""
        argv = ["-q", "--url", self.url, "--token-file", str(self.token_file)]
        args = self.parser.parse_args([*argv, *(["-r"] if recursive else []), *paths])
        with edge_dns.reaching(self.remote.workdir):
            t0 = time.perf_counter()
            code = run_cp(args)
            elapsed = time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f"cp {' '.join(paths)} exited {code}")
        return elapsed

    def _connect(self) -> http.client.HTTPConnection:
        """A TLS connection to the direct stand-in's edge, verified as cp's is."""
        conn = http.client.HTTPConnection(self.direct_host, timeout=120)
        conn.sock = edge_tls.connect(self.direct, self.direct_host, 120)
        return conn

    def raw_put(self, path: Path) -> float:
        """The file streamed in a PUT straight to the app's /upload; seconds."""
        size = path.stat().st_size
        t0 = time.perf_counter()
        conn = self._connect()
        try:
            conn.putrequest("PUT", "/upload")
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(size))
            conn.endheaders()
            with path.open("rb", buffering=0) as f:
                while block := f.read(BLOCK):
                    conn.send(block)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        elapsed = time.perf_counter() - t0
        if resp.status != 200 or json.loads(body)["size"] != size:
            raise RuntimeError(f"raw PUT: {resp.status} {body[:300]!r}")
        return elapsed

    def raw_get(self, size: int) -> float:
        """`size` bytes streamed from the app's /download, read in 1 MiB reads; seconds."""
        t0 = time.perf_counter()
        conn = self._connect()
        try:
            conn.request("GET", f"/download?size={size}")
            resp = conn.getresponse()
            got = 0
            while chunk := resp.read(BLOCK):
                got += len(chunk)
        finally:
            conn.close()
        elapsed = time.perf_counter() - t0
        if resp.status != 200 or got != size:
            raise RuntimeError(f"raw GET: {resp.status}, {got} of {size} bytes")
        return elapsed


def write_random(path: Path, size: int, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(BLOCK, left)
            f.write(rng.randbytes(n))
            left -= n


def small_tree(directory: Path, count: int, rng: random.Random) -> int:
    """`count` files of 1-4 KB (random bytes); their total size."""
    total = 0
    for i in range(count):
        size = rng.randint(1024, 4096)
        write_random(directory / f"f{i:04d}.bin", size, rng)
        total += size
    return total


def run(fleet: Fleet, quick: bool, ctx: dict[str, Any]) -> list[Figure]:
    work = fleet.workdir / "files"
    app = forward_app.start(work / "app")
    direct: DirectTunnel | None = None
    try:
        remote = fleet.start("files-remote")
        tunnel = remote.wait_ready()
        token_file = work / "remote_token"
        token_file.write_text(remote.token)
        token_file.chmod(0o600)
        direct = DirectTunnel(work / "direct", app.url)
        wait_answering(direct.edge_port)
        tls_port = int(str(direct.state["edge_tls"]).rsplit(":", 1)[1])
        host = str(direct.state["hostname"])
        bench = Bench(remote, str(tunnel["url"]), token_file, tls_port, host, work)
        (bench.root / "bench").mkdir()
        pids = {
            "local": os.getpid(),  # the cp engine runs here; so does the raw client
            "stand-in": int(tunnel["pid"]),
            "server": remote.pid,
            "raw stand-in": direct.proc.pid,
            "app": app.proc.pid,
        }
        return _measure(bench, pids, quick)
    finally:
        for part in (direct, app):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()


def _alternate(
    rounds: int,
    ours: Callable[[int], float],
    base: Callable[[int], float],
    meter: Meter,
    tag: str,
) -> tuple[list[float], list[float]]:
    """`ours(i)` and `base(i)` alternated (which goes first swaps every round); seconds.
    The meter's phases are `ours-{tag}` and `raw-{tag}`."""
    through: list[float] = []
    baseline: list[float] = []
    sides = [(ours, through, f"ours-{tag}"), (base, baseline, f"raw-{tag}")]
    for i in range(rounds):
        for once, out, phase in sides if i % 2 == 0 else sides[::-1]:
            with meter.during(phase):
                out.append(once(i))
    return through, baseline


def _measure(bench: Bench, pids: dict[str, int], quick: bool) -> list[Figure]:
    size = (16 if quick else 200) * MiB
    rounds = 2 if quick else 4
    count = 100 if quick else 500
    small_rounds = 1 if quick else 3
    rng = random.Random(20)
    local = bench.work / "local"
    big = local / "big.bin"
    write_random(big, size, rng)
    tree = local / "small"
    total = small_tree(tree, count, rng)
    one = local / "one.bin"
    write_random(one, total, rng)
    down = local / "down"
    down.mkdir()

    # Warm both paths (modules imported, code paths run once) before anything is measured.
    warm = local / "warm.bin"
    write_random(warm, 64 * 1024, rng)
    bench.cp(str(warm), "remote:bench/warm.bin")
    bench.cp("remote:bench/warm.bin", str(down / "warm.bin"))
    bench.raw_put(warm)
    bench.raw_get(64 * 1024)

    def upload(i: int) -> float:
        return bench.cp(str(big), "remote:bench/big.bin")

    def download(i: int) -> float:
        target = down / "big.bin"
        elapsed = bench.cp("remote:bench/big.bin", str(target))
        if target.stat().st_size != size:
            raise RuntimeError(f"downloaded {target.stat().st_size} of {size} bytes")
        target.unlink()
        return elapsed

    def many(i: int) -> float:
        return bench.cp(str(tree), f"remote:bench/small-{i}", recursive=True)

    def single(i: int) -> float:
        return bench.cp(str(one), f"remote:bench/one-{i}.bin")

    with Meter(pids) as meter:
        up = _alternate(rounds, upload, lambda i: bench.raw_put(big), meter, "up")
        down_times = _alternate(rounds, download, lambda i: bench.raw_get(size), meter, "down")
        small = _alternate(small_rounds, many, single, meter, "small")
    _check_tree(tree, bench.root / "bench" / "small-0", count)

    moved = rounds * size
    return [
        _throughput("upload", size, *up, meter, moved, "a raw streamed PUT of the same file"),
        _throughput(
            "download", size, *down_times, meter, moved, "a raw streamed GET of as many bytes"
        ),
        _small_files(count, total, *small),
        _memory(
            "files.rss_growth",
            "remote jupyter server RSS growth during cp up and down",
            meter.growth_mb("server", "ours-up", "ours-down"),
            meter.growth_mb("app", "raw-up", "raw-down"),
            "the forward app's RSS growth during the raw PUTs and GETs",
            f"{size >> 20} MiB, {rounds} uploads and {rounds} downloads; peak minus start",
        ),
        _memory(
            "files.cp_rss_growth",
            "cp engine (in-process) RSS growth during cp up and down",
            meter.growth_mb("local", "ours-up", "ours-down"),
            meter.growth_mb("local", "raw-up", "raw-down"),
            "the same process's RSS growth during the raw PUTs and GETs",
            "cp runs in the benchmark's process (no interpreter start-up); peak minus start",
        ),
    ]


def _check_tree(tree: Path, landed: Path, count: int) -> None:
    names = sorted(p.name for p in landed.iterdir())
    if len(names) != count or names != sorted(p.name for p in tree.iterdir()):
        raise RuntimeError(f"cp -r landed {len(names)} of {count} files in {landed}")


def _cpu_per_100mb(meter: Meter, phase: str, moved: int) -> dict[str, float]:
    """CPU seconds each process used per 100 MB moved in a phase (only those that worked)."""
    used = meter.cpu_seconds(phase)
    return {name: round(s * 1e8 / moved, 3) for name, s in used.items() if s * 1e8 / moved >= 0.005}


def _cpu_text(cpu: dict[str, float]) -> str:
    parts = ", ".join(f"{name} {s:.2f}" for name, s in cpu.items())
    return f"{sum(cpu.values()):.2f} ({parts})"


def _throughput(
    what: str,
    size: int,
    ours: list[float],
    base: list[float],
    meter: Meter,
    moved: int,
    label: str,
) -> Figure:
    value = Summary.of([size / MB / t for t in ours])
    baseline = Summary.of([size / MB / t for t in base])
    tag = "up" if what == "upload" else "down"
    cpu_ours = _cpu_per_100mb(meter, f"ours-{tag}", moved)
    cpu_raw = _cpu_per_100mb(meter, f"raw-{tag}", moved)
    return Figure(
        key=f"files.{what}",
        group="files",
        title=f"cp {what} of {size >> 20} MiB through the tunnel",
        unit="MB/s",
        value=value,
        baseline=baseline,
        baseline_label=f"{label} through a stand-in tunnel straight to the forward app",
        target=">= 0.8x raw",
        met=value.median >= baseline.median * 0.8,
        compare=f"{value.median / baseline.median:.2f}x",
        notes=(
            f"{len(ours)} alternated transfers each, cp in-process; CPU s per 100 MB: "
            f"cp {_cpu_text(cpu_ours)}, raw {_cpu_text(cpu_raw)}"
        ),
        details={
            "seconds": ours,
            "baseline_seconds": base,
            "cpu_s_per_100mb": cpu_ours,
            "baseline_cpu_s_per_100mb": cpu_raw,
        },
    )


def _small_files(count: int, total: int, many: list[float], one: list[float]) -> Figure:
    value = Summary.of([t * 1000 for t in many])
    baseline = Summary.of([t * 1000 for t in one])
    bound = 2 * baseline.median + 5.0 * count
    return Figure(
        key="files.small_files",
        group="files",
        title=f"cp -r of {count} files of 1-4 KB",
        unit="ms",
        value=value,
        baseline=baseline,
        baseline_label=f"cp of one file of the same total size ({total / 1000:.0f} KB)",
        target=f"<= 2x one file + 5 ms per file ({bound:.0f} ms)",
        met=value.median <= bound,
        compare=f"{value.median / count:.2f} ms per file",
        notes=f"{len(many)} alternated rounds",
        details={"files": count, "bytes": total, "bound_ms": bound},
    )


def _memory(key: str, title: str, growth: float, base: float, label: str, notes: str) -> Figure:
    return Figure(
        key=key,
        group="files",
        title=title,
        unit="MB",
        value=Summary.scalar(growth),
        baseline=Summary.scalar(base),
        baseline_label=label,
        target=f"< {RSS_TARGET_MB:.0f} MB",
        met=growth < RSS_TARGET_MB,
        compare=f"{growth - base:+.1f} MB",
        notes=notes,
    )
