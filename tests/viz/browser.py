"""Headless Chromium for viewer tests: Debian's /usr/bin/chromium driven by Playwright (no `playwright install`)."""

from __future__ import annotations

from pathlib import Path

from viz.screenshot import CHROMIUM_ARGS, find_chromium

__all__ = ["ARTIFACTS", "CHROMIUM_ARGS", "chromium_path"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "viz"


def chromium_path() -> str | None:
    """Path of a usable chromium binary, or None (browser tests then skip with a reason)."""
    try:
        return find_chromium()
    except ValueError:
        return None


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
