"""Which inputs does a model use? Input ablations for a navigation checkpoint, on samples and in the simulator.

A model that has learned to follow instructions must get worse when it is given the wrong instruction, and one
that reads its frames must get worse when they are black. Both are cheap to measure and say where the next
effort goes (language grounding, the vision tower, or the frame history), so this script measures them:

    # held-out samples (a `navila-agent collect` folder): the greedy answer's action kind under each ablation
    python -m benchmarks.ablate_inputs samples --samples DIR [--model models/navila-tiny] [--limit 300]
    python -m benchmarks.ablate_inputs samples --samples DIR --decisions first   # each trajectory's step 0 only

    # the simulator: a data root whose episodes carry another path's instruction, then `navila-agent eval` on it
    python -m benchmarks.ablate_inputs episodes --split r2r_val_unseen --output /tmp/shuffled
    navila-agent eval --split r2r_val_unseen --data-root /tmp/shuffled --output runs/shuffled ...

Sample ablations (each sample keeps its label; the model answers greedily like the agent, or teacher-forced):

- `full`: the sample as collected;
- `other_instruction`: the instruction of a sample from another trajectory (the next trajectory in the folder,
  cyclically; a trajectory's own second instruction describes the same path and is never used);
- `current_as_history`: every history frame that was seen replaced by the current frame (black slots, the frames
  before the episode started, stay black): the history's content is gone, its length — how far into the episode
  the agent is — stays;
- `no_history`: the 7 history frames black (what the agent sees at its first step), the current frame kept; a
  model that reads "all black history" as "the episode just started" answers as it would at step 0;
- `black_frames`: all 8 frames black: the instruction and the prompt alone;
- `other_steps` (only for a model trained with `--progress-cue steps`, so not run unless asked for): the prompt's
  step count taken from the sample half the folder away (`other_steps`), the frames and instruction kept: how much
  the answer rests on the number.

Perturbations (not run unless asked for): a model that reads its frames the way a person would keeps its answer
when they change by what nobody can see. Each leaves black slots black and changes every frame that was seen:

- `pixel_noise`: every pixel value moved by -1, 0 or +1 (of 255, uniformly; the same draw on every run);
- `jpeg`: every frame through JPEG at quality 90, as `eval --record` stores frames (`benchmarks.callbacks`) and as a
  robot's compressed camera stream delivers them.

Besides accuracy against the labels, the table gives each ablation's "same as full": the share of samples whose
answer names the same action kind as without it. A perturbation can flip many answers and leave the accuracy where
it was (flips both ways); session 33 found the shipped model flips about a fifth of them.

The episode ablation swaps whole instructions (text and tokens) between episodes of the same scene, taking them from
another trajectory (a different path) in that scene, or from the next scene's when a scene has a single trajectory.
Positions, goals and ground truth stay, so SR, SPL and nDTW are measured against the true route. The scenes are
linked, not copied.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.store import atomic_write_json
from vlm.media import perturb_frames

DECISIONS = ("all", "first", "later")
DEFAULT_ABLATIONS = ("full", "other_instruction", "current_as_history", "no_history", "black_frames")
# other_steps needs a model with a progress cue; the perturbations answer another question (see the docstring)
SAMPLE_ABLATIONS = (*DEFAULT_ABLATIONS, "other_steps", "pixel_noise", "jpeg")


class AblatedSamples:
    """A view of a collected folder (`TrajectoryDataset`) with one input ablation applied to every item."""

    def __init__(self, data: Any, ablation: str) -> None:
        if ablation not in SAMPLE_ABLATIONS:
            raise ValueError(f"unknown ablation '{ablation}'; available: {', '.join(SAMPLE_ABLATIONS)}")
        self.data = data
        self.ablation = ablation
        self._donor = other_trajectory_instructions(data.samples) if ablation == "other_instruction" else {}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.data[index])
        if self.ablation == "other_instruction":
            own = self.data.samples[index]["instruction"]
            donor = self._donor[self.data.samples[index]["traj"]]
            if f'"{own}"' not in item["prompt"]:
                raise ValueError(f"sample {item['id']}: its instruction is not quoted in its prompt")
            item["prompt"] = item["prompt"].replace(f'"{own}"', f'"{donor}"', 1)
        elif self.ablation == "current_as_history":
            frames = item["frames"].copy()
            seen = np.asarray(self.data.samples[index]["frames"][:-1]) >= 0
            frames[:-1][seen] = frames[-1]
            item["frames"] = frames
        elif self.ablation == "no_history":
            frames = np.zeros_like(item["frames"])
            frames[-1] = item["frames"][-1]
            item["frames"] = frames
        elif self.ablation == "black_frames":
            item["frames"] = np.zeros_like(item["frames"])
        elif self.ablation == "other_steps":
            item["prompt"] = other_steps(item["prompt"], self.data.samples, index)
        elif self.ablation in ("pixel_noise", "jpeg"):
            item["frames"] = perturb_frames(item["frames"], self.ablation, seed=index)
        return item


def other_steps(prompt: str, samples: list[dict[str, Any]], index: int) -> str:
    """`prompt` with its progress cue's step count (`vlm.mm_utils.add_progress_cue`) replaced by the step of the
    sample half the folder away from `index`. ValueError when the prompt has no such cue."""
    from vlm.mm_utils import progress_sentence

    own = progress_sentence(samples[index]["t"])
    if own not in prompt:
        raise ValueError(
            f"sample {samples[index].get('id')!r}: the 'other_steps' ablation needs a model trained with "
            "`--progress-cue steps` (its prompt has no step count)"
        )
    donor = samples[(index + len(samples) // 2) % len(samples)]["t"]
    return prompt.replace(own, progress_sentence(donor), 1)


def other_trajectory_instructions(samples: list[dict[str, Any]]) -> dict[str, str]:
    """trajectory id → the instruction of the next trajectory (in folder order, cyclically) whose path differs.

    Two episodes of one path share their frames file, so "another path" means another `frames_file`."""
    first: dict[str, dict[str, Any]] = {}
    for s in samples:
        first.setdefault(s["traj"], s)
    trajs = list(first)
    paths = {t: first[t]["frames_file"] for t in trajs}
    if len(set(paths.values())) < 2:
        raise ValueError("the 'other_instruction' ablation needs samples of at least two different paths")
    out = {}
    for i, t in enumerate(trajs):
        j = (i + 1) % len(trajs)
        while paths[trajs[j]] == paths[t]:
            j = (j + 1) % len(trajs)
        out[t] = first[trajs[j]]["instruction"]
    return out


def sample_ablations(
    model_path: Path,
    samples: Path,
    limit: int,
    mode: str,
    ablations: list[str],
    decisions: str = "all",
) -> dict[str, dict[str, Any]]:
    """`action_accuracy` of the model, once per ablation, on an even spread of `limit` samples (`decisions`
    "all"), on those of them that are not a trajectory's first decision ("later"), or on (at most `limit` of) the
    trajectories' first decisions ("first": t = 0, where the answer can come only from the instruction and the
    first view). With `full` among the ablations, every one also gets `same_as_full` (1 for `full`): the share of
    samples whose predicted kind it leaves unchanged."""
    import vlm
    from vlm.train.action_eval import action_accuracy
    from vlm.train.dataset import SampleEncoder, TrajectoryDataset

    data = TrajectoryDataset(samples)
    if "instruction" not in data.samples[0]:
        raise ValueError(
            f"{samples}: its samples carry no 'instruction' field (collected by an older version?)"
        )
    if decisions not in DECISIONS:
        raise ValueError(f"unknown decisions '{decisions}'; available: {', '.join(DECISIONS)}")
    if decisions == "first":
        picks = [i for i, sample in enumerate(data.samples) if sample.get("t") == 0][:limit]
    else:
        picks = np.linspace(0, len(data) - 1, num=min(limit, len(data))).round().astype(int).tolist()
        if decisions == "later":
            picks = [i for i in picks if data.samples[i].get("t") != 0]
    if not picks:
        raise ValueError(f"{samples}: no sample to score for --decisions {decisions}")
    model = vlm.load(model_path, device="cpu", dtype="float32")
    data.follow_model(model)  # the frames and prompts the agent would show this model
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    results = {
        a: action_accuracy(model, AblatedSamples(data, a), encoder, picks, mode=mode) for a in ablations
    }
    if "full" in results:
        full = results["full"]["predicted"]
        for r in results.values():
            r["same_as_full"] = float(np.mean([a == b for a, b in zip(r["predicted"], full, strict=True)]))
    return results


def ablation_table(results: dict[str, dict[str, Any]]) -> str:
    """A text table: kind / exact accuracy, recall per kind, the change in kind accuracy against `full` and the share
    of predicted kinds it leaves unchanged ("same")."""
    kinds = ("forward", "left", "right", "stop")
    base = results.get("full", {}).get("kind_acc")
    head = f"{'ablation':<18} {'kind acc':>8} {'Δ full':>7} {'same':>6} {'exact':>6} " + " ".join(
        f"{k:>7}" for k in kinds
    )
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        delta = f"{r['kind_acc'] - base:+.3f}" if base is not None else "-"
        recalls = " ".join(f"{r['per_kind'].get(k, float('nan')):>7.2f}" for k in kinds)
        same = f"{r['same_as_full']:.3f}" if "same_as_full" in r else "-"
        lines.append(
            f"{name:<18} {r['kind_acc']:>8.3f} {delta:>7} {same:>6} {r['exact_acc']:>6.3f} {recalls}"
        )
    first = next(iter(results.values()))
    lines.append(
        f"(n={first['samples']} samples, {first['mode'].replace('_', '-')}; 'same': share of answers naming the "
        "kind they name under 'full'; columns after 'exact': recall per true kind)"
    )
    return "\n".join(lines)


def shuffled_instruction_root(
    split: str, output: Path, data_root: Path | None = None, role: str = "guide"
) -> dict[str, Any]:
    """Write `output` as a data root holding `split` with instructions swapped between paths (see the module
    docstring); its `scene_datasets` links to the source's. Returns counts for the report."""
    from envs.datasets.io import write_split
    from envs.datasets.splits import parse_split, read_split_data, scene_root

    dataset, sub = parse_split(split)
    data = read_split_data(split, data_root, role)
    episodes = data.episodes
    # scene -> path -> its episodes (indices into `episodes`, in file order)
    by_scene: dict[str, dict[Any, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, ep in enumerate(episodes):
        path = ep.trajectory_id if ep.trajectory_id is not None else ep.episode_id
        by_scene[ep.scene_id][path].append(i)
    scenes = sorted(by_scene)
    if len(scenes) == 1 and len(by_scene[scenes[0]]) < 2:
        raise ValueError(f"split '{split}': swapping instructions needs episodes of at least two paths")

    new_instructions = [ep.instruction for ep in episodes]
    cross_scene = 0
    for si, scene in enumerate(scenes):
        paths = sorted(by_scene[scene], key=str)
        for k, path in enumerate(paths):
            if len(paths) > 1:
                donors = by_scene[scene][paths[(k + 1) % len(paths)]]
            else:  # a single path in this scene: the next scene's episodes
                nxt = by_scene[scenes[(si + 1) % len(scenes)]]
                donors = sorted(i for members in nxt.values() for i in members)  # file order
                cross_scene += len(by_scene[scene][path])
            for rank, i in enumerate(by_scene[scene][path]):
                new_instructions[i] = episodes[donors[rank % len(donors)]].instruction
    for ep, ins in zip(episodes, new_instructions, strict=True):
        ep.instruction = ins

    dataset_dir = output / "datasets" / data.episodes_path.parent.parent.name
    write_split(dataset_dir, sub, episodes, data.instruction_vocab, role=None if dataset == "r2r" else role)
    link = output / "scene_datasets"
    if not link.exists():
        link.symlink_to(scene_root(data_root).resolve(), target_is_directory=True)
    return {"split": split, "episodes": len(episodes), "scenes": len(scenes), "from_next_scene": cross_scene}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ablate_inputs", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("samples", help="action accuracy on collected samples under each input ablation")
    s.add_argument("--samples", type=Path, required=True, help="A folder written by `navila-agent collect`.")
    s.add_argument("--model", type=Path, default=None, help="Checkpoint folder (default: the shipped model).")
    s.add_argument("--limit", type=int, default=300, help="Samples scored, spread evenly over the folder.")
    s.add_argument("--mode", choices=("generate", "teacher_forced"), default="generate")
    s.add_argument(
        "--decisions",
        choices=DECISIONS,
        default="all",
        help="all: the even spread; later: its samples after a trajectory's first decision; first: t = 0 only.",
    )
    s.add_argument(
        "--ablations",
        default=",".join(DEFAULT_ABLATIONS),
        help=f"Comma-separated, of: {', '.join(SAMPLE_ABLATIONS)} (default: {', '.join(DEFAULT_ABLATIONS)}).",
    )
    s.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    e = sub.add_parser("episodes", help="write a data root whose episodes carry another path's instruction")
    e.add_argument("--split", required=True, help="Split name, e.g. r2r_val_unseen.")
    e.add_argument("--output", type=Path, required=True, help="New data root (must not hold the split yet).")
    e.add_argument(
        "--data-root", type=Path, default=None, help="Source VLN-CE data folder (default: generated)."
    )
    e.add_argument("--role", default="guide", help="RxR-CE role.")
    args = parser.parse_args(argv)

    if args.command == "samples":
        ablations = [a.strip() for a in args.ablations.split(",") if a.strip()]
        unknown = [a for a in ablations if a not in SAMPLE_ABLATIONS]
        if unknown or not ablations:
            parser.error(f"--ablations: unknown {unknown}; available: {', '.join(SAMPLE_ABLATIONS)}")
        if not args.samples.is_dir():
            parser.error(f"--samples: {args.samples} is not a folder")
        if args.limit < 1:
            parser.error("--limit must be at least 1")
        if args.model is None:
            from benchmarks.cli.evaluate import default_model_path

            args.model = default_model_path()
        results = sample_ablations(args.model, args.samples, args.limit, args.mode, ablations, args.decisions)
        print(f"model {args.model}, samples {args.samples}")
        print(ablation_table(results))
        if args.json is not None:
            atomic_write_json(args.json, {"model": str(args.model), "results": results})
        return 0

    if any(args.output.glob("datasets/*/*")):
        parser.error(f"--output: {args.output} already holds a dataset; choose a new folder")
    args.output.mkdir(parents=True, exist_ok=True)
    report = shuffled_instruction_root(args.split, args.output, args.data_root, args.role)
    print(json.dumps(report))
    print(f"now: navila-agent eval --split {args.split} --data-root {args.output} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
