"""A real `jupyter server` process for tests: isolated dirs, a token, a free port, clean stop."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openapi_check
import psutil
import run_audit

from testkit.jupyter_process import descendants, server_argv, server_env, spawn_logged, stop_server
from testkit.processes import free_port

HERE = Path(__file__).parent


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    base_url: str
    workdir: Path
    root_dir: Path
    log_path: Path
    env: dict[str, str]
    _stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = "",
        timeout: float = 10.0,
    ) -> Response:
        """An HTTP request to this server. token="" uses the server's token, None sends none."""
        hdrs = dict(headers or {})
        use = self.token if token == "" else token
        if use is not None:
            hdrs.setdefault("Authorization", f"token {use}")
        data: bytes | None
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        else:
            data = body
        url = self.url.rstrip("/") + "/" + path.lstrip("/")
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                response = Response(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            response = Response(e.code, dict(e.headers), e.read())
        # Every answer is audited for secrets and, under /colab/, held to docs/openapi.yaml.
        run_audit.AUDIT.observe(response.body, f"a response to {method} {path}")
        openapi_check.check_url_response(
            method, "/" + path.lstrip("/"), "/", response.status, response.headers, response.body
        )
        return response

    def get_json(self, path: str, **kwargs: Any) -> Any:
        r = self.request("GET", path, **kwargs)
        assert r.status == 200, (r.status, r.body)
        return r.json()

    def wait_for(self, path: str, predicate: Any, timeout: float = 20.0) -> Any:
        """Poll a JSON endpoint until predicate(body) is true; return that body."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.get_json(path, timeout=5)
                if predicate(last):
                    return last
            except (OSError, AssertionError):
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()[-4000:]}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting on {path}; last: {last}\n{self.log()[-4000:]}")

    def descendants(self) -> list[psutil.Process]:
        return descendants(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop the server; anything it leaves behind is killed (and is a test failure elsewhere)."""
        if self._stopped:
            return self.proc.returncode
        self._stopped = True
        return stop_server(self.proc, sig, timeout, children=self.descendants())


def start_server(
    workdir: Path,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    token: str | None = None,
    base_url: str = "/",
    path_prepend: list[Path] | None = None,
    config: dict[str, Any] | None = None,
    wait: bool = True,
    timeout: float = 30.0,
    command: list[str] | None = None,
) -> ServerProcess:
    """Start `jupyter server` from the installed package and wait until /api/status answers.

    token=None generates one; token="" starts a server without a token (auth off).
    command: the `jupyter-server` to run (default: this environment's), e.g. another venv's.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    root_dir = workdir / "root"
    root_dir.mkdir(exist_ok=True)
    config_dir = workdir / "config"
    config_dir.mkdir(exist_ok=True)
    if config is not None:
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    port = free_port()
    tok = secrets.token_hex(16) if token is None else token
    full_env = server_env(workdir, config_dir, path_prepend=path_prepend or (), extra=env)
    cmd = server_argv(port, tok, root_dir, base_url=base_url, command=command, args=args or ())
    log_path = workdir / "server.log"
    run_audit.AUDIT.note_log(log_path)
    proc = spawn_logged(cmd, workdir, full_env, log_path)
    server = ServerProcess(
        proc=proc,
        port=port,
        token=tok,
        base_url=base_url if base_url.endswith("/") else base_url + "/",
        workdir=workdir,
        root_dir=root_dir,
        log_path=log_path,
        env=full_env,
    )
    if wait:
        wait_until_serving(server, timeout)
    return server


def wait_until_serving(server: ServerProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"jupyter server exited with {server.proc.returncode}:\n{server.log()[-4000:]}"
            )
        try:
            r = server.request("GET", "api/status", timeout=2)
            if r.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise AssertionError(f"jupyter server did not answer in {timeout}s:\n{server.log()[-4000:]}")


def build_wheel(dest: Path) -> Path:
    """The wheel of this source tree, built into dest (no isolation: offline-safe and quick)."""
    source = Path(__file__).resolve().parent.parent
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-q", "-w", str(dest), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = dest.glob("jupyter_colab_tunnel-*.whl")
    return wheel
