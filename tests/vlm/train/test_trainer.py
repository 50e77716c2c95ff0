"""The training loop: it learns, freezes what it is told, checkpoints, resumes after a kill, calls eval."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.vlm.train.fakes import FakeVLM, write_collected
from vlm.image_processor import ImageProcessor
from vlm.tokenizer import build_tokenizer
from vlm.train.dataset import MixtureDataset, SampleEncoder
from vlm.train.registry import DatasetEntry
from vlm.train.trainer import TrainConfig, configure_trainable, find_resume_checkpoint, rank_batches, train

ANSWERS = [
    "The next action is move forward 75 cm.",
    "The next action is turn left 30 degrees.",
    "The next action is stop.",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data = write_collected(root / "d", {"a": ANSWERS, "b": ANSWERS[::-1]})
    tok = build_tokenizer([*ANSWERS, "Go a. Go b."], vocab_size=300)
    return MixtureDataset([DatasetEntry("d", data)]), SampleEncoder(tok, ImageProcessor(size=8)), len(tok)


def make_model(vocab):
    torch.manual_seed(0)
    return FakeVLM(vocab)


def cfg(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "run"),
        steps=6,
        batch_size=2,
        lr=5e-3,
        save_every=2,
        log_every=1,
        warmup_ratio=0.0,
    )
    return TrainConfig(**{**base, **kw})


def test_loss_decreases_and_final_model_saved(setup, tmp_path):
    ds, enc, vocab = setup
    result = train(
        make_model(vocab), ds, enc, cfg(tmp_path, steps=30, save_every=100, lr=3e-2), show_progress=False
    )
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] * 0.7
    assert result.steps == 30 and (tmp_path / "run" / "config.json").is_file()
    FakeVLM.load(tmp_path / "run")  # the final model in the model's own layout
    assert 0.0 <= result.data_share < 1.0 and result.samples_per_s > 0


def test_killed_run_resumes_to_the_same_weights(setup, tmp_path):
    ds, enc, vocab = setup
    straight = make_model(vocab)
    train(straight, ds, enc, cfg(tmp_path / "a"), show_progress=False)
    killed = make_model(vocab)
    first = train(
        killed, ds, enc, cfg(tmp_path / "b"), show_progress=False, stop_after=3
    )  # "killed" after step 3
    assert first.steps == 3 and find_resume_checkpoint(tmp_path / "b" / "run").name == "checkpoint-2"
    resumed_model = make_model(vocab)  # a fresh process: same init, state comes from checkpoint-2
    second = train(resumed_model, ds, enc, cfg(tmp_path / "b"), show_progress=False)
    assert second.resumed_from == 2 and second.steps == 6
    for (name, p), q in zip(straight.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name
    # Only the newest complete checkpoints are kept.
    assert sorted(p.name for p in (tmp_path / "b" / "run" / "checkpoints").iterdir()) == [
        "checkpoint-4",
        "checkpoint-6",
    ]


def test_torn_checkpoint_is_not_resumed(setup, tmp_path):
    ds, enc, vocab = setup
    train(make_model(vocab), ds, enc, cfg(tmp_path, steps=2), show_progress=False)
    (tmp_path / "run" / "checkpoints" / "checkpoint-9").mkdir()  # no trainer_state.json: a kill mid-save
    assert find_resume_checkpoint(tmp_path / "run").name == "checkpoint-2"


def test_stage1_freezes_the_language_model(setup, tmp_path):
    ds, enc, vocab = setup
    model = make_model(vocab)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(
        model,
        ds,
        enc,
        cfg(tmp_path, steps=2, tune_vision_tower=True, tune_language_model=False),
        show_progress=False,
    )
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k].cpu()) for k in before if k.startswith("llm."))
    assert not torch.equal(before["vision_tower.weight"], after["vision_tower.weight"].cpu())


def test_lora_trains_adapters_and_saves_merged(setup, tmp_path):
    pytest.importorskip("peft")
    ds, enc, vocab = setup
    model = make_model(vocab)
    counts = configure_trainable(
        model, TrainConfig(lora=True, lora_target_modules=["q_proj"], lora_r=2, tune_mm_projector=False)
    )
    assert 0 < counts["trainable"] < 100
    model = make_model(vocab)
    train(
        model,
        ds,
        enc,
        cfg(tmp_path, steps=2, lora=True, lora_target_modules=["q_proj"], lora_r=2),
        show_progress=False,
    )
    saved = torch.load(tmp_path / "run" / "llm" / "weights.pt")
    assert not any("lora" in k for k in saved)  # merged: loads as a plain model
    with pytest.raises(ValueError, match="none of the target modules"):
        configure_trainable(make_model(vocab), TrainConfig(lora=True, lora_target_modules=["nope"]))


def test_eval_callback_gets_checkpoints(setup, tmp_path):
    ds, enc, vocab = setup
    seen = []

    def eval_fn(ckpt):
        seen.append(ckpt.name)
        return {"sr": 0.5, "spl": 0.25}

    result = train(
        make_model(vocab),
        ds,
        enc,
        cfg(tmp_path, steps=4, eval_every=2, save_every=100),
        eval_fn=eval_fn,
        show_progress=False,
    )
    assert seen == ["checkpoint-2", "checkpoint-4"]
    assert result.evals == [{"step": 2, "sr": 0.5, "spl": 0.25}, {"step": 4, "sr": 0.5, "spl": 0.25}]
    log = (tmp_path / "run" / "train_log.jsonl").read_text()
    assert '"eval/sr": 0.5' in log


def test_ranks_split_each_global_batch():
    stream = iter(range(100))
    ranks = [rank_batches(iter(range(100)), 3, 2, r) for r in range(2)]
    for _ in range(4):
        both = next(ranks[0]) + next(ranks[1])
        assert both == [next(stream) for _ in range(6)]


def test_grad_accum_and_schedule_step_once_per_optimizer_step(setup, tmp_path):
    ds, enc, vocab = setup
    result = train(
        make_model(vocab),
        ds,
        enc,
        cfg(tmp_path, steps=4, grad_accum=2, batch_size=1, save_every=100),
        show_progress=False,
    )
    assert result.steps == 4
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    expected = [5e-3 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(1, 5)]  # cosine, no warmup
    assert [r["lr"] for r in log] == pytest.approx(expected)
    assert all(math.isfinite(r["loss"]) for r in log)


def test_wandb_is_optional_with_a_clear_error(setup, tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed: the missing-package message cannot be shown")
    ds, enc, vocab = setup
    with pytest.raises(ValueError, match="pip install wandb"):
        train(make_model(vocab), ds, enc, cfg(tmp_path, steps=1, report_to="wandb"), show_progress=False)


def test_config_errors():
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="report-to"):
        TrainConfig(report_to="tensorboard")
    with pytest.raises(ValueError, match="nothing to train"):
        TrainConfig(tune_mm_projector=False, tune_language_model=False)


def test_slow_cpu_bf16_is_named_only_where_the_cpu_emulates_it(tmp_path):
    from vlm.train.trainer import bf16_cpu_flags, slow_cpu_bf16_warning

    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    amx = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    assert bf16_cpu_flags(avx2) == [] and bf16_cpu_flags(amx) == ["amx_bf16", "avx512_bf16"]
    assert bf16_cpu_flags("no flags line here") == []
    warning = slow_cpu_bf16_warning(cfg(tmp_path, bf16="yes", device="cpu"), avx2)
    assert warning is not None and "--bf16 no" in warning
    assert slow_cpu_bf16_warning(cfg(tmp_path, bf16="yes", device="cpu"), amx) is None
    assert slow_cpu_bf16_warning(cfg(tmp_path, bf16="no", device="cpu"), avx2) is None
    assert slow_cpu_bf16_warning(cfg(tmp_path, bf16="auto", device="cpu"), avx2) is None  # auto: fp32 on a CPU
