"""Peak memory of the progress monitor's read in a prefill: every layer's hidden states against the final one only.

`generate_text(..., return_progress=True)` needs the LM's final hidden state at the last prompt position. Asking the
LM for `output_hidden_states=True` keeps every layer's [B, L, D] until the forward returns (33 of them on an 8B
Llama); `vlm.language_model.final_hidden_states` reads the lm_head's input instead, so each layer's output is freed
as the next layer runs. This script measures the peak memory of one prefill forward of a random Llama either way,
each in its own process (the peak RSS above the RSS before the forward on the CPU, Linux's VmHWM reset, `torch.cuda.max_memory_allocated` on a GPU), and prints the ratio.

    python -m benchmarks.bench_monitor_memory [--layers 16 --hidden 1024 --batch 8 --length 1024] [--device cpu]

The default shape is a ~0.3B Llama with the token count of 8 frames of 196 tokens plus a prompt; the saving grows
with layers × batch × length, the 8B shape (32 layers, hidden 4096) being the case that motivated it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

MODES = ("all_layers", "final_only")


def _status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (Linux), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} (this benchmark measures CPU memory on Linux only)")


def _reset_peak_rss() -> int:
    """Reset the process's peak RSS (VmHWM; writing 5 to /proc/self/clear_refs) and return the RSS now, so the next
    peak is the forward's own."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _status_bytes("VmRSS")


def measure(mode: str, layers: int, hidden: int, batch: int, length: int, device: str) -> dict[str, Any]:
    """One prefill forward (logits of the last position only, as generation's) in this process; peak memory in MiB
    above the memory held once the model and inputs exist."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from vlm.language_model import final_hidden_states

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                         num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 256),
                         vocab_size=1024)  # fmt: skip
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    lm = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
    embeds = torch.randn(batch, length, hidden, device=device, dtype=dtype)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _reset_peak_rss()
    with torch.inference_mode():
        if mode == "all_layers":
            out = lm(inputs_embeds=embeds, use_cache=False, logits_to_keep=1, output_hidden_states=True)
            final = out.hidden_states[-1][:, -1]
        else:
            with final_hidden_states(lm) as captured:
                out = lm(inputs_embeds=embeds, use_cache=False, logits_to_keep=1)
            final = captured[-1][:, -1]
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = _status_bytes("VmHWM") - before
    return {"mode": mode, "peak_mib": peak / 2**20, "final_norm": float(final.float().norm())}


def main(argv: list[str] | None = None) -> int:
    """Run each mode in a fresh process and print a table (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_monitor_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", choices=MODES, default=None, help=argparse.SUPPRESS)  # the child process's
    args = parser.parse_args(argv)
    shape = (args.layers, args.hidden, args.batch, args.length, args.device)
    if args.mode is not None:
        print(json.dumps(measure(args.mode, *shape)))
        return 0
    results = {}
    for mode in MODES:
        child = [sys.executable, "-m", "benchmarks.bench_monitor_memory", "--mode", mode, "--layers", str(args.layers),
                 "--hidden", str(args.hidden), "--batch", str(args.batch), "--length", str(args.length),
                 "--device", args.device]  # fmt: skip
        # glibc keeps freed large blocks in the heap once its mmap threshold has grown, so RSS would keep memory the
        # forward already freed; a fixed threshold returns every large block on free and the peak RSS tracks live
        # tensors (repeatable to the MiB here, where the dynamic threshold varied by tens of MiB run to run).
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "131072")}
        done = subprocess.run(child, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    a, b = results["all_layers"], results["final_only"]
    if abs(a["final_norm"] - b["final_norm"]) > 1e-3 * max(1.0, abs(a["final_norm"])):
        print(f"error: the two reads differ ({a['final_norm']} against {b['final_norm']})", file=sys.stderr)
        return 1
    print(f"prefill of a random Llama ({args.layers} layers, hidden {args.hidden}), batch {args.batch} x "
          f"{args.length} tokens on {args.device}")  # fmt: skip
    print(f"  output_hidden_states (every layer): peak +{a['peak_mib']:.0f} MiB")
    print(f"  final_hidden_states (the last only): peak +{b['peak_mib']:.0f} MiB")
    print(f"  ratio: {a['peak_mib'] / max(b['peak_mib'], 1e-9):.2f}x "
          f"(every layer's states: {(args.layers + 1) * args.batch * args.length * args.hidden * 4 / 2**20:.0f} MiB in fp32)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
