"""Mirror augmentation (`train --mirror-prob`): exact mirrored samples, a resumable coin, the same loss from pixels
and from cached features, and the option end to end."""

from __future__ import annotations

import json
from itertools import islice

import numpy as np
import pytest
import torch

import vlm
from agent.prompt import build_user_prompt
from tests.vlm.train.fakes import tiny_vlm, write_collected
from vlm.train.dataset import (
    EncoderConfig,
    MirroredDataset,
    MixtureDataset,
    SampleEncoder,
    mirror_item,
    mirror_stream,
    mirror_text,
    sample_index_stream,
)
from vlm.train.frame_features import (
    CachedFeatureDataset,
    CachedFeatureModel,
    encode_frames,
    precompute_features,
)
from vlm.train.registry import DatasetEntry
from vlm.train.trainer import ActionWeightedLoss, TrainConfig, train

ANSWERS = [
    "The next action is turn left 30 degrees.",
    "The next action is move forward 75 cm.",
    "The next action is turn right 15 degrees.",
    "The next action is stop.",
]
INSTRUCTIONS = {"a": "Turn left, then walk right up to the sofa.", "b": "Go right past the bed and stop."}


@pytest.mark.parametrize(
    ("text", "mirrored"),
    [
        ("Turn left, then hang a right.", "Turn right, then hang a left."),
        ("Left of the sofa. RIGHT. Right?", "Right of the sofa. LEFT. Left?"),
        ("Walk right up to the lamp on your left.", "Walk right up to the lamp on your right."),
        (
            "Stop right next to it, right away, right there.",
            "Stop right next to it, right away, right there.",
        ),
        ("Turn right after the sofa.", "Turn left after the sofa."),  # a side, not the adverb
        ("The leftover bright rightmost chair.", "The leftover bright rightmost chair."),
        ("The next action is turn left 45 degrees.", "The next action is turn right 45 degrees."),
    ],
)
def test_mirror_text_swaps_sides_only(text: str, mirrored: str) -> None:
    assert mirror_text(text) == mirrored
    assert mirror_text(mirrored) == text or "right " in text  # an involution, except the kept adverbs


def test_mirror_item_flips_frames_and_mirrors_only_the_instruction_inside_the_prompt() -> None:
    instruction = "Turn left into the kitchen and stop on the right of the sink."
    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)  # [N, H, W, 3]
    item = {"prompt": build_user_prompt(instruction), "answer": "The next action is turn left 15 degrees.",
            "action": "left", "instruction": instruction, "frames": frames, "task": "navigation"}  # fmt: skip
    out = mirror_item(item)
    assert out is not None and out["mirrored"]
    assert out["prompt"] == build_user_prompt("Turn right into the kitchen and stop on the left of the sink.")
    assert "turning left or right by a specific degree" in out["prompt"]  # NaVILA's fixed text is kept
    assert out["answer"] == "The next action is turn right 15 degrees." and out["action"] == "right"
    assert (
        np.array_equal(out["frames"], frames[:, :, ::-1]) and out["frames"][0, 0, 0, 0] == frames[0, 0, 5, 0]
    )
    assert item["answer"].endswith("left 15 degrees.") and item["frames"] is frames  # the input is untouched
    assert mirror_item({**item, "action": "stop", "answer": "The next action is stop."})["action"] == "stop"
    # Not exactly mirrorable: scene QA (its answer describes the unflipped view), no instruction in the prompt.
    assert mirror_item({**item, "task": "scene_qa"}) is None
    assert mirror_item({**item, "instruction": None}) is None
    assert mirror_item({**item, "prompt": "something else"}) is None


def test_mirror_stream_is_a_resumable_coin_per_position() -> None:
    weights = torch.ones(50, dtype=torch.float64)
    full = list(islice(mirror_stream(sample_index_stream(weights, 3), 50, 0.5, seed=3), 2000))
    base = list(islice(sample_index_stream(weights, 3), 2000))
    assert [i % 50 for i in full] == base  # the same samples, some shifted to their mirror index
    share = sum(i >= 50 for i in full) / len(full)
    assert 0.45 < share < 0.55, share
    resumed = mirror_stream(sample_index_stream(weights, 3, start=777), 50, 0.5, seed=3, start=777)
    assert list(islice(resumed, 100)) == full[777:877]
    other_seed = list(mirror_stream(iter(base), 50, 0.5, seed=4))
    assert other_seed != full
    assert list(mirror_stream(iter(base[:20]), 50, 0.0, seed=3)) == base[:20]
    assert list(mirror_stream(iter(base[:20]), 50, 1.0, seed=3)) == [i + 50 for i in base[:20]]
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        next(mirror_stream(iter(base), 50, 1.5, seed=3))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("d") / "d"
    data = write_collected(root, {"a": ANSWERS, "b": ANSWERS[::-1]}, size=32, instructions=INSTRUCTIONS,
                           asymmetric=True)  # fmt: skip
    tok = vlm.build_tokenizer([*ANSWERS, *INSTRUCTIONS.values(), "Turn right, left <image>"], vocab_size=300)
    return tok, MixtureDataset([DatasetEntry("d", data)])


def test_mirrored_samples_give_the_same_loss_from_pixels_and_from_cached_features(tiny, tmp_path):
    tok, ds = tiny
    model = tiny_vlm(tok).eval()
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=3.0))
    index = precompute_features(model, ds, enc, tmp_path / "cache", mirror=True)
    assert len(list(index.root.rglob("*-mirror.npy"))) == 2  # one per trajectory file
    pixels, cached = MirroredDataset(ds), MirroredDataset(CachedFeatureDataset(ds, index))
    n = len(ds)
    assert len(pixels) == 2 * n
    picks = [n + 0, n + 1, n + 5, 2]  # mirrored samples (with black padding frames) and a plain one
    items = [pixels[i] for i in picks]
    assert items[0]["prompt"].endswith("Turn right, then walk right up to the sofa.")
    assert items[0]["answer"] == "The next action is turn right 30 degrees."
    assert np.array_equal(items[0]["frames"], ds[0]["frames"][:, :, ::-1])
    assert not np.array_equal(items[0]["frames"], ds[0]["frames"])  # the fake frames are asymmetric
    assert cached[picks[0]]["prompt"] == items[0]["prompt"]
    pixel_batch = enc.collate(items)
    feature_batch = enc.collate([cached[i] for i in picks])
    pixel_batch["images"] = enc.normalize(pixel_batch["images"])
    with torch.no_grad():
        from_pixels = ActionWeightedLoss(model)(**pixel_batch).loss
        from_features = CachedFeatureModel(model)(**feature_batch).loss
    assert torch.allclose(from_pixels, from_features, atol=2e-3), (from_pixels, from_features)
    # The mirror cache holds the flipped frames' features, which differ from the frames' own.
    mirrored, plain = cached[n + 1]["features"], cached[1]["features"]
    assert not np.allclose(mirrored, plain, atol=1e-2)
    flipped = encode_frames(model, enc, np.ascontiguousarray(ds[1]["frames"][:, :, ::-1]))
    assert np.allclose(mirrored[-2:], flipped[-2:], atol=2e-3)  # the two real frames (the rest is padding)


def test_a_missing_mirror_cache_names_the_option(tiny, tmp_path):
    tok, ds = tiny
    model = tiny_vlm(tok)
    enc = SampleEncoder(tok, model.image_processor)
    index = precompute_features(model, ds, enc, tmp_path / "cache")  # without mirror=True
    with pytest.raises(ValueError, match="mirror=True"):
        MirroredDataset(CachedFeatureDataset(ds, index))[len(ds)]


def _run(tok, ds, tmp_path, name, cache):
    model = tiny_vlm(tok)
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=2.0))
    cfg = TrainConfig(output_dir=str(tmp_path / name), steps=4, batch_size=2, lr=1e-3, warmup_ratio=0.0,
                      log_every=1, save_every=2, cache_vision_features=cache, device="cpu", mirror_prob=0.5)  # fmt: skip
    train(model, ds, enc, cfg, show_progress=False)
    return [json.loads(x)["loss"] for x in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]


def test_training_with_mirroring_matches_between_pixels_and_cache_and_resumes(tiny, tmp_path):
    tok, ds = tiny
    pixel_losses = _run(tok, ds, tmp_path, "pixels", "no")
    cached_losses = _run(tok, ds, tmp_path, "cached", "yes")
    assert np.allclose(pixel_losses, cached_losses, atol=5e-3), (pixel_losses, cached_losses)
    plain = TrainConfig(output_dir=str(tmp_path / "plain"), steps=4, batch_size=2, lr=1e-3, warmup_ratio=0.0,
                        log_every=1, save_every=100, cache_vision_features="yes", device="cpu")  # fmt: skip
    model = tiny_vlm(tok)
    train(model, ds, SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=2.0)), plain,
          show_progress=False)  # fmt: skip
    plain_losses = [
        json.loads(x)["loss"] for x in (tmp_path / "plain" / "train_log.jsonl").read_text().splitlines()
    ]
    assert not np.allclose(plain_losses, cached_losses, atol=1e-4)  # mirroring was on
    saved = json.loads((tmp_path / "cached" / "train_config.json").read_text())
    assert saved["train"]["mirror_prob"] == 0.5
    # Killed after step 2 and resumed: the same mirrored draws, the same losses.
    model = tiny_vlm(tok)
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=2.0))
    cfg = TrainConfig(output_dir=str(tmp_path / "resumed"), steps=4, batch_size=2, lr=1e-3, warmup_ratio=0.0,
                      log_every=1, save_every=2, cache_vision_features="yes", device="cpu", mirror_prob=0.5)  # fmt: skip
    train(model, ds, enc, cfg, show_progress=False, stop_after=2)
    model = tiny_vlm(tok)
    train(model, ds, enc, cfg, show_progress=False)
    log = [json.loads(x) for x in (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()]
    resumed = {r["step"]: r["loss"] for r in log}
    assert np.allclose([resumed[s] for s in (1, 2, 3, 4)], cached_losses, atol=1e-5), (resumed, cached_losses)


def test_mirror_prob_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="--mirror-prob"):
        TrainConfig(mirror_prob=1.5)
