"""A real `jupyter server` process for tests: isolated dirs, a token, a free port, clean stop."""

from __future__ import annotations

import contextlib
import json
import os
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

from testkit.processes import free_port, jupyter_server_command

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
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop the server; anything it leaves behind is killed (and is a test failure elsewhere)."""
        if self._stopped:
            return self.proc.returncode
        self._stopped = True
        children = self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _, alive = psutil.wait_procs(children, timeout=3)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        return self.proc.returncode


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
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_", "TUNNEL_", "COLAB_"))
    }
    full_env.update(
        HOME=str(workdir),
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_DATA_DIR=str(workdir / "data"),
        JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    if path_prepend:
        full_env["PATH"] = os.pathsep.join(
            [str(p) for p in path_prepend] + [full_env.get("PATH", "")]
        )
    full_env.update(env or {})
    cmd = [
        *(command or jupyter_server_command()),
        f"--port={port}",
        "--port-retries=0",
        "--ip=127.0.0.1",
        "--no-browser",
        f"--ServerApp.root_dir={root_dir}",
        f"--ServerApp.base_url={base_url}",
        f"--IdentityProvider.token={tok}",
        *(["--allow-root"] if os.geteuid() == 0 else []),
        *(args or []),
    ]
    log_path = workdir / "server.log"
    run_audit.AUDIT.note_log(log_path)
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        cmd,
        cwd=str(workdir),
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()
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
