"""Fixtures for viewer tests: a synthetic run folder (see run_fixture.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.viz.run_fixture import build_run


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    """A fresh 4-episode run folder (success, parse failure, error, success) with 64 px frames."""
    return build_run(tmp_path / "run")
