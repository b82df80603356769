"""The JupyterLab extension's own unit tests (jest, src/__tests__), run by pytest so that the
README's test command covers them: `npm test` in a real Node.js child process.

node_modules comes from the wheel's build hook (`pip install .` runs `npm install` in the
source tree) or from `npm ci` here. Without npm the test skips, except in CI (CI=true), where a
missing Node.js is a failure: CI builds the extension, so it must test it too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from jupyter_colab_tunnel import __version__

REPO = Path(__file__).parent.parent


def npm() -> str:
    found = shutil.which("npm")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("npm is not on PATH: CI builds and tests the JupyterLab extension with it")
        pytest.skip("needs Node.js and npm (the JupyterLab extension's unit tests)")
    return found


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_the_extensions_jest_suite_passes() -> None:
    npm_path = npm()
    if not (REPO / "node_modules" / ".bin" / "jest").exists():
        subprocess.run(
            [npm_path, "ci", "--no-audit", "--no-fund"], cwd=REPO, check=True, timeout=540
        )
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
    assert summary, output
    assert summary[1] == summary[2], output
    assert int(summary[1]) >= 60, output
    specs = {p.name for p in (REPO / "src" / "__tests__").glob("*.spec.ts")}
    assert specs
    assert all(f"PASS src/__tests__/{name}" in output for name in specs), output


def npm_version(python_version: str) -> str:
    """The npm (semver) spelling of a PEP 440 version: 0.2.0a1 -> 0.2.0-alpha.1."""
    found = re.fullmatch(r"(\d+\.\d+\.\d+)(?:(a|b|rc)(\d+))?(?:\.dev(\d+))?", python_version)
    assert found, f"{python_version} has no npm spelling here: extend npm_version"
    release, pre, number, dev = found.groups()
    tags = {"a": "alpha", "b": "beta", "rc": "rc"}
    suffix = f"-{tags[pre]}.{number}" if pre else ""
    if dev is not None:
        suffix += f"{'.' if suffix else '-'}dev.{dev}"
    return release + suffix


def test_package_json_carries_the_packages_version() -> None:
    """jupyter_colab_tunnel/_version.py is the version; package.json (what `jupyter labextension
    list` shows) spells the same one the npm way."""
    assert npm_version("0.2.0a1") == "0.2.0-alpha.1"
    assert npm_version("1.0.0rc2.dev3") == "1.0.0-rc.2.dev.3"
    package = json.loads((REPO / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((REPO / "package-lock.json").read_text(encoding="utf-8"))
    assert package["version"] == npm_version(__version__), (
        f"package.json has {package['version']}, _version.py {__version__}: set package.json's "
        f"version to {npm_version(__version__)} and run `npm install`"
    )
    assert lock["version"] == lock["packages"][""]["version"] == package["version"]
    assert package["name"] == "jupyter-colab-tunnel"
    assert package["jupyterlab"]["outputDir"] == "jupyter_colab_tunnel/labextension"
