"""The JupyterLab extension's own unit tests (jest, src/__tests__), run by pytest so that the
README's test command covers them: `npm test` in a real Node.js child process.

node_modules comes from the wheel's build hook (`pip install .` runs `npm install` in the
source tree) or from `npm ci` here. Without npm the test skips, except in CI (CI=true), where a
missing Node.js is a failure: CI builds the extension, so it must test it too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def npm() -> str:
    found = shutil.which("npm")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("npm is not on PATH: CI builds and tests the JupyterLab extension with it")
        pytest.skip("needs Node.js and npm (the JupyterLab extension's unit tests)")
    return found


def test_the_extensions_jest_suite_passes() -> None:
    npm_path = npm()
    if not (REPO / "node_modules" / ".bin" / "jest").exists():
        subprocess.run([npm_path, "ci", "--no-audit", "--no-fund"], cwd=REPO, check=True, timeout=540)
    run = subprocess.run(
        [npm_path, "test", "--", "--ci"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    # jest's summary: "Tests:       76 passed, 76 total"; every spec file ran.
    summary = re.search(r"^Tests:\s+(\d+) passed, (\d+) total", output, re.M)
    assert summary and summary[1] == summary[2], output
    assert int(summary[1]) >= 60, output
    specs = {p.name for p in (REPO / "src" / "__tests__").glob("*.spec.ts")}
    assert specs and all(f"PASS src/__tests__/{name}" in output for name in specs), output
