"""Benchmark the VLM the way the agent calls it: NaVILA's way (all 8 frames re-encoded every call) vs ours (each
frame encoded once: 1 new frame per call, 7 from the feature cache), and batch 1 vs batch 8.

    python -m benchmarks.bench_vlm                      # embedded config, random weights, 1 CPU thread
    python -m benchmarks.bench_vlm --checkpoint PATH    # any VILA-layout checkpoint

Every decision generates exactly `--new-tokens` tokens (stop tokens ignored) so that random and trained weights
cost the same. Prints one table; the numbers go into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

CORPUS = [
    "The next action is move forward 25 cm.", "The next action is move forward 50 cm.",
    "The next action is move forward 75 cm.", "The next action is turn left 15 degrees.",
    "The next action is turn left 30 degrees.", "The next action is turn right 45 degrees.",
    "The next action is stop.", "Walk past the sofa, go through the doorway and stop next to the kitchen table.",
    "Turn around and exit the bedroom, then walk down the hallway to the bathroom.",
    "Imagine you are a robot programmed for navigation tasks. You have been given a video of historical observations",
    "Analyze this series of images to decide your next action, which could be turning left or right by a specific degree",
]  # fmt: skip
INSTRUCTION = "Walk past the sofa, go through the doorway and stop next to the kitchen table."


def build_model(checkpoint: str | None, device: str, dtype: str | None):
    """The embedded config with random LM weights (ImageNet EfficientNet tower), or a checkpoint."""
    import vlm

    if checkpoint:
        return vlm.load(checkpoint, device=device, dtype=dtype)
    from agent.prompt import build_user_prompt, prompt_phrases

    # Like `navila-agent train --init embedded`: answers plus whole user prompts, NaVILA's fixed words as phrases.
    corpus = [*CORPUS, *(build_user_prompt(text) for text in CORPUS)] * 4
    tokenizer = vlm.build_tokenizer(corpus, vocab_size=2048, phrases=prompt_phrases())
    torch.manual_seed(0)
    return vlm.build_model(vlm.embedded_config(tokenizer), tokenizer).to(device).eval()


def prompt_for(model, num_frames: int) -> str:
    from agent.prompt import build_prompt

    return build_prompt(INSTRUCTION, model.conv_mode, num_frames)


class Episode:
    """A growing frame history with keys (uid, t), like the agent's."""

    def __init__(self, uid: str, size: int, rng: np.random.Generator) -> None:
        from vlm.media import Image

        self.uid, self.size, self.rng, self.Image = uid, size, rng, Image
        self.frames: list = []

    def observe(self) -> None:
        self.frames.append(self.Image(self.rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8), key=(self.uid, len(self.frames))))

    def sample(self, num_frames: int) -> list:
        from vlm.mm_utils import vlnce_frame_sampling

        return vlnce_frame_sampling(self.frames, num_frames)


def decide(model, samples, new_tokens: int, feature_cache: bool) -> None:
    """One model call producing exactly `new_tokens` tokens per sample (no early stop)."""
    from vlm.generation import greedy_generate

    with torch.inference_mode():
        inputs = model.prepare_samples(samples, use_cache=feature_cache)
        greedy_generate(model.llm, inputs, new_tokens, stop_token_ids=[], pad_token_id=0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


CPU_TIMES: dict[int, list[float]] = {}  # id(times list) -> process CPU seconds of the same calls


def timed(fn: Callable[[], None], repeats: int, device: str) -> list[float]:
    """Wall seconds per call; the process CPU seconds of the same calls go to CPU_TIMES (on a loaded shared
    machine, CPU time with one thread approximates what an idle core would take)."""
    times, cpu = [], []
    for _ in range(repeats):
        sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU_TIMES[id(times)] = cpu
    return times


def cpu_median(times: list[float]) -> float:
    return statistics.median(CPU_TIMES[id(times)])


def run(args: argparse.Namespace) -> dict[str, float]:
    torch.set_num_threads(args.threads)
    model = build_model(args.checkpoint, args.device, args.dtype)
    size = model.image_processor.size
    prompt = prompt_for(model, args.frames)
    rng = np.random.default_rng(0)
    episodes = [Episode(f"ep{b}", size, rng) for b in range(args.batch)]
    for ep in episodes:
        for _ in range(30):  # some history so the 8 sampled frames are all distinct
            ep.observe()
    for ep in episodes:  # warm the cache with the whole history, as an agent calling every step would have
        model.encode_media(ep.frames)
    results: dict[str, float] = {}

    def call(batch: int, feature_cache: bool) -> Callable[[], None]:
        def fn() -> None:
            for ep in episodes[:batch]:
                ep.observe()  # one new frame per decision
            decide(model, [(ep.sample(args.frames), prompt) for ep in episodes[:batch]], args.new_tokens, feature_cache)

        return fn

    timed(call(1, True), 2, args.device)  # warm-up (allocator, kernels)
    timed(call(1, False), 1, args.device)
    navila = timed(call(1, False), args.calls, args.device)
    ours = timed(call(1, True), args.calls, args.device)
    results["navila_call_ms"] = 1000 * statistics.median(navila)
    results["ours_call_ms"] = 1000 * statistics.median(ours)
    results["navila_call_cpu_ms"] = 1000 * cpu_median(navila)
    results["ours_call_cpu_ms"] = 1000 * cpu_median(ours)

    pixels_8 = model.image_processor.preprocess([f.pixels for f in episodes[0].sample(args.frames)])
    pixels_1 = pixels_8[-1:]
    step = model.vision_batch_size()
    with torch.inference_mode():
        v8 = timed(lambda: [model.encode_images(pixels_8[i : i + step].to(args.device)) for i in range(0, len(pixels_8), step)], args.calls, args.device)
        v1 = timed(lambda: model.encode_images(pixels_1.to(args.device)), args.calls, args.device)
    results["vision_8_ms"] = 1000 * statistics.median(v8)
    results["vision_1_ms"] = 1000 * statistics.median(v1)
    results["vision_8_cpu_ms"] = 1000 * cpu_median(v8)
    results["vision_1_cpu_ms"] = 1000 * cpu_median(v1)

    batch_b = timed(call(args.batch, True), max(2, args.calls // 2), args.device)
    results["batch1_decisions_per_s"] = 1 / statistics.median(ours)
    results[f"batch{args.batch}_decisions_per_s"] = args.batch / statistics.median(batch_b)
    results["batch1_decisions_per_cpu_s"] = 1 / cpu_median(ours)
    results[f"batch{args.batch}_decisions_per_cpu_s"] = args.batch / cpu_median(batch_b)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        results["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    results["visual_tokens_per_call"] = args.frames * model.tokens_per_image
    results["prompt_tokens_per_call"] = int(model.prepare_samples([(episodes[0].sample(args.frames), prompt)]).attention_mask.sum())
    return results


def report(results: dict[str, float], args: argparse.Namespace) -> str:
    b = args.batch
    lines = [
        f"VLM benchmark: {'embedded config (random LM weights)' if not args.checkpoint else args.checkpoint}, device {args.device}, "
        f"{args.threads} thread(s), {args.frames} frames, {args.new_tokens} new tokens, torch {torch.__version__}",
        f"LM input per call: {results['prompt_tokens_per_call']} positions ({results['visual_tokens_per_call']} visual); "
        f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        "",
        "| measure | wall clock | process CPU time |",
        "| --- | --- | --- |",
    ]
    r = results

    def pair(key: str, unit: str, fmt: str = ".1f") -> str:
        return f"{r[key]:{fmt}} {unit} | {r[key.replace('_ms', '_cpu_ms').replace('_per_s', '_per_cpu_s')]:{fmt}} {unit}"

    def ratio(a: str, b: str) -> str:
        cpu = lambda k: k.replace("_ms", "_cpu_ms").replace("_per_s", "_per_cpu_s")  # noqa: E731
        return f"{r[a] / r[b]:.2f}x | {r[cpu(a)] / r[cpu(b)]:.2f}x"

    lines += [
        f"| per call, NaVILA way (8 frames re-encoded) | {pair('navila_call_ms', 'ms')} |",
        f"| per call, ours (1 new frame, feature cache) | {pair('ours_call_ms', 'ms')} |",
        f"| whole-call speed-up | {ratio('navila_call_ms', 'ours_call_ms')} |",
        f"| vision, 8 frames | {pair('vision_8_ms', 'ms')} |",
        f"| vision, 1 frame | {pair('vision_1_ms', 'ms')} |",
        f"| vision cost ratio | {ratio('vision_8_ms', 'vision_1_ms')} |",
        f"| throughput batch 1 | {pair('batch1_decisions_per_s', 'decisions/s', '.2f')} |",
        f"| throughput batch {b} | {pair(f'batch{b}_decisions_per_s', 'decisions/s', '.2f')} |",
        f"| batch {b} / batch 1 throughput | {ratio(f'batch{b}_decisions_per_s', 'batch1_decisions_per_s')} |",
        f"| peak process memory (RSS) | {r['peak_rss_mb']:.0f} MB | |",
    ]
    if "peak_gpu_mb" in results:
        lines.append(f"| peak GPU memory | {results['peak_gpu_mb']:.0f} MB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a VILA-layout checkpoint; default: the embedded config with random weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: float32 on CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the target is one core)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=12, help="tokens generated per decision ('The next action is move forward 75 cm.')")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calls", type=int, default=10, help="timed calls per measure (the median is reported)")
    args = parser.parse_args(argv)
    print(report(run(args), args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
