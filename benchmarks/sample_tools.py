"""What the tools that score a checkpoint on collected validation samples share (`benchmarks.accuracy_by_progress`,
`benchmarks.progress_monitor`): the model with the samples as it would see them, and the command line around a
scoring function (`MODEL SAMPLES [--every K] [--feature-cache DIR] [--json F]`, a progress bar, bad input named)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.store import atomic_write_json


@dataclass
class ScoringSetup:
    """A loaded model (float32, CPU, eval mode), its collected samples as it sees them, and the batch encoder."""

    model: Any
    data: Any  # vlm.train.dataset.MixtureDataset of the one folder, following the model's inputs
    dataset: Any  # `data`, or its cached-feature view (CachedFeatureDataset) with a feature cache
    encoder: Any  # vlm.train.dataset.SampleEncoder

    @property
    def folder(self) -> Any:
        """The folder's TrajectoryDataset (raw samples, steps, routes)."""
        return self.data.datasets[0]

    def spread_picks(self, every: int, keep: Callable[[int], bool], nothing: str) -> list[int]:
        """Every `every`-th sample of the folder that is not a rebalanced copy (`copy` > 0) and passes `keep`;
        ValueError `nothing` when none does."""
        samples = self.folder.samples
        picks = [i for i in range(0, len(samples), every) if not samples[i].get("copy", 0) and keep(i)]
        if not picks:
            raise ValueError(nothing)
        return picks


def check_every(every: int) -> int:
    """`every` (the tools' --every), ValueError when below 1."""
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    return every


def open_samples(model_path: Path, samples: Path, feature_cache: Path | None = None) -> ScoringSetup:
    """Load `model_path` and show it `samples` with its own frame count, history rule and cue; with `feature_cache`
    the frozen tower's features are computed once per tower there (`vlm.train.frame_features`)."""
    import vlm
    from vlm.train.dataset import MixtureDataset, SampleEncoder
    from vlm.train.registry import DatasetEntry

    data = MixtureDataset([DatasetEntry(samples.name, samples)])
    model = vlm.load(model_path, device="cpu", dtype="float32").eval()
    data.follow_model(model)  # the frames and prompts the agent would show this model
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    dataset: Any = data
    if feature_cache is not None:
        from vlm.train.frame_features import CachedFeatureDataset, precompute_features

        dataset = CachedFeatureDataset(data, precompute_features(model, data, encoder, str(feature_cache)))
    return ScoringSetup(model=model, data=data, dataset=dataset, encoder=encoder)


def sample_tool_main(
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    model_help: str,
    label: str,
    score: Callable[..., dict[str, Any]],
    report: Callable[[dict[str, Any]], str],
) -> int:
    """Parse `MODEL SAMPLES --every --feature-cache --json`, run `score(model, samples, every, feature_cache,
    progress=callback)` under a progress bar labelled `label` (a ValueError becomes a usage error), print `report`
    of the result and write it as JSON when asked."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("model", type=Path, help=model_help)
    parser.add_argument("samples", type=Path, help="collected folder of a validation split (navila-agent collect)")
    parser.add_argument("--every", type=int, default=1, help="score every k-th sample (a spread subset)")
    parser.add_argument("--feature-cache", type=Path, default=None, help="cache the frozen tower's features here")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON (atomically)")
    args = parser.parse_args(argv)
    for flag, path in (("MODEL", args.model / "config.json"), ("SAMPLES", args.samples / "manifest.json")):
        if not path.is_file():
            parser.error(f"{flag} {path.parent}: {path.name} not found")
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=None)
        try:
            result = score(
                args.model,
                args.samples,
                args.every,
                args.feature_cache,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except ValueError as e:
            parser.error(str(e))
    print(report(result))
    if args.json is not None:
        atomic_write_json(args.json, result)
    return 0
