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
