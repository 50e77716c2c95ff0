"""GPU check of the VLM at NaVILA 8B scale with random weights (nothing downloads): per-call latency and memory.

Builds a Llama-3-8B-shaped LM (hidden 4096, 32 layers, 32 heads, 8 KV heads, MLP 14336, vocab 128256), a
SigLIP-so400m-shaped tower (hidden 1152, 27 layers, 16 heads, MLP 4304, patch 14, 384 px) and the mlp_downsample
projector, directly in bf16 on the GPU, then times one model call (vision + prompt prefill + 32 greedy tokens, fixed
length) for 8 frames at batch 1 and 8: NaVILA's way (all 8 frames re-encoded) and ours (1 new frame per sample, 7
from the feature cache), with sdpa and, when flash-attn is importable, flash_attention_2. Prints every result as it
goes and a markdown table at the end (NaVILA reports ~595 ms per call on an RTX 4090 in fp16).

    python -m benchmarks.gpu_vlm_check                  # on a CUDA machine (~2-4 minutes on an H100)
    python -m benchmarks.gpu_vlm_check --tiny           # tiny shapes on CPU: checks the script itself
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from benchmarks.store import atomic_write_json

NAVILA_TEXT_TOKENS = (62, 110)  # llama-3 tokens before the first <image> and after the last one (system + NaVILA prompt)


def say(message: str) -> None:
    print(message, flush=True)


def model_config(tiny: bool):
    """The LlavaLlamaConfig at full NaVILA 8B shapes, or tiny shapes for a CPU smoke run."""
    from vlm.configuration import LlavaLlamaConfig, llama_cfg

    if tiny:
        llm = llama_cfg(vocab_size=512, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128)
        tower = {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "image_size": 42, "patch_size": 14}  # fmt: skip
    else:
        llm = llama_cfg(vocab_size=128256, hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336,
                        max_position_embeddings=8192, rope_theta=500000.0)  # fmt: skip
        tower = {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                 "num_attention_heads": 16, "image_size": 384, "patch_size": 14, "layer_norm_eps": 1e-6}  # fmt: skip
    return LlavaLlamaConfig(
        llm_cfg=llm, vision_tower_cfg=tower, mm_projector_cfg={"mm_projector_type": "mlp_downsample", "model_type": "v2l_projector"},
        mm_vision_select_layer=-2, mm_vision_select_feature="cls_patch", conv_mode="llama_3",
    )  # fmt: skip


def build(tiny: bool, device: str, dtype: torch.dtype, attn: str):
    """Random weights allocated and initialised directly on `device` in `dtype`."""
    import vlm

    with torch.device(device):
        model = vlm.build_model(model_config(tiny), tokenizer=None, pretrained_vision=False, attn_implementation=attn, dtype=dtype)
    return model.eval()


def set_attention(model, attn: str) -> None:
    """Switch the LM's attention kernel in place (rebuilding 8B weights would cost a minute)."""
    if hasattr(model.llm, "set_attn_implementation"):
        model.llm.set_attn_implementation(attn)
    else:  # older transformers
        model.llm.config._attn_implementation = attn


class Stream:
    """One episode's growing frame history (keys (uid, t)), frames of `size` px like the simulator's."""

    def __init__(self, uid: str, size: int, rng: np.random.Generator) -> None:
        from vlm.media import Image

        self.uid, self.size, self.rng, self.Image, self.frames = uid, size, rng, Image, []

    def observe(self) -> None:
        pixels = self.rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)
        self.frames.append(self.Image(pixels, key=(self.uid, len(self.frames))))

    def sample(self, n: int) -> list:
        from vlm.mm_utils import vlnce_frame_sampling

        return vlnce_frame_sampling(self.frames, n)


def prompt_ids(n_frames: int, vocab: int, rng: np.random.Generator) -> torch.Tensor:
    """Token ids shaped like NaVILA's prompt: text, then `<image>\\n` per frame, then text (random ids)."""
    from vlm.constants import IMAGE_TOKEN_INDEX

    before, after = NAVILA_TEXT_TOKENS
    ids = list(rng.integers(10, vocab, before))
    for _ in range(n_frames):
        ids += [IMAGE_TOKEN_INDEX, int(rng.integers(10, vocab))]
    ids += list(rng.integers(10, vocab, after))
    return torch.tensor(ids, dtype=torch.long)


def one_call(model, streams, n_frames: int, new_tokens: int, feature_cache: bool, ids: torch.Tensor, device: str) -> dict[str, float]:
    """One batched decision: returns vision / prefill+decode / total seconds (CUDA-synchronised)."""
    from vlm.generation import greedy_generate
    from vlm.splice import splice_image_features

    def now() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter()

    with torch.inference_mode():
        t0 = now()
        for s in streams:
            s.observe()  # one new frame per decision
        images = [im for s in streams for im in s.sample(n_frames)]
        features = model.encode_media(images, use_cache=feature_cache)
        t1 = now()
        inputs = splice_image_features([ids] * len(streams), features, model.get_input_embeddings(), None, "left")
        out = greedy_generate(model.llm, inputs, new_tokens, stop_token_ids=[], pad_token_id=0)
        t2 = now()
    assert all(len(o) == new_tokens for o in out)
    return {"vision_s": t1 - t0, "lm_s": t2 - t1, "total_s": t2 - t0}


def measure(model, attn: str, batch: int, feature_cache: bool, args, device: str) -> dict:
    """Median over `args.repeats` calls after one warm-up, plus peak memory of this configuration."""
    rng = np.random.default_rng(batch)
    size = model.image_processor.size if args.tiny else args.frame_size
    streams = [Stream(f"{attn}-{batch}-{feature_cache}-{b}", size, rng) for b in range(batch)]
    for s in streams:
        for _ in range(args.history):
            s.observe()
        if feature_cache:
            model.encode_media(s.frames)  # an agent calling every step has encoded its whole history already
    ids = prompt_ids(args.frames, model.llm.config.vocab_size, rng)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    one_call(model, streams, args.frames, args.new_tokens, feature_cache, ids, device)  # warm-up
    calls = [one_call(model, streams, args.frames, args.new_tokens, feature_cache, ids, device) for _ in range(args.repeats)]
    row = {k: 1000 * statistics.median(c[k] for c in calls) for k in ("vision_s", "lm_s", "total_s")}
    # The same call with one new token: its LM time is the prompt prefill alone (the rest of lm_ms is decoding).
    prefill = [one_call(model, streams, args.frames, 1, feature_cache, ids, device)["lm_s"] for _ in range(min(2, args.repeats))]
    row = {"attn": attn, "batch": batch, "feature_cache": feature_cache, "vision_ms": row["vision_s"], "lm_ms": row["lm_s"],
           "call_ms": row["total_s"], "ms_per_decision": row["total_s"] / batch, "prefill_ms": 1000 * min(prefill),
           "positions": int(ids.numel() - args.frames + args.frames * model.tokens_per_image)}  # fmt: skip
    row["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    model.feature_cache.clear()
    return row


def table(rows: list[dict], new_tokens: int) -> str:
    lines = [
        f"| attention | batch | frames encoded per sample | vision ms | prefill ms | LM (prefill + {new_tokens} tokens) ms | call ms | ms per decision | peak GPU GB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        mode = "1 new (feature cache)" if r["feature_cache"] else "8 (NaVILA way)"
        lines.append(f"| {r['attn']} | {r['batch']} | {mode} | {r['vision_ms']:.1f} | {r['prefill_ms']:.1f} | {r['lm_ms']:.1f} | {r['call_ms']:.1f} | "
                     f"{r['ms_per_decision']:.1f} | {r['peak_gpu_gb']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def environment(device: str) -> str:
    import transformers

    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
    if device.startswith("cuda"):
        parts += [f"CUDA {torch.version.cuda}", f"GPU {torch.cuda.get_device_name(0)}",
                  f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"]  # fmt: skip
    else:
        parts.append(f"CPU ({platform.processor() or platform.machine()})")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="NaVILA-8B-scale VLM latency/memory check with random weights.")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (tests the script)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--history", type=int, default=20, help="frames observed before timing (so the 8 sampled differ)")
    parser.add_argument("--frame-size", type=int, default=512, help="simulator frame size in px (NaVILA: 512, resized to 384)")
    parser.add_argument("--attn", default="auto", help="comma list of sdpa,flash_attention_2,eager; auto = sdpa (+ fa2 if importable)")
    parser.add_argument("--budget-s", type=float, default=420, help="stop starting new measurements after this many seconds")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    device = args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    say(f"# VLM GPU check ({'tiny' if args.tiny else 'NaVILA 8B shapes'}, random weights, {dtype})")
    say(environment(device))
    from vlm.language_model import flash_attention_available

    if args.attn == "auto":
        attns = ["sdpa"] + (["flash_attention_2"] if device.startswith("cuda") and flash_attention_available() else [])
        if "flash_attention_2" not in attns:
            say("flash_attention_2: not measured (flash-attn not importable or no CUDA)")
    else:
        attns = [a.strip() for a in args.attn.split(",") if a.strip()]
    batches = [int(b) for b in args.batches.split(",")]

    t = time.perf_counter()
    model = build(args.tiny, device, dtype, attns[0])
    n_llm = sum(p.numel() for p in model.llm.parameters()) / 1e9
    n_vis = sum(p.numel() for p in model.vision_tower.parameters()) / 1e9
    say(f"built in {time.perf_counter() - t:.1f} s: LM {n_llm:.2f} B params, vision {n_vis:.3f} B, "
        f"{model.tokens_per_image} tokens per frame")  # fmt: skip
    if device.startswith("cuda"):
        say(f"weights on GPU: {torch.cuda.memory_allocated() / 2**30:.1f} GiB")

    rows: list[dict] = []
    for attn in attns:
        try:
            if attn != attns[0]:
                set_attention(model, attn)
        except Exception as error:  # report and go on: one kernel failing must not lose the other results
            say(f"attention {attn}: cannot switch ({type(error).__name__}: {error})")
            continue
        for batch in batches:
            for feature_cache in (False, True):
                if time.perf_counter() - start > args.budget_s:
                    say(f"time budget of {args.budget_s:.0f} s reached: skipping {attn} batch {batch} cache={feature_cache}")
                    continue
                try:
                    row = measure(model, attn, batch, feature_cache, args, device)
                except Exception as error:
                    say(f"{attn} batch {batch} cache={feature_cache}: FAILED {type(error).__name__}: {error}")
                    traceback.print_exc(limit=3)
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()
                    continue
                rows.append(row)
                say(f"{attn} batch {batch} {'cache' if feature_cache else 'no-cache'}: call {row['call_ms']:.1f} ms "
                    f"(vision {row['vision_ms']:.1f}, LM {row['lm_ms']:.1f} of which prefill {row['prefill_ms']:.1f}), "
                    f"{row['ms_per_decision']:.1f} ms/decision, "
                    f"peak {row['peak_gpu_gb']:.1f} GB")  # fmt: skip
    say("")
    say(environment(device))
    say(table(rows, args.new_tokens))
    for attn in attns:
        by = {(r["batch"], r["feature_cache"]): r for r in rows if r["attn"] == attn}
        for batch in batches:
            if (batch, False) in by and (batch, True) in by:
                say(f"{attn} batch {batch}: feature cache speed-up {by[(batch, False)]['call_ms'] / by[(batch, True)]['call_ms']:.2f}x")
        if (1, True) in by and (batches[-1], True) in by and batches[-1] != 1:
            gain = by[(1, True)]["ms_per_decision"] / by[(batches[-1], True)]["ms_per_decision"]
            say(f"{attn}: batch {batches[-1]} throughput / batch 1 = {gain:.2f}x")
    say(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        atomic_write_json(Path(args.json), {"environment": environment(device), "rows": rows})
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
