"""A lean supervised fine-tuning loop for the VILA-style model, on `accelerate`.

    accelerate launch --num_processes 8 $(which navila-agent) train --data-mixture r2r_gen+rxr_gen --output runs/sft
    accelerate launch --use_deepspeed --deepspeed_config_file vlm/train/zero2.json \
        --num_machines 2 --machine_rank $RANK --main_process_ip $MASTER $(which navila-agent) train ...  # ZeRO-2

What it does, in order: freeze/unfreeze the three parts (`tune_vision_tower`, `tune_mm_projector`,
`tune_language_model`; stage 1 of LLaVA's recipe = tower + projector only), optionally wrap the language
model in LoRA (peft), AdamW + cosine schedule with linear warmup, bf16 autocast on GPU, gradient accumulation
and clipping, rich progress, a JSONL log (and wandb when asked), a checkpoint every `save_every` steps and an
injected evaluation callback every `eval_every` steps. Optionally (beyond NaVILA) a progress monitor
(`ProgressHead`, `progress_loss_weight`): an auxiliary loss on how far along its route each sample is.

Checkpoints (`OUT/checkpoints/checkpoint-<step>/`) hold the model in the VILA layout (the model's own
`save_pretrained`, LoRA merged), so any of them loads with `vlm.load`, plus `trainer_state.pt` (the trainable
parameters, optimizer, scheduler, RNG) and `trainer_state.json` (written last: a checkpoint without it is
incomplete and ignored). Re-running the same command resumes from the newest complete checkpoint, with the
same data order (`sample_index_stream`). The final model is saved to `OUT/` itself.

Tested: single process (CPU, and an H100 with bf16), two torchrun processes on CPU (gloo) including resume.
Not tested: DeepSpeed ZeRO (not installed here); under ZeRO the optimizer state is partitioned, so resuming
from `trainer_state.pt` would need accelerate's `save_state` instead — treat ZeRO resume as unsupported.

The model contract (vlm/model.py): `forward(input_ids, attention_mask, images, labels)` returning an object
with `.loss`; `save_pretrained(folder)`; submodules named by `PART_NAMES`. This module never imports envs,
agent or benchmarks: evaluation is a plain callable `eval_fn(checkpoint_dir) -> {metric: value}`.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlm.progress_head import ProgressHead, save_progress_head
from vlm.train.dataset import (
    MirroredDataset,
    MixtureDataset,
    SampleEncoder,
    mirror_stream,
    sample_index_stream,
)
from vlm.train.frame_features import CachedFeatureDataset, CachedFeatureModel, precompute_features
from vlm.train.losses import SplicedLoss

# Attribute names of the model's three parts (VILA's names).
PART_NAMES = {"vision_tower": "vision_tower", "mm_projector": "mm_projector", "language_model": "llm"}
STATE_FILE = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
LOG_FILE = "train_log.jsonl"
REPORT_TO = ("none", "wandb")


@dataclass
class TrainConfig:
    output_dir: str = "runs/train"  # final model + checkpoints/ + train_log.jsonl
    steps: int = 1000  # optimizer steps
    batch_size: int = 4  # samples per device per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    lr: float = 2e-4  # peak learning rate
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03  # share of `steps` with linear warmup, then cosine decay to 0
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    seed: int = 0  # data order, init of LoRA weights, dropout
    tune_vision_tower: bool = False
    tune_mm_projector: bool = True
    tune_language_model: bool = True
    lora: bool = False  # LoRA on the language model (peft) instead of full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    gradient_checkpointing: bool = False
    bf16: str = "auto"  # "auto" (bf16 on CUDA), "yes", "no"
    save_every: int = 500  # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 2  # newest complete checkpoints kept (0 = keep all)
    eval_every: int = 0  # steps between evaluation-callback calls (0 = never; needs eval_fn)
    log_every: int = 10  # steps between log lines
    num_workers: int = 0  # DataLoader worker processes
    report_to: str = "none"  # "none" | "wandb" (offline unless WANDB_MODE says otherwise)
    run_name: str | None = None
    device: str = "auto"  # "auto" (accelerate's choice: GPU when there is one) | "cpu"
    # Frozen tower: encode each stored frame once and train projector + LM on the cached features
    # (vlm/train/frame_features.py). "auto" = on when the tower is frozen and the model has the VLM parts.
    cache_vision_features: str = "auto"  # "auto" | "yes" | "no"
    feature_cache_dir: str | None = None  # where the features go (None: OUTPUT/vision_features)
    feature_workers: int = 1  # processes that encode the features on the CPU (torch threads split between them)
    # Training tower: keep this many MB of frames decoded and resized to its input (per DataLoader process), so
    # a sample's 8 frames are not decoded from their 224 px files at every draw (0 = off).
    frame_cache_mb: int = 2048
    # Mirror augmentation (beyond NaVILA): each drawn navigation sample is shown left-right mirrored (frames
    # flipped, "left"/"right" swapped in its instruction and answer) with this probability (vlm/train/dataset.py).
    mirror_prob: float = 0.0
    # Progress monitor (beyond NaVILA; `ProgressHead`): weight of an auxiliary loss that makes the LM's state at the
    # answer say how far along its route the sample is (0 = off, NaVILA's plain answer loss).
    progress_loss_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu"):
            raise ValueError(f"TrainConfig.device: unknown value '{self.device}'; available: auto, cpu")
        for name in ("steps", "batch_size", "grad_accum", "save_every", "log_every", "lora_r", "feature_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "num_workers", "keep_checkpoints", "frame_cache_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.mirror_prob <= 1.0:
            raise ValueError(
                f"TrainConfig.mirror_prob (--mirror-prob) must be in [0, 1], got {self.mirror_prob}"
            )
        if not (self.progress_loss_weight >= 0 and math.isfinite(self.progress_loss_weight)):
            raise ValueError(
                f"TrainConfig.progress_loss_weight (--progress-loss-weight) must be >= 0, got {self.progress_loss_weight}"
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.cache_vision_features not in ("auto", "yes", "no"):
            raise ValueError(
                f"TrainConfig.cache_vision_features: unknown value '{self.cache_vision_features}'; "
                "available: auto, yes, no"
            )
        if self.cache_vision_features == "yes" and self.tune_vision_tower:
            raise ValueError(
                "--cache-vision-features needs a frozen tower (drop --tune-vision-tower / --stage1)"
            )
        if self.bf16 not in ("auto", "yes", "no"):
            raise ValueError(f"TrainConfig.bf16: unknown value '{self.bf16}'; available: auto, yes, no")
        if self.report_to not in REPORT_TO:
            raise ValueError(f"unknown --report-to '{self.report_to}'; available: {', '.join(REPORT_TO)}")
        if not (self.tune_vision_tower or self.tune_mm_projector or self.tune_language_model or self.lora):
            raise ValueError(
                "nothing to train: enable one of tune_vision_tower / tune_mm_projector / "
                "tune_language_model / lora"
            )


def _part(model: torch.nn.Module, part: str) -> torch.nn.Module:
    name = PART_NAMES[part]
    module = getattr(model, name, None)
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"the model has no '{name}' submodule ({part}); cannot set tune_{part}")
    return module


def configure_trainable(model: torch.nn.Module, config: TrainConfig) -> dict[str, int]:
    """Freeze everything, unfreeze the parts asked for, wrap the LLM in LoRA if asked; returns parameter counts."""
    model.requires_grad_(False)
    if config.tune_vision_tower:
        _part(model, "vision_tower").requires_grad_(True)
    if config.tune_mm_projector:
        _part(model, "mm_projector").requires_grad_(True)
    if config.lora:
        try:
            import peft
        except ImportError:
            raise ValueError("--lora needs peft: pip install 'navila-agent[train]'") from None
        llm = _part(model, "language_model")
        present = {n.rsplit(".", 1)[-1] for n, _ in llm.named_modules()}
        targets = [t for t in config.lora_target_modules if t in present]
        if not targets:
            raise ValueError(
                f"--lora: none of the target modules {config.lora_target_modules} exist in the language model"
            )
        lora_cfg = peft.LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            bias="none",
        )
        setattr(model, PART_NAMES["language_model"], peft.get_peft_model(llm, lora_cfg))
        if config.tune_language_model:
            pass  # LoRA replaces full fine-tuning of the LLM: only adapter weights train
    elif config.tune_language_model:
        _part(model, "language_model").requires_grad_(True)
    if config.gradient_checkpointing:
        llm = _part(model, "language_model")
        # transformers 5 renamed it (the old name warns); either recomputes activations in the backward pass.
        enable = getattr(llm, "activation_checkpointing_enable", None) or getattr(
            llm, "gradient_checkpointing_enable", None
        )
        if enable is None:
            raise ValueError("--gradient-checkpointing: the language model does not support it")
        enable()
        if hasattr(llm, "enable_input_require_grads"):
            llm.enable_input_require_grads()  # so checkpointed blocks get gradients when embeddings are frozen
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": sum(p.numel() for p in model.parameters())}


def save_model(
    model: torch.nn.Module, folder: Path, lora: bool, progress_head: torch.nn.Module | None = None
) -> None:
    """`model.save_pretrained(folder)` in the VILA layout; a LoRA-wrapped LLM is saved merged; the progress monitor's
    head, when one trains, beside it (`vlm.progress_head`)."""
    folder.mkdir(parents=True, exist_ok=True)
    if progress_head is not None:
        save_progress_head(progress_head, folder)  # type: ignore[arg-type]
    try:  # transformers' per-shard progress bars would interleave with ours
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    if not lora:
        model.save_pretrained(folder)
        return
    name = PART_NAMES["language_model"]
    wrapped = getattr(model, name)
    try:
        setattr(model, name, copy.deepcopy(wrapped).merge_and_unload())
        model.save_pretrained(folder)
    finally:
        setattr(model, name, wrapped)


def find_resume_checkpoint(output_dir: Path) -> Path | None:
    """Newest `checkpoints/checkpoint-<step>` that has its trainer_state.json (i.e. finished writing)."""
    complete = [p for p in (output_dir / "checkpoints").glob("checkpoint-*") if (p / STATE_JSON).is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[1])) if complete else None


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _progress_head(model: torch.nn.Module, config: TrainConfig) -> ProgressHead | None:
    """The head the progress monitor trains when `config.progress_loss_weight` > 0 (else None): the model's own
    (a checkpoint trained with one: it continues) or a fresh one on its LM width. The model's head is taken off the
    model either way: the trainer saves the head it trains with every checkpoint, and a fine-tune without the loss
    saves none (the LM changes under it, so the old head would no longer read it)."""
    loaded = getattr(model, "progress_head", None)
    if loaded is not None:
        model.progress_head = None
    if config.progress_loss_weight == 0:
        return None
    width = getattr(getattr(getattr(model, PART_NAMES["language_model"], None), "config", None), "hidden_size", None)
    if not isinstance(width, int):
        raise ValueError(
            "--progress-loss-weight needs a model whose language model 'llm' has a config.hidden_size "
            "(vlm.LlavaLlamaModel)"
        )
    head = ProgressHead(width)
    if loaded is not None:
        head.load_state_dict({k: v.float() for k, v in loaded.state_dict().items()})
    return head


def _wants_label_weights(model: torch.nn.Module) -> bool:
    return "label_weights" in inspect.signature(model.forward).parameters


class ActionWeightedLoss(SplicedLoss):
    """Wraps the VLM so its loss is a per-token weighted cross-entropy (`label_weights`, from the encoder), plus the
    progress monitor's when it has a head (`vlm.train.losses.answer_losses`).

    Needs the model's `prepare_inputs` (the image splice), `tokens_per_image` and `llm`: the weights are
    expanded exactly like the labels (each IMAGE_TOKEN_INDEX becomes `tokens_per_image` zero-weight positions).
    A module (not a function) so that DDP / DeepSpeed wrap it and gradients synchronise as usual.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        progress_head: torch.nn.Module | None = None,
        progress_weight: float = 0.0,
    ) -> None:
        super().__init__(
            model,
            ("prepare_inputs", "tokens_per_image", "llm"),
            "action_token_weight != 1 and --progress-loss-weight need",
            progress_head,
            progress_weight,
        )

    def forward(self, input_ids, attention_mask, images, labels, label_weights, progress=None):
        spliced = self.model.prepare_inputs(input_ids, attention_mask, images, labels, padding_side="right")
        return self.losses(spliced, input_ids, attention_mask, label_weights, progress)


class _Logger:
    """JSONL log on disk, plus wandb when asked (imported lazily; offline unless WANDB_MODE says otherwise)."""

    def __init__(
        self, config: TrainConfig, output_dir: Path, enabled: bool, run_config: dict[str, Any]
    ) -> None:
        self.path = output_dir / LOG_FILE
        self.enabled = enabled
        self.wandb = None
        if enabled and config.report_to == "wandb":
            try:
                import wandb
            except ImportError:
                raise ValueError("--report-to wandb needs the wandb package: pip install wandb") from None
            os.environ.setdefault("WANDB_MODE", "offline")  # never a network call unless the user opts in
            self.wandb = wandb.init(
                project="navila-agent",
                name=config.run_name,
                dir=str(output_dir),
                config=run_config,
                resume="allow",
            )

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


@dataclass
class TrainResult:
    output_dir: Path
    steps: int  # optimizer steps done in total (including before a resume)
    resumed_from: int  # step of the checkpoint resumed from (0 = fresh start)
    final_loss: float
    samples_per_s: float  # training throughput of this call (checkpoint saves and evaluations excluded)
    data_share: float  # share of that training time spent waiting for batches (loading + encoding)
    evals: list[dict[str, Any]]


def runs_on_gpu(config: TrainConfig) -> bool:
    """Whether this run trains on the GPU: `device` "auto" on a machine with CUDA."""
    return config.device == "auto" and torch.cuda.is_available()


def uses_bf16(config: TrainConfig) -> bool:
    """Whether this run trains under bf16 autocast: asked for ("yes", also on a CPU), or "auto" on a GPU."""
    return config.bf16 == "yes" or (config.bf16 == "auto" and runs_on_gpu(config))


def bf16_cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The CPU's bf16 instruction sets named in /proc/cpuinfo (or `cpuinfo`'s text): amx_bf16, avx512_bf16; [] where
    there are none or no /proc. Without them torch's CPU bf16 autocast runs emulated kernels: session 32 measured
    0.04x the samples/s of fp32 on an AVX2-only AMD EPYC (`python -m benchmarks.bench_train --precision fp32,bf16`)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return sorted({"amx_bf16", "avx512_bf16"} & set(flags))


def slow_cpu_bf16_warning(config: TrainConfig, cpuinfo: str | None = None) -> str | None:
    """A warning when this run would autocast to bf16 on a CPU that has no bf16 instructions (emulated, many times
    slower than fp32), naming the flag that avoids it; None otherwise."""
    if not uses_bf16(config) or runs_on_gpu(config) or bf16_cpu_flags(cpuinfo):
        return None
    return (
        "warning: --bf16 yes on a CPU without bf16 instructions (no amx_bf16 / avx512_bf16 in /proc/cpuinfo): torch "
        "emulates bf16 there (measured 24x slower than fp32 on an AVX2-only CPU). Use --bf16 no unless you need the bf16 "
        "numerics."
    )


def uses_feature_cache(model: torch.nn.Module, config: TrainConfig) -> bool:
    """Whether this run trains on cached tower features: asked for, or "auto" with a frozen tower and a VLM."""
    if config.cache_vision_features == "no" or config.tune_vision_tower:
        return False
    has_parts = all(hasattr(model, a) for a in ("vision_tower", "mm_projector", "llm", "tokens_per_image"))
    if config.cache_vision_features == "yes" and not has_parts:
        raise ValueError("--cache-vision-features needs a VLM with vision_tower, mm_projector and llm")
    return has_parts


def _cached_feature_dataset(
    model: torch.nn.Module,
    dataset: MixtureDataset,
    encoder: SampleEncoder,
    config: TrainConfig,
    accelerator: Any,
    show_progress: bool,
) -> tuple[CachedFeatureDataset, dict[str, Any]]:
    """Encode every stored frame once (main process; cached across runs) and wrap the dataset to read them."""
    root = Path(config.feature_cache_dir or Path(config.output_dir) / "vision_features")
    t0 = time.perf_counter()
    if accelerator.is_main_process:
        model.vision_tower.to(accelerator.device)
        progress = None
        if show_progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            progress = Progress(
                TextColumn("vision features"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
            )
            task = progress.add_task("features", total=None)
            progress.start()
        try:
            index = precompute_features(
                model,
                dataset,
                encoder,
                root,
                (lambda done, total: progress.update(task, completed=done, total=total))
                if progress
                else None,
                batch_size=2 if accelerator.device.type == "cpu" else 64,
                mirror=config.mirror_prob > 0,
                workers=config.feature_workers if accelerator.device.type == "cpu" else 1,
            )
        finally:
            if progress is not None:
                progress.stop()
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        # everything cached: only builds the index
        index = precompute_features(model, dataset, encoder, root, mirror=config.mirror_prob > 0)
    info = {"root": str(index.root), "seconds": round(time.perf_counter() - t0, 1)}
    return CachedFeatureDataset(dataset, index), info


def rank_batches(stream: Iterator[int], batch_size: int, world: int, rank: int) -> Iterator[list[int]]:
    """This rank's micro-batches of a global index stream: each global chunk of batch_size × world indices is
    cut into `world` slices, rank r taking slice r (so ranks never see the same sample within a step)."""
    while True:
        chunk = [next(stream) for _ in range(batch_size * world)]
        yield chunk[rank * batch_size : (rank + 1) * batch_size]


def _micro_batches(
    dataset: MixtureDataset,
    encoder: SampleEncoder,
    config: TrainConfig,
    start_sample: int,
    world: int,
    rank: int,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless encoded micro-batches for this process, from sample position `start_sample` of the global order."""
    stream = sample_index_stream(dataset.weights, config.seed, start_sample)
    if config.mirror_prob > 0:  # a MirroredDataset: index N + i is sample i mirrored (the weights cover the N)
        stream = mirror_stream(stream, len(dataset.weights), config.mirror_prob, config.seed, start_sample)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=rank_batches(stream, config.batch_size, world, rank),
        collate_fn=encoder.collate,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        pin_memory=torch.cuda.is_available() and config.device != "cpu",
    )
    yield from loader


def train(
    model: torch.nn.Module,
    dataset: MixtureDataset,
    encoder: SampleEncoder,
    config: TrainConfig,
    eval_fn: Callable[[Path], dict[str, Any]] | None = None,
    run_config: dict[str, Any] | None = None,
    show_progress: bool = True,
    stop_after: int | None = None,
    checkpoint_at_stop: bool = False,
) -> TrainResult:
    """Fine-tune `model` on `dataset` for `config.steps` optimizer steps, resuming from OUT's last checkpoint.

    `eval_fn(checkpoint_dir)` runs every `eval_every` steps on the checkpoint just saved; its metrics are
    logged next to the loss. `stop_after` ends the run after that many steps of this call (used to simulate
    a killed run in tests); the state on disk is exactly what a kill after that checkpoint leaves, unless
    `checkpoint_at_stop` also saves the step it stopped at (the CLI's --stop-after: no step is lost).
    """
    from accelerate import Accelerator
    from transformers import get_cosine_schedule_with_warmup

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    on_gpu = runs_on_gpu(config)
    use_bf16 = uses_bf16(config)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one process-wide state and refuses a second Accelerator on another device; a single
        # process may train on the GPU and then on the CPU (bench_train, tests), so start from a clean state.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    # cpu=True also when there is no GPU: accelerate then runs torchrun's processes as a gloo group (MULTI_CPU).
    accelerator = Accelerator(
        mixed_precision="bf16" if use_bf16 else "no",
        cpu=not on_gpu,
        gradient_accumulation_steps=config.grad_accum,
    )
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    progress_head = _progress_head(model, config)  # the trainer's own, never one of the model's trainable parts
    counts = configure_trainable(model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    if progress_head is not None:
        params += list(progress_head.parameters())
        counts["progress_head"] = sum(p.numel() for p in progress_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * config.steps), config.steps
    )

    start_step = 0
    resume = find_resume_checkpoint(output_dir)
    if resume is not None:
        state = torch.load(resume / STATE_FILE, map_location="cpu", weights_only=False)
        if ("progress_head" in state) != (progress_head is not None):
            raise ValueError(
                f"cannot resume from {resume}: it was trained "
                f"{'with' if 'progress_head' in state else 'without'} --progress-loss-weight; resume it "
                f"{'with the same weight' if 'progress_head' in state else 'without the flag'}"
            )
        missing = set(state["trainable"]) ^ {n for n, p in model.named_parameters() if p.requires_grad}
        if missing:
            raise ValueError(
                f"cannot resume from {resume}: its trainable parameters differ from this run's "
                f"(different --tune-*/--lora flags?), e.g. {sorted(missing)[:3]}"
            )
        model.load_state_dict(state["trainable"], strict=False)
        if progress_head is not None:
            progress_head.load_state_dict(state["progress_head"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_step = int(state["step"])

    core = model  # the VLM itself: saved, and the source of the trainable state
    feature_info: dict[str, Any] = {}
    if uses_feature_cache(core, config):
        dataset, feature_info = _cached_feature_dataset(
            core, dataset, encoder, config, accelerator, show_progress
        )
        # projector + LM over the cached features, weighted loss (and the progress monitor's)
        model = CachedFeatureModel(core, progress_head, config.progress_loss_weight)
    else:
        resize = getattr(encoder.image_processor, "resize", None)
        if config.tune_vision_tower and config.frame_cache_mb and resize and hasattr(dataset, "resize_frames"):
            dataset.resize_frames(resize, config.frame_cache_mb * 2**20)
        if progress_head is not None or (
            encoder.config.action_token_weight != 1.0 and not _wants_label_weights(model)
        ):
            model = ActionWeightedLoss(model, progress_head, config.progress_loss_weight)
    if config.mirror_prob > 0:
        dataset = MirroredDataset(dataset)
    pass_weights = _wants_label_weights(model)
    # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would step it once per
    # process (a schedule N times too fast on N GPUs).
    model, optimizer = accelerator.prepare(model, optimizer)
    world, rank = accelerator.num_processes, accelerator.process_index
    samples_per_step = config.batch_size * config.grad_accum * world
    batches = _micro_batches(dataset, encoder, config, start_step * samples_per_step, world, rank)
    main = accelerator.is_main_process
    logger = _Logger(config, output_dir, main, {**(run_config or {}), "train": asdict(config), **counts})
    if main and resume is None:
        (output_dir / "train_config.json").write_text(
            json.dumps(
                {
                    **(run_config or {}),
                    "train": asdict(config),
                    "parameters": counts,
                    "vision_features": feature_info,
                },
                indent=2,
            )
        )

    progress = None
    if show_progress and main:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
        )
        task = progress.add_task("train", total=config.steps, completed=start_step, info="")
        progress.start()

    evals: list[dict[str, Any]] = []
    data_time = 0.0
    io_time = 0.0  # checkpoint saves and evaluations: not training throughput
    t0 = time.perf_counter()
    step, loss_value, done_here = start_step, float("nan"), 0
    model.train()
    try:
        while step < config.steps and (stop_after is None or done_here < stop_after):
            step_loss = 0.0
            progress_sum, progress_batches = 0.0, 0  # the progress monitor's own loss, over this step's micro-batches
            for _ in range(config.grad_accum):
                t_data = time.perf_counter()
                batch = next(batches)
                data_time += time.perf_counter() - t_data
                batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
                # uint8 → normalised float, on the device
                batch["images"] = encoder.normalize(batch["images"])
                weights = batch.pop("label_weights")
                targets = batch.pop("progress", None)  # the progress monitor's, [B] (absent: none in the batch)
                kwargs: dict[str, Any] = {"label_weights": weights} if pass_weights else {}
                if progress_head is not None:
                    kwargs["progress"] = targets
                # accumulate(): no gradient all-reduce until the last micro-step; backward() divides the loss
                # by grad_accum; the optimizer's step/zero_grad are no-ops until gradients are synchronised.
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        out = model(
                            input_ids=batch["input_ids"],
                            attention_mask=batch["attention_mask"],
                            images=batch["images"],
                            labels=batch["labels"],
                            **kwargs,
                        )
                    accelerator.backward(out.loss)
                    step_loss += float(out.loss.detach()) / config.grad_accum
                    if getattr(out, "progress_loss", None) is not None:
                        progress_sum += float(out.progress_loss)
                        progress_batches += 1
                    if config.max_grad_norm > 0 and accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(params, config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            done_here += 1
            # The mean over ranks (each rank saw different samples), so the log is the global batch's loss.
            loss_value = float(accelerator.reduce(torch.tensor(step_loss, device=accelerator.device), "mean"))
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"loss became {loss_value} at step {step}; lower --lr or check the data"
                )
            record: dict[str, Any] = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0]}
            if progress_head is not None:
                # Mean over the ranks that had progress targets in this step (NaN elsewhere, skipped).
                local = progress_sum / progress_batches if progress_batches else math.nan
                gathered = accelerator.gather(torch.tensor([local], device=accelerator.device))
                known = gathered[~torch.isnan(gathered)]
                if known.numel():
                    record["progress_loss"] = float(known.mean())
            if step % config.log_every == 0 or step == config.steps:
                logger.log(record)
            save_now = step % config.save_every == 0 or step == config.steps
            eval_now = eval_fn is not None and config.eval_every > 0 and step % config.eval_every == 0
            if save_now or eval_now:
                t_io = time.perf_counter()
                ckpt = _save_checkpoint(
                    accelerator, core, optimizer, scheduler, output_dir, step, config, loss_value, progress_head
                )
                if eval_now and main:
                    metrics = eval_fn(ckpt)  # type: ignore[misc]
                    evals.append({"step": step, **metrics})
                    logger.log(
                        {"step": step, "loss": loss_value, **{f"eval/{k}": v for k, v in metrics.items()}}
                    )
                if eval_now:
                    # The other ranks wait here (not inside a gradient all-reduce) while rank 0 evaluates; keep
                    # --eval-limit small enough to finish within the process group's timeout.
                    accelerator.wait_for_everyone()
                io_time += time.perf_counter() - t_io
            if progress is not None:
                progress.update(task, completed=step, info=f"loss {loss_value:.4f}")
        if checkpoint_at_stop and step < config.steps and done_here > 0 and step % config.save_every != 0:
            t_io = time.perf_counter()
            _save_checkpoint(
                accelerator, core, optimizer, scheduler, output_dir, step, config, loss_value, progress_head
            )
            io_time += time.perf_counter() - t_io
    finally:
        if progress is not None:
            progress.stop()
    elapsed = time.perf_counter() - t0 - io_time
    if step >= config.steps and main:
        save_model(core, output_dir, config.lora, progress_head)
    if progress_head is not None:
        core.progress_head = progress_head  # the model in memory is the one saved
    accelerator.wait_for_everyone()
    logger.close()
    return TrainResult(
        output_dir=output_dir,
        steps=step,
        resumed_from=start_step,
        final_loss=loss_value,
        samples_per_s=done_here * samples_per_step / elapsed if elapsed > 0 else 0.0,
        data_share=data_time / elapsed if elapsed > 0 else 0.0,
        evals=evals,
    )


def _save_checkpoint(
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    output_dir: Path,
    step: int,
    config: TrainConfig,
    loss: float,
    progress_head: torch.nn.Module | None = None,
) -> Path:
    """Model (VILA layout) + resumable state (with the progress monitor's head, which is not part of the model);
    trainer_state.json last, so a torn checkpoint is never resumed."""
    folder = output_dir / "checkpoints" / f"checkpoint-{step}"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if folder.exists():
            shutil.rmtree(folder)
        save_model(model, folder, config.lora, progress_head)
        state = {
            "step": step,
            "trainable": _trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
        }
        if progress_head is not None:
            state["progress_head"] = {k: v.detach().cpu().clone() for k, v in progress_head.state_dict().items()}
        torch.save(state, folder / STATE_FILE)
        (folder / STATE_JSON).write_text(json.dumps({"step": step, "loss": loss}))
        if config.keep_checkpoints:
            complete = sorted(
                (p for p in folder.parent.glob("checkpoint-*") if (p / STATE_JSON).is_file()),
                key=lambda p: int(p.name.split("-")[1]),
            )
            for old in complete[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder
