"""Screenshot of the viewer on one episode and step, in headless Chromium (how docs/images/viewer.png is made).

    python -m viz.screenshot runs/my_run --episode r2r_val_unseen:1 --step 30 --out docs/images/viewer.png

Needs Playwright's Python package and a Chromium binary (Debian's /usr/bin/chromium; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from urllib.parse import quote

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str:
    """$NAVILA_CHROMIUM, /usr/bin/chromium or chromium on PATH; ValueError when none is installed."""
    for candidate in (
        os.environ.get("NAVILA_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ValueError("no chromium found: install it (apt-get install chromium) or set NAVILA_CHROMIUM")


def screenshot(
    run_dir: str | os.PathLike[str],
    uid: str,
    step: int,
    out: str | os.PathLike[str],
    width: int = 1440,
    height: int = 1020,
) -> Path:
    """Serve `run_dir`, open episode `uid` at `step` and save a PNG of the page to `out`."""
    from playwright.sync_api import sync_playwright

    from viz.run_folder import load_run
    from viz.server import ViewerConfig, make_server, start_in_thread

    server = make_server(load_run(run_dir), ViewerConfig(open_browser=False))
    start_in_thread(server)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(server.url + "#" + quote(uid, safe=""))
            page.wait_for_selector("#decisions li, #banner:not(.hidden)")
            page.evaluate(f"seek({int(step)})")
            page.wait_for_function("[...document.images].every(i => i.complete)")
            page.wait_for_timeout(300)  # let the map image draw
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--episode", required=True, help="episode uid, e.g. r2r_val_unseen:1")
    ap.add_argument("--step", type=int, default=0, help="timeline step to show")
    ap.add_argument("--out", default="docs/images/viewer.png")
    args = ap.parse_args()
    print(screenshot(args.run_dir, args.episode, args.step, args.out))


if __name__ == "__main__":
    main()
