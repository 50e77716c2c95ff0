"""Training samples from collected trajectories: frames → pixels, conversation → token ids and labels.

Reads the folders that `navila-agent collect` writes (format `navila-agent-trajectories/1`, see
`benchmarks/collect.py`): every `shard-*/samples.jsonl` line whose trajectory is listed in that shard's
`trajectories.jsonl` is one sample; its `frames` are indices into the trajectory's `frames/<traj>.npz`, -1
meaning a black padding frame. A frames file holds either `rgb` [T, H, W, 3] uint8, or one PNG/JPEG per frame
(`data` bytes, `offsets` [T + 1], `shape`), of which only the frames a sample uses are decoded.

Encoding (`SampleEncoder`), as in LLaVA/VILA supervised fine-tuning:
- prompt = the llama_3 template with the human turn and an open assistant turn; target = the answer sentence
  followed by `<|eot_id|>` (the stop string at inference, so the model learns to end its turn);
- `input_ids` = tokenizer_image_token(prompt) + tokens(target); `<image>` becomes IMAGE_TOKEN_INDEX (-200);
- `labels` = IGNORE_INDEX over the prompt, the target ids over the answer;
- `label_weights` = 1 over the answer, `action_token_weight` over the tokens that overlap the action words and
  the amount ("move forward", "turn left", "75", "stop"), 0 elsewhere — an optional extra push on the part
  of the answer that matters (1.0 = plain cross-entropy). Samples of another task (`"task": "scene_qa"`,
  `benchmarks/scene_qa.py`) have no action: plain weight 1 over their answer.
- `progress` [B] (only when a sample of the batch has one) = how far along its route each sample is,
  t / (steps - 1), NaN where unknown (`TrajectoryDataset.progress`): the target of the optional progress monitor.

The mixture (`MixtureDataset`) concatenates datasets; each sample carries its dataset's sampling weight, and
`sample_index_stream` draws a deterministic, resumable order from those weights.

Mirror augmentation (`train --mirror-prob P`, beyond NaVILA): a drawn navigation sample is, with probability P,
shown as its left-right mirror image: every frame flipped horizontally, and "left" and "right" swapped in its
instruction and its answer (`mirror_text`). A mirrored house is as valid a house, and the expert's action in it
is the mirrored action, so the labels stay exact. `mirror_stream` marks the draws (index + N for a mirrored one)
from a counter-based coin per stream position, so a resumed run mirrors exactly the samples the interrupted one
would have; `MirroredDataset` serves them.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlm.constants import EOT, IGNORE_INDEX
from vlm.train.registry import MANIFEST_NAME, DatasetEntry

SUPPORTED_FORMATS = ("navila-agent-trajectories/1",)
# Spans of the answer that carry the decision: the action phrase and the amount.
_ACTION_SPAN = re.compile(r"move forward|turn left|turn right|\bstop\b|\d+", re.IGNORECASE)
# "right" as an adverb, not a side: kept by `mirror_text` ("walk right up to the sofa").
_RIGHT_ADVERB = re.compile(
    r"\bright(?=\s+(?:up\s+to|away|next\s+to|in\s+front|there|here|now)\b)", re.IGNORECASE
)  # only unambiguous ones: "turn right after the sofa" is a side
_SIDE_WORD = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def mirror_text(text: str) -> str:
    """`text` as it reads in the left-right mirror image of the scene: "left" and "right" swapped, each keeping
    its capitalisation ("Turn left" → "Turn right", "LEFT" → "RIGHT"); "right" as an adverb ("walk right up to",
    "right away", "right next to") is kept. Words that only contain them ("leftover", "righteous") are kept."""
    adverbs = {m.start() for m in _RIGHT_ADVERB.finditer(text)}

    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        if m.start() in adverbs:
            return word
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _SIDE_WORD.sub(swap, text)


def mirrorable(task: str, instruction: str | None, prompt: str) -> bool:
    """Whether a sample can be mirrored exactly: a navigation sample whose prompt holds its instruction (a scene QA
    answer describes the unflipped view; without the instruction the prompt's direction words cannot be found)."""
    return task == "navigation" and bool(instruction) and instruction in prompt


def mirror_item(item: dict[str, Any]) -> dict[str, Any] | None:
    """The left-right mirror of a raw navigation item (`TrajectoryDataset.__getitem__`'s dict): its frames flipped
    horizontally (when it has frames; cached features come flipped from their own cache), its instruction mirrored
    inside the prompt (the fixed prompt text, "turning left or right", is kept), its answer and action mirrored.
    None when the item cannot be mirrored exactly: not a navigation sample (a scene QA answer describes the
    unflipped view), or no instruction found in its prompt (`mirrorable`)."""
    instruction = item.get("instruction")
    if not mirrorable(item.get("task", "navigation"), instruction, item["prompt"]):
        return None
    out = dict(item)
    out["prompt"] = item["prompt"].replace(instruction, mirror_text(instruction), 1)
    out["instruction"] = mirror_text(instruction)
    out["answer"] = mirror_text(item["answer"])
    out["action"] = {"left": "right", "right": "left"}.get(item.get("action"), item.get("action"))
    if "frames" in item:
        out["frames"] = np.ascontiguousarray(np.asarray(item["frames"])[:, :, ::-1])  # [N, H, W, 3]
    out["mirrored"] = True
    return out


def _expert_route_length(trajectory: dict[str, Any]) -> int | None:
    """A trajectory record's `steps` when the expert drove it from start to STOP (no policy decision), else None."""
    steps = trajectory.get("steps")
    expert_only = trajectory.get("policy_decisions", 0) == 0 and trajectory.get("ended_with_stop") is True
    return int(steps) if expert_only and isinstance(steps, int) and steps >= 2 else None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line from a crashed collector
    return out


def depth_file(frames_name: str) -> str:
    """Where the depth of the frames in `frames_name` (a sample's `frames_file`) is stored, relative to the shard:
    frames/<traj>.npz -> depth/<traj>.npz (`navila-agent collect --depth-size S`). Episodes that share a path's
    frames share its depth too."""
    return _beside_frames(frames_name, "depth")


def objects_file(frames_name: str) -> str:
    """Where the object maps of the frames in `frames_name` are stored, relative to the shard: frames/<traj>.npz ->
    objects/<traj>.npz (`navila-agent collect --object-size S`): `ids` [T, S, S] int16 (1 + the object's index,
    0 = none), `categories` and `colours` per object ("sink", "white")."""
    return _beside_frames(frames_name, "objects")


def _beside_frames(frames_name: str, folder_name: str) -> str:
    folder, _, name = frames_name.rpartition("/")
    if folder != "frames":
        raise ValueError(f"'{frames_name}' is not a frames file name (frames/<traj>.npz)")
    return f"{folder_name}/{name}"


def label_grid(ids: np.ndarray, size: int, min_share: float) -> np.ndarray:
    """Label maps [..., H, W] of small ints (0 = none) to [..., size, size] int16 cells: each cell gets its most
    common non-zero label when that covers at least `min_share` of the cell's pixels, else 0 (ties: the lower
    label).

    The label counterpart of `depth_grid`, for both ends of the object maps: `collect --object-size S` stores
    the env's per-pixel object ids this way (`OBJECT_PIXEL_SHARE`), and `train-tower --tasks objects` pools the
    stored cells onto the tower's token grid with it (`OBJECT_CELL_SHARE`)."""
    a = np.asarray(ids)
    if a.ndim < 2:
        raise ValueError(f"label_grid: label maps must be [..., H, W], got shape {a.shape}")
    if a.size and int(a.min()) < 0:
        raise ValueError("label_grid: labels must be >= 0 (0 = none)")
    lead, (h, w) = a.shape[:-2], a.shape[-2:]
    x = torch.from_numpy(np.ascontiguousarray(a.reshape(-1, h, w), dtype=np.int64))
    out = torch.zeros(len(x), size, size, dtype=torch.int16)
    k = int(x.max()) + 1 if x.numel() else 1
    chunk = max(1, 2**24 // max(1, k * h * w))  # frames per one-hot pass: at most ~64 MB of float32
    for b in range(0, len(x) if k > 1 else 0, chunk):
        onehot = torch.nn.functional.one_hot(x[b : b + chunk], k)[..., 1:].permute(0, 3, 1, 2).float()
        share, best = torch.nn.functional.adaptive_avg_pool2d(onehot, size).max(1)  # [n, size, size]
        out[b : b + chunk] = torch.where(share >= min_share - 1e-6, best + 1, 0).to(torch.int16)
    return out.reshape(*lead, size, size).numpy()


# How much of a cell an object must cover to name it (label_grid's min_share): at collection, of the labelled pixels
# of a stored cell (collect labels 2 x 2 pixels per cell of the stored map); on the token grid, of the stored cells.
OBJECT_PIXEL_SHARE = 0.5
OBJECT_CELL_SHARE = 0.25


def depth_grid(depth: np.ndarray, size: int) -> np.ndarray:
    """Depth maps [..., H, W] in metres (or one env observation [H, W, 1]), 0 where nothing was hit, averaged to
    [..., size, size] cells over the pixels that hit something; cells with none stay 0.

    One definition for both ends: `collect --depth-size S` stores the env's depth this way, and
    `train-tower --tasks depth` averages the stored maps onto the tower's token grid with it. The mean of metres over
    a cell (not of their inverse); for sizes that divide H and W it is the plain block mean."""
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim == 3 and d.shape[-1] == 1:  # the env's [H, W, 1]
        d = d[..., 0]
    x = torch.from_numpy(np.ascontiguousarray(d)).reshape(-1, 1, *d.shape[-2:])
    valid = (x > 0).float()
    total = torch.nn.functional.adaptive_avg_pool2d(x * valid, size)
    share = torch.nn.functional.adaptive_avg_pool2d(valid, size)
    mean = torch.where(share > 0, total / share.clamp_min(1e-12), 0.0)
    return mean.reshape(*d.shape[:-2], size, size).numpy()


class FrameStore:
    """The frames of one trajectory file, decoded on demand: `len(store)`, `store.frame(i)` → [H, W, 3] uint8."""

    def __init__(self, path: Path) -> None:
        with np.load(path) as data:
            if "rgb" in data:
                self._rgb: np.ndarray | None = data["rgb"]  # [T, H, W, 3] uint8
                self.shape = tuple(self._rgb.shape)
            elif "data" in data and "offsets" in data:
                self._rgb = None
                self._data, self._offsets = data["data"], data["offsets"]  # bytes, [T + 1]
                self.shape = tuple(int(x) for x in data["shape"])
            else:
                raise ValueError(
                    f"frames file {path}: expected 'rgb' or 'data' + 'offsets', found {list(data)}"
                )

    @classmethod
    def from_rgb(cls, rgb: np.ndarray) -> FrameStore:
        """A store over frames already decoded ([T, H, W, 3] uint8), e.g. resized to a tower's input."""
        store = cls.__new__(cls)
        store._rgb, store.shape = rgb, tuple(rgb.shape)
        return store

    @property
    def nbytes(self) -> int:
        """Memory held: the decoded frames, or the encoded bytes of a PNG/JPEG store."""
        return int(self._rgb.nbytes if self._rgb is not None else self._data.nbytes + self._offsets.nbytes)

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, i: int) -> np.ndarray:
        if self._rgb is not None:
            return self._rgb[i]
        import cv2

        bgr = cv2.imdecode(self._data[self._offsets[i] : self._offsets[i + 1]], cv2.IMREAD_COLOR)
        return bgr[:, :, ::-1]  # [H, W, 3] RGB


class TrajectoryDataset(torch.utils.data.Dataset):
    """Raw samples of one collected folder: `{"frames": [N, H, W, 3] uint8, "prompt", "answer", ...}`."""

    def __init__(self, root: str | Path, name: str | None = None, cache_trajectories: int = 8) -> None:
        self.root = Path(root)
        self.name = name or self.root.name
        manifest_path = self.root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ValueError(
                f"dataset '{self.name}': {manifest_path} not found; collect it first "
                f"(navila-agent collect --output {self.root})"
            )
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("format") not in SUPPORTED_FORMATS:
            raise ValueError(
                f"dataset '{self.name}': {manifest_path} has format {self.manifest.get('format')!r}; "
                f"supported: {', '.join(SUPPORTED_FORMATS)}"
            )
        self.samples: list[dict[str, Any]] = []
        self._shard_of: list[Path] = []
        self._route_length: list[int | None] = []  # per sample: its trajectory's steps when the expert drove it all
        finished = 0
        for shard in sorted(self.root.glob("shard-*")):
            done = {r["traj"]: r for r in _read_jsonl(shard / "trajectories.jsonl")}
            finished += len(done)
            for s in _read_jsonl(shard / "samples.jsonl"):
                if s["traj"] in done:
                    self.samples.append(s)
                    self._shard_of.append(shard)
                    self._route_length.append(_expert_route_length(done[s["traj"]]))
        if not self.samples:
            raise ValueError(f"dataset '{self.name}' at {self.root} holds no finished samples")
        selected = self.manifest.get("episodes_selected")
        if isinstance(selected, int) and finished < selected:
            # Counted on disk, not read from the manifest's `complete`: parallel shard collectors each rewrite it.
            raise ValueError(
                f"dataset '{self.name}' at {self.root} is incomplete: {finished} of the {selected} trajectories its "
                "collection selected are on disk (a shard still running, not run yet, or interrupted). Finish it "
                "with the same `navila-agent collect` command(s): they resume where they stopped"
            )
        self._cache: OrderedDict[Path, FrameStore] = OrderedDict()
        self._cache_size = cache_trajectories
        self._resize: Callable[[np.ndarray], np.ndarray] | None = None
        self._max_bytes = self._cached_bytes = 0
        self.frame_sampling = "uniform"  # what collect stores (NaVILA's rule); see set_frame_sampling
        self.progress_cue = "none"  # what collect stores (NaVILA's prompt); see set_progress_cue
        self.num_frames: int | None = None  # None: as collected (NaVILA: 8); see set_num_frames

    def _steps(self, what: str) -> list[int]:
        """Every sample's step `t`; ValueError naming the dataset and the first sample without one."""
        for s in self.samples:
            if "t" not in s:
                raise ValueError(
                    f"dataset '{self.name}': sample {s.get('id')!r} has no step 't', so {what}; recollect it with "
                    "`navila-agent collect`"
                )
        return [int(s["t"]) for s in self.samples]

    def _reindex(self, rule: str, num_frames: int | None, what: str) -> None:
        from vlm.mm_utils import frame_indices

        steps = self._steps(what)  # all checked first: a failure changes nothing
        for s, t in zip(self.samples, steps, strict=True):
            s["frames"] = frame_indices(t + 1, num_frames or len(s["frames"]), rule)

    def set_frame_sampling(self, rule: str) -> None:
        """From now on each sample sees the frames that history rule `rule` picks (`vlm.mm_utils.frame_indices`).

        Collected samples store NaVILA's uniform choice; every frame of a trajectory is stored, so another rule's
        frames are re-derived from the sample's step `t` (the same number of frames). Why: a model trained with
        another rule (its config's `frame_sampling`) must train on the frames the agent will show it. A sample
        without `t` cannot be re-derived: ValueError naming the dataset."""
        from vlm.mm_utils import check_frame_sampling

        check_frame_sampling(rule)
        if rule == self.frame_sampling:
            return
        self._reindex(rule, self.num_frames, f"frame sampling '{rule}' cannot re-derive its frames")
        self.frame_sampling = rule

    def set_num_frames(self, num_frames: int) -> None:
        """From now on each sample shows `num_frames` frames (`num_frames - 1` history frames of the current rule,
        then the current one) and its prompt that many `<image>` markers (`vlm.mm_utils.with_image_count`).

        Why: a model trained on another count (its config's `num_video_frames`) must train on what the agent will
        show it; every frame of a trajectory is stored, so nothing is recollected. A sample without `t`, or whose
        prompt lacks NaVILA's markers: ValueError naming the dataset and the sample, and nothing changes."""
        from vlm.mm_utils import with_image_count

        if num_frames < 1:
            raise ValueError(f"dataset '{self.name}': num_frames must be >= 1, got {num_frames}")
        if self.num_frames == num_frames or (
            self.num_frames is None and all(len(s["frames"]) == num_frames for s in self.samples)
        ):
            return  # already so (collected with that count): prompts and frames stay as they are
        for s in self.samples:
            try:
                with_image_count(s["conversations"][0]["value"], num_frames)
            except ValueError as e:
                raise ValueError(f"dataset '{self.name}': sample {s.get('id')!r}: {e}") from None
        self._reindex(self.frame_sampling, num_frames, f"{num_frames} frames cannot be chosen")
        self.num_frames = num_frames

    def set_progress_cue(self, cue: str) -> None:
        """From now on each navigation sample's prompt carries progress cue `cue` (`vlm.mm_utils.add_progress_cue`,
        with the sample's step `t`); "none" is the collected prompt. Scene QA prompts are left as they are.

        Collected samples store NaVILA's prompt; a model trained with a cue (its config's `progress_cue`) must train
        on the prompts the agent will show it. A navigation sample without `t`, or whose prompt is not NaVILA's:
        ValueError naming the dataset and the sample, and nothing changes."""
        from vlm.mm_utils import add_progress_cue, check_progress_cue

        check_progress_cue(cue)
        if cue != "none":
            steps = self._steps(f"progress cue '{cue}' cannot be added")
            for s, t in zip(self.samples, steps, strict=True):
                if s.get("task", "navigation") == "navigation":
                    try:
                        add_progress_cue(s["conversations"][0]["value"], cue, t)
                    except ValueError as e:
                        raise ValueError(f"dataset '{self.name}': sample {s.get('id')!r}: {e}") from None
        self.progress_cue = cue

    def follow_model(self, model: Any) -> None:
        """Show every sample as the agent would show it to `model`: its config's history rule, frame count and
        progress cue (NaVILA's uniform rule, the collected count and no cue when absent)."""
        from vlm.mm_utils import model_frame_sampling, model_progress_cue

        count = getattr(getattr(model, "config", None), "num_video_frames", None)
        if count is not None:
            self.set_num_frames(int(count))
        self.set_frame_sampling(model_frame_sampling(model))
        self.set_progress_cue(model_progress_cue(model))

    def prompt(self, index: int) -> str:
        """Sample `index`'s user turn as a model sees it: the collected prompt with the set frame count's `<image>`
        markers and progress cue."""
        from vlm.mm_utils import add_progress_cue, with_image_count

        sample = self.samples[index]
        prompt = sample["conversations"][0]["value"]
        if self.num_frames is not None:
            prompt = with_image_count(prompt, self.num_frames)
        if self.progress_cue != "none" and sample.get("task", "navigation") == "navigation":
            prompt = add_progress_cue(prompt, self.progress_cue, int(sample["t"]))
        return prompt

    def expert_route_steps(self, index: int) -> int | None:
        """The low-level steps of sample `index`'s trajectory when the expert drove it from start to STOP (collect's
        trajectories.jsonl: no policy decision, ended with STOP), else None."""
        return self._route_length[index]

    def progress(self, index: int) -> float | None:
        """How far along its route sample `index` is, t / (steps - 1) in [0, 1] (1 at the expert's STOP), for the
        progress-monitor loss (`train --progress-loss-weight`, beyond NaVILA). None when the route's length says
        nothing about it: a scene QA sample, or a trajectory that a policy drove in part (DAgger: its detours are
        not progress) or that did not end with the expert's STOP."""
        sample = self.samples[index]
        steps = self.expert_route_steps(index)
        if steps is None or sample.get("task", "navigation") != "navigation" or "t" not in sample:
            return None
        return min(1.0, int(sample["t"]) / (steps - 1))

    def resize_frames(self, resize: Callable[[np.ndarray], np.ndarray], max_bytes: int) -> None:
        """From now on keep each trajectory's frames decoded and passed through `resize` (the tower's own
        `ImageProcessor.resize`, so the pixels are exactly what `SampleEncoder.pixels` would make), up to `max_bytes`
        of them in a least-recently-used cache. Why: a tower that trains sees every frame of a sample on every
        draw; decoding a 224 px frames file per sample costs more than a small tower's step, and at 64 px all
        57.8k frames of the shipped data take 0.7 GB. Non-square frames keep the plain path (the processor may pad)."""
        if max_bytes < 0:
            raise ValueError(f"resize_frames: max_bytes must be >= 0, got {max_bytes}")
        self._resize, self._max_bytes = resize, int(max_bytes)
        self._cache.clear()
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.samples)

    def _trajectory_frames(self, path: Path) -> FrameStore:
        # An LRU: consecutive samples of one trajectory share its frames file. It holds `cache_trajectories`
        # files, or `max_bytes` of them once `resize_frames` is on.
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        if not path.is_file():
            raise ValueError(f"dataset '{self.name}': frames file {path} is missing")
        frames = FrameStore(path)
        resizing = self._resize is not None and self._max_bytes > 0
        if resizing and frames.shape[1] == frames.shape[2]:
            frames = FrameStore.from_rgb(
                np.stack([self._resize(frames.frame(i)) for i in range(len(frames))])
            )
        self._cache[path] = frames
        self._cached_bytes += frames.nbytes
        while len(self._cache) > 1 and (
            self._cached_bytes > self._max_bytes if resizing else len(self._cache) > self._cache_size
        ):
            self._cached_bytes -= self._cache.popitem(last=False)[1].nbytes
        return frames

    def frame_source(self, index: int) -> tuple[Path, str]:
        """(shard folder, frames file name) of sample `index`: the trajectory whose frames it indexes."""
        return self._shard_of[index], self.samples[index]["frames_file"]

    def frames_for(self, index: int) -> np.ndarray:
        """The sample's frames [N, H, W, 3] uint8, black where its index is -1."""
        sample = self.samples[index]
        store = self._trajectory_frames(self._shard_of[index] / sample["frames_file"])
        out = np.zeros((len(sample["frames"]), *store.shape[1:]), dtype=np.uint8)  # [N, H, W, 3]
        for i, f in enumerate(sample["frames"]):
            if f >= 0:
                out[i] = store.frame(f)
        return out

    def _by_trajectory(self, indices: Sequence[int]) -> dict[tuple[Path, str], list[int]]:
        """Positions into `indices`, grouped by the trajectory file their samples index (`frame_source`)."""
        by_file: dict[tuple[Path, str], list[int]] = {}
        for position, index in enumerate(indices):
            by_file.setdefault(self.frame_source(index), []).append(position)
        return by_file

    def current_frames(self, indices: Sequence[int]) -> Iterator[tuple[list[int], np.ndarray]]:
        """The current (last) frame of each sample in `indices`, one trajectory file at a time: (positions into
        `indices`, frames [n, H, W, 3] uint8). Each file is opened once and only these frames are decoded, not the
        samples' histories. There are `len({frame_source(i) for i in indices})` groups."""
        for (shard, frames_file), positions in self._by_trajectory(indices).items():
            store = FrameStore(shard / frames_file)
            current = [self.samples[indices[p]]["frames"][-1] for p in positions]
            yield positions, np.stack([store.frame(f) for f in current])

    def current_depths(self, indices: Sequence[int]) -> Iterator[tuple[list[int], np.ndarray]]:
        """The stored depth of each sample's current frame (`collect --depth-size S`), one trajectory at a time:
        (positions into `indices`, depth [n, S, S] float32 metres, 0 where nothing was hit). A clear error names
        the file when the collection has no depth."""
        for (shard, frames_file), positions in self._by_trajectory(indices).items():
            path = shard / depth_file(frames_file)
            if not path.is_file():
                raise ValueError(f"{path}: no stored depth; collect with `navila-agent collect --depth-size S`")
            with np.load(path) as npz:
                depth = npz["depth"]
            current = [self.samples[indices[p]]["frames"][-1] for p in positions]
            yield positions, depth[current].astype(np.float32)

    def current_objects(
        self, indices: Sequence[int]
    ) -> Iterator[tuple[list[int], np.ndarray, list[str], list[str]]]:
        """The stored object map of each sample's current frame (`collect --object-size S`), one trajectory at a
        time: (positions into `indices`, ids [n, S, S] int16 (1 + object index, 0 = none), the objects'
        categories, their colours). A clear error names the file when the collection has no object maps."""
        for (shard, frames_file), positions in self._by_trajectory(indices).items():
            path = shard / objects_file(frames_file)
            if not path.is_file():
                raise ValueError(f"{path}: no stored object maps; collect with `navila-agent collect --object-size S`")
            with np.load(path) as npz:
                ids, categories, colours = npz["ids"], npz["categories"].tolist(), npz["colours"].tolist()
            current = [self.samples[indices[p]]["frames"][-1] for p in positions]
            yield positions, ids[current], categories, colours

    def has_objects(self, index: int) -> bool:
        """Whether sample `index`'s trajectory has stored object maps (`collect --object-size S`)."""
        shard, frames_file = self.frame_source(index)
        return (shard / objects_file(frames_file)).is_file()

    def has_depth(self, index: int) -> bool:
        """Whether sample `index`'s trajectory has stored depth (`collect --depth-size S`)."""
        shard, frames_file = self.frame_source(index)
        return (shard / depth_file(frames_file)).is_file()

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        conv = sample["conversations"]
        return {
            "id": sample["id"],
            "frames": self.frames_for(index),
            "prompt": self.prompt(index),
            "answer": conv[1]["value"],
            "action": sample.get("action"),
            "task": sample.get("task", "navigation"),
            "instruction": sample.get("instruction"),
            "progress": self.progress(index),
        }


class MixtureDataset(torch.utils.data.Dataset):
    """Several `TrajectoryDataset`s back to back; `weights[i]` is sample i's sampling weight."""

    def __init__(self, entries: Sequence[DatasetEntry]) -> None:
        if not entries:
            raise ValueError("the data mixture is empty")
        self.datasets = [TrajectoryDataset(e.path, e.name) for e in entries]
        self.entries = list(entries)
        self._offsets = np.cumsum([0] + [len(d) for d in self.datasets])
        self.weights = torch.cat(
            [
                torch.full((len(d),), float(e.weight), dtype=torch.float64)
                for d, e in zip(self.datasets, entries, strict=True)
            ]
        )

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(dataset number, index within that dataset) of mixture index `index`."""
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return k, index - int(self._offsets[k])

    def __getitem__(self, index: int) -> dict[str, Any]:
        k, i = self.locate(index)
        item = self.datasets[k][i]
        item["dataset"] = self.entries[k].name
        return item

    def mirrored(self, index: int) -> dict[str, Any]:
        """Sample `index` as its left-right mirror image (`mirror_item`), or as it is when it cannot be mirrored."""
        item = self[index]
        return mirror_item(item) or item

    def sizes(self) -> dict[str, int]:
        return {e.name: len(d) for e, d in zip(self.entries, self.datasets, strict=True)}

    def set_frame_sampling(self, rule: str) -> None:
        """`TrajectoryDataset.set_frame_sampling` on every dataset (the trained model's history rule)."""
        for d in self.datasets:
            d.set_frame_sampling(rule)

    def set_progress_cue(self, cue: str) -> None:
        """`TrajectoryDataset.set_progress_cue` on every dataset (the trained model's prompt cue)."""
        for d in self.datasets:
            d.set_progress_cue(cue)

    def set_num_frames(self, num_frames: int) -> None:
        """`TrajectoryDataset.set_num_frames` on every dataset (the trained model's frame count)."""
        for d in self.datasets:
            d.set_num_frames(num_frames)

    def follow_model(self, model: Any) -> None:
        """`TrajectoryDataset.follow_model` on every dataset: the frames and prompts the agent would show `model`."""
        for d in self.datasets:
            d.follow_model(model)

    def resize_frames(self, resize: Callable[[np.ndarray], np.ndarray], max_bytes: int) -> None:
        """`TrajectoryDataset.resize_frames` on every dataset, `max_bytes` shared evenly among them."""
        for d in self.datasets:
            d.resize_frames(resize, max_bytes // len(self.datasets))

    def resized_frames(self) -> dict[str, int]:
        """Datasets collected with `--frame-size S` (frames stored resized to S×S), name → S. The agent sees the
        env's full-size frames, so a model trained on these sees sharper images at evaluation than in training;
        `train` warns about it."""
        out = {}
        for entry, data in zip(self.entries, self.datasets, strict=True):
            size = (data.manifest.get("settings") or {}).get("frame_size")
            if size is not None:
                out[entry.name] = int(size)
        return out


def sample_index_stream(weights: torch.Tensor, seed: int, start: int = 0) -> Iterator[int]:
    """An endless, deterministic stream of sample indices, starting at position `start`.

    Epoch e is a permutation (equal weights) or a weighted draw with replacement of len(weights) indices, both
    from a generator seeded with (seed, e), so a resumed run that skips `start` samples sees exactly the order
    the interrupted run would have seen.
    """
    n = len(weights)
    if n == 0:
        raise ValueError("cannot sample from an empty dataset")
    uniform = bool(torch.all(weights == weights[0]))
    epoch, offset = divmod(start, n)
    while True:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        if uniform:
            order = torch.randperm(n, generator=g)
        else:
            order = torch.multinomial(weights, n, replacement=True, generator=g)
        yield from order[offset:].tolist()
        epoch, offset = epoch + 1, 0


def mirror_stream(stream: Iterator[int], size: int, prob: float, seed: int, start: int = 0) -> Iterator[int]:
    """`stream`'s indices (into a dataset of `size` samples, drawn from stream position `start` on), each one
    shifted to `index + size` (its mirror image, `MirroredDataset`) with probability `prob`. The coin of position
    t depends only on (seed, t), so a run resumed at position `start` mirrors what the interrupted run would have."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"mirror probability must be in [0, 1], got {prob}")
    for position, index in enumerate(stream, start):
        coin = np.random.default_rng([seed, 0x6D6972, position]).random()
        yield index + size if coin < prob else index


class MirroredDataset(torch.utils.data.Dataset):
    """A dataset of N samples seen as 2N: index i < N is sample i, index N + i its mirror image (the base's
    `mirrored(i)`: flipped frames or the flipped frames' cached features, mirrored text). Samples that cannot be
    mirrored exactly (`mirror_item`) are served unmirrored at both indices."""

    def __init__(self, base: Any) -> None:
        if not hasattr(base, "mirrored"):
            raise ValueError(f"{type(base).__name__} cannot serve mirrored samples (no `mirrored(index)`)")
        self.base = base
        self.weights = base.weights  # the draw is over the N samples; `mirror_stream` picks the side
        self.datasets = base.datasets
        self.entries = base.entries

    def __len__(self) -> int:
        return 2 * len(self.base)

    def sizes(self) -> dict[str, int]:
        return self.base.sizes()

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.base)
        return self.base.mirrored(index - n) if index >= n else self.base[index]


@dataclass
class EncoderConfig:
    conv_template: str = "llama_3"  # conversation template of the model
    action_token_weight: float = 1.0  # loss weight on the action-phrase and amount tokens (1.0 = plain CE)
    max_length: int | None = None  # truncate text tokens to this many (None = no limit)
    uint8_images: bool = (
        True  # batches carry resized uint8 pixels; `normalize` runs on the device (4x less copying)
    )

    def __post_init__(self) -> None:
        if self.action_token_weight <= 0:
            raise ValueError(f"action_token_weight must be > 0, got {self.action_token_weight}")
        if self.max_length is not None and self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")


class SampleEncoder:
    """Raw sample → model inputs (token ids, labels, label weights, pixels); also the batch collate function."""

    def __init__(
        self,
        tokenizer: Any,
        image_processor: Any,
        config: EncoderConfig | None = None,
        image_aspect_ratio: str = "resize",
    ) -> None:
        from vlm.conversation import get_conv_template

        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.config = config or EncoderConfig()
        self.image_aspect_ratio = image_aspect_ratio
        # uint8 batches need a plain resize-then-normalise processor (the "resize" aspect mode).
        self._raw_pixels = (
            self.config.uint8_images
            and image_aspect_ratio == "resize"
            and all(hasattr(image_processor, a) for a in ("resize", "image_mean", "image_std"))
        )
        get_conv_template(self.config.conv_template)  # validates the name early
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = pad if pad is not None else (getattr(tokenizer, "eos_token_id", None) or 0)

    def prompt_text(self, question: str) -> str:
        """The chat prompt up to (and including) the open assistant header."""
        from vlm.conversation import get_conv_template

        conv = get_conv_template(self.config.conv_template)
        conv.append_message(conv.roles[0], question)
        conv.append_message(conv.roles[1], None)
        return conv.get_prompt()

    def _answer_tokens(self, answer: str, weighted: bool = True) -> tuple[list[int], list[float]]:
        target = answer + EOT
        w = self.config.action_token_weight if weighted else 1.0
        if w == 1.0:
            ids = self.tokenizer(target, add_special_tokens=False).input_ids
            return ids, [1.0] * len(ids)
        enc = self.tokenizer(target, add_special_tokens=False, return_offsets_mapping=True)
        if "offset_mapping" not in enc:
            raise ValueError("action_token_weight != 1 needs a fast tokenizer (return_offsets_mapping)")
        spans = [m.span() for m in _ACTION_SPAN.finditer(answer)]
        weights = [w if any(a < e and b > s for s, e in spans) else 1.0 for a, b in enc["offset_mapping"]]
        return list(enc["input_ids"]), weights

    def encode(self, item: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One sample: input_ids / labels / label_weights [L], images [N, 3, S, S] (or features [N, tokens, C])."""
        from vlm.mm_utils import tokenizer_image_token

        prompt_ids = tokenizer_image_token(self.prompt_text(item["prompt"]), self.tokenizer)
        # Only navigation answers carry an action to weight (a scene QA answer's "2 meters" is not one).
        answer_ids, answer_w = self._answer_tokens(item["answer"], item.get("task", "navigation") == "navigation")
        input_ids = prompt_ids + answer_ids
        labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
        weights = [0.0] * len(prompt_ids) + answer_w
        if self.config.max_length is not None and len(input_ids) > self.config.max_length:
            # Truncate the prompt's text from the left of the answer would drop the label; refuse instead.
            raise ValueError(
                f"sample {item.get('id')}: {len(input_ids)} text tokens exceed max_length={self.config.max_length}"
            )
        if "features" in item:  # cached tower outputs (vlm/train/frame_features.py) instead of frames
            images = torch.from_numpy(np.asarray(item["features"]))  # [N, tokens, C] float16
        else:
            images = self.pixels(item["frames"])
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),  # [L]
            "labels": torch.tensor(labels, dtype=torch.long),  # [L]
            "label_weights": torch.tensor(weights, dtype=torch.float32),  # [L]
            "images": images,  # [N, 3, S, S]
        }

    def pixels(self, frames: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Frames [N, H, W, 3] uint8 → the tower's input [N, 3, S, S]: resized uint8 when `uint8_images` (then
        call `normalize` on the device), else the processor's full float preprocessing."""
        from vlm.mm_utils import process_images

        if self._raw_pixels:
            # Resize only (the processor's own PIL filter); scaling + normalising happen in `normalize`.
            resized = np.stack([self.image_processor.resize(np.asarray(f)) for f in frames])  # [N, S, S, 3]
            return torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous()  # [N, 3, S, S] uint8
        return process_images(list(frames), self.image_processor, self.image_aspect_ratio)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 pixels [N, 3, S, S] → the tower's normalised float input (a no-op for float batches and for
        cached features)."""
        if images.dtype != torch.uint8:
            return images
        mean = torch.tensor(self.image_processor.image_mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.image_processor.image_std, device=images.device).view(1, 3, 1, 1)
        return (images.float().div_(255.0) - mean) / std  # [N, 3, S, S] float32

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Encode and right-pad a batch: input_ids / labels / attention_mask [B, L], images [B*N, 3, S, S], and
        progress [B] when an item has a progress value.

        Images are uint8 when `uint8_images` is on: call `normalize` after moving the batch to its device.
        """
        encoded = [self.encode(item) for item in items]
        length = max(len(e["input_ids"]) for e in encoded)
        batch = len(encoded)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        weights = torch.zeros((batch, length), dtype=torch.float32)
        mask = torch.zeros((batch, length), dtype=torch.long)
        for i, e in enumerate(encoded):
            n = len(e["input_ids"])
            input_ids[i, :n], labels[i, :n], weights[i, :n], mask[i, :n] = (
                e["input_ids"],
                e["labels"],
                e["label_weights"],
                1,
            )
        batch = {
            "input_ids": input_ids,  # [B, L]
            "attention_mask": mask,  # [B, L]
            "labels": labels,  # [B, L]
            "label_weights": weights,  # [B, L]
            "images": torch.cat(
                [e["images"] for e in encoded]
            ),  # [B*N, 3, S, S] uint8 or float, sample-major
        }
        if any(item.get("progress") is not None for item in items):
            # The progress-monitor target (TrajectoryDataset.progress), NaN where a sample has none.
            batch["progress"] = torch.tensor(
                [math.nan if item.get("progress") is None else float(item["progress"]) for item in items]
            )  # [B]
        return batch
