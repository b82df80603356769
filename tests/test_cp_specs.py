"""`cp`'s pure parts: SRC... DST parsing, remote paths against the root, where each source
lands (cp's and scp's rules), the summary line and the errors' shape, and the exit codes of
input refused before anything is dialled."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_colab_tunnel.local.client import RemoteError
from jupyter_colab_tunnel.local.files import specs
from jupyter_colab_tunnel.local.files.answers import cut, fatal_reach
from jupyter_colab_tunnel.local.files.progress import Reporter, Tally, describe
from jupyter_colab_tunnel.local.files.remote import quote_path
from jupyter_colab_tunnel.local.files.specs import Source, SpecError, place, remote_relative
from jupyter_colab_tunnel.local.files.transfer import MAX_IDLE_CUTS, CutCounter, partial_path


def test_direction_up_and_down() -> None:
    up = specs.parse_args(["a.csv", "b", "remote:data/"])
    assert up.upload
    assert [s.path for s in up.sources] == ["a.csv", "b"]
    assert up.target == specs.Location(True, "data/")
    assert up.target.slash
    down = specs.parse_args(["remote:ckpt/model.pt", "."])
    assert not down.upload
    assert down.sources == [specs.Location(True, "ckpt/model.pt")]


@pytest.mark.parametrize(
    ("words", "said"),
    [
        (["a", "b"], "both sides are local"),
        (["remote:a", "remote:b"], "both sides are remote"),
        (["a", "remote:b", "c"], "all local or all remote"),
        (["a"], "at least one source"),
    ],
)
def test_direction_refused(words: list[str], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        specs.parse_args(words)


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("", ""),
        (".", ""),
        ("data.csv", "data.csv"),
        ("./a//b/./c.txt", "a/b/c.txt"),
        ("dir/", "dir"),
        ("/content", ""),
        ("/content/", ""),
        ("/content/data/x.bin", "data/x.bin"),
    ],
)
def test_remote_relative(written: str, sent: str) -> None:
    assert remote_relative(written, "/content") == sent


@pytest.mark.parametrize(
    "written", ["../etc/passwd", "a/../../b", "a/..", "/etc/passwd", "/contents/x", "/"]
)
def test_remote_path_leaving_the_root_is_refused(written: str) -> None:
    with pytest.raises(SpecError) as caught:
        remote_relative(written, "/content")
    assert caught.value.kind == "path_outside_root"
    assert caught.value.path == "remote:" + written


def test_absolute_remote_path_needs_the_root() -> None:
    assert specs.needs_root([specs.Location(True, "/content/a")])
    assert not specs.needs_root([specs.Location(True, "a"), specs.Location(False, "/tmp/a")])
    with pytest.raises(SpecError):
        remote_relative("/content/a", None)


def src(name: str, kind: specs.EntryType = "file") -> Source:
    return Source(name, name, kind, name)


def test_file_into_an_existing_directory_keeps_its_name() -> None:
    placed = place([src("a.txt")], "d", "remote:d", "directory", False, False, join="remote")
    assert [(s.name, t) for s, t in placed] == [("a.txt", "d/a.txt")]
    # The root as target: the name alone.
    placed = place([src("a.txt")], "", "remote:", "directory", False, False, join="remote")
    assert placed[0][1] == "a.txt"


def test_file_to_a_new_or_existing_file_becomes_it() -> None:
    assert place([src("a")], "b", "b", None, False, False)[0][1] == "b"
    assert place([src("a")], "b", "b", "file", False, False)[0][1] == "b"


def test_directory_needs_r() -> None:
    with pytest.raises(SpecError) as caught:
        place([src("d", "directory")], "t", "t", None, False, False)
    assert caught.value.kind == "is_a_directory"
    assert "-r" in caught.value.message


def test_directory_with_r_to_a_new_path_becomes_it_and_into_an_existing_one_lands_inside() -> None:
    assert place([src("d", "directory")], "t", "t", None, False, True)[0][1] == "t"
    assert place([src("d", "directory")], "t", "t", "directory", False, True)[0][1] == os.path.join(
        "t", "d"
    )


def test_directory_onto_a_file_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        place([src("d", "directory")], "t", "t", "file", False, True)
    assert caught.value.kind == "not_a_directory"


def test_several_sources_need_an_existing_directory() -> None:
    for target_type, kind in ((None, "path_not_found"), ("file", "not_a_directory")):
        with pytest.raises(SpecError) as caught:
            place([src("a"), src("b")], "t", "t", target_type, False, False)  # type: ignore[arg-type]
        assert caught.value.kind == kind
    placed = place([src("a"), src("b")], "t", "t", "directory", False, False)
    assert [t for _, t in placed] == [os.path.join("t", "a"), os.path.join("t", "b")]


def test_trailing_slash_means_a_directory() -> None:
    with pytest.raises(SpecError) as caught:
        place([src("a")], "t/", "t/", None, True, False)
    assert caught.value.kind == "path_not_found"
    with pytest.raises(SpecError) as caught:
        place([src("a")], "t/", "t/", "file", True, False)
    assert caught.value.kind == "not_a_directory"


def test_names() -> None:
    assert specs.local_name("some/dir/") == "dir"
    assert specs.local_name("file.txt") == "file.txt"
    assert specs.remote_name("a/b/c.pt") == "c.pt"
    assert specs.remote_name("") == ""
    assert partial_path(os.path.join("x", "model.pt")) == os.path.join(
        "x", ".model.pt.colab-partial"
    )
    assert quote_path("a b/c#d?.txt") == "a%20b/c%23d%3F.txt"


def test_cut_and_fatal_kinds() -> None:
    assert cut(RemoteError("no_upstream", "m", status=503))
    assert cut(RemoteError("connection_refused", "m"))
    assert cut(RemoteError("no_tunnel", "m", status=530))
    assert cut(RemoteError("server_error", "m", status=503))
    assert not cut(RemoteError("path_not_found", "m", status=404))
    assert not cut(RemoteError("forbidden", "m", status=403))
    assert fatal_reach(RemoteError("bad_local_token", "m", status=403))
    assert not fatal_reach(RemoteError("upload_mismatch", "m", status=422))


def test_summary_line_and_error_shape() -> None:
    tally = Tally(files=2, bytes=3 * 1024 * 1024, resumed=1, resumed_bytes=1024, sent_again=5)
    line = tally.line()
    assert line.startswith("[colab-tunnel cp] 2 files copied, 3145728 bytes in ")
    assert "MiB/s" in line
    assert "resumed 1 (from 1024 bytes already there" in line
    assert "5 bytes sent again" in line
    text = describe(RemoteError("path_not_found", "remote:x: no such file"), "remote:x")
    first, hint = text.splitlines()
    assert first == "[colab-tunnel cp] remote:x: path_not_found: remote:x: no such file"
    assert hint.startswith("[colab-tunnel cp] Hint: ")


def run_cp(
    args: list[str], tmp_path: Path, token: str | None = "t0k3n-secret"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_COLAB_TUNNEL_TOKEN"}
    if token:
        env["JUPYTER_COLAB_TUNNEL_TOKEN"] = token
    code = "import sys\nfrom jupyter_colab_tunnel.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, "cp", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.e2e  # the real cp command as a child process
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["a", "b"], "both sides are local"),
        (["remote:a", "remote:b"], "both sides are remote"),
        (["--wait", "-1", "a", "remote:b"], "--wait must be"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], said: str) -> None:
    done = run_cp(["--url", "http://127.0.0.1:9", *args], tmp_path)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr


@pytest.mark.e2e  # the real cp command as a child process
def test_token_on_the_command_line_is_refused_without_echoing_it(tmp_path: Path) -> None:
    done = run_cp(
        ["--url", "http://127.0.0.1:9", "--token", "s3cr3t-value", "a", "remote:b"], tmp_path
    )
    assert done.returncode == 2
    assert "--token-file" in done.stderr
    assert "s3cr3t-value" not in done.stderr + done.stdout


@pytest.mark.e2e  # the real cp command as a child process
def test_no_token_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cp(["--url", "http://127.0.0.1:9", "a", "remote:b"], tmp_path, token=None)
    assert done.returncode == 2
    assert "no token" in done.stderr


@pytest.mark.e2e  # the real cp command as a child process
def test_url_with_a_token_in_it_is_refused(tmp_path: Path) -> None:
    done = run_cp(["--url", "http://127.0.0.1:9/?token=abc123", "a", "remote:b"], tmp_path)
    assert done.returncode == 2
    assert "invalid_url" in done.stderr
    assert "abc123" not in done.stderr


@pytest.mark.e2e  # the real cp command as a child process
def test_nothing_listening_exits_3_and_says_to_start_the_relay(tmp_path: Path) -> None:
    with socket_port() as port:
        pass  # closed again: nothing listens there now
    (tmp_path / "a").write_text("x")
    done = run_cp(["--url", f"http://127.0.0.1:{port}", "a", "remote:b"], tmp_path)
    assert done.returncode == 3, done.stderr
    assert "connection_refused" in done.stderr
    assert "relay" in done.stderr
    assert "t0k3n-secret" not in done.stderr


def socket_port():  # type: ignore[no-untyped-def]
    import contextlib
    import socket

    @contextlib.contextmanager
    def free():  # type: ignore[no-untyped-def]
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        try:
            yield s.getsockname()[1]
        finally:
            s.close()

    return free()


def test_progress_bar_on_a_terminal_and_nothing_with_quiet() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    reporter = Reporter(10 * 1024 * 1024, quiet=False, stream=screen)
    assert reporter.bar is not None
    for _ in range(10):
        reporter.advance(1024 * 1024)
    reporter.bar.refresh()
    shown = screen.getvalue()
    assert "10.0M/10.0M" in shown
    assert "B/s" in shown
    reporter.bar.close()
    quiet = Terminal()
    silent = Reporter(100, quiet=True, stream=quiet)
    assert silent.bar is None
    silent.advance(100)
    assert quiet.getvalue() == ""
    # Not a terminal: no bar (the summary line alone).
    assert Reporter(100, quiet=False, stream=io.StringIO()).bar is None


def test_cuts_that_move_nothing_end_the_transfer() -> None:
    error = RemoteError("unreachable", "cut")
    counter = CutCounter()
    for position in range(0, 100, 10):  # each cut after some progress: waited out, no limit
        counter.cut(position, error)
    assert counter.cuts == 10
    for _ in range(MAX_IDLE_CUTS - 1):
        counter.cut(90, error)
    with pytest.raises(RemoteError) as caught:
        counter.cut(90, error)
    assert caught.value is error
