"""Regenerate docs/dashboard.png: the dashboard of a real server, in headless Chromium.

    python scripts/dashboard_screenshot.py [--seconds 45] [--out docs/dashboard.png]

The server runs the cloudflared stand-in and two fake T4s under load (tests/dashboard_kit.py)
with one notebook kernel, so every part of the page has something to show. Needs the test
extra and Debian's `chromium`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from dashboard_kit import start_gpu_tunnel_server  # noqa: E402

from testkit.headless import Chromium  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=45.0, help="history to collect for the charts")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--phone", type=Path, help="also a 390 px wide (phone) screenshot here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jct-shot-") as tmp:
        ts = start_gpu_tunnel_server(Path(tmp) / "remote", live=True)
        server = ts.server
        try:
            ts.wait_state("ready")
            r = server.request(
                "POST",
                "api/sessions",
                body={
                    "path": "experiments/train.ipynb",
                    "type": "notebook",
                    "kernel": {"name": "python3"},
                },
            )
            assert r.status == 201, r.body
            with Chromium(Path(tmp) / "chromium", width=args.width, height=900) as browser:
                browser.navigate(f"{server.url}colab/?minutes=1&token={server.token}")
                browser.wait_for("!!document.querySelector('#proc-rows code')")
                deadline = time.monotonic() + args.seconds
                while time.monotonic() < deadline:
                    browser.pump(0.5)
                browser.screenshot(args.out)
                print(f"wrote {args.out}")
                if args.phone:
                    browser.set_viewport(390, 844, mobile=True)
                    browser.pump(2.5)
                    browser.screenshot(args.phone)
                    print(f"wrote {args.phone}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
