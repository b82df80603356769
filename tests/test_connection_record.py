"""The connection file's record: signed by the remote, verified by the relay before it follows it.

Pure parts (signing, verifying, the URL rule), the relay's file reader (caps, FIFOs), its
watcher (refuses, keeps its remote, says why once), the `--url` rule on the command line, and
the remote writing signed records from a real in-process server.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest

from jupyter_colab_tunnel.cli import main
from jupyter_colab_tunnel.connection_record import (
    MAX_RECORD_BYTES,
    ConnectionInfo,
    RecordRefused,
    RefusalKind,
    accept_record,
    canonical,
    check_remote_url,
    connection_record,
    record_key,
    sign,
    write_connection_file,
)
from jupyter_colab_tunnel.local.upstream import (
    ConnectionFileWatcher,
    UpstreamTracker,
    read_record_file,
)

LOG = logging.getLogger("test-connection-record")
TOKEN = "remote-token-0123456789abcdef"
OTHER = "someone-elses-token"


def raw(record: dict[str, Any]) -> bytes:
    return json.dumps(record, indent=2).encode()


def refusal(data: bytes, token: str | None, in_use: ConnectionInfo | None = None) -> str:
    with pytest.raises(RecordRefused) as e:
        accept_record(data, token, in_use)
    assert e.value.message  # every refusal says what, and what to do
    assert e.value.hint
    return e.value.kind


def genuine(url: str | None = "https://a-b.trycloudflare.com", **extra: Any) -> dict[str, Any]:
    return {**connection_record(url, "ready", "/", TOKEN), **extra}


# ----- the remote's record ------------------------------------------------------------------


def test_record_is_signed_with_a_key_derived_from_the_token(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "conn.json"
    record = connection_record("https://a-b.trycloudflare.com", "ready", "/user/me/", TOKEN)
    write_connection_file(path, record)
    text = path.read_text()
    body = json.loads(text)
    assert body["url"] == "https://a-b.trycloudflare.com"
    assert body["gateway_url"] == "https://a-b.trycloudflare.com/user/me"
    assert (body["state"], body["updated_at"][-1]) == ("ready", "Z")
    assert TOKEN not in text  # neither the token nor the key is in the file
    assert record_key(TOKEN).hex() not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["conn.json"]  # no temp file left
    # The scheme, spelt out independently: HMAC-SHA256 keyed by HMAC-SHA256(token, context)
    # over the sorted, whitespace-free JSON of every other field.
    key = hmac.new(TOKEN.encode(), b"jupyter-colab-tunnel connection record v1", "sha256")
    fields = {k: v for k, v in body.items() if k != "signature"}
    message = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    assert canonical(body) == message
    assert body["signature"] == hmac.new(key.digest(), message, hashlib.sha256).hexdigest()
    assert record_key(TOKEN) != TOKEN.encode()
    info = accept_record(path.read_bytes(), TOKEN)
    assert (info.live_url, info.token) == ("https://a-b.trycloudflare.com/user/me", None)


def test_token_is_written_only_when_asked() -> None:
    assert "token" not in connection_record(None, "restarting", "/", TOKEN)
    carried = connection_record(None, "restarting", "/", TOKEN, include_token=True)
    assert carried["token"] == TOKEN
    assert accept_record(raw(carried), None).token == TOKEN
    # A server without a token cannot sign: its record is unsigned, and refused.
    unsigned = connection_record("https://x.trycloudflare.com", "ready", "/", None)
    assert "signature" not in unsigned
    assert refusal(raw(unsigned), TOKEN) == "unsigned"
    assert refusal(raw(unsigned), None) == "unsigned"


# ----- what the relay follows ---------------------------------------------------------------


def test_only_a_record_signed_with_the_relays_token_is_followed() -> None:
    good = genuine()
    assert accept_record(raw(good), TOKEN).live_url == "https://a-b.trycloudflare.com"
    # What an older remote (or anyone) wrote without a signature: refused.
    assert refusal(raw({"url": "https://evil.example", "state": "ready"}), TOKEN) == "unsigned"
    # Any field changed after signing: refused.
    for field, value in [
        ("url", "https://evil.example"),
        ("gateway_url", "https://evil.example"),
        ("state", "stopped"),
        ("updated_at", "2099-01-01T00:00:00Z"),
    ]:
        assert refusal(raw({**good, field: value}), TOKEN) == "bad_signature", field
    # Signed by someone with another token (including one written into the record): refused.
    forged = sign({**good, "url": "https://evil.example", "gateway_url": None}, OTHER)
    assert refusal(raw(forged), TOKEN) == "bad_signature"
    assert refusal(raw({**forged, "token": OTHER}), TOKEN) == "bad_signature"
    assert refusal(raw({**good, "signature": "0" * 64}), TOKEN) == "bad_signature"
    assert refusal(raw({**good, "signature": 5}), TOKEN) == "unsigned"
    # Signed, but the relay holds no token and the record carries none: nothing to check with.
    assert refusal(raw(good), None) == "no_key"


def test_without_a_token_of_its_own_the_file_is_the_secret() -> None:
    """Without --token-file, a record that carries the token is checked against that token:
    the file is whole, but whoever can write it chooses (docs/security.md says so)."""
    carried = sign({**genuine(), "token": TOKEN}, TOKEN)
    assert accept_record(raw(carried), None).token == TOKEN
    assert refusal(raw({**carried, "url": "https://evil.example"}), None) == "bad_signature"
    assert refusal(raw({**carried, "token": OTHER}), None) == "bad_signature"
    self_signed = sign({**genuine("https://evil.example"), "token": OTHER}, OTHER)
    assert accept_record(raw(self_signed), None).token == OTHER  # the documented caveat
    assert refusal(raw(self_signed), TOKEN) == "bad_signature"  # why --token-file is better


def test_an_older_record_than_the_one_in_use_is_refused() -> None:
    first = accept_record(raw(genuine("https://one.trycloudflare.com")), TOKEN)
    later = sign(
        {**genuine("https://two.trycloudflare.com"), "updated_at": "2099-01-01T00:00:00.5Z"},
        TOKEN,
    )
    second = accept_record(raw(later), TOKEN, first)
    replayed = sign(
        {**genuine("https://one.trycloudflare.com"), "updated_at": "2026-01-01T00:00:00Z"}, TOKEN
    )
    assert refusal(raw(replayed), TOKEN, second) == "stale"
    # The same record read again (same time) is not a replay.
    assert accept_record(raw(later), TOKEN, second) == second
    # A signed record without a readable time cannot be ordered: refused.
    assert refusal(raw(sign({**genuine(), "updated_at": "yesterday"}, TOKEN)), TOKEN) == (
        "bad_record"
    )


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://a-b.trycloudflare.com", None),
        ("https://jupyter.example.com/base", None),
        ("http://127.0.0.1:8888", None),
        ("http://127.9.9.9:8888/base", None),
        ("http://[::1]:8888", None),
        ("http://localhost:8888", None),
        ("http://LOCALHOST.:8888", None),
        ("http://evil.example", "insecure_url"),
        ("http://192.168.1.5:8888", "insecure_url"),
        ("http://127.0.0.1@evil.example", "insecure_url"),
        ("http://localhost.evil.example", "insecure_url"),
        ("http://[::ffff:10.0.0.1]:80", "insecure_url"),
        ("ftp://x.example", "bad_url"),
        ("https://", "bad_url"),
        ("x.example", "bad_url"),
        ("https://x.example:99999", "bad_url"),
    ],
)
def test_the_token_never_goes_over_plain_http_beyond_loopback(url: str, kind: str | None) -> None:
    if kind is None:
        check_remote_url(url)
        assert accept_record(raw(genuine(url)), TOKEN).gateway_url == url.rstrip("/")
        return
    with pytest.raises(RecordRefused) as e:
        check_remote_url(url)
    assert e.value.kind == kind
    assert refusal(raw(genuine(url)), TOKEN) == kind  # signed by the remote: still refused
    if kind == "insecure_url":
        assert "https://" in e.value.hint
        assert "evil.example@" not in e.value.message  # no user info echoed


def test_what_is_not_a_record_is_refused() -> None:
    for data, kind in [
        (b"{half", "not_json"),
        (b"\xff\xfe{}", "not_utf8"),
        (b"[1]", "bad_record"),
        (b" " * (MAX_RECORD_BYTES + 1), "too_large"),
        (raw(sign({**genuine(), "url": 5, "gateway_url": None}, TOKEN)), "bad_record"),
        (raw(sign({**genuine(), "state": ["ready"]}, TOKEN)), "bad_record"),
        (raw(sign({"state": "ready"}, TOKEN)), "bad_record"),  # no updated_at
    ]:
        assert refusal(data, TOKEN) == kind, data[:40]
    # A URL whose tunnel is not ready is not live.
    starting = connection_record("https://x.trycloudflare.com", "starting", "/", TOKEN)
    assert accept_record(raw(starting), TOKEN).live_url is None


# ----- reading the file without blocking on it ----------------------------------------------


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """Run `fn` on a thread; fail (instead of hanging the suite) if it blocks."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


def test_reader_refuses_fifos_directories_big_and_unreadable_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    error = within(5, lambda: read_record_file(str(fifo)))  # the old reader blocked here
    assert isinstance(error, RecordRefused)
    assert error.kind == "not_regular"
    error = within(5, lambda: read_record_file(str(tmp_path)))
    assert isinstance(error, RecordRefused)
    assert error.kind == "not_regular"
    missing = within(5, lambda: read_record_file(str(tmp_path / "missing.json")))
    assert isinstance(missing, RecordRefused)
    assert (missing.kind, "No such file" in missing.message) == ("unreadable", True)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (8 * 1024 * 1024))
    _, data = read_record_file(str(big))
    assert len(data) == MAX_RECORD_BYTES + 1  # read no further than needed to know
    assert refusal(data, TOKEN) == "too_large"
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.json"
        write_connection_file(locked, genuine())
        locked.chmod(0)
        error = within(5, lambda: read_record_file(str(locked)))
        assert isinstance(error, RecordRefused)
        assert (error.kind, "Permission denied" in error.message) == ("unreadable", True)


# ----- the watcher: refuses, keeps its remote, says why once --------------------------------


async def until(condition: Callable[[], object], what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not within 5 s: {what}")


def stamped(url: str | None, at: str, state: str = "ready", token: str = TOKEN) -> dict[str, Any]:
    return sign({**connection_record(url, state, "/", None), "updated_at": at}, token)


async def _watch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> tuple[list[tuple[str | None, str | None]], list[Any], UpstreamTracker]:
    path = tmp_path / "conn.json"
    tracker = UpstreamTracker(LOG)
    seen: list[tuple[str | None, str | None]] = []
    tracker.listen(
        lambda old, new: seen.append((old.url if old else None, new.url if new else None))
    )
    watcher = ConnectionFileWatcher(str(path), tracker, LOG, interval=0.01, token=TOKEN)
    statuses: list[Any] = []
    await watcher.read_now()  # no file yet: no upstream, the reason noted
    assert tracker.current is None
    assert watcher.describe()["refused"]["kind"] == "unreadable"
    assert "cannot read" in (tracker.last_error or "")
    watcher.start()
    write_connection_file(path, stamped("https://one.example", "2026-01-01T00:00:01Z"))
    await until(lambda: tracker.current is not None, "the first URL")
    assert watcher.describe()["refused"] is None

    path.write_text("{half")  # a partial file (e.g. mid-sync): ignored, the old URL stays
    await until(lambda: watcher.refused is not None, "the partial file noted")
    # Forged: unsigned, then signed with another token, then a replay of an older record,
    # then plain http to a host on the network. Each refused; the remote stays.
    for forged, kind in [
        ({"url": "https://evil.example", "state": "ready"}, "unsigned"),
        (stamped("https://evil.example", "2026-01-01T00:00:02Z", token=OTHER), "bad_signature"),
        (stamped("https://zero.example", "2026-01-01T00:00:00Z"), "stale"),
        (stamped("http://evil.example", "2026-01-01T00:00:03Z"), "insecure_url"),
    ]:
        write_connection_file(path, forged)
        await until(
            lambda k=kind: watcher.refused is not None and watcher.refused.kind == k,  # type: ignore[misc]
            kind,
        )
        statuses.append(watcher.describe())
        assert tracker.current is not None
        assert tracker.current.url == "https://one.example"
    for _ in range(3):  # the same forged file rewritten: still refused, logged once
        write_connection_file(path, {"url": "https://evil.example", "state": "ready"})
        await until(lambda: watcher.refused is not None and watcher.refused.kind == "unsigned", "")
        await asyncio.sleep(0.03)

    write_connection_file(path, stamped(None, "2026-01-01T00:00:04Z", state="restarting"))
    await until(lambda: tracker.current is None, "no URL while restarting")
    write_connection_file(path, stamped("https://two.example", "2026-01-01T00:00:05Z"))
    await until(lambda: tracker.current is not None, "the second URL")
    assert watcher.describe()["refused"] is None
    await watcher.stop()
    assert tracker.switches == 1
    return seen, statuses, tracker


def test_watcher_follows_genuine_records_and_refuses_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOG.name)
    seen, statuses, _ = asyncio.run(_watch(tmp_path, caplog))
    assert seen == [
        (None, "https://one.example"),
        ("https://one.example", None),
        (None, "https://two.example"),
    ]
    assert [s["refused"]["kind"] for s in statuses] == [
        "unsigned",
        "bad_signature",
        "stale",
        "insecure_url",
    ]
    assert all(s["gateway_url"] == "https://one.example" for s in statuses)
    refusals = [r.getMessage() for r in caplog.records if " refused (" in r.getMessage()]
    # Once per distinct problem: unreadable, partial, the four forgeries, unsigned again
    # (after another problem); the three identical rewrites add nothing.
    assert len(refusals) == 7, refusals
    assert all("Keeping the current remote" in m for m in refusals)
    assert not any(TOKEN in r.getMessage() for r in caplog.records)
    assert "evil.example" not in "".join(m for m in refusals if "insecure_url" not in m)


# ----- the command line ---------------------------------------------------------------------


def test_url_over_plain_http_to_the_network_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    for url in ("http://jupyter.example.com", "http://10.0.0.5:8888"):
        code = main(["connect", "--check", "--url", url, "--token-file", str(token_file)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "plain http://" in err
        assert "Use the remote's https:// URL" in err
        assert TOKEN not in err
    # Loopback over http is fine (a local server, a local relay): checked, not refused.
    code = main(
        ["connect", "--check", "--url", "http://127.0.0.1:9", "--token-file", str(token_file)]
    )
    out = capsys.readouterr()
    assert code == 1, out
    assert "plain http://" not in out.err + out.out
    assert main(["connect", "--check", "--url", "x.example"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def test_check_says_why_a_connection_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    path = tmp_path / "conn.json"
    path.write_text(json.dumps({"url": "https://evil.example", "state": "ready"}))
    code = main(
        ["connect", "--check", "--connection-file", str(path), "--token-file", str(token_file)]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "remote check: PROBLEM (unsigned)" in out
    assert "older jupyter-colab-tunnel" in out
    assert "Update jupyter-colab-tunnel on the remote" in out


# ----- the remote writes signed records (a real in-process server) --------------------------


@pytest.fixture
def colab_config(tmp_path: Path) -> dict[str, Any]:
    return {"tunnel_mode": "off", "connection_file": str(tmp_path / "drive" / "conn.json")}


def wait_file(path: Path) -> bytes:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_bytes()
        time.sleep(0.01)
    raise AssertionError(f"{path} never written")


def test_the_server_signs_its_connection_file(colab_app: Any, tmp_path: Path) -> None:
    token = colab_app.serverapp.identity_provider.token
    assert token
    data = wait_file(tmp_path / "drive" / "conn.json")
    assert token.encode() not in data
    body = json.loads(data)
    assert body["signature"]
    assert accept_record(data, token).state == body["state"]
    assert refusal(data, OTHER) == "bad_signature"


def test_relay_spec_names_every_refusal() -> None:
    from relay_env import _schemas, check_relay_body

    kinds = _schemas()["RecordRefused"]["properties"]["kind"]["enum"]
    assert kinds == list(get_args(RefusalKind))
    for kind in kinds:
        check_relay_body("RecordRefused", RecordRefused(kind, "m", "h").as_dict())


@pytest.fixture
def server_token() -> str | None:
    """None: pytest-jupyter's generated token; a test parametrizes "" for a server without."""
    return None


@pytest.fixture
def jp_server_config(colab_config: dict[str, Any], server_token: str | None) -> Any:
    from traitlets.config import Config

    server: dict[str, Any] = {"jpserver_extensions": {"jupyter_colab_tunnel": True}}
    if server_token is not None:
        server["token"] = server_token
    return Config({"ServerApp": server, "ColabTunnelApp": colab_config})


@pytest.mark.parametrize("server_token", [""])
def test_a_server_without_a_token_writes_unsigned_and_says_so(
    capfd: pytest.CaptureFixture[str], colab_app: Any, tmp_path: Path
) -> None:
    assert not colab_app.serverapp.identity_provider.token
    data = wait_file(tmp_path / "drive" / "conn.json")
    assert "signature" not in json.loads(data)
    assert refusal(data, None) == "unsigned"
    log = capfd.readouterr().err  # the extension's log (ColabTunnelApp does not propagate)
    warned = [line for line in log.splitlines() if "cannot be signed" in line]
    assert len(warned) == 1, log
    assert "or connect with --url" in warned[0]
