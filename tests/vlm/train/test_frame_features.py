"""Training on cached tower features gives the loss (and the training run) that pixels give."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vlm
from tests.vlm.train.fakes import tiny_vlm, write_collected
from vlm.train.dataset import EncoderConfig, MixtureDataset, SampleEncoder
from vlm.train.frame_features import (
    CachedFeatureDataset,
    CachedFeatureModel,
    precompute_features,
    tower_fingerprint,
)
from vlm.train.registry import DatasetEntry
from vlm.train.trainer import ActionWeightedLoss, TrainConfig, train

ANSWERS = [
    "The next action is move forward 75 cm.",
    "The next action is turn left 30 degrees.",
    "The next action is turn right 15 degrees.",
    "The next action is stop.",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data = write_collected(tmp_path_factory.mktemp("d") / "d", {"a": ANSWERS, "b": ANSWERS[::-1]}, size=32)
    tok = vlm.build_tokenizer([*ANSWERS, "Go a. Go b. <image>"], vocab_size=300)
    return tok, MixtureDataset([DatasetEntry("d", data)])


def test_loss_on_cached_features_equals_loss_on_pixels(tiny, tmp_path):
    tok, ds = tiny
    model = tiny_vlm(tok).eval()
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=3.0))
    index = precompute_features(model, ds, enc, tmp_path / "cache")
    cached = CachedFeatureDataset(ds, index)
    picks = [0, 1, 5, 7]  # includes samples with black padding frames (index -1)
    assert any(f < 0 for f in ds.datasets[0].samples[0]["frames"])
    from_pixels, from_features, channels = losses_from_pixels_and_features(model, enc, ds, cached, picks)
    assert channels == model.vision_tower.hidden_size
    assert torch.allclose(from_pixels, from_features, atol=2e-3), (from_pixels, from_features)


def losses_from_pixels_and_features(model, enc, ds, cached, picks):
    """The loss of the samples `picks` from their pixels and from their cached features, and the features' width."""
    pixel_batch = enc.collate([ds[i] for i in picks])
    feature_batch = enc.collate([cached[i] for i in picks])  # images: [B*N, tokens, C]
    pixel_batch["images"] = enc.normalize(pixel_batch["images"])
    with torch.no_grad():
        from_pixels = ActionWeightedLoss(model)(**pixel_batch).loss
        from_features = CachedFeatureModel(model)(**feature_batch).loss
    return from_pixels, from_features, feature_batch["images"].shape[-1]


def test_precompute_resumes_and_is_keyed_by_the_tower(tiny, tmp_path):
    tok, ds = tiny
    model = tiny_vlm(tok)
    enc = SampleEncoder(tok, model.image_processor)
    index = precompute_features(model, ds, enc, tmp_path / "cache")
    files = sorted(index.root.rglob("*.npy"))
    assert len(files) == 3  # two trajectories + the black frame
    stamps = [f.stat().st_mtime_ns for f in files]
    again = precompute_features(model, ds, enc, tmp_path / "cache")
    assert [f.stat().st_mtime_ns for f in sorted(again.root.rglob("*.npy"))] == stamps  # nothing re-encoded
    first = tower_fingerprint(model, enc)
    with torch.no_grad():
        next(model.vision_tower.parameters()).add_(0.1)
    assert tower_fingerprint(model, enc) != first  # changed weights never read stale features
    traj = np.load(files[0]) if "black" not in files[0].name else np.load(files[1])
    assert traj.dtype == np.float16 and traj.ndim == 3


def test_cell_colours_are_part_of_the_cached_features_and_of_their_key(tiny, tmp_path):
    """A tower with `colour_grid` has the same weights as one without, so its features must get another key, and
    the cached features carry the colours: the loss from them equals the loss from pixels."""
    tok, ds = tiny
    config = vlm.tiny_config(vocab_size=len(tok), tower="efficientnet")
    torch.manual_seed(0)
    plain = vlm.build_model(config, tok, pretrained_vision=False).eval()
    config.vision_tower_cfg["colour_grid"] = 2
    coloured = vlm.build_model(config, tok, pretrained_vision=False).eval()
    coloured.vision_tower.encoder.load_state_dict(plain.vision_tower.encoder.state_dict())
    enc = SampleEncoder(tok, coloured.image_processor, EncoderConfig(action_token_weight=3.0))
    assert tower_fingerprint(plain, enc) != tower_fingerprint(coloured, enc)
    cached = CachedFeatureDataset(ds, precompute_features(coloured, ds, enc, tmp_path / "cache"))
    from_pixels, from_features, channels = losses_from_pixels_and_features(coloured, enc, ds, cached, (0, 5))
    assert channels == 1280 + 12
    assert torch.allclose(from_pixels, from_features, atol=2e-3), (from_pixels, from_features)


def test_worker_processes_write_the_features_one_process_writes(tiny, tmp_path):
    """precompute_features(workers=2): two spawned processes split the files; every file equals the one-process
    file, progress ends at all files, a rerun encodes nothing, and a worker's error reaches the caller."""
    tok, ds = tiny
    model = tiny_vlm(tok)
    enc = SampleEncoder(tok, model.image_processor)
    one = precompute_features(model, ds, enc, tmp_path / "one", mirror=True)
    calls = []
    two = precompute_features(model, ds, enc, tmp_path / "two", lambda d, t: calls.append((d, t)), mirror=True,
                              workers=2)  # fmt: skip
    names = sorted(f.name for f in one.root.rglob("*.npy"))
    assert names == sorted(f.name for f in two.root.rglob("*.npy")) and len(names) == 5  # 2 files + mirrors, black
    for a in one.root.rglob("*.npy"):
        assert np.array_equal(np.load(a), np.load(two.root / a.relative_to(one.root)))
    assert calls[-1] == (2, 2)
    stamps = {f: f.stat().st_mtime_ns for f in two.root.rglob("*.npy")}
    precompute_features(model, ds, enc, tmp_path / "two", mirror=True, workers=2)
    assert {f: f.stat().st_mtime_ns for f in two.root.rglob("*.npy")} == stamps  # nothing re-encoded

    broken = write_collected(tmp_path / "broken", {"a": ANSWERS, "b": ANSWERS}, size=32)
    for frames in (broken / "shard-00000" / "frames").glob("*.npz"):
        frames.write_bytes(b"not a frames file")
    with pytest.raises(ValueError, match="pickled"):  # numpy's refusal, raised in a worker, re-raised here
        precompute_features(model, MixtureDataset([DatasetEntry("b", broken)]), enc, tmp_path / "c", workers=2)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        precompute_features(model, ds, enc, tmp_path / "one", workers=0)


def _run(tok, ds, tmp_path, name, cache):
    model = tiny_vlm(tok)
    enc = SampleEncoder(tok, model.image_processor, EncoderConfig(action_token_weight=2.0))
    cfg = TrainConfig(
        output_dir=str(tmp_path / name),
        steps=4,
        batch_size=2,
        lr=1e-3,
        warmup_ratio=0.0,
        log_every=1,
        save_every=100,
        cache_vision_features=cache,
        device="cpu",
    )
    result = train(model, ds, enc, cfg, show_progress=False)
    losses = [json.loads(x)["loss"] for x in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
    return result, losses, model


def test_training_on_cached_features_follows_the_pixel_run(tiny, tmp_path):
    tok, ds = tiny
    _, pixel_losses, _ = _run(tok, ds, tmp_path, "pixels", "no")
    result, cached_losses, cached_model = _run(tok, ds, tmp_path, "cached", "yes")
    assert np.allclose(pixel_losses, cached_losses, atol=5e-3), (pixel_losses, cached_losses)
    saved = json.loads((tmp_path / "cached" / "train_config.json").read_text())
    assert saved["vision_features"]["root"]
    loaded = vlm.load(tmp_path / "cached")  # a normal VILA checkpoint, tower included
    for a, b in zip(cached_model.llm.parameters(), loaded.llm.parameters(), strict=True):
        assert torch.allclose(a.float(), b.float())
    assert result.steps == 4


def test_auto_turns_the_cache_on_for_a_frozen_tower_only():
    from vlm.train.trainer import uses_feature_cache

    tok = vlm.build_tokenizer(ANSWERS, vocab_size=300)
    model = tiny_vlm(tok)
    assert uses_feature_cache(model, TrainConfig())
    assert not uses_feature_cache(model, TrainConfig(tune_vision_tower=True))
    assert not uses_feature_cache(model, TrainConfig(cache_vision_features="no"))
    assert not uses_feature_cache(torch.nn.Linear(2, 2), TrainConfig())  # not a VLM: pixels as before
    with pytest.raises(ValueError, match="frozen tower"):
        TrainConfig(cache_vision_features="yes", tune_vision_tower=True)
    with pytest.raises(ValueError, match="available: auto, yes, no"):
        TrainConfig(cache_vision_features="maybe")
