"""The supervisor's parts on their own: the steps before a spawn (prepare.py) and one run
(run.py), which reaches its supervisor only through RunReports."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from jupyter_colab_tunnel.problems import Problem
from jupyter_colab_tunnel.tunnel.binary import Binary, BinaryUnavailable
from jupyter_colab_tunnel.tunnel.logs import signal_name
from jupyter_colab_tunnel.tunnel.prepare import BinaryLookup, tunnel_token
from jupyter_colab_tunnel.tunnel.run import Run, RunReports

# ----- the token ------------------------------------------------------------------------------


def test_a_quick_tunnel_needs_no_token() -> None:
    assert asyncio.run(tunnel_token("quick", "", "/nonexistent")) == ""


def test_a_named_tunnel_takes_its_token_as_given_or_from_its_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  from-the-file\n")
    assert asyncio.run(tunnel_token("named", "given", str(path))) == "given"
    assert asyncio.run(tunnel_token("named", "", str(path))) == "from-the-file"


def test_an_unreadable_or_missing_token_says_which(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    got = asyncio.run(tunnel_token("named", "", str(missing)))
    assert isinstance(got, Problem)
    assert got.kind == "token_unavailable"
    assert got.message == f"cannot read tunnel_token_file {missing}: No such file or directory"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for token_file in ("", str(empty)):
        got = asyncio.run(tunnel_token("named", "", token_file))
        assert got == Problem("token_unavailable", "no tunnel token configured")


# ----- the binary -----------------------------------------------------------------------------


def test_one_lookup_at_a_time_and_a_failed_one_is_tried_again() -> None:
    calls: list[str] = []
    release = threading.Event()
    outcomes: list[Any] = [BinaryUnavailable("not found"), Binary("/cf", "2026.1.0", "path")]

    def resolve(configured: str) -> Binary:
        calls.append(configured)
        assert release.wait(10)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    async def main() -> None:
        lookup = BinaryLookup(resolve)
        first = asyncio.ensure_future(lookup.find("cloudflared"))
        second = asyncio.ensure_future(lookup.find("cloudflared"))
        await asyncio.sleep(0)
        release.set()
        failed = await asyncio.gather(first, second)
        assert calls == ["cloudflared"]  # both waited on the one lookup
        assert failed[0] == failed[1]
        assert isinstance(failed[0], Problem)
        assert failed[0].kind == "binary_unavailable"
        assert await lookup.find("cloudflared") == Binary("/cf", "2026.1.0", "path")
        assert len(calls) == 2

    asyncio.run(main())


# ----- one run --------------------------------------------------------------------------------


class Child:
    def __init__(self, returncode: int) -> None:
        self.pid = 7
        self.returncode: int | None = returncode


def reports(heard: list[tuple[Any, ...]]) -> RunReports:
    return RunReports(
        url=lambda: "https://x.trycloudflare.com",
        confirmed_url=lambda url: heard.append(("confirmed", url)),
        readiness=lambda run, n, ready: heard.append(("readiness", run, n, ready)),
        lost=lambda: heard.append(("lost",)),
    )


def test_a_run_tells_its_supervisor_only_through_its_reports() -> None:
    heard: list[tuple[Any, ...]] = []
    run = Run(reports(heard))
    assert run.url == "https://x.trycloudflare.com"
    run.confirmed_url("https://y.trycloudflare.com")
    run.readiness(4, True)
    run.lost()
    assert heard == [
        ("confirmed", "https://y.trycloudflare.com"),
        ("readiness", run, 4, True),
        ("lost",),
    ]


def test_the_usage_error_alone_classifies_an_exit_after_its_help_text() -> None:
    run = Run(reports([]))
    run.child = Child(0)  # type: ignore[assignment]
    run.heard("stdout", "Incorrect Usage: flag provided but not defined: -bogus")
    for n in range(80):  # a help text longer than the tail
        run.heard("stdout", f"help line {n}")
    assert run.classified_exit() == Problem(
        "bad_arguments", "Incorrect Usage: flag provided but not defined: -bogus"
    )


@pytest.mark.parametrize(("code", "signal"), [(-15, "SIGTERM"), (-99, "99")])
def test_a_killed_child_names_its_signal_the_same_way_everywhere(code: int, signal: str) -> None:
    run = Run(reports([]))
    run.child = Child(code)  # type: ignore[assignment]
    facts = run.exit_facts(0.0)
    assert facts["code"] is None
    assert facts["signal"] == signal == signal_name(-code)
    assert run.classified_exit().message == f"cloudflared was killed by signal {signal}"
