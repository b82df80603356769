"""`python -m benchmarks --quick` runs and reports every figure with a number and a baseline.

Timing is not tested here: on a loaded CI machine a target may be missed, and that is a finding
for docs/performance.md, not a test failure. Only the report's completeness and shape are.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parent.parent

# The files suite's (issue 20: `cp` against raw HTTP through the same stand-in tunnel).
FILES_FIGURES = [
    "files.upload",
    "files.download",
    "files.small_files",
    "files.rss_growth",
    "files.cp_rss_growth",
]
FIGURES = [
    "startup",
    "startup.cpu",
    "memory.rss",
    "shutdown.sigterm",
    "shutdown.sigkill",
    "shutdown.sigterm_slow_gpu",
    "tunnel.time_to_url",
    "tunnel.time_to_ready",
    "restart.spawn_overhead",
    "restart.url_republished",
    *[f"endpoint.{name}.c{c}" for c in (1, 32) for name in ("status", "tunnel", "gpu")],
    *[f"throughput.{name}.c{c}" for c in (1, 32) for name in ("status", "tunnel", "gpu")],
    "loop.api_status_under_gpu_load",
    "flood.rss_growth",
    "flood.cpu",
    "flood.rate",
    "peer.pycloudflared.time_to_url",
    "peer.resource_usage.latency",
    "mcp.tool.tunnel",
    "mcp.tool.gpu",
    "mcp.stdio.tunnel",
    "metrics.scrape.c1",
    "metrics.gpu_series",
    "metrics.extension_added",
    "dashboard.first_gpu",
    "dashboard.transfer",
    "relay.rest_overhead",
    "relay.kernel_rtt",
    "relay.switch",
    "relay.resume",
    "forward.request_overhead",
    "forward.download",
    "forward.sse_first_event",
    *FILES_FIGURES,
    "lab.remote_status",
    "lab.item_requests",
    "lab.item_poll_bytes",
]
LAB_BROWSER_FIGURES = ("lab.item_requests", "lab.item_poll_bytes")
MCP_FIGURES = ["mcp.tool.tunnel", "mcp.tool.gpu", "mcp.stdio.tunnel"]
# Figures that are distributions in any mode (several samples): they must carry a p99.
DISTRIBUTIONS = [
    "tunnel.time_to_url",
    "tunnel.time_to_ready",
    "restart.spawn_overhead",
    "restart.url_republished",
    *[f"endpoint.{name}.c{c}" for c in (1, 32) for name in ("status", "tunnel", "gpu")],
    "loop.api_status_under_gpu_load",
    "peer.pycloudflared.time_to_url",
    *MCP_FIGURES,
    "metrics.scrape.c1",
    "relay.rest_overhead",
    "relay.kernel_rtt",
    "relay.switch",
    "relay.resume",
    "forward.request_overhead",
    "forward.download",
    "forward.sse_first_event",
    "files.upload",
    "files.download",
    "lab.remote_status",
]


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _quick(tmp_path: Path, *only: str) -> tuple[dict[str, Any], str]:
    """`python -m benchmarks --quick [--only ...]`: its JSON document and what it printed."""
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--json",
            str(out),
            *(["--only", ",".join(only)] if only else []),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert run.returncode == 0, f"{run.stdout[-5000:]}\n{run.stderr[-5000:]}"
    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick"
    assert doc["failed_suites"] == {}
    return doc, run.stdout


def _check_figures(doc: dict[str, Any], expected: list[str], stdout: str) -> None:
    """Every expected figure is there with numbers, a baseline, a target, and is printed."""
    figures = {f["key"]: f for f in doc["figures"]}
    assert len(figures) == len(doc["figures"]), "duplicate figure keys"
    missing = [k for k in expected if k not in figures]
    assert not missing, f"figures missing from the report: {missing}"

    for key in expected:
        f = figures[key]
        for side in ("value", "baseline"):
            summary = f[side]
            assert _number(summary["median"]), (key, side, summary)
            assert summary["n"] >= 1, (key, side)
            assert summary["min"] <= summary["median"] <= summary["max"], (key, side, summary)
        assert f["baseline_label"], key
        assert f["target"], key
        assert f["unit"], key
        assert f["status"] in ("met", "MISSED", "info"), key
        assert f["status"] == {True: "met", False: "MISSED", None: "info"}[f["met"]], key
    for key in DISTRIBUTIONS:
        if key in expected:
            value = figures[key]["value"]
            assert value["n"] > 1, key
            assert _number(value["p99"]), key
            assert value["median"] <= value["p99"] <= value["max"], (key, value)

    # The printed table names every figure too.
    for key in expected:
        assert figures[key]["title"] in stdout, key


@pytest.mark.timeout(520)
def test_quick_benchmarks_report_every_figure(tmp_path: Path) -> None:
    doc, stdout = _quick(tmp_path)
    for key in ("nproc", "cpu_model", "python"):
        assert doc["machine"][key], key

    expected = list(FIGURES)
    if importlib.util.find_spec("jupyter_resource_usage") is None:  # no bench extra installed
        expected.remove("peer.resource_usage.latency")
        assert "peer.resource_usage.latency" in doc["skipped_figures"]
    if importlib.util.find_spec("mcp") is None:  # no bench/test extra installed
        for key in MCP_FIGURES:
            expected.remove(key)
            assert key in doc["skipped_figures"]
    if shutil.which("chromium") is None:  # Debian's chromium: .ci/run installs it
        for key in ("dashboard.first_gpu", "dashboard.transfer", *LAB_BROWSER_FIGURES):
            expected.remove(key)
            assert key in doc["skipped_figures"]
    _check_figures(doc, expected, stdout)


@pytest.mark.timeout(200)
def test_quick_files_suite_reports_its_figures(tmp_path: Path) -> None:
    """`--only files` (issue 20's benchmarks) on its own: each figure beside its baseline, the
    throughput figures with the CPU each process used, the small-files bound stated."""
    doc, stdout = _quick(tmp_path, "files")
    assert doc["suites"] == ["files"]
    assert sorted(f["key"] for f in doc["figures"]) == sorted(FILES_FIGURES)
    _check_figures(doc, FILES_FIGURES, stdout)
    figures = {f["key"]: f for f in doc["figures"]}
    for key in ("files.upload", "files.download"):
        details = figures[key]["details"]
        assert details["cpu_s_per_100mb"]["server"] > 0, details
        assert details["baseline_cpu_s_per_100mb"]["app"] > 0, details
    small = figures["files.small_files"]
    assert small["details"]["bound_ms"] == pytest.approx(
        2 * small["baseline"]["median"] + 5.0 * small["details"]["files"]
    )


REQUEST_PATHS = [
    "tornado",
    "urllib",
    "keepalive",
    "keepalive.fresh",
    "ColabClient",
    "ColabClientSync",
]


@pytest.mark.timeout(200)
def test_quick_requests_suite_reports_its_figures(tmp_path: Path) -> None:
    """`--only requests` (issue 22's request paths): each path to the server and through the
    stand-in's edge as a distribution beside the path before (tornado's client), and the
    import cost of each library."""
    doc, stdout = _quick(tmp_path, "requests")
    assert doc["suites"] == ["requests"]
    paths = [f"requests.{where}.{name}" for where in ("local", "tunnel") for name in REQUEST_PATHS]
    imports = [f"requests.import.{name}" for name in ("tornado.httpclient", "urllib.request")]
    _check_figures(doc, paths + imports, stdout)
    figures = {f["key"]: f for f in doc["figures"]}
    for key in paths:
        assert figures[key]["value"]["n"] > 1, key
        assert figures[key]["value"]["median"] <= figures[key]["value"]["p99"], key


def test_the_servers_load_the_extension_from_bytecode() -> None:
    """Start-up compares the extension's side with Jupyter's, which starts from the bytecode
    pip wrote: after `compile_package` a server's interpreter compiles none of the extension's
    modules from source, even with PYTHONDONTWRITEBYTECODE set (as in some dev shells)."""
    from benchmarks.servers import compile_package

    package = compile_package()
    run = subprocess.run(
        [sys.executable, "-v", "-c", "import jupyter_colab_tunnel.server.app"],
        cwd=package.parent,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(package.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = [
        line.split("code object from ", 1)[1].strip("'")
        for line in run.stderr.splitlines()
        if line.startswith("# code object from ") and str(package) in line
    ]
    assert len(loaded) > 20, loaded  # the extension's modules were seen loading
    compiled = [path for path in loaded if path.endswith(".py")]
    assert compiled == [], f"compiled from source at start: {compiled}"
