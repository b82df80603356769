"""Which kernel holds the GPU: /colab/gpu process entries name their kernel and notebook."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import psutil
import pytest

from jupyter_colab_tunnel.server import kernels
from jupyter_colab_tunnel.server.kernels import kernel_pids, owners, parent_chain
from testkit.fake_nvml import FakeGpu, FakeProcess, MiB, install

NOT_A_PID = 4_000_000  # above pid_max (2**22): never a process here


def count_walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on the /proc walk that maps GPU processes to kernels; one item per walk."""
    walks: list[int] = []

    def walking(*args: Any) -> dict[int, str]:
        walks.append(1)
        return owners(*args)

    monkeypatch.setattr(kernels, "owners", walking)
    return walks


def test_owners_walks_up_to_the_nearest_kernel() -> None:
    tree = {10: [10, 5, 1], 11: [11, 10, 5, 1], 20: [20, 1], 30: []}
    found = owners([10, 11, 20, 30], {5: "k-a"}, chain=lambda pid: tree[pid])
    assert found == {10: "k-a", 11: "k-a"}
    assert owners([11], {10: "k-b", 5: "k-a"}, chain=lambda pid: tree[pid]) == {11: "k-b"}


def test_parent_chain_of_this_process_and_of_nothing() -> None:
    chain = parent_chain(os.getpid())
    assert chain[:2] == [os.getpid(), os.getppid()]
    assert parent_chain(NOT_A_PID) == []


async def start_session(jp_fetch: Any, path: str) -> str:
    r = await jp_fetch(
        "api",
        "sessions",
        method="POST",
        body=json.dumps({"path": path, "type": "notebook", "kernel": {"name": "python3"}}),
    )
    return str(json.loads(r.body)["kernel"]["id"])


async def run_in_kernel(km: Any, code: str) -> str:
    """Execute `code` in a real kernel over ZMQ; return what it printed."""
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = await client.execute_interactive(code, output_hook=hook, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        client.stop_channels()


@pytest.mark.e2e
@pytest.mark.timeout(180)
async def test_gpu_processes_name_their_kernel(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = colab_app.serverapp.kernel_manager
    nb_kernel = await start_session(jp_fetch, "work/train.ipynb")
    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    bare_kernel = json.loads(r.body)["id"]  # a kernel without a session: no notebook path
    pids = kernel_pids(manager)
    nb_pid = next(pid for pid, kid in pids.items() if kid == nb_kernel)
    bare_pid = next(pid for pid, kid in pids.items() if kid == bare_kernel)
    # A grandchild of the notebook's kernel, like a DataLoader worker holding GPU memory.
    worker = int(
        await run_in_kernel(
            manager.get_kernel(nb_kernel),
            "import subprocess, sys\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            "print(p.pid)",
        )
    )
    try:
        assert nb_pid in [p.pid for p in psutil.Process(worker).parents()]
        install(
            monkeypatch,
            [
                FakeGpu.t4(processes=[FakeProcess(nb_pid, 900 * MiB), FakeProcess(os.getpid())]),
                FakeGpu.t4(
                    uuid="GPU-6f2b7c1e-0000-4a1b-9c3d-000000000001",
                    processes=[FakeProcess(worker, 2048 * MiB), FakeProcess(NOT_A_PID)],
                    graphics_processes=[FakeProcess(bare_pid)],
                ),
            ],
        )
        r = await jp_fetch("colab", "gpu")  # held to docs/openapi.yaml by the fixture
        devices = json.loads(r.body)["devices"]
        entries = {p["pid"]: p for d in devices for p in d["processes"]}
        assert entries[nb_pid]["kernel_id"] == nb_kernel
        assert entries[nb_pid]["notebook_path"] == "work/train.ipynb"
        assert entries[worker]["kernel_id"] == nb_kernel  # a descendant counts
        assert entries[worker]["notebook_path"] == "work/train.ipynb"
        assert entries[bare_pid]["kernel_id"] == bare_kernel
        assert entries[bare_pid]["notebook_path"] is None
        assert entries[os.getpid()]["kernel_id"] is None  # the server itself is no kernel
        assert entries[NOT_A_PID] == {
            "pid": NOT_A_PID,
            "name": None,
            "used_memory": 100 * MiB,
            "kernel_id": None,
            "notebook_path": None,
        }
        # /colab/status counts the kernels the server runs.
        r = await jp_fetch("colab", "status")
        assert json.loads(r.body)["server"]["kernels"] == 2
        # Without processes nothing is mapped (and nothing walks /proc).
        walks = count_walks(monkeypatch)
        r = await jp_fetch("colab", "gpu", params={"processes": "false"})
        assert all(d["processes"] is None for d in json.loads(r.body)["devices"])
        assert walks == []
    finally:
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while psutil.pid_exists(worker) and time.monotonic() < deadline:
            try:
                if psutil.Process(worker).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        for kernel_id in (nb_kernel, bare_kernel):
            await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_mapping_is_reused_briefly(
    jp_fetch: Any, colab_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, [FakeGpu.t4(processes=[FakeProcess(os.getpid())])])
    colab_app.gpu.sampler.cache_ttl = 0.0
    walks = count_walks(monkeypatch)
    for _ in range(3):
        r = await jp_fetch("colab", "gpu")
        assert json.loads(r.body)["devices"][0]["processes"][0]["kernel_id"] is None
    assert len(walks) == 1
