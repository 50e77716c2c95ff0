"""Train from cached vision-tower features: with a frozen tower, each stored frame is encoded once, not per sample.

Why: every training sample shows 8 frames, and consecutive samples of a trajectory share most of them, so a
frozen tower re-encoding pixels spends most of each step (~60% measured on CPU with EfficientNet-Lite0)
recomputing the same features. Here the tower runs once per stored frame (`precompute_features`), the
features go to one fp16 `.npy` per trajectory ([T, tokens, C]), and training reads them back
(`CachedFeatureDataset`) and runs only projector + language model (`CachedFeatureModel`).

Equivalence: the frames go through exactly the training path (`SampleEncoder.pixels`: the processor's resize,
then `normalize`), and a -1 (padding) frame gets the features of a black frame, so the loss on cached
features equals the loss on pixels up to fp16 rounding of the features (tested).

Cache layout: `ROOT/<tower fingerprint>/frames/<frames file stem>-<hash of its resolved path>.npy`, and beside it
`...-mirror.npy`, the features of the horizontally flipped frames, for runs with mirror augmentation
(`train --mirror-prob`). The tower fingerprint hashes the tower's weights, its cell-colour setting and the
preprocessing, so a different tower never reads stale features.
Files are written atomically (tmp + rename): an interrupted precompute resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from vlm.train.dataset import FrameStore, MixtureDataset, SampleEncoder, mirror_item, mirrorable
from vlm.train.losses import SplicedLoss


def tower_fingerprint(model: nn.Module, encoder: SampleEncoder) -> str:
    """A short hash of the vision tower's weights, its cell colours and the image preprocessing (what the features
    depend on)."""
    h = hashlib.sha1()
    for name, tensor in sorted(model.vision_tower.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    colour_grid = getattr(model.vision_tower, "colour_grid", 0)  # 0 for towers outside vlm.vision (test fakes)
    if colour_grid:  # the cell colours add no weights; towers without them keep the keys of existing caches
        h.update(f"colour_grid={colour_grid}".encode())
    ip = encoder.image_processor
    h.update(
        json.dumps(
            {k: str(getattr(ip, k, None)) for k in ("size", "image_mean", "image_std", "crop_size")}
        ).encode()
    )
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_frames(
    model: nn.Module, encoder: SampleEncoder, frames: np.ndarray, batch_size: int = 2
) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 → tower features [T, tokens, C] float16, through the training preprocessing.

    batch_size 2 on CPU: larger batches overflow the caches and cost ~2x per frame (measured, EfficientNet-Lite0).
    """
    tower = model.vision_tower
    device = next(tower.parameters()).device
    out = []
    for start in range(0, len(frames), batch_size):
        pixels = encoder.normalize(
            encoder.pixels(frames[start : start + batch_size]).to(device)
        )  # [b, 3, S, S]
        out.append(tower(pixels).float().cpu().numpy().astype(np.float16))  # [b, tokens, C]
    return np.concatenate(out)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


class FeatureIndex:
    """Where each trajectory's cached features live (`path(frames_file)`), plus the black frame's features.

    Keyed by the frames file's resolved path: a dataset folder that links to another's frames (a subset, a
    mixture of the same data) reads the features already computed for them.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.black = np.load(root / "black.npy")  # [tokens, C] float16

    def path(self, frames_file: Path, mirrored: bool = False) -> Path:
        """The features of `frames_file`'s frames, or (`mirrored`) of the same frames flipped horizontally."""
        resolved = frames_file.resolve()
        digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
        return self.root / "frames" / f"{resolved.stem}-{digest}{'-mirror' if mirrored else ''}.npy"


def precompute_features(
    model: nn.Module,
    dataset: MixtureDataset,
    encoder: SampleEncoder,
    cache_root: str | Path,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 2,
    mirror: bool = False,
    workers: int = 1,
) -> FeatureIndex:
    """Encode every trajectory's frames of `dataset` once (skipping files already cached); returns the index.

    `progress(done, total)` is called as trajectory files are done. `mirror` also encodes every file's frames flipped
    horizontally (mirror augmentation; the black frame is its own mirror image). `workers` > 1 encodes in that
    many spawned processes on the CPU, the torch threads split between them: at batch 2 one process does not use
    several cores well (measured in benchmarks/bench_train.py). Each file is written by one process, atomically.
    """
    if workers < 1:
        raise ValueError(f"precompute_features: workers must be >= 1, got {workers}")
    fingerprint = tower_fingerprint(model, encoder)
    root = Path(cache_root) / fingerprint
    was_training = model.vision_tower.training
    model.vision_tower.eval()  # BatchNorm statistics frozen, as in the frozen-tower training path
    try:
        black_path = root / "black.npy"
        if not black_path.is_file():
            size = int(getattr(encoder.image_processor, "size", 224) or 224)
            black = np.zeros((1, size, size, 3), dtype=np.uint8)
            _atomic_save(black_path, encode_frames(model, encoder, black)[0])
        index = FeatureIndex(root)
        jobs = frame_sources(dataset)
        if workers > 1 and len(jobs) > 1:
            _encode_in_processes(model.vision_tower, encoder, index, jobs, mirror, batch_size, workers, progress)
        else:
            for done, src in enumerate(jobs, 1):
                _encode_source(model, encoder, index, src, mirror, batch_size)
                if progress is not None:
                    progress(done, len(jobs))
    finally:
        model.vision_tower.train(was_training)
    return index


def frame_sources(dataset: MixtureDataset) -> list[Path]:
    """Every stored frames file of the mixture once, in the datasets' sample order (an interrupted run has a prefix)."""
    sources: dict[Path, None] = {}
    for d in dataset.datasets:
        for i in range(len(d)):
            shard, frames_file = d.frame_source(i)
            sources.setdefault(shard / frames_file, None)
    return list(sources)


def _feature_paths(index: FeatureIndex, src: Path, mirror: bool) -> list[tuple[bool, Path]]:
    """(flipped, cache path) of every feature file that frames file `src` needs: its own, and its mirror image's."""
    return [(flip, index.path(src, flip)) for flip in ((False, True) if mirror else (False,))]


def _encode_source(
    model: Any, encoder: SampleEncoder, index: FeatureIndex, src: Path, mirror: bool, batch_size: int
) -> None:
    """Write the features of one frames file (and of its mirror image) unless they are cached already."""
    todo = [(flip, dst) for flip, dst in _feature_paths(index, src, mirror) if not dst.is_file()]
    if todo:
        store = FrameStore(src)
        frames = np.stack([store.frame(i) for i in range(len(store))])  # [T, H, W, 3]
        for flip, dst in todo:
            shown = np.ascontiguousarray(frames[:, :, ::-1]) if flip else frames
            _atomic_save(dst, encode_frames(model, encoder, shown, batch_size))


def _encode_part(
    tower_spec: tuple[dict, Any, dict[str, torch.Tensor]], encoder: SampleEncoder, root: Path, sources: list[Path],
    mirror: bool, batch_size: int, threads: int,
) -> None:  # fmt: skip
    """A worker process's share of `precompute_features(workers=N)`.

    The tower comes as (config dict, feature selection, weights) and is rebuilt here: a transformers tower does not
    pickle (its output-capturing hooks are local functions)."""
    from vlm.vision import build_vision_tower

    torch.set_num_threads(threads)
    config, selection, state = tower_spec
    tower = build_vision_tower(config, selection, pretrained=False)
    tower.load_state_dict(state)
    dtype = next(v.dtype for v in state.values() if v.is_floating_point())
    model = SimpleNamespace(vision_tower=tower.to(dtype).eval())  # all that `encode_frames` reads of a model
    index = FeatureIndex(root)
    for src in sources:
        _encode_source(model, encoder, index, src, mirror, batch_size)


def _encode_in_processes(
    tower: nn.Module,
    encoder: SampleEncoder,
    index: FeatureIndex,
    jobs: list[Path],
    mirror: bool,
    batch_size: int,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Split `jobs` between `workers` spawned processes; progress counts the files that exist, once a second."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    threads = max(1, torch.get_num_threads() // workers)
    spec = (tower.config_dict, tower.selection, {k: v.detach().cpu() for k, v in tower.state_dict().items()})
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(_encode_part, spec, encoder, index.root, jobs[k::workers], mirror, batch_size, threads)
            for k in range(workers)
        ]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=1.0)
            if progress is not None:
                done = sum(all(dst.is_file() for _, dst in _feature_paths(index, src, mirror)) for src in jobs)
                progress(done, len(jobs))
        for future in futures:
            future.result()  # a worker's exception, raised here


class CachedFeatureDataset(torch.utils.data.Dataset):
    """The mixture's samples with `features` [N, tokens, C] float16 (cached tower outputs) instead of frames."""

    def __init__(self, base: MixtureDataset, index: FeatureIndex, open_files: int = 64) -> None:
        self.base = base
        self.index = index
        self.weights = base.weights
        self.datasets = base.datasets
        self.entries = base.entries
        self._open: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._open_files = open_files

    def __len__(self) -> int:
        return len(self.base)

    def sizes(self) -> dict[str, int]:
        return self.base.sizes()

    def _features(self, path: Path) -> np.ndarray:
        # Memory-mapped and LRU-bounded: the OS page cache keeps what is hot, without holding every file open.
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        if not path.is_file():
            raise ValueError(
                f"cached features {path} are missing; rerun with the feature cache to rebuild them"
                + (
                    " (with --mirror-prob > 0: precompute_features(..., mirror=True))"
                    if "-mirror" in path.name
                    else ""
                )
            )
        array = np.load(path, mmap_mode="r")  # [T, tokens, C] float16
        self._open[path] = array
        if len(self._open) > self._open_files:
            self._open.popitem(last=False)
        return array

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._item(index, flipped=False)

    def mirrored(self, index: int) -> dict[str, Any]:
        """Sample `index` as its left-right mirror image: the flipped frames' features, mirrored text
        (`mirror_item`); as it is when it cannot be mirrored."""
        k, i = self.base.locate(index)
        sample = self.base.datasets[k].samples[i]
        prompt = sample["conversations"][0]["value"]
        if not mirrorable(sample.get("task", "navigation"), sample.get("instruction"), prompt):
            return self._item(index, flipped=False)  # its flipped features are never read
        return mirror_item(self._item(index, flipped=True))  # type: ignore[return-value]

    def _item(self, index: int, flipped: bool) -> dict[str, Any]:
        k, i = self.base.locate(index)
        d = self.base.datasets[k]
        sample = d.samples[i]
        shard, frames_file = d.frame_source(i)
        cached = self._features(self.index.path(shard / frames_file, flipped))
        feats = np.stack(
            [cached[f] if f >= 0 else self.index.black for f in sample["frames"]]
        )  # [N, tokens, C]
        conv = sample["conversations"]
        return {
            "id": sample["id"],
            "features": feats,
            "prompt": d.prompt(i),
            "answer": conv[1]["value"],
            "action": sample.get("action"),
            "task": sample.get("task", "navigation"),
            "instruction": sample.get("instruction"),
            "progress": d.progress(i),
            "dataset": self.base.entries[k].name,
        }


class CachedFeatureModel(SplicedLoss):
    """Projector + LM of a VLM over cached tower features, with the (action-)weighted answer loss and the progress
    monitor's (`vlm.train.losses`).

    forward(input_ids, attention_mask, images=features [N, tokens, C], labels, label_weights[, progress]) — the
    trainer's batch, where `images` holds tower features instead of pixels. The tower is not run (it must be frozen).
    """

    def __init__(
        self, model: nn.Module, progress_head: nn.Module | None = None, progress_weight: float = 0.0
    ) -> None:
        super().__init__(
            model,
            ("mm_projector", "llm", "tokens_per_image", "get_input_embeddings"),
            "--cache-vision-features needs",
            progress_head,
            progress_weight,
        )

    def forward(self, input_ids, attention_mask, images, labels, label_weights, progress=None):
        from vlm.splice import splice_image_features, unpad

        proj = self.model.mm_projector
        dtype = next(proj.parameters()).dtype
        feats = proj(images.to(dtype))  # [N, T', D]
        spliced = splice_image_features(
            unpad(input_ids, attention_mask),
            list(feats),
            self.model.get_input_embeddings(),
            unpad(labels, attention_mask),
            padding_side="right",
        )
        return self.losses(spliced, input_ids, attention_mask, label_weights, progress)
