"""The wheel's build step for the JupyterLab extension (src/), called by hatch-jupyter-builder.

It builds the extension with npm (hatch_jupyter_builder.npm_builder: `npm install`, then
`npm run build:prod`) where Node.js and npm can: the local side's status-bar item. The remote side
never loads it, and a source install there (`pip install git+https://...` on Colab) must not fail
for want of Node.js: without a Node.js that the builder runs on, the package is built without the
extension, with a warning. JUPYTER_COLAB_TUNNEL_REQUIRE_LABEXTENSION=1 (CI and the release check
set it) turns that into an error: a release always ships the extension.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

REQUIRE_ENV = "JUPYTER_COLAB_TUNNEL_REQUIRE_LABEXTENSION"
BUILT = Path("jupyter_colab_tunnel/labextension")
ENSURED = [BUILT / "package.json", BUILT / "install.json", BUILT / "static" / "style.js"]


def node_problem() -> str | None:
    """Why the extension cannot be built here, or None. @rspack/core (the builder) needs
    Node.js ^20.19 or >=22.12."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "Node.js and npm are not on PATH"
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`node --version` failed: {exc}"
    found = re.match(r"v(\d+)\.(\d+)", out.stdout.strip())
    if not found:
        return f"`node --version` printed {out.stdout.strip()!r}"
    major, minor = int(found[1]), int(found[2])
    if (major, minor) >= (22, 12) or (major == 20 and minor >= 19):
        return None
    return f"Node.js {out.stdout.strip()} is too old (the builder needs ^20.19 or >=22.12)"


def build(target_name: str, version: str, **kwargs: Any) -> None:
    """hatch-jupyter-builder's build function: npm_builder, or a warning where it cannot run."""
    required = os.environ.get(REQUIRE_ENV) == "1"
    problem = node_problem()
    if problem is not None:
        message = (
            f"jupyter-colab-tunnel: building without the JupyterLab extension: {problem}. "
            "The remote side does not use it; for the status-bar item in your local JupyterLab, "
            "install a built wheel, or install Node.js 20.19+ (or 22.12+) and build again."
        )
        if required:
            raise RuntimeError(f"{message} ({REQUIRE_ENV}=1: a build without it is an error)")
        warnings.warn(message, stacklevel=1)
        return
    from hatch_jupyter_builder import npm_builder

    # `npm run build:prod` calls `jupyter-builder` (a build requirement: pip's isolated build puts
    # it on PATH). Without isolation, in a venv that is not activated (`.venv/bin/pip wheel
    # --no-build-isolation .`), it is the one beside this Python.
    if shutil.which("jupyter-builder") is None:
        here = str(Path(sys.executable).parent)
        os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), here])
    npm_builder(target_name, version, **kwargs)
    missing = [str(p) for p in ENSURED if not p.exists()]
    if missing and (required or version == "standard"):
        raise RuntimeError(f"the JupyterLab extension's build did not write {missing}")
