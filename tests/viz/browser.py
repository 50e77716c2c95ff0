"""Headless Chromium for viewer tests: Debian's /usr/bin/chromium driven by Playwright (no `playwright install`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "viz"


def chromium_path() -> str | None:
    """Path of a usable chromium binary, or None (browser tests then skip with a reason)."""
    env = os.environ.get("NAVILA_CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(name).is_file():
            return name
    return shutil.which("chromium") or shutil.which("chromium-browser")


def skip_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if chromium_path() is None:
        return "chromium not installed (apt-get install chromium, or `make test` installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed (pip install playwright; no browser download needed)"
    return None


def launch(playwright):  # type: ignore[no-untyped-def]
    """A headless Chromium browser with the project's fixed flags."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
