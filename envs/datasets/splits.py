"""The split registry: one name per benchmark split, resolved to real VLN-CE data or to a generated split.

Split names are `<dataset>_<split>`: `r2r_train`, `r2r_val_seen`, `r2r_val_unseen`, `rxr_train`, `rxr_val_seen`,
`rxr_val_unseen` exist both generated and real; `r2r_test`, `rxr_test_challenge` and the other names in
`REAL_ONLY_SPLITS` exist only in real data. The same name works with and without `--data-root`, so a command
developed on generated houses runs unchanged on Matterport3D.

Where episodes come from (`load_split`):
- without `data_root`: the generated split under `envs.paths.generated_root()`, built on first use
  (`datasets/R2R_VLNCE_gen/<split>/`, `datasets/RxR_VLNCE_gen/<split>/`, scenes in `scene_datasets/gen/`);
- with `data_root`, the first folder that holds the split's episode file, in this order:
  1. `<data_root>/datasets/R2R_VLNCE_v1-3_preprocessed/<split>/` (or `RxR_VLNCE_v0`): a VLN-CE `data/` folder;
  2. `<data_root>/datasets/R2R_VLNCE_gen/<split>/` (or `RxR_VLNCE_gen`): a generated data folder;
  3. `<data_root>/R2R_VLNCE_v1-3_preprocessed/<split>/` (or `RxR_VLNCE_v0`): a `data/datasets/` folder;
  4. `<data_root>/<split>/`: the dataset folder itself, e.g. the shared sample
     (`data show r2r_val_seen:1 --data-root shared/data/r2r_vlnce_sample` reads
     `shared/data/r2r_vlnce_sample/val_seen/val_seen.json.gz`; the `r2r_` prefix picks the file format).
  A miss raises FileNotFoundError listing every path tried.

Scenes (`scene_path`) are `<root>/scene_datasets/<episode.scene_id>` with `<root>` the data root (or the
generated root), e.g. `scene_datasets/mp3d/<scan>/<scan>.glb` or `scene_datasets/gen/<house>/<house>.glb`.

    from envs.datasets.splits import load_split
    episodes = load_split("r2r_val_unseen")                        # generated
    episodes = load_split("r2r_val_unseen", data_root="data")      # real VLN-CE data
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from envs.datasets.episode import Episode
from envs.datasets.io import SplitData, r2r_files, read_r2r_split, read_rxr_split, rxr_files
from envs.paths import generated_root

DATASETS = ("r2r", "rxr")
# Folder of each dataset inside `datasets/`: the real VLN-CE release and our generated counterpart.
REAL_DATASET_DIRS = {"r2r": "R2R_VLNCE_v1-3_preprocessed", "rxr": "RxR_VLNCE_v0"}
GENERATED_DATASET_DIRS = {"r2r": "R2R_VLNCE_gen", "rxr": "RxR_VLNCE_gen"}
# Splits we can generate (and that real data has too).
GENERATED_SPLITS = (
    "r2r_train",
    "r2r_val_seen",
    "r2r_val_unseen",
    "rxr_train",
    "rxr_val_seen",
    "rxr_val_unseen",
)
# Splits only the real releases have; test splits come without ground truth.
REAL_ONLY_SPLITS = ("r2r_test", "r2r_envdrop", "rxr_test_challenge")
SPLITS = GENERATED_SPLITS + REAL_ONLY_SPLITS
_NO_GT_SPLITS = ("r2r_test", "rxr_test_challenge")


def parse_split(name: str) -> tuple[str, str]:
    """`"r2r_val_unseen"` -> `("r2r", "val_unseen")`; unknown names raise ValueError listing the known ones."""
    if name not in SPLITS:
        hint = ""
        close = [s for s in SPLITS if s.endswith("_" + name)][:1] or difflib.get_close_matches(
            name, SPLITS, n=1
        )
        if close:
            hint = f" (did you mean '{close[0]}'?)"
        raise ValueError(f"unknown split '{name}'{hint}; available: {', '.join(SPLITS)}")
    dataset, split = name.split("_", 1)
    return dataset, split


def candidate_dirs(name: str, data_root: str | Path) -> list[Path]:
    """Dataset folders (each holding `<split>/`) that `load_split` tries for a real-data root, in order."""
    dataset, _ = parse_split(name)
    root = Path(data_root).expanduser()
    return [
        root / "datasets" / REAL_DATASET_DIRS[dataset],
        root / "datasets" / GENERATED_DATASET_DIRS[dataset],
        root / REAL_DATASET_DIRS[dataset],
        root,
    ]


def generated_dataset_dir(name: str) -> Path:
    """Folder of the generated dataset that holds split `name` (it may not be built yet)."""
    dataset, _ = parse_split(name)
    return generated_root() / "datasets" / GENERATED_DATASET_DIRS[dataset]


def episode_file(name: str, dataset_dir: Path, role: str = "guide") -> Path:
    """Path of split `name`'s episode file inside a dataset folder."""
    dataset, split = parse_split(name)
    if dataset == "r2r":
        return r2r_files(dataset_dir / split, split)[0]
    return rxr_files(dataset_dir / split, split, role)[0]


def find_dataset_dir(name: str, data_root: str | Path, role: str = "guide") -> Path:
    """The first candidate folder under `data_root` that holds split `name` (see the module docstring)."""
    tried = []
    for d in candidate_dirs(name, data_root):
        f = episode_file(name, d, role)
        if f.is_file():
            return d
        tried.append(str(f))
    raise FileNotFoundError(
        f"split '{name}' not found under data root {data_root}; looked for: {', '.join(tried)}"
    )


def read_split_data(
    name: str,
    data_root: str | Path | None = None,
    role: str = "guide",
    languages: Sequence[str] | None = ("en-US",),
) -> SplitData:
    """Like `load_split`, but also returns the vocabulary and the file paths read."""
    dataset, split = parse_split(name)
    if data_root is None:
        if name not in GENERATED_SPLITS:
            raise ValueError(
                f"split '{name}' exists only in real data; pass a VLN-CE data folder (--data-root). "
                f"Generated splits: {', '.join(GENERATED_SPLITS)}"
            )
        from envs.datasets.generate import build_split  # lazy: generation pulls in scenes and navigation

        build_split(name)
        dataset_dir = generated_dataset_dir(name)
    else:
        dataset_dir = find_dataset_dir(name, data_root, role)
    require_gt = name not in _NO_GT_SPLITS
    if dataset == "r2r":
        return read_r2r_split(dataset_dir, split, require_gt=require_gt)
    return read_rxr_split(dataset_dir, split, role=role, languages=languages, require_gt=require_gt)


def load_split(
    name: str,
    data_root: str | Path | None = None,
    role: str = "guide",
    languages: Sequence[str] | None = ("en-US",),
) -> list[Episode]:
    """Episodes of split `name`: real data under `data_root`, or the generated split (built on first use).

    `role` and `languages` apply to RxR-CE only: the annotator role's file, and the instruction languages kept
    (default en-US as in NaVILA; None keeps all).
    """
    return read_split_data(name, data_root, role, languages).episodes


def find_episode(episodes: Sequence[Episode], episode_id: str) -> Episode:
    """The episode with that id; a miss raises ValueError naming a few ids that exist."""
    for ep in episodes:
        if ep.episode_id == str(episode_id):
            return ep
    some = ", ".join(ep.episode_id for ep in episodes[:10])
    raise ValueError(
        f"episode '{episode_id}' not in this split ({len(episodes)} episodes; first ids: {some})"
    )


def scene_root(data_root: str | Path | None = None) -> Path:
    """Folder that scene ids are relative to: `<data_root>/scene_datasets`, or the generated one."""
    root = generated_root() if data_root is None else Path(data_root).expanduser()
    return root / "scene_datasets"


def scene_path(episode: Episode, data_root: str | Path | None = None) -> Path:
    """Mesh file of the episode's scene (it may not exist, e.g. Matterport3D not downloaded; callers check)."""
    return scene_root(data_root) / episode.scene_id


def semantics_path(episode: Episode, data_root: str | Path | None = None) -> Path:
    """`<house>.semantics.json` beside the scene mesh; generated scenes have one, Matterport3D scenes do not."""
    glb = scene_path(episode, data_root)
    return glb.with_name(glb.name.removesuffix(".glb") + ".semantics.json")
