"""One audit over a whole pytest run: secrets never leak, no process outlives the run.

Hooked in by tests/conftest.py (session start, every test report, session finish) and fed by
`ServerProcess.request`, `start_server` and the `jp_fetch` wrapper. It checks that the known
test secrets (the named-tunnel token of tests/tunnel_env.py) appear in none of:

* the command line (`/proc/<pid>/cmdline`) of any cloudflared stand-in started by this run,
  sampled live by a background thread and again from the argv each stand-in records in its
  state file;
* any log a server of this run wrote (the logs `start_server` noted, and every `*.log` under
  the run's pytest base temp directory);
* any HTTP response body a test received (`ServerProcess.request`, `jp_fetch`);
* any test's captured stdout/stderr/log and any test failure's exception text;

and that, when the run ends, no process of this run is still alive: every process carrying
this run's marker in its environment (all children of the pytest process inherit it) or naming
the run's base temp directory on its command line, other than pytest itself.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MARK_ENV = "JCT_AUDIT_RUN"
SAMPLE_INTERVAL = 0.25
LOG_SCAN_LIMIT = 64 * 1024 * 1024


def known_secrets() -> dict[str, str]:
    """Name -> value of every secret the tests hand to the code under test."""
    from tunnel_env import VALID_TOKEN

    payload = json.loads(base64.b64decode(VALID_TOKEN))
    return {"VALID_TOKEN": VALID_TOKEN, "VALID_TOKEN tunnel secret": str(payload["s"])}


@dataclass
class Audit:
    basetemp: Path | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    secrets: dict[str, str] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    logs: set[Path] = field(default_factory=set)
    cmdlines_checked: int = 0
    bodies_checked: int = 0
    _seen_pids: set[tuple[int, float]] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ----- lifecycle --------------------------------------------------------------------

    def start(self, basetemp: Path) -> None:
        self.basetemp = basetemp.resolve()
        self.secrets = self.secrets or known_secrets()
        os.environ[MARK_ENV] = self.run_id
        self._thread = threading.Thread(target=self._sample, name="run-audit", daemon=True)
        self._thread.start()

    def finish(self) -> list[str]:
        """Everything wrong with this run (empty when all is well)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sample_once()
        self._scan_files()
        problems = [f"secret leaked: {f}" for f in dict.fromkeys(self.findings)]
        problems += [f"left behind: {p}" for p in self.leftovers()]
        return problems

    # ----- secrets ----------------------------------------------------------------------

    def observe(self, data: bytes | str, where: str) -> None:
        """Scan one piece of output (a response body, a report section) for the secrets."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        with self._lock:
            self.bodies_checked += 1
        for name, secret in self.secrets.items():
            if secret in text:
                with self._lock:
                    self.findings.append(f"{name} in {where}")

    def note_log(self, path: Path) -> None:
        with self._lock:
            self.logs.add(Path(path))

    def _ours(self, proc: psutil.Process) -> bool:
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get(MARK_ENV) == self.run_id:
                return True
        with contextlib.suppress(psutil.Error, OSError):
            return bool(self.basetemp) and any(
                str(self.basetemp) + os.sep in part for part in proc.cmdline()
            )
        return False

    def _sample_once(self) -> None:
        for proc in psutil.process_iter(["cmdline", "create_time"]):
            cmdline = proc.info.get("cmdline") or []
            if not any(part.endswith("/cloudflared") for part in cmdline[:2]):
                continue
            key = (proc.pid, proc.info.get("create_time") or 0.0)
            if not self._ours(proc):
                continue
            text = "\0".join(cmdline)
            with self._lock:
                if key not in self._seen_pids:
                    self._seen_pids.add(key)
                    self.cmdlines_checked += 1
            for name, secret in self.secrets.items():
                if secret in text:
                    with self._lock:
                        self.findings.append(f"{name} in /proc/{proc.pid}/cmdline")

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            with contextlib.suppress(Exception):  # a vanished process must not stop sampling
                self._sample_once()

    def _scan_files(self) -> None:
        paths = set(self.logs)
        if self.basetemp is not None and self.basetemp.is_dir():
            paths.update(self.basetemp.rglob("*.log"))
            paths.update(self.basetemp.rglob("fake-state/*.json"))
        for path in sorted(paths):
            with contextlib.suppress(OSError):
                data = path.read_bytes()[:LOG_SCAN_LIMIT]
                if path.suffix == ".json":
                    with contextlib.suppress(ValueError):
                        data = "\0".join(json.loads(data).get("argv") or []).encode()
                        self.cmdlines_checked += 1
                self.observe(data, str(path))

    # ----- processes --------------------------------------------------------------------

    def leftovers(self, grace: float = 5.0) -> list[str]:
        """Processes of this run still alive (after `grace` seconds for ones on their way out)."""
        me = os.getpid()
        ancestors = {p.pid for p in psutil.Process(me).parents()}
        candidates = []
        for proc in psutil.process_iter(["status"]):
            if proc.pid == me or proc.pid in ancestors:
                continue
            if proc.info.get("status") == psutil.STATUS_ZOMBIE:
                continue
            if self._ours(proc):
                candidates.append(proc)
        _, alive = psutil.wait_procs(candidates, timeout=grace) if candidates else ([], [])
        described = []
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                described.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:300]}")
        return described


AUDIT = Audit()
