"""Shared fixtures: an in-process server with the extension, and real `jupyter server` processes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from traitlets.config import Config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

sys.path.insert(0, str(Path(__file__).parent))

import run_audit  # noqa: E402  (light: the session-wide hooks below use it)

if TYPE_CHECKING:
    from server_process import ServerProcess
    from tunnel_env import TunnelServer

EDGE_TLS_KEY = pytest.StashKey[Path | None]()

# Fixtures that start real processes: a test that uses one is an end-to-end test.
REAL_PROCESS_FIXTURES = frozenset({"server_factory", "tunnel_server", "live"})


def pytest_configure(config: pytest.Config) -> None:
    """The stand-in's edge serves TLS with a certificate of this session's test CA
    (testkit/edge_tls.py): made before any process starts, named in the inherited environment."""
    from testkit import edge_tls

    config.stash[EDGE_TLS_KEY] = edge_tls.setup()


def pytest_unconfigure(config: pytest.Config) -> None:
    from testkit import edge_tls

    edge_tls.teardown(config.stash.get(EDGE_TLS_KEY, None))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark real-process tests `e2e` even where the module forgot to, so that
    `pytest -m "not e2e and not bench"` is always the fast unit layer."""
    for item in items:
        if REAL_PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def colab_config() -> dict[str, Any]:
    """ColabTunnelApp settings for the in-process server; tests override it.

    The tunnel is off by default here: in-process servers do not listen on a socket, so a
    tunnel to them could not forward anything. Tunnel tests use real server processes.
    """
    return {"tunnel_mode": "off"}


@pytest.fixture
def jp_server_config(colab_config: dict[str, Any]) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_colab_tunnel": True}},
            "ColabTunnelApp": colab_config,
        }
    )


class HandClock:
    """A monotonic clock (a callable, like `time.monotonic`) that moves only by `advance`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def hand_clock() -> HandClock:
    return HandClock()


@pytest.fixture
def jp_nbconvert_templates() -> None:
    """pytest-jupyter copies nbconvert's templates for every in-process server; nothing here
    converts notebooks, so skip the copy (about 50 files a test)."""


@pytest.fixture
def jp_fetch(jp_fetch: Any, jp_base_url: str) -> Any:
    """pytest-jupyter's jp_fetch; every /colab/ answer is held to docs/openapi.yaml."""
    import openapi_check  # jsonschema and the spec load only for tests that fetch

    return openapi_check.validating_fetch(
        jp_fetch, jp_base_url, lambda body: run_audit.AUDIT.observe(body, "a jp_fetch response")
    )


# ----- one audit over the whole run (tests/run_audit.py): secrets and leftover processes ----


@pytest.fixture(scope="session", autouse=True)
def _run_audit(tmp_path_factory: pytest.TempPathFactory) -> None:
    run_audit.AUDIT.start(tmp_path_factory.getbasetemp())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    where = f"the output of {report.nodeid} ({report.when})"
    if report.longrepr is not None:
        run_audit.AUDIT.observe(report.longreprtext, where)
    for title, content in report.sections:
        if title.endswith(report.when):  # later phases repeat the earlier phases' sections
            run_audit.AUDIT.observe(content, f"{where}: {title}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if run_audit.AUDIT.basetemp is None:  # no test ran
        return
    problems = run_audit.AUDIT.finish()
    openapi_check = sys.modules.get("openapi_check")
    validated = openapi_check.STATS["validated"] if openapi_check else 0
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.verbosity >= -1:
        reporter.write_line(
            f"\nopenapi_check: {validated} /colab/ responses matched "
            f"docs/openapi.yaml; run audit: {run_audit.AUDIT.bodies_checked} outputs and "
            f"{run_audit.AUDIT.cmdlines_checked} cloudflared command lines free of secrets"
        )
    if problems:
        if reporter is not None:
            reporter.write_line("")
            reporter.write_sep("=", "run audit failed (tests/run_audit.py)", red=True)
            for problem in problems:
                reporter.write_line(problem)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def colab_app(jp_serverapp: Any, jp_asyncio_loop: Any) -> Any:
    """The running ColabTunnelApp, after the server's post-start hooks ran."""
    jp_asyncio_loop.run_until_complete(jp_serverapp._post_start())
    return jp_serverapp.extension_manager.extension_points["jupyter_colab_tunnel"].app


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Start real `jupyter server` processes; every one is stopped and reaped at teardown."""
    from server_process import start_server

    started: list[ServerProcess] = []

    def factory(**kwargs: Any) -> ServerProcess:
        kwargs.setdefault("workdir", tmp_path / f"server{len(started)}")
        server = start_server(**kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def tunnel_server(tmp_path: Path) -> Iterator[Any]:
    """Start real servers with the cloudflared stand-in; at teardown none may be left."""
    import psutil
    from tunnel_env import start_tunnel_server

    started: list[TunnelServer] = []

    def factory(**kwargs: Any) -> TunnelServer:
        ts = start_tunnel_server(tmp_path / f"tunnel{len(started)}", **kwargs)
        started.append(ts)
        return ts

    yield factory
    leftovers: list[int] = []
    for ts in started:
        ts.server.stop()
        for pid in ts.alive_spawned():
            leftovers.append(pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
    assert not leftovers, f"cloudflared stand-ins left behind: {leftovers}"
