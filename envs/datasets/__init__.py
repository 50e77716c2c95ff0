"""Episode datasets: VLN-CE file formats (R2R-CE, RxR-CE), the split registry, and generated splits.

    from envs.datasets import load_split
    episodes = load_split("r2r_val_unseen")                      # generated, built on first use
    episodes = load_split("r2r_val_unseen", data_root="data")    # real VLN-CE data

Modules: `episode` (the Episode record), `io` (read/write the json.gz files), `splits` (names -> files),
`instructions` (R2R/RxR-style instruction generation), `generate` (building generated splits).
"""

from envs.datasets.episode import Episode, Goal, GroundTruth, Instruction
from envs.datasets.generate import SplitGenConfig, build_split, preset_config
from envs.datasets.io import SplitData, read_r2r_split, read_rxr_split, write_split
from envs.datasets.splits import (
    GENERATED_SPLITS,
    SPLITS,
    find_episode,
    load_split,
    parse_split,
    read_split_data,
    scene_path,
    scene_root,
    semantics_path,
)

__all__ = [
    "GENERATED_SPLITS",
    "SPLITS",
    "Episode",
    "Goal",
    "GroundTruth",
    "Instruction",
    "SplitData",
    "SplitGenConfig",
    "build_split",
    "find_episode",
    "load_split",
    "parse_split",
    "preset_config",
    "read_r2r_split",
    "read_rxr_split",
    "read_split_data",
    "scene_path",
    "scene_root",
    "semantics_path",
    "write_split",
]
