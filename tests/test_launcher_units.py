"""The launcher's pure parts, in milliseconds: the poll loop, when to stop waiting, the state
record's identity checks, the renderings, the ports, the CLI registry."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from jupyter_colab_tunnel import cli
from jupyter_colab_tunnel.launcher import (
    RESERVED_PORTS,
    Connection,
    LaunchError,
    launch,
    pick_port,
    server,
)
from jupyter_colab_tunnel.launcher import record as rec
from jupyter_colab_tunnel.launcher.connection import NO_URL_HINT, Block, Fact, sections
from jupyter_colab_tunnel.launcher.launching import LaunchOptions
from jupyter_colab_tunnel.launcher.poll import poll
from jupyter_colab_tunnel.launcher.watch import GIVE_UP_AFTER, TunnelWatch
from jupyter_colab_tunnel.problems import HINTS, Problem
from jupyter_colab_tunnel.subcommand import Subcommand

TOKEN = "t" * 48


# ----- the poll loop -----------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_poll_returns_the_first_answer() -> None:
    clock = FakeClock()
    answers = iter([None, None, "done", "later"])
    assert poll(lambda: next(answers), 110.0, 0.25, clock=clock, sleep=clock.sleep) == "done"
    assert clock.sleeps == [0.25, 0.25]


def test_poll_gives_none_at_the_deadline_without_sleeping_past_it() -> None:
    clock = FakeClock()
    calls = []

    def probe() -> None:
        calls.append(clock.now)

    assert poll(probe, 100.6, 0.25, clock=clock, sleep=clock.sleep) is None
    assert clock.sleeps == [0.25, 0.25, pytest.approx(0.1)]
    assert calls[-1] == pytest.approx(100.6)  # one last look at the deadline
    assert len(calls) == 4


def test_poll_asks_once_even_when_the_deadline_has_passed() -> None:
    clock = FakeClock()
    assert poll(lambda: 7, 50.0, clock=clock, sleep=clock.sleep) == 7
    assert poll(lambda: None, 50.0, clock=clock, sleep=clock.sleep) is None
    assert clock.sleeps == []


def test_poll_lets_the_probe_raise() -> None:
    clock = FakeClock()

    def probe() -> None:
        raise LaunchError("server_exited", "gone")

    with pytest.raises(LaunchError, match="gone"):
        poll(probe, 110.0, clock=clock, sleep=clock.sleep)


# ----- when to stop waiting for the tunnel -------------------------------------------------


def _body(state: str, restarts: int = 0, kind: str | None = None, **more: Any) -> dict[str, Any]:
    error = {"kind": kind, "message": f"{kind} happened", "hint": "h"} if kind else None
    return {"state": state, "restarts": restarts, "error": error, **more}


def test_settled_states_end_the_wait() -> None:
    for state in ("ready", "failed", "off", "stopped"):
        assert TunnelWatch().observe(_body(state)).stop == "settled"
    for state in ("starting", "connecting", "backoff", "stopping"):
        assert TunnelWatch().observe(_body(state)).stop is None


def test_the_same_error_three_times_in_a_row_ends_the_wait() -> None:
    watch = TunnelWatch(give_up_after=3)
    seen = [
        watch.observe(_body("starting")),
        watch.observe(_body("backoff", 0, "network")),
        watch.observe(_body("starting", 1, "network")),
        watch.observe(_body("backoff", 1, "network")),
        watch.observe(_body("backoff", 1, "network")),  # the same backoff polled twice
        watch.observe(_body("starting", 2, "network")),
        watch.observe(_body("backoff", 2, "network")),
    ]
    assert [s.stop for s in seen] == [None] * 6 + ["repeating"]
    assert seen[-1].why == "`network` 3 times in a row"
    # Each line once: the cycle starting/backoff does not print the same thing again.
    lines = [s.line for s in seen if s.line]
    assert lines == ["tunnel starting", "tunnel backoff (network)"]


def test_a_backoff_missed_between_two_polls_still_counts() -> None:
    watch = TunnelWatch(give_up_after=3)
    assert watch.observe(_body("backoff", 4, "network")).stop is None
    assert watch.observe(_body("backoff", 6, "network")).stop == "repeating"


def test_another_error_or_a_restart_by_request_starts_a_new_streak() -> None:
    watch = TunnelWatch(give_up_after=2)
    assert watch.observe(_body("backoff", 0, "network")).stop is None
    assert watch.observe(_body("backoff", 1, "url_timeout")).stop is None
    assert watch.observe(_body("backoff", 2, "url_timeout")).stop == "repeating"
    watch = TunnelWatch(give_up_after=2)
    assert watch.observe(_body("backoff", 5, "network")).stop is None
    assert watch.observe(_body("backoff", 0, "network")).stop is None  # POST restart: 0 again
    assert watch.observe(_body("backoff", 1, "network")).stop == "repeating"


def test_give_up_after_none_waits_for_the_timeout() -> None:
    watch = TunnelWatch(give_up_after=None)
    assert all(watch.observe(_body("backoff", n, "network")).stop is None for n in range(50))


def test_a_retry_due_after_the_deadline_ends_the_wait() -> None:
    watch = TunnelWatch(give_up_after=3)
    body = _body("backoff", 0, "rate_limited", next_retry_at="2030-01-01T00:01:00Z")
    deadline = 1893456000.0  # 2030-01-01T00:00:00Z
    seen = watch.observe(body, deadline_epoch=deadline)
    assert seen.stop == "late_retry"
    assert seen.why == "`rate_limited`, and the next retry comes 60s after the timeout"
    assert TunnelWatch().observe(body, deadline_epoch=deadline + 120).stop is None


def test_progress_names_the_error_only_where_it_is_the_reason() -> None:
    watch = TunnelWatch()
    # After a backoff, the old error is still in the answer while starting again.
    assert watch.observe(_body("starting", 1, "network")).line == "tunnel starting"
    assert watch.observe(_body("connecting", 1, "network")).line == "tunnel connecting"
    failed = watch.observe(_body("failed", 1, "crash_loop"))
    assert failed.line == "tunnel failed (crash_loop)"
    url = {"gateway_url": "https://a.trycloudflare.com"}
    assert watch.observe(_body("ready", connect=url)).line == (
        "tunnel ready https://a.trycloudflare.com"
    )


# ----- the state record ----------------------------------------------------------------------

HERE = rec.PythonEnv("/venv/a", "/venv/a/bin/python3.12")


def _record(**changes: Any) -> rec.ServerRecord:
    base = rec.ServerRecord(
        pid=4242,
        create_time=1000.0,
        python=HERE,
        port=8888,
        token=TOKEN,
        log_path="/x/server.log",
        root_dir="/content",
    )
    return replace(base, **changes)


SERVER_CMD = ("/venv/a/bin/python3.12", "-m", "jupyter_server", "--port=8888")


def test_identify_by_pid_creation_time_and_environment() -> None:
    record = _record()
    facts = rec.ProcessFacts(1000.0, SERVER_CMD, zombie=False)
    assert rec.identify(record, facts, HERE) == "ours"
    assert rec.identify(record, None, HERE) == "gone"
    assert rec.identify(record, replace(facts, zombie=True), HERE) == "gone"
    # A recycled pid: another process, maybe a user's own jupyter server on the same port.
    assert rec.identify(record, replace(facts, create_time=1100.0), HERE) == "replaced"
    # The same server, seen from another virtual environment or another Python.
    assert rec.identify(record, facts, rec.PythonEnv("/venv/b", HERE.executable)) == "other_env"
    assert rec.identify(record, facts, rec.PythonEnv(HERE.prefix, "/usr/bin/python3.11")) == (
        "other_env"
    )
    # psutil's creation time moves by whole seconds of boot time when the clock is stepped.
    assert rec.identify(record, replace(facts, create_time=1001.0), HERE) == "ours"


def test_record_round_trips_through_json() -> None:
    record = _record(base_url="/u/x/", started_at=5.0)
    assert rec.ServerRecord.from_json(json.loads(json.dumps(record.as_json()))) == record
    assert TOKEN not in repr(record)
    for missing in ("create_time", "python", "pid"):
        data = record.as_json()
        del data[missing]
        with pytest.raises(KeyError):
            rec.ServerRecord.from_json(data)


@pytest.fixture
def sleeper() -> Iterator[psutil.Process]:
    """Some other live process of ours: what a recycled pid would point at."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _write(directory: Path, data: dict[str, Any]) -> None:
    (directory / rec.STATE_FILE).write_text(json.dumps(data))


def test_look_up_forgets_a_recycled_pid_and_leaves_the_process_alone(
    tmp_path: Path, sleeper: psutil.Process
) -> None:
    record = _record(pid=sleeper.pid, create_time=sleeper.create_time() - 100)
    _write(tmp_path, record.as_json())
    found = rec.look_up(tmp_path, rec.PythonEnv.current())
    assert (found.identity, found.pid) == ("replaced", sleeper.pid)
    assert "left alone" in (found.note() or "")
    assert not (tmp_path / rec.STATE_FILE).exists()
    assert not rec.is_process(sleeper.pid, record.create_time, record.port)
    assert server.stop(sleeper.pid, record.create_time, record.port, timeout=1) is False
    assert sleeper.is_running()


def test_look_up_keeps_but_never_adopts_a_server_of_another_environment(
    tmp_path: Path, sleeper: psutil.Process
) -> None:
    other = rec.PythonEnv("/opt/other-venv", "/opt/other-venv/bin/python")
    record = _record(pid=sleeper.pid, create_time=sleeper.create_time(), python=other)
    _write(tmp_path, record.as_json())
    found = rec.look_up(tmp_path, rec.PythonEnv.current())
    assert found.identity == "other_env"
    note = found.note() or ""
    assert "/opt/other-venv" in note
    assert "/opt/other-venv/bin/python -m jupyter_colab_tunnel.launcher stop" in note
    assert (tmp_path / rec.STATE_FILE).exists()  # that environment still needs it
    assert rec.look_up(tmp_path, other).identity == "ours"


def test_look_up_forgets_records_without_identity(tmp_path: Path, sleeper: psutil.Process) -> None:
    # The format before creation time and environment were recorded.
    old = {"pid": sleeper.pid, "port": 8888, "token": TOKEN, "log_path": "/x", "root_dir": "/"}
    _write(tmp_path, old)
    found = rec.look_up(tmp_path)
    assert found.identity == "unverifiable"
    assert f"kill {sleeper.pid}" in (found.note() or "")
    assert not (tmp_path / rec.STATE_FILE).exists()
    assert sleeper.is_running()
    # Of a process that is gone, or unreadable: removed without a word.
    dead = subprocess.Popen(["true"])
    dead.wait()
    for content in (json.dumps({**old, "pid": dead.pid}), "{not json", "[]"):
        (tmp_path / rec.STATE_FILE).write_text(content)
        assert rec.look_up(tmp_path) == rec.Lookup(None)
        assert not (tmp_path / rec.STATE_FILE).exists()


def test_save_is_owner_only_and_forget_checks_the_pid(tmp_path: Path) -> None:
    record = _record()
    rec.save(tmp_path, record)
    path = tmp_path / rec.STATE_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    rec.forget(tmp_path, record.pid + 1)  # a newer launch's record is not ours to remove
    assert path.exists()
    rec.forget(tmp_path, record.pid)
    assert not path.exists()


def test_new_record_identifies_this_process(tmp_path: Path) -> None:
    me = rec.new_record(os.getpid(), port=1, token=TOKEN, log_path="/x", root_dir="/", base_url="/")
    assert me.python == rec.PythonEnv.current()
    assert me.python.prefix == os.path.realpath(sys.prefix)
    facts = rec.process_facts(os.getpid())
    assert facts is not None
    assert rec.identify(me, facts, rec.PythonEnv.current()) == "ours"


# ----- renderings -------------------------------------------------------------------------------


def _conn(**changes: Any) -> Connection:
    conn = Connection(port=8888, token=TOKEN, pid=321, log_path="/x.log", root_dir="/content")
    for key, value in changes.items():
        setattr(conn, key, value)
    return conn


def _labels(conn: Connection) -> list[str]:
    return [p.label if isinstance(p, Fact) else p.lang for p in sections(conn)]


def test_a_ready_connection_shows_token_command_config_and_mcp() -> None:
    conn = _conn(state="ready", gateway_url="https://a.trycloudflare.com")
    assert _labels(conn) == [
        "Jupyter server",
        "Tunnel",
        "Dashboard",
        "Token",
        "bash",
        "bash",
        "python",
        "json",
    ]
    text, markdown = str(conn), conn._repr_markdown_()
    assert "Tunnel: ready  https://a.trycloudflare.com" in text
    assert (
        "Dashboard: http://127.0.0.1:8888/colab/ (through the tunnel: "
        "https://a.trycloudflare.com/colab/); add ?token=<token> the first time"
    ) in text
    assert "**Dashboard** `http://127.0.0.1:8888/colab/` (through the tunnel: " in markdown
    assert f"Token: {TOKEN}" in text
    # The relay's commands: the token into a private file (the shell's printf: in no argv),
    # the relay, then JupyterLab through it; no token on any command line.
    relay = (
        f"(umask 077; printf '%s\\n' '{TOKEN}' > ~/.colab-token)\n"
        "jupyter colab-tunnel connect --url https://a.trycloudflare.com --token-file ~/.colab-token"
    )
    assert "\n".join(f"    {line}" for line in relay.splitlines()) in text
    assert f"```bash\n{relay}\n```" in markdown
    lab = 'JUPYTER_GATEWAY_AUTH_TOKEN="$(cat ~/.jupyter-colab-tunnel/relay_token)" jupyter lab'
    assert f"    {lab} --gateway-url=http://127.0.0.1:18888 " in text
    assert f"```bash\n{lab} --gateway-url=http://127.0.0.1:18888 " in markdown
    for shown in (text, markdown):
        assert "--GatewayClient.auth_token" not in shown
        assert sum(TOKEN in line for line in shown.splitlines()) == 2  # Token, and the printf
    for line in (
        'c.GatewayClient.url = "http://127.0.0.1:18888"',
        'c.GatewayClient.auth_token = Path("~/.jupyter-colab-tunnel/relay_token")',
        "c.GatewayClient.request_timeout = 120.0",
        "c.GatewayClient.connect_timeout = 60.0",
    ):
        assert f"    {line}" in text
        assert line in markdown
    assert "jupyter_lab_config.py" in text
    assert '"JUPYTER_URL": "http://localhost:8888"' in text
    assert '"http://127.0.0.1:18888",' in text  # `jupyter colab-tunnel mcp` through the relay
    assert f"**Token** `{TOKEN}`" in markdown
    assert "**Jupyter server** pid 321, `http://127.0.0.1:8888/` (log: `/x.log`)" in markdown
    assert "```json" in markdown
    assert "Error" not in text


def test_text_and_markdown_show_the_same_sections() -> None:
    states = [
        _conn(state="ready", gateway_url="https://a.trycloudflare.com"),
        _conn(state="backoff", error=Problem("network", "no route")),
        _conn(state="off"),
    ]
    for conn in states:
        text, markdown = str(conn), conn._repr_markdown_()
        for part in sections(conn):
            if isinstance(part, Fact):
                assert f"{part.label}: " in text
                assert f"**{part.label}** " in markdown
            else:
                assert isinstance(part, Block)
                assert part.intro in text
                assert part.code in markdown


def test_a_retrying_tunnel_says_the_server_keeps_running_and_how_to_stop_it() -> None:
    conn = _conn(state="backoff", error=Problem("network", "dial tcp: no such host"))
    text = str(conn)
    assert "Error: network: dial tcp: no such host" in text
    assert f"Hint: {HINTS['network']}" in text
    assert "Server: keeps running, and the tunnel keeps retrying in the background" in text
    assert "conn.stop()" in text
    assert "`jupyter colab-tunnel stop`" in text
    assert "--gateway-url" not in text
    assert TOKEN not in text
    failed = str(_conn(state="failed", error=Problem("invalid_token", "bad")))
    assert "Server: keeps running. Stop it:" in failed  # a failed tunnel does not retry
    assert "retrying" not in failed


def test_without_a_tunnel_the_dashboard_is_the_local_one() -> None:
    text = str(_conn(state="off"))
    assert "Dashboard: http://127.0.0.1:8888/colab/; add ?token=<token> the first time" in text
    assert "through the tunnel" not in text


def test_a_hidden_token_says_where_it_is() -> None:
    assert "Token: not shown without a tunnel to connect through (conn.token)" in str(
        _conn(state="off")
    )
    recorded = _conn(state="starting", record_path="/root/.jupyter-colab-tunnel/server.json")
    assert 'conn.token in Python, or "token" in /root/.jupyter-colab-tunnel/server.json' in str(
        recorded
    )
    assert TOKEN not in str(recorded)
    assert TOKEN not in recorded._repr_markdown_()


def test_a_ready_named_tunnel_without_url_says_what_is_missing() -> None:
    conn = _conn(state="ready")
    assert f"Hint: {NO_URL_HINT}" in str(conn)
    assert NO_URL_HINT in conn._repr_markdown_()
    assert "--gateway-url" not in str(conn)


def test_markdown_does_not_render_html_or_emphasis_from_messages() -> None:
    message = "Error unmarshaling: <html>error code: 1015</html> *bold*"
    markdown = _conn(state="backoff", error=Problem("rate_limited", message))._repr_markdown_()
    assert "<html>" not in markdown
    assert "&lt;html&gt;error code: 1015&lt;/html&gt; \\*bold\\*" in markdown


def test_connection_refresh_reads_a_tunnel_answer() -> None:
    conn = _conn()
    conn.refresh(
        {
            "state": "backoff",
            "connect": {"gateway_url": "https://b.trycloudflare.com"},
            "error": {"kind": "network", "message": "m", "hint": "h"},
        }
    )
    assert (conn.state, conn.gateway_url) == ("backoff", "https://b.trycloudflare.com")
    assert conn.error == Problem("network", "m", "h")
    conn.refresh({"state": "ready", "connect": None, "error": None})
    assert (conn.state, conn.gateway_url, conn.error) == ("ready", None, None)
    assert TOKEN not in repr(conn)


# ----- ports --------------------------------------------------------------------------------


def test_pick_port_skips_taken_and_reserved_ports() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert pick_port(None, start=port) != port
        with pytest.raises(LaunchError) as busy:
            pick_port(port)
        assert busy.value.kind == "port_in_use"
    assert pick_port(None, start=8080) != 8080
    assert pick_port(None, start=9000) != 9000
    for reserved in (8080, 9000):
        with pytest.raises(ValueError, match="reserved on Colab"):
            pick_port(reserved)


def test_colab_ports_are_never_picked() -> None:
    # The ports the docs promise are never used: "never 8080, 9000, 6000 or 3453".
    doc = (Path(__file__).parent.parent / "docs" / "colab.md").read_text()
    promised = re.search(r"never ((?:\d+, )*\d+ or \d+)", doc)
    assert promised is not None
    assert set(map(int, re.findall(r"\d+", promised.group(1)))) == RESERVED_PORTS
    for port in sorted(RESERVED_PORTS):
        with pytest.raises(ValueError, match="reserved on Colab"):
            pick_port(port)
        assert pick_port(None, start=port) != port


# ----- CLI and arguments ----------------------------------------------------------------------


def test_a_subcommand_is_one_registration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name")

    def run(args: argparse.Namespace, rest: list[str]) -> int:
        print(f"hello {args.name}")
        return 7

    extra = Subcommand("hello", "say hello", None, configure, run)
    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, extra])
    assert cli.main(["hello", "--name", "you"]) == 7
    assert capsys.readouterr().out == "hello you\n"
    with pytest.raises(SystemExit) as refused:
        cli.main(["hello", "--ColabTunnelApp.x=1"])  # only launch passes options on
    assert refused.value.code == 2
    names = [c.name for c in cli.SUBCOMMANDS]
    assert names[:3] == ["launch", "status", "stop"]


def test_launch_keeps_its_signature_and_its_options_are_its_parameters() -> None:
    # launch()'s keyword signature is public (notebooks call it): exactly these, in this order.
    pinned = {
        "port": None,
        "token": None,
        "root_dir": None,
        "tunnel_mode": None,
        "timeout": 120.0,
        "log_path": None,
        "extra_args": (),
        "quiet": False,
        "env": None,
        "give_up_after": GIVE_UP_AFTER,
        "connection_file": None,
    }
    parameters = inspect.signature(launch).parameters
    assert {name: p.default for name, p in parameters.items()} == pinned
    assert list(parameters) == list(pinned)
    # One options object carries them on: its fields are the same names and defaults.
    fields = dataclasses.fields(LaunchOptions)
    assert {f.name: f.default for f in fields} == pinned
    assert [f.name for f in fields] == list(pinned)


def test_give_up_after_must_be_positive_or_none() -> None:
    with pytest.raises(ValueError, match="give_up_after"):
        launch(give_up_after=0, quiet=True)
    with pytest.raises(ValueError, match="tunnel_mode"):
        launch(tunnel_mode="fast", quiet=True)


def test_unknown_options_are_named_without_their_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["status", "--tok", "s3cret-value"], ["status", "--tok=s3cret-value"]):
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert "unrecognized arguments: --tok" in err
        assert "s3cret-value" not in err
