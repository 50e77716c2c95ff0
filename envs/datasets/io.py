"""Read and write VLN-CE episode files (R2R-CE and RxR-CE) exactly as they are distributed.

R2R-CE (`R2R_VLNCE_v1-3_preprocessed/<split>/`):
    `<split>.json.gz`     {"episodes": [...], "instruction_vocab": {...}}
    `<split>_gt.json.gz`  {"<episode_id>": {"locations": [[x, y, z], ...], "actions": [...], "forward_steps": N}}
RxR-CE (`RxR_VLNCE_v0/<split>/`), one file pair per annotator role ("guide" or "follower"):
    `<split>_<role>.json.gz`     {"episodes": [...]}  (string episode ids, RxR instruction extras)
    `<split>_<role>_gt.json.gz`  same layout as R2R's ground truth

Reading then writing a split reproduces the parsed JSON field for field, so generated splits use the very same
writer and every tool that reads real data reads ours. Malformed input raises a ValueError that names the file,
the episode and the field; a missing file raises FileNotFoundError naming every path that was tried.

    from envs.datasets.io import read_r2r_split, write_split
    data = read_r2r_split("/path/to/R2R_VLNCE_v1-3_preprocessed", "val_unseen")
    write_split("/tmp/out", "val_unseen", data.episodes, vocab=data.instruction_vocab)
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.datasets.episode import Episode, Goal, GroundTruth, Instruction

# Top-level episode fields this module maps onto `Episode`; anything else lands in `Episode.extra`.
_KNOWN_FIELDS = (
    "episode_id",
    "trajectory_id",
    "scene_id",
    "start_position",
    "start_rotation",
    "info",
    "goals",
    "instruction",
    "reference_path",
)
RXR_ROLES = ("guide", "follower")


@dataclass
class SplitData:
    """One split as read from disk: its episodes plus what is needed to write it back unchanged."""

    episodes: list[Episode]
    instruction_vocab: dict[str, Any] | None  # R2R-CE only; None for RxR-CE
    episodes_path: Path
    gt_path: Path | None  # None when the split has no ground truth file (test splits)


# ----------------------------------------------------------------------------------------------- file names


def r2r_files(split_dir: Path, split: str) -> tuple[Path, list[Path]]:
    """Episode file and candidate ground-truth files of an R2R-CE split folder."""
    return split_dir / f"{split}.json.gz", [split_dir / f"{split}_gt.json.gz"]


def rxr_files(split_dir: Path, split: str, role: str) -> tuple[Path, list[Path]]:
    """Episode file and candidate ground-truth files of an RxR-CE split folder, in lookup order.

    RxR_VLNCE_v0 names the ground truth `<split>_<role>_gt.json.gz` (VLN-CE's `GT_PATH`); some repackagings
    ship one role-less `<split>_gt.json.gz`, accepted second.
    """
    if role not in RXR_ROLES:
        raise ValueError(f"unknown RxR role '{role}'; available: {', '.join(RXR_ROLES)}")
    return split_dir / f"{split}_{role}.json.gz", [
        split_dir / f"{split}_{role}_gt.json.gz",
        split_dir / f"{split}_gt.json.gz",
    ]


# ---------------------------------------------------------------------------------------------------- reading


def read_r2r_split(dataset_dir: str | Path, split: str, *, require_gt: bool = True) -> SplitData:
    """Read `<dataset_dir>/<split>/<split>.json.gz` and its ground truth into Episodes (dataset "r2r").

    `require_gt=False` allows splits shipped without ground truth (R2R-CE `test`); their episodes get `gt=None`.
    """
    episodes_path, gt_candidates = r2r_files(Path(dataset_dir) / split, split)
    return _read(episodes_path, gt_candidates, "r2r", split, require_gt=require_gt, languages=None)


def read_rxr_split(
    dataset_dir: str | Path,
    split: str,
    *,
    role: str = "guide",
    languages: Sequence[str] | None = ("en-US",),
    require_gt: bool = True,
) -> SplitData:
    """Read `<dataset_dir>/<split>/<split>_<role>.json.gz` and its ground truth into Episodes (dataset "rxr").

    `languages` keeps only instructions in those languages; the default ("en-US",) matches NaVILA's RxR-CE
    evaluation, None keeps every language.
    """
    episodes_path, gt_candidates = rxr_files(Path(dataset_dir) / split, split, role)
    return _read(episodes_path, gt_candidates, "rxr", split, require_gt=require_gt, languages=languages)


def _read(
    episodes_path: Path,
    gt_candidates: list[Path],
    dataset: str,
    split: str,
    *,
    require_gt: bool,
    languages: Sequence[str] | None,
) -> SplitData:
    raw = _load_json_gz(episodes_path)
    name = episodes_path.name
    if not isinstance(raw, dict) or not isinstance(raw.get("episodes"), list):
        raise ValueError(f"{name}: expected an object with an 'episodes' list")
    gt_path = next((p for p in gt_candidates if p.is_file()), None)
    if gt_path is None and require_gt:
        tried = ", ".join(str(p) for p in gt_candidates)
        raise FileNotFoundError(f"ground truth file for split '{split}' not found; looked for: {tried}")
    gt_raw = _load_json_gz(gt_path) if gt_path is not None else None
    if gt_raw is not None and not isinstance(gt_raw, dict):
        raise ValueError(f"{gt_path.name}: expected an object mapping episode ids to ground truth")

    episodes = []
    for i, d in enumerate(raw["episodes"]):
        ep = episode_from_dict(d, dataset=dataset, split=split, source=name, index=i)
        if languages is not None and ep.instruction.extra.get("language") not in languages:
            continue
        if gt_raw is not None:
            if ep.episode_id not in gt_raw:
                raise ValueError(
                    f"{gt_path.name}: episode {ep.episode_id}: missing from the ground truth file"
                )
            ep.gt = gt_from_dict(gt_raw[ep.episode_id], source=gt_path.name, episode_id=ep.episode_id)
        episodes.append(ep)
    vocab = raw.get("instruction_vocab")
    return SplitData(episodes=episodes, instruction_vocab=vocab, episodes_path=episodes_path, gt_path=gt_path)


def _load_json_gz(path: Path) -> Any:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"episode file not found: {path}") from None
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path.name}: not a gzip-compressed JSON file ({e})") from None


def episode_from_dict(d: Any, *, dataset: str, split: str, source: str, index: int = 0) -> Episode:
    """Convert one episode object of a VLN-CE file into an Episode, validating every field it uses.

    `source` (the file name) and `index` only serve error messages.
    """
    if not isinstance(d, dict):
        raise ValueError(f"{source}: episode #{index}: expected an object, got {type(d).__name__}")
    if "episode_id" not in d:
        raise ValueError(f"{source}: episode #{index}: missing field 'episode_id'")
    raw_id = d["episode_id"]
    if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
        raise ValueError(f"{source}: episode #{index}: episode_id must be an int or a string, got {raw_id!r}")
    where = f"{source}: episode {raw_id}"
    for key in ("scene_id", "start_position", "start_rotation", "goals", "instruction"):
        if key not in d:
            raise ValueError(f"{where}: missing field '{key}'")
    if not isinstance(d["scene_id"], str) or not d["scene_id"]:
        raise ValueError(f"{where}: scene_id must be a non-empty string, got {d['scene_id']!r}")

    info = d.get("info") or {}
    if not isinstance(info, dict):
        raise ValueError(f"{where}: info must be an object, got {type(info).__name__}")
    geo = info.get("geodesic_distance")
    if geo is not None and not _is_number(geo):
        raise ValueError(f"{where}: info.geodesic_distance must be a number, got {geo!r}")

    goals_raw = d["goals"]
    if not isinstance(goals_raw, list) or not goals_raw:
        raise ValueError(f"{where}: goals must be a non-empty list")
    goals = []
    for j, g in enumerate(goals_raw):
        if not isinstance(g, dict) or "position" not in g:
            raise ValueError(f"{where}: goals[{j}] must be an object with a 'position'")
        radius = g.get("radius")
        if radius is not None and not _is_number(radius):
            raise ValueError(f"{where}: goals[{j}].radius must be a number, got {radius!r}")
        goals.append(Goal(position=_vector(g["position"], 3, f"{where}: goals[{j}].position"), radius=radius))

    instr = d["instruction"]
    if not isinstance(instr, dict) or not isinstance(instr.get("instruction_text"), str):
        raise ValueError(f"{where}: instruction must be an object with a string 'instruction_text'")
    tokens = instr.get("instruction_tokens")
    if tokens is not None and (not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens)):
        raise ValueError(f"{where}: instruction.instruction_tokens must be a list of ints")
    instr_extra = {k: v for k, v in instr.items() if k not in ("instruction_text", "instruction_tokens")}

    ref = d.get("reference_path", [])
    if not isinstance(ref, list):
        raise ValueError(f"{where}: reference_path must be a list of [x, y, z] points")
    reference_path = [_vector(p, 3, f"{where}: reference_path[{j}]") for j, p in enumerate(ref)]

    return Episode(
        episode_id=str(raw_id),
        trajectory_id=d.get("trajectory_id"),
        scene_id=d["scene_id"],
        start_position=_vector(d["start_position"], 3, f"{where}: start_position"),
        start_rotation=_vector(d["start_rotation"], 4, f"{where}: start_rotation"),
        goals=goals,
        instruction=Instruction(
            instruction_text=instr["instruction_text"], instruction_tokens=tokens, extra=instr_extra
        ),
        reference_path=reference_path,
        geodesic_distance=float(geo) if geo is not None else None,
        gt=None,
        dataset=dataset,
        split=split,
        episode_id_is_int=isinstance(raw_id, int),
        info=dict(info),
        extra={k: v for k, v in d.items() if k not in _KNOWN_FIELDS},
    )


def gt_from_dict(d: Any, *, source: str, episode_id: str) -> GroundTruth:
    """Convert one ground-truth entry; `actions` may be absent in some RxR repackagings (read as [])."""
    where = f"{source}: episode {episode_id}"
    if not isinstance(d, dict) or "locations" not in d:
        raise ValueError(f"{where}: expected an object with 'locations'")
    if not isinstance(d["locations"], list):
        raise ValueError(f"{where}: locations must be a list of [x, y, z] points")
    locations = [_vector(p, 3, f"{where}: locations[{j}]") for j, p in enumerate(d["locations"])]
    actions = d.get("actions", [])
    if not isinstance(actions, list) or not all(isinstance(a, int) and 0 <= a <= 5 for a in actions):
        raise ValueError(f"{where}: actions must be a list of habitat action ids (ints 0-5)")
    steps = d.get("forward_steps", sum(1 for a in actions if a == 1))
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise ValueError(f"{where}: forward_steps must be an int, got {steps!r}")
    return GroundTruth(locations=locations, actions=list(actions), forward_steps=steps)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _vector(v: Any, n: int, where: str) -> list[float]:
    if not isinstance(v, list | tuple):
        raise ValueError(f"{where} must be a list of {n} numbers, got {type(v).__name__}")
    if len(v) != n:
        raise ValueError(f"{where} must have {n} numbers, got {len(v)}")
    if not all(_is_number(x) for x in v):
        raise ValueError(f"{where} must contain only finite numbers, got {list(v)!r}")
    return list(v)


# ---------------------------------------------------------------------------------------------------- writing


def episode_to_dict(ep: Episode) -> dict[str, Any]:
    """The VLN-CE JSON object of an Episode (inverse of `episode_from_dict`)."""
    info = dict(ep.info)
    if ep.geodesic_distance is not None:
        info["geodesic_distance"] = ep.geodesic_distance
    instruction: dict[str, Any] = {"instruction_text": ep.instruction.instruction_text}
    if ep.instruction.instruction_tokens is not None:
        instruction["instruction_tokens"] = list(ep.instruction.instruction_tokens)
    instruction.update(ep.instruction.extra)
    d: dict[str, Any] = {
        "episode_id": int(ep.episode_id) if ep.episode_id_is_int else ep.episode_id,
        "trajectory_id": ep.trajectory_id,
        "scene_id": ep.scene_id,
        "start_position": list(ep.start_position),
        "start_rotation": list(ep.start_rotation),
        "info": info,
        "goals": [{"position": list(g.position), "radius": g.radius} for g in ep.goals],
        "instruction": instruction,
        "reference_path": [list(p) for p in ep.reference_path],
    }
    d.update(ep.extra)
    return d


def gt_to_dict(gt: GroundTruth) -> dict[str, Any]:
    """The ground-truth JSON object of one episode."""
    return {
        "locations": [list(p) for p in gt.locations],
        "actions": list(gt.actions),
        "forward_steps": gt.forward_steps,
    }


def write_split(
    dataset_dir: str | Path,
    split: str,
    episodes: Iterable[Episode],
    vocab: dict[str, Any] | None = None,
    *,
    role: str | None = None,
) -> Path:
    """Write episodes as `<dataset_dir>/<split>/...` in the VLN-CE format; returns the episode file's path.

    `role=None` writes R2R-CE names (`<split>.json.gz`, `<split>_gt.json.gz`); a role writes RxR-CE names
    (`<split>_<role>.json.gz`, `<split>_<role>_gt.json.gz`). `vocab` becomes `instruction_vocab` (R2R-CE files
    carry one, RxR-CE files do not). The ground-truth file holds the episodes that have `gt`, and is written only
    if at least one does. Files are written to a temporary name and renamed, so a crash never leaves half a split.
    """
    split_dir = Path(dataset_dir) / split
    if role is None:
        episodes_path, gt_paths = r2r_files(split_dir, split)
    else:
        episodes_path, gt_paths = rxr_files(split_dir, split, role)
    episodes = list(episodes)
    ids = [ep.episode_id for ep in episodes]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"cannot write split '{split}': duplicate episode ids {dup}")
    body: dict[str, Any] = {"episodes": [episode_to_dict(ep) for ep in episodes]}
    if vocab is not None:
        body["instruction_vocab"] = vocab
    gt = {ep.episode_id: gt_to_dict(ep.gt) for ep in episodes if ep.gt is not None}

    split_dir.mkdir(parents=True, exist_ok=True)
    if gt:
        _write_json_gz(gt_paths[0], gt)
    _write_json_gz(episodes_path, body)  # last: its presence marks a complete split
    return episodes_path


def _write_json_gz(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    # mtime=0 keeps the bytes identical across rebuilds, so generated splits are byte-for-byte deterministic.
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(json.dumps(obj).encode("utf-8"))
    tmp.replace(path)
