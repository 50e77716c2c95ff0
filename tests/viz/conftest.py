"""Fixtures for viewer tests: a synthetic run folder (see run_fixture.py) and one headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.viz.browser import ARTIFACTS, launch, skip_reason
from tests.viz.run_fixture import build_run


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    """A fresh 4-episode run folder (success, parse failure, error, success) with 64 px frames."""
    return build_run(tmp_path / "run")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for all browser tests of the session (launching costs about a second)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()
