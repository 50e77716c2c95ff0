"""Evaluation throughput: episodes per hour of the runner with the oracle and with the NaVILA agent, on 1 vs 2
worker processes and with K = 1 vs K = 8 envs per worker (one batched model call for K envs).

    python -m benchmarks.bench_eval                               # random-weight tiny model, small generated split
    python -m benchmarks.bench_eval --model models/navila-tiny --gpus 0 --episodes 32 --max-steps 60

Without --model a random-weight model of the NaVILA architecture is written to a temporary VILA-layout folder
(`--random-model tiny`: seconds-fast test config; `embedded`: the shipped model's size). Random weights answer
nonsense, so every decision is a parse failure + retry + fallback turn: the model cost per decision is the
worst case (two generations), and episodes last `--max-steps`. Times are wall-clock of the whole `evaluate`
call (worker start, model load and env creation included), so they are what a user waits for.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANSWERS = [
    "The next action is move forward 75 cm.",
    "The next action is turn left 30 degrees.",
    "The next action is turn right 45 degrees.",
    "The next action is stop.",
]


@dataclass(frozen=True)
class Scenario:
    name: str  # label in the table
    agent: str  # "oracle" or "navila"
    workers: int  # worker processes
    envs_per_worker: int  # K


SCENARIOS = (
    Scenario("oracle 1w K=1", "oracle", 1, 1),
    Scenario("oracle 2w K=1", "oracle", 2, 1),
    Scenario("navila 1w K=1", "navila", 1, 1),
    Scenario("navila 2w K=1", "navila", 2, 1),
    Scenario("navila 1w K=8", "navila", 1, 8),
    Scenario("navila 2w K=8", "navila", 2, 8),  # what the model card's evaluations use on the 2-core VM
)


def random_checkpoint(folder: Path, kind: str) -> Path:
    """Write a random-weight VILA-layout checkpoint ("tiny" or "embedded" config) to `folder`."""
    import torch

    import vlm

    torch.manual_seed(0)
    tokenizer = vlm.build_tokenizer(
        [*ANSWERS, "Imagine you are a robot programmed for navigation tasks."] * 4, vocab_size=300
    )
    if kind == "tiny":
        config = vlm.tiny_config(vocab_size=len(tokenizer))
    elif kind == "embedded":
        config = vlm.embedded_config(tokenizer)
    else:
        raise ValueError(f"unknown --random-model '{kind}'; available: tiny, embedded")
    model = vlm.build_model(config, tokenizer, pretrained_vision=False)
    vlm.save_checkpoint(model, folder)
    return folder


def run_scenario(s: Scenario, args: argparse.Namespace, model: str | None, out: Path) -> dict[str, Any]:
    """Run one scenario into a fresh run folder; return its throughput numbers."""
    from benchmarks.runner import EvalConfig, evaluate

    limit = args.oracle_episodes if s.agent == "oracle" else args.episodes
    config = EvalConfig(
        split=args.split, output=out / s.name.replace(" ", "_"), agent=s.agent,
        model=model if s.agent == "navila" else None, limit=limit, workers=s.workers,
        envs_per_worker=s.envs_per_worker, gpus=tuple(args.gpus), max_steps=args.max_steps,
        data_root=args.data_root, overwrite=True,
    )  # fmt: skip
    t0 = time.perf_counter()
    outcome = evaluate(config)
    wall = time.perf_counter() - t0
    summary = outcome.summary or {}
    steps = int(summary.get("timings", {}).get("steps", 0))
    return {
        "scenario": s.name,
        "episodes": outcome.new,
        "errors": summary.get("errors", 0),
        "wall_s": wall,
        "episodes_per_hour": 3600.0 * outcome.new / wall,
        "steps_per_s": steps / wall,
        "sr": summary.get("sr"),
    }


def _ratio(rows: dict[str, dict[str, Any]], a: str, b: str) -> str:
    if a not in rows or b not in rows:
        return "n/a"
    return f"{rows[a]['steps_per_s'] / rows[b]['steps_per_s']:.2f}x"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--split", default="r2r_val_unseen", help="split to run (generated unless --data-root)")
    p.add_argument("--data-root", default=None, help="VLN-CE data folder")
    p.add_argument("--episodes", type=int, default=16, help="episodes per navila scenario")
    p.add_argument("--oracle-episodes", type=int, default=16, help="episodes per oracle scenario")
    p.add_argument(
        "--max-steps", type=int, default=24, help="step limit per episode (random models never stop)"
    )
    p.add_argument("--model", default=None, help="VILA-layout checkpoint (default: a random-weight model)")
    p.add_argument(
        "--random-model", default="tiny", help="config of the random-weight model: tiny | embedded"
    )
    p.add_argument("--gpus", default="", help="GPU indices for the workers, e.g. 0 or 0,1")
    p.add_argument("--only", default="", help="comma-separated scenario names to run (default: all)")
    p.add_argument(
        "--houses", type=int, default=2, help="houses of the generated split (NAVILA_AGENT_GEN_HOUSES)"
    )
    args = p.parse_args(argv)
    from benchmarks.parallel import parse_gpus

    args.gpus = parse_gpus(args.gpus)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        out = Path(tmp)
        if args.data_root is None:
            # A small generated split of its own (a private cache), with enough episodes for every scenario.
            os.environ["NAVILA_AGENT_CACHE"] = str(out / "cache")
            os.environ["NAVILA_AGENT_GEN_HOUSES"] = str(args.houses)
            per_house = -(-max(args.episodes, args.oracle_episodes) // args.houses)
            os.environ["NAVILA_AGENT_GEN_EPISODES"] = str(per_house)
        model = args.model
        if model is None and any(s.agent == "navila" for s in chosen):
            model = str(random_checkpoint(out / "random_model", args.random_model))
        from benchmarks.runner import EvalConfig, load_episodes

        load_episodes(
            EvalConfig(split=args.split, output=out / "x", data_root=args.data_root)
        )  # build it once
        rows: dict[str, dict[str, Any]] = {}
        for s in chosen:
            rows[s.name] = r = run_scenario(s, args, model, out)
            print(
                f"{r['scenario']:<16} {r['episodes']:>4} ep  {r['wall_s']:7.1f} s  "
                f"{r['episodes_per_hour']:9.0f} ep/h  {r['steps_per_s']:7.1f} steps/s  errors {r['errors']}",
                flush=True,
            )
    print(f"oracle 2 workers / 1 worker: {_ratio(rows, 'oracle 2w K=1', 'oracle 1w K=1')}")
    print(f"navila 2 workers / 1 worker: {_ratio(rows, 'navila 2w K=1', 'navila 1w K=1')}")
    print(f"navila K=8 / K=1 (1 worker): {_ratio(rows, 'navila 1w K=8', 'navila 1w K=1')}")
    print(f"navila 2 workers / 1 worker at K=8: {_ratio(rows, 'navila 2w K=8', 'navila 1w K=8')}")
    print(
        "(ratios of low-level steps per second: episodes all last --max-steps for a random model, but not for "
        f"the oracle; python {sys.version.split()[0]}, {os.cpu_count()} CPUs)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
