"""The one reader of secret files (a token, extra headers) that every local command uses, and the
commands themselves meeting a file that is not a secret: a FIFO, a directory, an empty file.

The unit tests call the reader; the e2e ones run each real command (connect, mcp, ports, cp) in
a subprocess with a bound on its time, so that a reader that waited on a FIFO would fail here
rather than hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_colab_tunnel.local.cli_input import (
    TOKEN_ENV,
    UsageError,
    read_secret_file,
    read_token,
    token_from,
)
from testkit.processes import free_port

PREFIX = "[colab-tunnel test]"
SECRET = "s3cret-value"


def secret(path: Path, content: bytes | str = SECRET + "\n", mode: int = 0o600) -> Path:
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    path.chmod(mode)
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path, 0o600)
    return path


def test_a_private_file_is_read_stripped_and_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = secret(tmp_path / "token", f"  {SECRET} \n")
    assert read_secret_file(str(path), "token", PREFIX) == SECRET
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("mode", "said"), [(0o644, "readable"), (0o640, "readable"), (0o620, "open")]
)
def test_a_file_others_may_use_is_read_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: int, said: str
) -> None:
    path = secret(tmp_path / "token", mode=mode)
    assert read_secret_file(str(path), "token", PREFIX) == SECRET
    err = capsys.readouterr().err
    assert err == f"{PREFIX} warning: {path} is {said} by other users; `chmod 600 {path}`\n"


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: p, "cannot read the token file {}: No such file or directory"),
        (lambda p: (p.mkdir(), p)[1], "the token file {} is not a regular file"),
        (fifo, "the token file {} is not a regular file"),
        (lambda p: secret(p, "\n \n"), "the token file {} is empty"),
        (lambda p: secret(p, b"\xff" + SECRET.encode()), "the token file {} is not UTF-8 text"),
        # An error of the open itself, with its cause (this one also holds for root, whom a
        # mode of 000 does not stop): a path through a file.
        (lambda p: secret(p) / "token", "cannot read the token file {}: Not a directory"),
    ],
    ids=["missing", "directory", "fifo", "empty", "not-utf8", "unreadable"],
)
def test_what_is_not_a_secret_file_is_a_usage_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, said: str
) -> None:
    path = make(tmp_path / "token")  # type: ignore[operator]
    with pytest.raises(UsageError) as refused:
        read_secret_file(str(path), "token", PREFIX)
    assert str(refused.value) == said.format(path)
    assert SECRET not in str(refused.value) + capsys.readouterr().err


def test_the_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    secret(tmp_path / "token")
    assert read_secret_file("~/token", "token", PREFIX) == SECRET


def test_the_token_comes_from_the_file_else_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = secret(tmp_path / "token", "from-file")
    monkeypatch.setenv(TOKEN_ENV, " from-env \n")
    assert token_from(str(path), PREFIX) == "from-file"
    assert token_from(None, PREFIX) == "from-env"
    assert read_token(None, PREFIX) == "from-env"
    monkeypatch.setenv(TOKEN_ENV, "  ")
    assert token_from(None, PREFIX) is None
    with pytest.raises(UsageError, match=f"no token: pass --token-file PATH or set \\${TOKEN_ENV}"):
        read_token(None, PREFIX)


# ----- each command, as a user runs it ---------------------------------------------------------


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    return subprocess.run(
        [sys.executable, "-m", "jupyter_colab_tunnel.launcher", *args],
        capture_output=True,
        text=True,
        timeout=60,  # a reader that waits on a FIFO fails here instead of hanging
        env={**env, "HOME": str(home)},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def commands(token_file: Path, home: Path) -> dict[str, tuple[list[str], str]]:
    """Each local command reading `token_file`, and the prefix of its lines."""
    dead = f"http://127.0.0.1:{free_port()}/"
    data = home / "data.csv"
    data.write_text("1\n")
    return {
        "connect": (
            ["connect", "--check", "--url", dead, "--token-file", str(token_file)],
            "[colab-tunnel relay]",
        ),
        # --timeout 0 is refused right after the token is read: nothing is asked of the remote.
        "mcp": (
            ["mcp", "--url", dead, "--token-file", str(token_file), "--timeout", "0"],
            "[colab-tunnel mcp]",
        ),
        "ports": (
            ["ports", "--url", dead, "--token-file", str(token_file), "--timeout", "0"],
            "[colab-tunnel ports]",
        ),
        "cp": (
            [
                "cp",
                "--wait",
                "0",
                "--url",
                dead,
                "--token-file",
                str(token_file),
                str(data),
                "remote:",
            ],
            "[colab-tunnel cp]",
        ),
    }


@pytest.mark.e2e  # real command processes
@pytest.mark.parametrize("command", ["connect", "mcp", "ports", "cp"])
def test_every_command_refuses_a_fifo_at_once(tmp_path: Path, command: str) -> None:
    token_file = fifo(tmp_path / "token")
    args, prefix = commands(token_file, tmp_path)[command]
    done = run(tmp_path, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"the token file {token_file} is not a regular file" in done.stderr
    assert done.stderr.startswith(prefix), done.stderr


@pytest.mark.e2e  # real command processes
@pytest.mark.parametrize("command", ["connect", "mcp", "ports", "cp"])
def test_every_command_warns_in_its_own_words(tmp_path: Path, command: str) -> None:
    token_file = secret(tmp_path / "token", mode=0o644)
    args, prefix = commands(token_file, tmp_path)[command]
    done = run(tmp_path, *args)
    warning = f"{prefix} warning: {token_file} is readable by other users; `chmod 600 {token_file}`"
    assert warning in done.stderr.splitlines(), done.stderr
    assert SECRET not in done.stdout + done.stderr
    token_file.chmod(0o600)
    assert "warning" not in run(tmp_path, *args).stderr
