"""The training pieces with the real (tiny) VLM: batches fit its forward, the weighted loss is exact."""

from __future__ import annotations

import json

import numpy as np
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


def test_progress_monitor_reads_the_last_prompt_position_and_adds_its_weighted_error(tiny):
    """answer_losses with a ProgressHead: the head reads the final hidden state where the answer is predicted,
    its error counts only where there is a target, and the loss is the answer loss + weight × that error."""
    from vlm.constants import IGNORE_INDEX
    from vlm.progress_head import ProgressHead, last_prompt_positions

    model, tok, ds = tiny
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=2.0))
    batch = enc.collate([ds[0], ds[2], ds[4]])
    batch["images"] = enc.normalize(batch["images"])
    weights = batch.pop("label_weights")
    progress = torch.tensor([0.25, float("nan"), 1.0])
    torch.manual_seed(1)
    head = ProgressHead(model.llm.config.hidden_size)
    model.eval()
    with torch.no_grad():
        plain = ActionWeightedLoss(model)(**batch, label_weights=weights)
        out = ActionWeightedLoss(model, head, 0.5)(**batch, label_weights=weights, progress=progress)
        spliced = model.prepare_inputs(batch["input_ids"], batch["attention_mask"], batch["images"],
                                       batch["labels"], padding_side="right")  # fmt: skip
        hidden = model.llm(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask,
                           position_ids=spliced.position_ids, output_hidden_states=True).hidden_states[-1]  # fmt: skip
    positions = last_prompt_positions(spliced.labels)
    for b, pos in enumerate(positions.tolist()):
        assert spliced.labels[b, pos] == IGNORE_INDEX and spliced.labels[b, pos + 1] != IGNORE_INDEX
    estimate = head(hidden[torch.arange(3), positions])
    expected = ((estimate[0] - 0.25) ** 2 + (estimate[2] - 1.0) ** 2) / 2  # the NaN row has no target
    assert torch.allclose(out.progress_loss, expected, atol=1e-6)
    assert torch.allclose(out.answer_loss, plain.loss, atol=1e-6)
    assert torch.allclose(out.loss, plain.loss + 0.5 * expected, atol=1e-6)
    with torch.no_grad():
        none = ActionWeightedLoss(model, head, 0.5)(**batch, label_weights=weights, progress=None)
    assert none.progress_loss is None and torch.allclose(none.loss, plain.loss, atol=1e-6)


def test_progress_monitor_trains_is_saved_with_the_model_and_must_match_on_resume(tmp_path):
    """train(progress_loss_weight > 0): the head learns (its error falls), is saved as the model's progress_head/
    (and in trainer_state.pt for a resume), a killed run resumes to the same weights and head, a resume without the
    flag is refused, a fine-tune with the weight continues the model's head and one without it saves none."""
    from vlm.train.trainer import find_resume_checkpoint

    data = write_collected(tmp_path / "d", {"a": ANSWERS * 2, "b": ANSWERS[::-1] * 2}, size=32, routes=True)
    tok = vlm.build_tokenizer([*ANSWERS, "Go a. Go b. <image>"], vocab_size=300)
    ds = MixtureDataset([DatasetEntry("d", data)])

    def run(name, steps=12, stop_after=None, weight=1.0, model=None):
        torch.manual_seed(0)
        model = model or vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok)
        cfg = TrainConfig(output_dir=str(tmp_path / name), steps=steps, batch_size=4, lr=3e-3, save_every=4,
                          warmup_ratio=0.0, log_every=1, progress_loss_weight=weight)  # fmt: skip
        result = train(model, ds, SampleEncoder(tok, model.image_processor), cfg, show_progress=False,
                       stop_after=stop_after)  # fmt: skip
        return model, result

    trained, _ = run("a", steps=70, weight=5.0)  # frame t is grey 10 * (t + 1): the route's progress is in the view
    log = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    errors = [r["progress_loss"] for r in log]
    # from the error of a constant guess (~0.12, the targets' variance) to a fraction of it
    assert len(errors) == 70 and np.mean(errors[-10:]) < 0.4 * np.mean(errors[:10])
    saved = vlm.load(tmp_path / "a").progress_head
    state = torch.load(find_resume_checkpoint(tmp_path / "a") / "trainer_state.pt", weights_only=False)
    assert saved is not None and trained.progress_head is not None
    for key, value in saved.state_dict().items():
        assert torch.equal(value, state["progress_head"][key]) and torch.equal(value, trained.progress_head.state_dict()[key])
    assert not any("progress" in name for name in state["trainable"])  # not one of the model's parts
    straight, _ = run("b")
    run("c", stop_after=5)  # killed after step 5: resumes from checkpoint-4
    resumed, second = run("c")
    assert second.resumed_from == 4
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name
    with pytest.raises(ValueError, match="with --progress-loss-weight; resume it with the same weight"):
        run("c", steps=16, weight=0.0)
    # Fine-tuning the saved model: with the weight its head continues, without it the head is dropped.
    run("d", steps=1, weight=1.0, model=vlm.load(tmp_path / "a"))
    first = torch.load(tmp_path / "d" / "checkpoints" / "checkpoint-1" / "trainer_state.pt", weights_only=False)
    assert first["progress_head"]["proj.weight"].sub(saved.proj.weight).abs().max() < 0.01  # one small step away
    run("e", steps=1, weight=0.0, model=vlm.load(tmp_path / "a"))
    assert vlm.load(tmp_path / "e").progress_head is None
