"""Where navila-agent keeps generated data: `$NAVILA_AGENT_CACHE` or `~/.cache/navila-agent`."""

from __future__ import annotations

import os
from pathlib import Path

GENERATED_VERSION = "v3"  # bump when the house or episode generator changes its output


def cache_dir() -> Path:
    """Root of the on-disk cache (generated houses, episodes, distance fields)."""
    return Path(os.environ.get("NAVILA_AGENT_CACHE", Path.home() / ".cache" / "navila-agent")).expanduser()


def generated_root() -> Path:
    """Root of generated data, laid out like a VLN-CE data folder (`datasets/`, `scene_datasets/`)."""
    return cache_dir() / "generated" / GENERATED_VERSION
