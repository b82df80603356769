"""The one problem type: every kind has a hint, JSON round-trips, exceptions carry it."""

from __future__ import annotations

import pytest

from jupyter_colab_tunnel.launcher import LaunchError
from jupyter_colab_tunnel.problems import (
    HINTS,
    KINDS,
    ColabTunnelError,
    ConfigProblem,
    Problem,
)


def test_every_kind_has_a_hint_and_no_hint_lacks_a_kind() -> None:
    assert set(HINTS) == set(KINDS)
    assert all(hint.strip() for hint in HINTS.values())


@pytest.mark.parametrize("kind", KINDS)
def test_a_problem_without_a_hint_gets_its_kinds(kind: str) -> None:
    problem = Problem(kind, "it broke")  # type: ignore[arg-type]
    assert problem.as_dict() == {"kind": kind, "message": "it broke", "hint": HINTS[kind]}  # type: ignore[index]


def test_from_dict_round_trips_and_tolerates_strangers() -> None:
    problem = Problem("network", "no route", "check the cable")
    assert Problem.from_dict(problem.as_dict()) == problem
    assert Problem.from_dict(None) is None
    assert Problem.from_dict("oops") is None
    stranger = Problem.from_dict({"kind": "martian", "message": "?"})
    assert stranger is not None
    assert stranger.kind == "unknown"
    assert stranger.hint == HINTS["unknown"]


def test_config_problem_names_its_trait() -> None:
    problem = ConfigProblem("invalid_value", "bad protocol", trait="protocol")
    assert problem.as_dict() == {
        "trait": "protocol",
        "kind": "invalid_value",
        "message": "bad protocol",
        "hint": HINTS["invalid_value"],
    }


def test_exceptions_carry_their_problem() -> None:
    error = LaunchError("port_in_use", "port 8888 is taken", log_path="/tmp/x.log")
    assert isinstance(error, ColabTunnelError)
    assert error.problem == Problem("port_in_use", "port 8888 is taken")
    assert (error.kind, error.hint, error.log_path) == (
        "port_in_use",
        HINTS["port_in_use"],
        "/tmp/x.log",
    )
    assert str(error) == f"port_in_use: port 8888 is taken\nHint: {HINTS['port_in_use']}"
