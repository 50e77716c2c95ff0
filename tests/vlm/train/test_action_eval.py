"""Held-out action accuracy: parsing, a memorising model scores 1.0, an untrained one is shown as such."""

from __future__ import annotations

import pytest
import torch

import vlm
from tests.vlm.train.fakes import write_collected
from vlm.train.action_eval import action_accuracy, format_confusion, parse_action
from vlm.train.dataset import EncoderConfig, MixtureDataset, SampleEncoder
from vlm.train.frame_features import CachedFeatureDataset, precompute_features
from vlm.train.registry import DatasetEntry
from vlm.train.trainer import TrainConfig, train

ANSWERS = [
    "The next action is move forward 75 cm.",
    "The next action is turn left 30 degrees.",
    "The next action is turn right 15 degrees.",
    "The next action is stop.",
]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("The next action is turn left 30 degrees.", ("left", 30)),
        ("The next action is move forward 75 cm.", ("forward", 75)),
        ("The next action is stop.", ("stop", None)),
        ("The next action is", ("?", None)),
    ],
)
def test_parse_action(text, parsed):
    assert parse_action(text) == parsed


def _setup(tmp_path):
    data = write_collected(tmp_path / "d", {"a": ANSWERS}, size=32)
    ds = MixtureDataset([DatasetEntry("d", data)])
    tok = vlm.build_tokenizer([*ANSWERS, "Go a. Go b. <image>"], vocab_size=300)
    torch.manual_seed(0)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok)
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=3.0))
    return model, ds, enc


def test_untrained_model_scores_consistently(tmp_path):
    model, ds, enc = _setup(tmp_path)
    before = action_accuracy(model, ds, enc)
    assert before["samples"] == len(ds) == 4
    assert sum(sum(row.values()) for row in before["confusion"].values()) == 4
    assert abs(sum(before["predicted_share"].values()) - 1.0) < 1e-9
    assert before["exact_acc"] < 1.0


@pytest.mark.slow
def test_memorising_model_scores_one_from_pixels_and_features(tmp_path):
    model, ds, enc = _setup(tmp_path)
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), steps=150, batch_size=4, lr=3e-3, warmup_ratio=0.0,
                      save_every=1000, device="cpu")  # fmt: skip
    train(model, ds, enc, cfg, show_progress=False)
    after = action_accuracy(model, ds, enc)  # from pixels
    cached = action_accuracy(
        model, CachedFeatureDataset(ds, precompute_features(model, ds, enc, tmp_path / "c")), enc
    )
    assert after["exact_acc"] == 1.0 and after["kind_acc"] == 1.0, format_confusion(after)
    assert cached["exact_acc"] == 1.0
    assert after["per_kind"] == {"forward": 1.0, "left": 1.0, "right": 1.0, "stop": 1.0}
    assert "kind acc 1.000" in format_confusion(after)
    # Free-running answers from pixels and from cached features agree (the same model, the same inputs).
    generated = [
        action_accuracy(model, data, enc, mode="generate")
        for data in (ds, CachedFeatureDataset(ds, precompute_features(model, ds, enc, tmp_path / "c")))
    ]
    assert generated[0]["confusion"] == generated[1]["confusion"], format_confusion(generated[0])


def test_generate_mode_equals_the_models_own_generation(tmp_path):
    """Free-running scoring answers exactly what `generate_text` answers for the same frames and prompt."""
    from collections import Counter

    from vlm.media import Image

    model, ds, enc = _setup(tmp_path)
    result = action_accuracy(model, ds, enc, mode="generate")
    assert result["samples"] == 4 and abs(sum(result["predicted_share"].values()) - 1.0) < 1e-9
    d = ds.datasets[0]
    texts = []
    for i in range(len(d.samples)):
        frames = [Image(f) for f in d.frames_for(i)]
        prompt = d.samples[i]["conversations"][0]["value"]
        assert prompt.count("<image>") == len(frames)
        [text] = model.generate_text([(frames, enc.prompt_text(prompt))], max_new_tokens=32)
        texts.append(parse_action(text)[0])
    predicted = sum((Counter(row) for row in result["confusion"].values()), start=Counter())
    assert predicted == Counter(texts)
    with pytest.raises(ValueError, match="unknown mode"):
        action_accuracy(model, ds, enc, mode="beam")
