"""Regenerate docs/jupyterlab.png: the status-bar item and its panel in a real JupyterLab.

    python scripts/lab_screenshot.py [--out docs/jupyterlab.png]

Runs the browser test tests/test_lab_status_item.py (a remote with the cloudflared stand-in and
two fake T4s, the relay, a gateway-mode JupyterLab, headless Chromium), which writes the
screenshot with the panel open where COLAB_LAB_SCREENSHOT says. Needs the test extra, Debian's
`chromium` and the built extension (`pip install .`, or `npm ci && npm run build:prod && jupyter
labextension develop --overwrite .` in this source tree).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST = "tests/test_lab_status_item.py::test_status_item_shows_the_remote_follows_a_switch_and_says_when_it_stops"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "jupyterlab.png")
    args = p.parse_args(argv)
    out = args.out.resolve()
    env = {**os.environ, "COLAB_LAB_SCREENSHOT": str(out)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", TEST], cwd=REPO, env=env)
    if run.returncode != 0 or not out.exists():
        print(f"the browser test failed; {out} not written", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
