"""A real `jupyter server` with the cloudflared stand-in on its PATH, for tunnel tests."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from server_process import ServerProcess, start_server

from testkit import fake_cloudflared

# Fast supervision for tests: the defaults (5 s health checks, 1 s backoff) are for users.
FAST = {
    "health_interval": 0.2,
    "restart_backoff_initial": 0.2,
    "restart_backoff_max": 1.0,
    "stop_timeout": 2.0,
    "url_timeout": 10.0,
}

# A token as cloudflared expects it: base64 of {"a": account, "t": tunnel id, "s": secret}.
TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
VALID_TOKEN = base64.b64encode(
    json.dumps(
        {"a": "0a" * 16, "t": TUNNEL_ID, "s": base64.b64encode(b"demo-secret-for-tests").decode()}
    ).encode()
).decode()

NAMED_HOST = "jupyter.example.com"


def named_tunnel_env(remote_port: int, edge_port: int) -> dict[str, str]:
    """The stand-in as a named tunnel serving NAMED_HOST for the server on `remote_port`.

    A named tunnel's address survives restarts: the stand-in keeps `edge_port`. Its origin is
    set in Cloudflare's dashboard, not on the command line."""
    return {
        "TUNNEL_TOKEN": VALID_TOKEN,
        "FAKE_CLOUDFLARED_HOSTNAME": NAMED_HOST,
        "FAKE_CLOUDFLARED_EDGE_PORT": str(edge_port),
        "FAKE_CLOUDFLARED_ORIGIN": f"http://127.0.0.1:{remote_port}",
    }


@dataclass
class TunnelServer:
    server: ServerProcess
    state_dir: Path
    bin_dir: Path

    def tunnel(self, **params: Any) -> Any:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return self.server.get_json("colab/tunnel" + (f"?{query}" if query else ""))

    def wait_state(self, *states: str, timeout: float = 20.0, **match: Any) -> Any:
        def ok(body: Any) -> bool:
            if body["state"] not in states:
                return False
            for key, value in match.items():
                if key == "error_kind":
                    if (body["error"] or {}).get("kind") != value:
                        return False
                elif body.get(key) != value:
                    return False
            return True

        return self.server.wait_for("colab/tunnel", ok, timeout=timeout)

    def post(self, action: Any, **kwargs: Any) -> Any:
        return self.server.request("POST", "colab/tunnel", body={"action": action}, **kwargs)

    def fake_state(self, pid: int, timeout: float = 10.0) -> dict[str, Any]:
        """What the stand-in with this pid wrote about itself (its edge address, its clock)."""
        path = self.state_dir / f"{pid}.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return dict(json.loads(path.read_text()))
            except (OSError, ValueError):
                time.sleep(0.02)
        raise AssertionError(f"the stand-in {pid} wrote no state")

    def children(self) -> list[psutil.Process]:
        return cloudflared_processes(self.server.pid)

    def spawned_pids(self) -> list[int]:
        """Every cloudflared this server started, as its log records them, in order."""
        return [
            int(pid) for pid in re.findall(r"Started cloudflared \(pid (\d+)\)", self.server.log())
        ]

    def alive_spawned(self) -> list[int]:
        alive = []
        for pid in self.spawned_pids():
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        return alive


def cloudflared_processes(server_pid: int | None = None) -> list[psutil.Process]:
    """Live cloudflared stand-ins, of one server or of any."""
    found = []
    for p in psutil.process_iter(["cmdline", "ppid", "status"]):
        try:
            cmd = p.info["cmdline"] or []
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if not any(part.endswith("/cloudflared") for part in cmd[:2]):
                continue
            if server_pid is None or p.info["ppid"] == server_pid:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def start_tunnel_server(
    workdir: Path,
    faults: str = "",
    traits: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    token: str | None = None,
    install: bool = True,
    base_url: str = "/",
    wait: bool = True,
    command: list[str] | None = None,
) -> TunnelServer:
    bin_dir = workdir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if install:
        fake_cloudflared.install(bin_dir)
    state_dir = workdir / "fake-state"
    state_dir.mkdir(exist_ok=True)
    # autostart="auto" opens no tunnel on a plain machine: these servers ask for theirs.
    settings = {"autostart": True, **FAST, **(traits or {})}
    args = []
    for name, value in settings.items():
        if isinstance(value, list):
            args += [f"--ColabTunnelApp.{name}={item}" for item in value]
        else:
            args.append(f"--ColabTunnelApp.{name}={value}")
    full_env = {"FAKE_CLOUDFLARED_STATE_DIR": str(state_dir), **(env or {})}
    if faults:
        full_env["FAKE_CLOUDFLARED_FAULT"] = faults
    server = start_server(
        workdir / "server",
        args=args,
        env=full_env,
        token=token,
        base_url=base_url,
        path_prepend=[bin_dir],
        wait=wait,
        command=command,
    )
    return TunnelServer(server=server, state_dir=state_dir, bin_dir=bin_dir)
