"""`jupyter colab-tunnel cp` as a real process (testkit/cp_process.py) against a real `jupyter
server` behind the cloudflared stand-in's quick tunnel, found through its connection file:
files up and back identical, a tree with -r then --update moving nothing, interrupted
transfers resumed by running the command again, and the bad inputs refused with their exit
code, message and hint."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from relay_env import start_relay
from server_process import start_server
from tunnel_env import TunnelServer, start_tunnel_server

from testkit.relay_process import EDGE_ROOT_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Remote:
    tunnel: TunnelServer
    workdir: Path
    connection_file: Path
    token_file: Path

    @property
    def root(self) -> Path:
        return self.tunnel.server.root_dir

    def cp(
        self, *args: str, cwd: Path, token_file: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args, token_file=token_file),
            env=self.env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    def command(self, *args: str, token_file: Path | None = None) -> list[str]:
        return [
            sys.executable,
            str(REPO / "testkit" / "cp_process.py"),
            "--connection-file",
            str(self.connection_file),
            "--token-file",
            str(token_file or self.token_file),
            *args,
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_COLAB_TUNNEL")}
        env[EDGE_ROOT_ENV] = str(self.workdir)
        return env


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    workdir = tmp_path_factory.mktemp("cp")
    connection_file = workdir / "drive" / "colab-tunnel.json"
    tunnel = start_tunnel_server(
        workdir / "remote",
        traits={"connection_file": str(connection_file), "tunnel_mode": "quick"},
    )
    try:
        tunnel.wait_state("ready")
        token_file = workdir / "token"
        token_file.write_text(tunnel.server.token + "\n")
        token_file.chmod(0o600)
        yield Remote(tunnel, workdir, connection_file, token_file)
    finally:
        tunnel.server.stop()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summary(out: str) -> dict[str, int]:
    """The numbers of cp's summary line."""
    match = re.search(
        r"(\d+) files? copied, (\d+) bytes .*?(?:, (\d+) unchanged \(skipped\))?; resumed (\d+) "
        r"\(from (\d+) bytes already there, (\d+) cuts waited out\), (\d+) bytes sent again",
        out,
    )
    assert match, out
    keys = ("files", "bytes", "skipped", "resumed", "already_there", "cuts", "sent_again")
    return {k: int(v or 0) for k, v in zip(keys, match.groups(), strict=True)}


def test_a_file_goes_up_and_comes_back_identical(remote: Remote, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 12345)
    (tmp_path / "data.bin").write_bytes(data)
    (remote.root / "up").mkdir()
    done = remote.cp("data.bin", "remote:up/", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (remote.root / "up" / "data.bin").read_bytes() == data
    assert summary(done.stdout)["bytes"] == len(data)
    assert [p.name for p in (remote.root / "up").iterdir()] == ["data.bin"]  # no partial left
    done = remote.cp("remote:up/data.bin", "back.bin", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "back.bin").read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.bin", "data.bin"]
    # The local directories a download needs are made.
    done = remote.cp("remote:up/data.bin", "new/deeper/data.bin", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "new" / "deeper" / "data.bin").read_bytes() == data
    shutil.rmtree(tmp_path / "new")
    # An absolute remote path inside the root is the same file.
    done = remote.cp(f"remote:{remote.root}/up/data.bin", "abs.bin", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sha(tmp_path / "abs.bin") == hashlib.sha256(data).hexdigest()
    assert remote.tunnel.server.token not in done.stdout + done.stderr


def test_an_empty_file_goes_up_and_down(remote: Remote, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    # A partial left by an older upload to the same name is emptied, not committed.
    (remote.root / ".empty.txt.colab-partial").write_bytes(b"stale bytes")
    done = remote.cp("empty.txt", "remote:", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (remote.root / "empty.txt").read_bytes() == b""
    assert not (remote.root / ".empty.txt.colab-partial").exists()
    done = remote.cp("remote:empty.txt", "back.txt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "back.txt").read_bytes() == b""


def limit_file_size(limit: int) -> Callable[[], None]:
    """For a child: files larger than `limit` cannot be written (EFBIG, a full disk's kin)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_local_disk_fails_the_file_removes_the_partial_and_keeps_the_target(
    remote: Remote, tmp_path: Path
) -> None:
    (remote.root / "large.bin").write_bytes(os.urandom(6 * MiB))
    (remote.root / "small.txt").write_text("fits")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "large.bin").write_bytes(b"the old target")
    done = subprocess.run(
        remote.command("remote:large.bin", "remote:small.txt", "out"),
        env=remote.env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size(2 * MiB),
    )
    assert done.returncode == 1, done.stderr
    assert "remote:large.bin: local_disk_full: this machine's disk is full" in done.stderr
    assert "Hint: " in done.stderr
    assert (tmp_path / "out" / "large.bin").read_bytes() == b"the old target"
    assert (tmp_path / "out" / "small.txt").read_text() == "fits"  # the other file was copied
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["large.bin", "small.txt"]
    assert "1 failed" in done.stdout


def make_tree(top: Path, files: int) -> None:
    for i in range(files):
        path = top / f"d{i % 3}" / ("deep" if i % 2 else "") / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(100 * i))
    (top / "empty").mkdir()


def tree(top: Path) -> dict[str, str]:
    return {
        str(p.relative_to(top)): (sha(p) if p.is_file() else "dir") for p in sorted(top.rglob("*"))
    }


def test_a_tree_goes_up_with_r_then_update_moves_none(remote: Remote, tmp_path: Path) -> None:
    make_tree(tmp_path / "tree", 24)
    done = remote.cp("-r", "tree", "remote:", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert tree(remote.root / "tree") == tree(tmp_path / "tree")
    assert summary(done.stdout)["files"] == 24
    done = remote.cp("-r", "--update", "tree", "remote:", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    counts = summary(done.stdout)
    assert (counts["files"], counts["bytes"], counts["skipped"]) == (0, 0, 24)
    # One file changed: only it moves.
    (tmp_path / "tree" / "d1" / "deep" / "f1.txt").write_bytes(b"changed")
    done = remote.cp("-r", "--update", "tree", "remote:", cwd=tmp_path)
    assert (summary(done.stdout)["files"], summary(done.stdout)["skipped"]) == (1, 23)
    assert (remote.root / "tree" / "d1" / "deep" / "f1.txt").read_bytes() == b"changed"
    # And down: a new directory becomes the copy; into an existing one it lands inside it.
    done = remote.cp("-r", "remote:tree", "back", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert tree(tmp_path / "back") == tree(tmp_path / "tree")
    (tmp_path / "into").mkdir()
    done = remote.cp("-r", "remote:tree", "into", cwd=tmp_path)
    assert tree(tmp_path / "into" / "tree") == tree(tmp_path / "tree")
    done = remote.cp("-r", "--update", "remote:tree", "into", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    counts = summary(done.stdout)
    assert (counts["files"], counts["bytes"], counts["skipped"]) == (0, 0, 24), done.stdout


def test_several_files_into_a_directory(remote: Remote, tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
    (remote.root / "many").mkdir()
    done = remote.cp("a.txt", "b.txt", "remote:many", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (remote.root / "many").iterdir()) == ["a.txt", "b.txt"]
    (tmp_path / "down").mkdir()
    done = remote.cp("remote:many/a.txt", "remote:many/b.txt", "down", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "down" / "b.txt").read_text() == "b.txt"
    # A local directory that does not exist yet is made (as gsutil does; not on the remote).
    done = remote.cp("remote:many/a.txt", "remote:many/b.txt", "new/figures/", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "new" / "figures").iterdir()) == ["a.txt", "b.txt"]
    done = remote.cp("remote:many/a.txt", "one/", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "one" / "a.txt").read_text() == "a.txt"
    done = remote.cp("a.txt", "b.txt", "remote:not-there/", cwd=tmp_path)
    assert done.returncode == 2
    assert ": path_not_found: " in done.stderr


def kill_when(
    proc: subprocess.Popen[str], partial: Path, size: int, sig: int = signal.SIGKILL
) -> int:
    """Signal `proc` once `partial` holds some but not all of `size` bytes; its size then."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "cp ended before it could be interrupted"
        try:
            held = partial.stat().st_size
        except FileNotFoundError:
            held = 0
        if 0 < held < size:
            proc.send_signal(sig)
            proc.wait(30)
            return held
        time.sleep(0.002)
    raise AssertionError("the partial never grew")


def test_an_interrupted_upload_resumes_from_the_bytes_already_there(
    remote: Remote, tmp_path: Path
) -> None:
    size = 96 * MiB
    source = tmp_path / "big.bin"
    with source.open("wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    proc = subprocess.Popen(
        remote.command("--quiet", "big.bin", "remote:"),
        env=remote.env(),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    kill_when(proc, remote.root / ".big.bin.colab-partial", size)
    assert not (remote.root / "big.bin").exists()  # never half-written under its own name
    done = remote.cp("big.bin", "remote:", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    counts = summary(done.stdout)
    assert counts["resumed"] == 1
    assert 0 < counts["already_there"] < size
    assert counts["sent_again"] == 0
    assert sha(remote.root / "big.bin") == sha(source)
    assert not (remote.root / ".big.bin.colab-partial").exists()


def test_a_download_stopped_by_ctrl_c_exits_130_and_resumes_with_the_old_target_kept(
    remote: Remote, tmp_path: Path
) -> None:
    size = 96 * MiB
    with (remote.root / "down.bin").open("wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    (tmp_path / "down.bin").write_bytes(b"the old target")
    proc = subprocess.Popen(
        remote.command("--quiet", "remote:down.bin", "down.bin"),
        env=remote.env(),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_when(proc, tmp_path / ".down.bin.colab-partial", size, signal.SIGINT)
    assert proc.returncode == 130
    assert proc.stderr is not None
    assert "running the same command again resumes" in proc.stderr.read()
    assert 0 < (tmp_path / ".down.bin.colab-partial").stat().st_size < size
    assert (tmp_path / "down.bin").read_bytes() == b"the old target"
    done = remote.cp("remote:down.bin", "down.bin", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    counts = summary(done.stdout)
    assert counts["resumed"] == 1
    assert 0 < counts["already_there"] < size
    assert sha(tmp_path / "down.bin") == sha(remote.root / "down.bin")
    assert not (tmp_path / ".down.bin.colab-partial").exists()


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (["missing.txt", "remote:"], "path_not_found"),
        (["adir", "remote:"], "is_a_directory"),
        (["remote:rdir", "out"], "is_a_directory"),
        (["a.txt", "remote:rfile/"], "not_a_directory"),
        (["-r", "adir", "remote:rfile"], "not_a_directory"),
        (["remote:nothing-here", "."], "path_not_found"),
        (["remote:rfile", "a.txt/below/x"], "not_a_directory"),
        (["a.txt", "remote:no/such/dir/a.txt"], "path_not_found"),
        (["a.txt", "remote:../outside.txt"], "path_outside_root"),
        (["a.txt", "remote:/etc/outside.txt"], "path_outside_root"),
        (["remote:rdir/../../etc/passwd", "."], "path_outside_root"),
    ],
)
def test_bad_input_is_refused_before_any_transfer(
    remote: Remote, tmp_path: Path, args: list[str], kind: str
) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "adir").mkdir()
    (remote.root / "rdir").mkdir(exist_ok=True)
    (remote.root / "rfile").write_text("in the way")
    before = sorted(p.name for p in remote.root.iterdir())
    done = remote.cp(*args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    first = done.stderr.splitlines()[0]
    assert first.startswith("[colab-tunnel cp] ")
    assert f": {kind}: " in first, done.stderr
    assert "Hint: " in done.stderr
    assert sorted(p.name for p in remote.root.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "adir"]
    assert (remote.root / "rfile").read_text() == "in the way"


def test_a_wrong_token_exits_3(remote: Remote, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token\n")
    wrong.chmod(0o600)
    # Signed with another token, the connection file itself is refused...
    done = remote.cp("a.txt", "remote:", cwd=tmp_path, token_file=wrong)
    assert done.returncode == 3, done.stderr
    assert "bad_signature" in done.stderr
    # ... and straight at the tunnel URL, the remote refuses the token.
    url = remote.tunnel.tunnel()["url"]
    command = [a for a in remote.command("a.txt", "remote:", token_file=wrong)]
    at = command.index("--connection-file")
    command[at : at + 2] = ["--url", url]
    done = subprocess.run(
        command, env=remote.env(), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    assert ": forbidden: " in done.stderr
    assert "not-the-token" not in done.stderr
    assert not (remote.root / "a.txt").exists()


def test_cp_started_while_the_tunnel_is_down_waits_for_it(remote: Remote, tmp_path: Path) -> None:
    (tmp_path / "late.txt").write_text("sent once the tunnel is back")
    assert remote.tunnel.post("stop").status == 200
    remote.tunnel.wait_state("stopped")
    try:
        proc = subprocess.Popen(
            remote.command("--wait", "90", "late.txt", "remote:"),
            env=remote.env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        said = proc.stderr.readline()  # it says so, then waits (not an exit 3)
        assert "the remote is away (no_upstream" in said, said
        assert "waiting up to 90 s" in said
    finally:
        assert remote.tunnel.post("start").status == 200
        remote.tunnel.wait_state("ready")
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert summary(out)["files"] == 1
    assert (remote.root / "late.txt").read_text() == "sent once the tunnel is back"


def test_a_server_that_refuses_writes_fails_each_upload_with_its_reason(tmp_path: Path) -> None:
    """A read-only authorizer answers a PUT with 403 before reading its body and closes the
    connection under the body still being sent: that is the remote's refusal, not a cut to
    wait out (exit 1 at once, the reason printed), and reading still works."""
    tests = Path(__file__).parent
    server = start_server(
        tmp_path / "server",
        args=[
            "--ColabTunnelApp.tunnel_mode=off",
            "--ServerApp.authorizer_class=read_only_authorizer.ReadOnlyAuthorizer",
        ],
        env={
            "PYTHONPATH": os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")]))
        },
    )
    try:
        work = tmp_path / "work"
        work.mkdir()
        with (work / "big.bin").open("wb") as f:
            f.write(os.urandom(48 * MiB))  # more than the sockets' buffers take at once
        (work / "small.txt").write_text("x")
        (server.root_dir / "seen.txt").write_text("readable")
        env = {**os.environ, "JUPYTER_COLAB_TUNNEL_TOKEN": server.token}
        command = [sys.executable, str(REPO / "testkit" / "cp_process.py"), "--url", server.url]
        done = subprocess.run(
            [*command, "big.bin", "small.txt", "remote:"],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "big.bin: forbidden: " in done.stderr
        assert "small.txt: forbidden: " in done.stderr
        assert "the remote is away" not in done.stderr
        assert sorted(p.name for p in server.root_dir.iterdir()) == ["seen.txt"]
        done = subprocess.run(
            [*command, "remote:seen.txt", "."], env=env, cwd=work, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert (work / "seen.txt").read_text() == "readable"
    finally:
        server.stop()


def test_through_the_relay_with_its_token(remote: Remote, tmp_path: Path) -> None:
    """`--url` at the local relay with the relay's own token: up and back; the remote token
    stays with the relay, and a wrong relay token is exit 3."""
    relay = start_relay(
        tmp_path / "relay",
        ["--connection-file", str(remote.connection_file), "--token-file", str(remote.token_file)],
        edge_root=remote.workdir,
    )
    try:
        data = os.urandom(2 * MiB + 7)
        (tmp_path / "via.bin").write_bytes(data)
        command = [sys.executable, str(REPO / "testkit" / "cp_process.py"), "--url", relay.url]

        def cp(*args: str, token_file: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*command, "--token-file", str(token_file), *args],
                env=remote.env(),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )

        done = cp("via.bin", "remote:", token_file=relay.token_file)
        assert done.returncode == 0, done.stderr
        assert (remote.root / "via.bin").read_bytes() == data
        done = cp("remote:via.bin", "back.bin", token_file=relay.token_file)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "back.bin").read_bytes() == data
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-relay-token\n")
        wrong.chmod(0o600)
        done = cp("via.bin", "remote:again.bin", token_file=wrong)
        assert done.returncode == 3, done.stderr
        assert ": bad_local_token: " in done.stderr
        assert not (remote.root / "again.bin").exists()
        assert remote.tunnel.server.token not in done.stderr + relay.log()
    finally:
        relay.stop()
