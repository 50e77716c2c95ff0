"""The training pieces with the real (tiny) VLM: batches fit its forward, the weighted loss is exact."""

from __future__ import annotations

import pytest
import torch

import vlm
from tests.vlm.train.fakes import write_collected
from vlm.train.dataset import EncoderConfig, MixtureDataset, SampleEncoder
from vlm.train.registry import DatasetEntry
from vlm.train.trainer import ActionWeightedLoss, TrainConfig, train

ANSWERS = [
    "The next action is move forward 75 cm.",
    "The next action is turn left 30 degrees.",
    "The next action is stop.",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data = write_collected(tmp_path_factory.mktemp("d") / "d", {"a": ANSWERS, "b": ANSWERS[::-1]}, size=32)
    tok = vlm.build_tokenizer([*ANSWERS, "Go a. Go b. <image>"], vocab_size=300)
    torch.manual_seed(0)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok)
    return model, tok, MixtureDataset([DatasetEntry("d", data)])


def test_weighted_loss_with_unit_weights_equals_the_model_loss(tiny):
    model, tok, ds = tiny
    enc = SampleEncoder(tok, model.image_processor)
    batch = enc.collate([ds[0], ds[2], ds[4]])
    batch["images"] = enc.normalize(batch["images"])
    weights = batch.pop("label_weights")
    model.eval()
    with torch.no_grad():
        plain = model(**batch).loss
        weighted = ActionWeightedLoss(model)(**batch, label_weights=weights).loss
    assert torch.allclose(plain, weighted, atol=1e-5)


def test_action_weights_change_the_loss(tiny):
    model, tok, ds = tiny
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=5.0))
    batch = enc.collate([ds[0], ds[1]])
    batch["images"] = enc.normalize(batch["images"])
    weights = batch.pop("label_weights")
    model.eval()
    with torch.no_grad():
        plain = model(**batch).loss
        weighted = ActionWeightedLoss(model)(**batch, label_weights=weights).loss
    assert torch.isfinite(weighted) and not torch.allclose(plain, weighted)


def test_scene_qa_answers_are_not_action_weighted(tiny):
    model, tok, _ = tiny
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=5.0))
    frames = torch.zeros(1, 8, 8, 3, dtype=torch.uint8).numpy()
    nav = enc.encode({"prompt": "Go a. <image>", "answer": ANSWERS[0], "frames": frames})
    qa = enc.encode(
        {"prompt": "Go a. <image>", "answer": "About 2 meters.", "frames": frames, "task": "scene_qa"}
    )
    assert nav["label_weights"].max() == 5.0  # "move forward" and "75"
    answer = qa["labels"] != -100
    assert torch.equal(qa["label_weights"][answer], torch.ones(int(answer.sum())))  # the "2" is not an amount


def test_tiny_model_trains_and_checkpoint_loads(tiny, tmp_path):
    _, tok, ds = tiny
    torch.manual_seed(0)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok)
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=2.0))
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"),
        steps=3,
        batch_size=2,
        lr=1e-3,
        save_every=2,
        warmup_ratio=0.0,
        log_every=1,
    )
    result = train(model, ds, enc, cfg, show_progress=False)
    assert result.steps == 3
    loaded = vlm.load(tmp_path / "run")
    for (name, p), q in zip(model.llm.state_dict().items(), loaded.llm.state_dict().values(), strict=True):
        assert torch.allclose(p.float().cpu(), q.float().cpu()), name
    vlm.load(tmp_path / "run" / "checkpoints" / "checkpoint-2")  # every checkpoint is a loadable model


def test_lora_and_gradient_checkpointing_on_the_real_model(tiny, tmp_path):
    pytest.importorskip("peft")
    _, tok, ds = tiny
    torch.manual_seed(0)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok)
    before = {k: v.clone() for k, v in model.llm.state_dict().items()}
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"),
        steps=2,
        batch_size=2,
        lr=1e-2,
        save_every=2,
        warmup_ratio=0.0,
        lora=True,
        lora_r=4,
        gradient_checkpointing=True,
    )
    train(model, ds, SampleEncoder(tok, model.image_processor), cfg, show_progress=False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("mm_projector.") for n in trainable)
    loaded = vlm.load(tmp_path / "run")  # merged LoRA: a plain checkpoint
    changed = [k for k, v in loaded.llm.state_dict().items() if not torch.allclose(v, before[k].cpu())]
    assert any("q_proj" in k for k in changed) and not any("lora" in k for k in loaded.llm.state_dict())


def _conditioned_data(root, condition: str, trajectories: int, seed: int):
    """A collected folder whose answer is a function of the instruction's last word (condition="instruction",
    frames are noise) or of the current frame's colour (condition="image", instruction is noise)."""
    import json

    import numpy as np

    from agent.prompt import build_user_prompt

    answers = {
        "left": "The next action is turn left 30 degrees.",
        "right": "The next action is turn right 45 degrees.",
        "ahead": "The next action is move forward 75 cm.",
    }
    colours = {"left": (220, 40, 40), "right": (40, 40, 220), "ahead": (40, 220, 40)}
    words = ["walk", "past", "the", "sofa", "into", "the", "kitchen", "bedroom", "hallway", "table", "chair", "door"]
    rng = np.random.default_rng(seed)
    shard = root / "shard-00000"
    (shard / "frames").mkdir(parents=True)
    samples = []
    for k in range(trajectories):
        kinds = [list(answers)[i] for i in rng.integers(0, 3, 4)]
        frames = rng.integers(60, 190, (4, 32, 32, 3), dtype=np.uint8)
        for t, kind in enumerate(kinds):
            if condition == "image":
                frames[t, 8:24, 8:24] = colours[kind]
        np.savez(shard / "frames" / f"t{k}.npz", rgb=frames)
        for t, kind in enumerate(kinds):
            filler = " ".join(rng.choice(words, 6))
            instruction = f"{filler} then {kind}." if condition == "instruction" else f"{filler}."
            samples.append({
                "id": f"t{k}:{t}", "traj": f"t{k}", "frames_file": f"frames/t{k}.npz", "t": t,
                "frames": ([-1] * 8 + list(range(t + 1)))[-8:], "instruction": instruction,
                "action": {"ahead": "forward"}.get(kind, kind), "copy": 0,
                "conversations": [{"from": "human", "value": build_user_prompt(instruction)},
                                  {"from": "gpt", "value": answers[kind]}],
            })  # fmt: skip
    (shard / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (shard / "trajectories.jsonl").write_text("".join(json.dumps({"traj": f"t{k}"}) + "\n" for k in range(trajectories)))
    (root / "manifest.json").write_text(json.dumps({"format": "navila-agent-trajectories/1", "samples": len(samples)}))
    return root


def train_conditioned_model(tmp_path, condition: str):
    """(model, encoder) after 120 steps on `_conditioned_data(tmp_path / "train", condition, 40)`; the model is
    also saved as a checkpoint in `tmp_path / "run"`."""
    from agent.prompt import prompt_phrases

    ds = MixtureDataset([DatasetEntry("d", _conditioned_data(tmp_path / "train", condition, 40, seed=0))])
    corpus = [turn["value"] for s in ds.datasets[0].samples for turn in s["conversations"]]
    tok = vlm.build_tokenizer(corpus, vocab_size=400, phrases=prompt_phrases())
    torch.manual_seed(0)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok)
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=5.0))
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"), steps=120, batch_size=16, lr=3e-3, warmup_ratio=0.05,
        save_every=10**6, log_every=10**6, tune_vision_tower=True, cache_vision_features="no",
    )  # fmt: skip
    train(model, ds, enc, cfg, show_progress=False)
    return model, enc


@pytest.mark.parametrize("condition", ["instruction", "image"])
def test_training_learns_answers_conditioned_on_instruction_or_image(tmp_path, condition):
    """The whole path (prompt phrases tokenizer, splice, answer loss, trainer) learns a held-out mapping from the
    instruction text and, separately, from the current frame: a trainer that ignores either input (a masking or
    splicing bug) stays at chance (1/3) here and fails; a real navigation run's plateau is then about the data."""
    from vlm.train.action_eval import action_accuracy

    model, enc = train_conditioned_model(tmp_path, condition)
    held_out = MixtureDataset([DatasetEntry("v", _conditioned_data(tmp_path / "val", condition, 8, seed=1))])
    for mode in ("teacher_forced", "generate"):  # generate = what the agent would answer
        result = action_accuracy(model.eval(), held_out, enc, list(range(len(held_out))), mode=mode)
        assert result["kind_acc"] >= 0.9, result
