"""One cloudflared process (tunnel/child.py) with real child processes: small shell scripts."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from jupyter_colab_tunnel.tunnel.child import spawn
from jupyter_colab_tunnel.tunnel.command import TunnelCommand
from jupyter_colab_tunnel.tunnel.logs import classify_exit

pytestmark = pytest.mark.e2e

TOKEN = "eyJhIjoiYWNjb3VudCJ9-secret"


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "cloudflared"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def command(binary: str, token: str = "") -> TunnelCommand:
    mode = "named" if token else "quick"
    return TunnelCommand(mode=mode, binary=binary, origin="http://127.0.0.1:1", token=token)


def test_lines_are_read_redacted_and_the_exit_code_returned(tmp_path: Path) -> None:
    binary = script(
        tmp_path,
        'echo "$$" > "$0.pid"\n'
        'echo "out line"\n'
        'echo "token is $TUNNEL_TOKEN" >&2\n'
        "printf 'no newline at the end' >&2\n"
        "exit 3\n",
    )
    lines: list[tuple[str, str]] = []

    async def main() -> int:
        child = await spawn(
            command(binary, TOKEN), lambda s, line: lines.append((s, line)), logging.getLogger()
        )
        code = await child.wait()
        assert child.returncode == 3
        # setpriv (where present) execs the program in the same process: one pid.
        assert int(Path(binary + ".pid").read_text()) == child.pid
        return code

    assert asyncio.run(main()) == 3
    assert ("stdout", "out line") in lines
    assert ("stderr", "token is *****") in lines
    assert ("stderr", "no newline at the end") in lines
    assert not any(TOKEN in line for _, line in lines)


def test_a_child_ignoring_sigterm_is_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    binary = script(tmp_path, "trap '' TERM\necho up\nwhile :; do sleep 0.05; done\n")
    up = asyncio.Event()

    async def main() -> int | None:
        child = await spawn(command(binary), lambda s, line: up.set(), logging.getLogger("c"))
        await asyncio.wait_for(up.wait(), 10)
        await child.terminate(0.3)
        await child.wait()
        return child.returncode

    assert asyncio.run(main()) == -9
    assert "ignored SIGTERM for 0.3s: killing it" in caplog.text


def test_a_vanished_binary(tmp_path: Path) -> None:
    lines: list[str] = []

    async def main() -> int:
        child = await spawn(
            command(str(tmp_path / "gone")), lambda s, line: lines.append(line), logging.getLogger()
        )
        return await child.wait()

    if shutil.which("setpriv") is None:
        with pytest.raises(FileNotFoundError):
            asyncio.run(main())
        return
    # Through setpriv it is setpriv that fails the exec: still binary_unavailable.
    code = asyncio.run(main())
    problem = classify_exit(code, lines, [])
    assert problem.kind == "binary_unavailable"
    assert str(tmp_path / "gone") in problem.message
