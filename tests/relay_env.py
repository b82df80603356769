"""A real relay process (`jupyter colab-tunnel connect`) for tests, and its local clients."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import run_audit
import yaml
from e2e_kit import http
from server_process import Response, ServerProcess, free_port

from testkit.relay_process import EDGE_ROOT_ENV, GATEWAY_ARGS

HERE = Path(__file__).parent
REPO = HERE.parent
SPEC = HERE.parent / "docs" / "relay-openapi.yaml"


@functools.cache
def _schemas() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC.read_text())
    return dict(spec["components"]["schemas"])


def check_relay_body(kind: str, body: Any) -> None:
    """Hold a relay answer (RelayStatus or Error) to docs/relay-openapi.yaml."""
    # The spec's refs, rewritten to point into a $defs section of one schema.
    schemas = json.loads(json.dumps(_schemas()).replace('"#/components/schemas/', '"#/$defs/'))
    jsonschema.validate(body, {**schemas[kind], "$defs": schemas})


@dataclass
class RelayProcess:
    proc: subprocess.Popen[bytes]
    port: int
    token_file: Path
    log_path: Path
    out_path: Path
    # Local gateway servers using this relay: stopped before it, in the order docs/connecting.md
    # gives (a local server shuts its kernels down through the relay when it stops).
    clients: list[Any] = field(default_factory=list)
    _stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = "",
        timeout: float = 60.0,
    ) -> Response:
        """token="" sends the relay's own token, None sends none."""
        hdrs = dict(headers or {})
        use = self.token if token == "" else token
        if use is not None:
            hdrs.setdefault("Authorization", f"token {use}")
        r = http(
            method, self.url + "/" + path.lstrip("/"), body=body, headers=hdrs, timeout=timeout
        )
        run_audit.AUDIT.observe(r.body, f"a relay response to {method} {path}")
        return r

    def status(self) -> Any:
        r = self.request("GET", "relay/status")
        assert r.status == 200, (r.status, r.body)
        return r.json()

    def wait_status(self, predicate: Any, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status()
            if predicate(last):
                return last
            time.sleep(0.05)
        raise AssertionError(f"relay status never matched; last: {last}\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 10.0) -> int | None:
        if self._stopped:
            return self.proc.returncode
        self._stopped = True
        for client in self.clients:
            client.stop()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                # Still answering a local JupyterLab's kernel shutdown (--stop-grace), which no
                # test client sends: a second SIGTERM (a second Ctrl-C) stops it now.
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def relay_command(args: list[str]) -> list[str]:
    return [sys.executable, str(REPO / "testkit" / "relay_process.py"), "connect", *args]


def start_relay(
    workdir: Path,
    args: list[str],
    env: dict[str, str] | None = None,
    edge_root: Path | None = None,
    port: int | None = None,
    wait: bool = True,
) -> RelayProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    token_file = workdir / "relay_token"
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_COLAB_TUNNEL")}
    full_env.update(HOME=str(workdir), PYTHONUNBUFFERED="1")
    if edge_root is not None:
        full_env[EDGE_ROOT_ENV] = str(edge_root)
    full_env.update(env or {})
    log_path, out_path = workdir / "relay.log", workdir / "relay.out"
    run_audit.AUDIT.note_log(log_path)
    run_audit.AUDIT.note_log(out_path)
    with log_path.open("wb") as err, out_path.open("wb") as out:
        proc = subprocess.Popen(
            relay_command(
                [f"--port={port}", f"--local-token-file={token_file}", "--wait=15", *args]
            ),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    relay = RelayProcess(proc, port, token_file, log_path, out_path)
    if wait:
        wait_listening(relay)
    return relay


def wait_listening(relay: RelayProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if relay.proc.poll() is not None:
            raise AssertionError(
                f"relay exited {relay.proc.returncode}:\n{relay.output()}\n{relay.log()}"
            )
        if re.search(r"listening on http://127\.0\.0\.1:\d+", relay.output()):
            with contextlib.suppress(OSError):
                if relay.request("GET", "relay/status", timeout=2).status == 200:
                    return
        time.sleep(0.05)
    relay.stop()
    raise AssertionError(f"relay did not listen in {timeout}s:\n{relay.output()}\n{relay.log()}")


def write_secret(path: Path, value: str) -> Path:
    """A secret in a file only its owner reads, as the relay wants its token files."""
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def start_following_relay(workdir: Path, remote_token: str, connection_file: Path) -> RelayProcess:
    """A relay following a remote's connection file, its token in a file (as users run it);
    the stand-ins' edges are looked for under `workdir`."""
    token_file = write_secret(workdir / "remote_token", remote_token)
    return start_relay(
        workdir / "relay",
        ["--connection-file", str(connection_file), "--token-file", str(token_file)],
        edge_root=workdir,
    )


def start_local(server_factory: Any, relay: RelayProcess, wait: bool = True) -> ServerProcess:
    """A local gateway-mode server through `relay` (stopped before it, by `relay.stop()`)."""
    local: ServerProcess = server_factory(
        args=[f"--gateway-url={relay.url}", *GATEWAY_ARGS],
        # The relay's token, as the printed command passes it (not on the command line).
        env={"JUPYTER_GATEWAY_AUTH_TOKEN": relay.token},
        wait=wait,
    )
    relay.clients.append(local)
    return local
