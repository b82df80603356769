"""The pure pieces of the tunnel: argv/env building, line parsing, exit classification."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from jupyter_colab_tunnel.problems import Problem
from jupyter_colab_tunnel.tunnel.command import (
    TunnelCommand,
    build_argv,
    build_env,
    normalize_cloudflared_args,
)
from jupyter_colab_tunnel.tunnel.errors import (
    NAMED_NETWORK_HINT,
    RATE_LIMIT_DELAY,
    backoff_delay,
    counts_as_crash,
    fit_to_mode,
    min_delay,
    retryable,
)
from jupyter_colab_tunnel.tunnel.logs import (
    classify_exit,
    parse_line,
    redact,
    split_level,
)

TS = "2026-11-25T22:46:51Z"
TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiI2ZmY0MmFlMiIsInMiOiJzZWNyZXQifQ=="


def test_quick_argv_per_reference() -> None:
    cmd = TunnelCommand(mode="quick", binary="/bin/cloudflared", origin="http://127.0.0.1:8888")
    assert build_argv(cmd) == [
        "/bin/cloudflared", "tunnel", "--no-autoupdate", "--metrics", "127.0.0.1:0",
        "--loglevel", "info", "--grace-period", "5s", "--url", "http://127.0.0.1:8888",
    ]  # fmt: skip


def test_named_argv_keeps_token_out() -> None:
    cmd = TunnelCommand(
        mode="named",
        binary="cloudflared",
        origin="http://127.0.0.1:8888",
        protocol="http2",
        edge_ip_version="4",
        cloudflared_args=("--edge", "region1.v2.argotunnel.com:7844"),
        stop_timeout=2.5,
        token=TOKEN,
    )
    argv = build_argv(cmd)
    assert argv == [
        "cloudflared", "tunnel", "--no-autoupdate", "--metrics", "127.0.0.1:0",
        "--loglevel", "info", "--grace-period", "2.5s", "--protocol", "http2",
        "--edge-ip-version", "4", "--edge", "region1.v2.argotunnel.com:7844", "run",
    ]  # fmt: skip
    assert TOKEN not in " ".join(argv)
    assert TOKEN not in repr(cmd)
    env = build_env(cmd, {"PATH": "/bin", "TUNNEL_METRICS": "x", "TUNNEL_TOKEN": "stray"})
    assert env == {"PATH": "/bin", "TUNNEL_TOKEN": TOKEN}


def test_quick_env_drops_a_stray_token() -> None:
    cmd = TunnelCommand(mode="quick", binary="c", origin="o")
    assert "TUNNEL_TOKEN" not in build_env(cmd, {"TUNNEL_TOKEN": TOKEN})


@pytest.mark.parametrize(
    "args",
    [
        ["--token", "x"],
        ["--token=x"],
        ["-token", "x"],
        ["--url", "http://x"],
        ["--loglevel=x"],
        ["--token x"],
        "--token x",
    ],
)
def test_forbidden_cloudflared_args(args: list[str] | str) -> None:
    error = normalize_cloudflared_args(args)
    assert isinstance(error, Problem)
    assert error.kind == "bad_arguments"
    assert not retryable(error)
    first = args if isinstance(args, str) else args[0]
    flag = first.split("=")[0].split()[0]
    assert f"-{flag.lstrip('-')}" in error.message
    assert "x" not in error.message.split(":")[0].replace("cloudflared_args", "")
    assert " x" not in error.message  # never the value: it may be the token


def test_allowed_cloudflared_args() -> None:
    args = ["--edge", "a:1", "--retries", "3", "--metrics", "127.0.0.1:1"]
    assert normalize_cloudflared_args(args) == args
    assert normalize_cloudflared_args([]) == []
    assert normalize_cloudflared_args("") == []
    # A flag whose value holds a space, given with "=", is one argument on purpose.
    assert normalize_cloudflared_args(["--label=my box"]) == ["--label=my box"]


def test_a_string_is_split_like_a_shell() -> None:
    assert normalize_cloudflared_args("--edge-ip-version 4") == ["--edge-ip-version", "4"]
    assert normalize_cloudflared_args("--label 'my box' --retries=3") == [
        "--label",
        "my box",
        "--retries=3",
    ]


def test_bad_quoting_is_bad_arguments() -> None:
    error = normalize_cloudflared_args("--label 'my box")
    assert isinstance(error, Problem)
    assert error.kind == "bad_arguments"
    assert "No closing quotation" in error.message


@pytest.mark.parametrize(
    ("item", "right"),
    [
        ("--edge-ip-version 4", '["--edge-ip-version", "4"]'),
        ("--edge  region1.v2.argotunnel.com:7844", '["--edge", "region1.v2.argotunnel.com:7844"]'),
        ("--protocol\thttp2", '["--protocol", "http2"]'),
    ],
)
def test_flag_and_value_in_one_item_is_refused_with_the_right_form(item: str, right: str) -> None:
    error = normalize_cloudflared_args(["--no-tls-verify", item])
    assert isinstance(error, Problem)
    assert error.kind == "bad_arguments"
    assert repr(item) in error.message
    assert right in error.message
    assert error.hint  # what to do, beyond the right form


def test_url_from_the_box_not_from_the_error_line() -> None:
    box = f"{TS} INF |  https://sample-words-here-test.trycloudflare.com                 |"
    assert parse_line(box) is not None
    assert parse_line(box).url == "https://sample-words-here-test.trycloudflare.com"  # type: ignore[union-attr]
    dns = (
        'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp: '
        "lookup api.trycloudflare.com on 10.255.255.53:53: no such host"
    )
    event = parse_line(dns)
    assert event is None or event.url is None


def test_metrics_and_registered_lines() -> None:
    m = parse_line(f"{TS} INF Starting metrics server on 127.0.0.1:42749/metrics")
    assert m is not None
    assert m.metrics == "127.0.0.1:42749"
    r = parse_line(
        f"{TS} INF Registered tunnel connection connIndex=0 connection=abc event=0 "
        "ip=198.41.200.13 location=fra08 protocol=quic"
    )
    assert r is not None
    assert r.registered


def test_json_lines() -> None:
    line = '{"level":"info","message":"Starting metrics server on 127.0.0.1:5/metrics","time":"t"}'
    assert split_level(line)[0] == "INF"
    event = parse_line(line)
    assert event is not None
    assert event.metrics == "127.0.0.1:5"
    assert split_level('{"level":"error","message":"boom"}') == ("ERR", "boom")


def test_redact() -> None:
    assert redact(f"token={TOKEN} ok", [TOKEN]) == "token=***** ok"
    assert redact("nothing", [""]) == "nothing"


def test_classify_usage_error_exit_zero() -> None:
    stdout = ["Incorrect Usage. flag provided but not defined: -bogus", "", "NAME:"]
    e = classify_exit(0, [], stdout)
    assert (e.kind, retryable(e)) == ("bad_arguments", False)
    assert e.message == "Incorrect Usage. flag provided but not defined: -bogus"
    assert e.hint


def test_classify_invalid_token() -> None:
    e = classify_exit(
        255, ["Provided Tunnel token is not valid.", "See 'cloudflared tunnel run --help'."], []
    )
    assert (e.kind, retryable(e)) == ("invalid_token", False)
    assert e.message == "Provided Tunnel token is not valid."


def test_classify_dns_failure() -> None:
    line = (
        'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp: '
        "lookup api.trycloudflare.com on 10.255.255.53:53: no such host"
    )
    e = classify_exit(
        1, [f"{TS} INF Requesting new quick Tunnel on trycloudflare.com...", line], []
    )
    assert (e.kind, retryable(e), e.message) == ("network", True, line)


def test_classify_rate_limit() -> None:
    lines = [
        f"{TS} ERR Error unmarshaling QuickTunnel response: <html>error code: 1015</html> "
        'error="invalid character \'<\' looking for beginning of value" status_code="429 Too Many Requests"',
        "failed to unmarshal quick Tunnel: invalid character '<' looking for beginning of value",
    ]
    e = classify_exit(1, lines, [])
    assert e.kind == "rate_limited"
    assert retryable(e)
    assert min_delay(e) == RATE_LIMIT_DELAY


@pytest.mark.parametrize(
    ("kind", "counts"),
    [
        ("crashed", True),
        ("stalled", True),
        ("url_timeout", True),
        ("metrics_port_in_use", True),
        ("network", False),  # an outage: retried for as long as it lasts
        ("rate_limited", False),
        ("invalid_token", False),  # not retried at all
    ],
)
def test_what_counts_towards_crash_loop(kind: Any, counts: bool) -> None:
    assert counts_as_crash(Problem(kind, "m")) is counts


def test_backoff_is_exponential_capped_with_equal_jitter() -> None:
    for attempt, base in enumerate([1.0, 2.0, 4.0, 8.0, 10.0, 10.0]):
        delays = [backoff_delay(attempt, 1.0, 10.0) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays)
        assert max(delays) - min(delays) > base / 10  # jittered, not constant
    assert 2.5 <= backoff_delay(0, 5.0, 2.0) <= 5.0  # a cap below the start is the start
    assert backoff_delay(10_000, 1.0, 60.0) <= 60.0  # no overflow


def test_network_hint_fits_the_mode() -> None:
    problem = Problem("network", "no such host")
    assert fit_to_mode(problem, "quick") == problem
    named = fit_to_mode(problem, "named")
    assert named.hint == NAMED_NETWORK_HINT
    assert (named.kind, named.message) == ("network", "no such host")
    assert fit_to_mode(Problem("crashed", "x"), "named").hint == Problem("crashed", "x").hint


def test_setpriv_exec_failure_is_binary_unavailable() -> None:
    line = "setpriv: failed to execute /opt/cloudflared: No such file or directory"
    assert classify_exit(127, [line], []) == Problem("binary_unavailable", line)
    assert classify_exit(127, ["something else"], []).kind == "crashed"


def test_classify_metrics_port_in_use() -> None:
    line = (
        f'{TS} ERR Error opening metrics server listener error="failed to bind to address '
        '(127.0.0.1:20241): listen tcp 127.0.0.1:20241: bind: address already in use"'
    )
    assert classify_exit(1, [line], []).kind == "metrics_port_in_use"


def test_classify_signal_and_unknown() -> None:
    e = classify_exit(-signal.SIGKILL, [], [])
    assert (e.kind, e.message) == ("crashed", "cloudflared was killed by signal SIGKILL")
    assert classify_exit(3, [f"{TS} ERR something odd"], []).message == "something odd"
    assert classify_exit(0, [], []).kind == "crashed"


def test_line_splitter_bounds_lines() -> None:
    from jupyter_colab_tunnel.tunnel.lines import LineSplitter

    s = LineSplitter(max_line=8)
    assert s.feed(b"ab") == []
    assert s.feed(b"c\nde\nf") == [b"abc", b"de"]
    # An overlong line: its head once, the rest dropped up to the newline.
    assert s.feed(b"ghijklmnopq") == [b"fghijklm"]
    assert s.feed(b"rstuvwxyz" * 1000) == []
    assert s.feed(b"z\nnext\n") == [b"next"]
    assert s.feed(b"tail without newline") == [b"tail wit"]
    assert s.close() == []
    s.feed(b"last")
    assert s.close() == [b"last"]
