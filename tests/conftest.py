"""Shared test setup: keep tests off the user's cache and off extra CPU threads."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("LP_NUM_THREADS", "0")  # llvmpipe rasterises in the calling thread (fork-safe, one core)
# Generated splits built by tests are tiny unless a test asks for more (the full presets take minutes).
os.environ.setdefault("NAVILA_AGENT_GEN_HOUSES", "2")
os.environ.setdefault("NAVILA_AGENT_GEN_EPISODES", "4")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data_dir() -> str:
    """The read-only `shared/data` folder beside the repository (the real R2R-CE sample lives there)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(os.path.join(here, "..", "..", "shared", "data"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated scenes and episodes go to a per-session temporary cache, never ~/.cache."""
    if "NAVILA_AGENT_CACHE" not in os.environ or os.environ.get("CI"):
        os.environ["NAVILA_AGENT_CACHE"] = str(tmp_path_factory.mktemp("navila_cache"))
