"""Shared test setup: keep tests off the user's cache and off extra CPU threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("LP_NUM_THREADS", "0")  # llvmpipe rasterises in the calling thread (fork-safe, one core)
# Generated splits built by tests are tiny unless a test asks for more (the full presets take minutes).
os.environ.setdefault("NAVILA_AGENT_GEN_HOUSES", "2")
os.environ.setdefault("NAVILA_AGENT_GEN_EPISODES", "4")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# Tests on the real R2R-CE sample skip with exactly this reason when it is absent; the terminal summary counts them.
R2R_SAMPLE_MISSING = "real R2R-CE sample not present"


def _shared_data_dir() -> str:
    """`$NAVILA_AGENT_SHARED_DATA`, else the read-only `shared/data` folder beside the repository."""
    if os.environ.get("NAVILA_AGENT_SHARED_DATA"):
        return os.path.abspath(os.environ["NAVILA_AGENT_SHARED_DATA"])
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(os.path.join(here, "..", "..", "shared", "data"))


@pytest.fixture(scope="session")
def shared_data_dir() -> str:
    """The shared data folder (the real R2R-CE sample lives in its `r2r_vlnce_sample/`)."""
    return _shared_data_dir()


@pytest.fixture(scope="session")
def r2r_sample_dir(shared_data_dir: str) -> Path:
    """The real R2R-CE sample (20 val_seen episodes in the original format); skips the test when it is absent."""
    d = Path(shared_data_dir) / "r2r_vlnce_sample"
    if not all((d / "val_seen" / name).is_file() for name in ("val_seen.json.gz", "val_seen_gt.json.gz")):
        pytest.skip(f"{R2R_SAMPLE_MISSING} at {d}")
    return d


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly when the real-data tests skipped: a green run without them has not checked the R2R-CE readers."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if R2R_SAMPLE_MISSING in str(r.longrepr)]
    if skipped:
        terminalreporter.write_sep(
            "!",
            f"{len(skipped)} tests skipped: {R2R_SAMPLE_MISSING} at {_shared_data_dir()}/r2r_vlnce_sample "
            "(set NAVILA_AGENT_SHARED_DATA to the folder holding it)",
            yellow=True,
        )


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated scenes and episodes go to a per-session temporary cache, never ~/.cache."""
    if "NAVILA_AGENT_CACHE" not in os.environ or os.environ.get("CI"):
        os.environ["NAVILA_AGENT_CACHE"] = str(tmp_path_factory.mktemp("navila_cache"))
