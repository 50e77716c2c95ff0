"""Training samples: frames by index, prompt/labels masking, action-token weights, deterministic mixture order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.vlm.train.fakes import write_collected
from vlm.constants import EOT, IGNORE_INDEX, IMAGE_TOKEN_INDEX
from vlm.image_processor import ImageProcessor
from vlm.tokenizer import build_tokenizer
from vlm.train.dataset import (
    EncoderConfig,
    MixtureDataset,
    SampleEncoder,
    TrajectoryDataset,
    sample_index_stream,
)
from vlm.train.registry import DatasetEntry

ANSWERS = [
    "The next action is move forward 75 cm.",
    "The next action is turn left 30 degrees.",
    "The next action is stop.",
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer([*ANSWERS, "Go a. Go b. <image>"], vocab_size=300)


def test_frames_follow_indices_with_black_padding(tmp_path):
    ds = TrajectoryDataset(write_collected(tmp_path / "d", {"a": ANSWERS}))
    item = ds[2]  # t = 2: frames [-1]*5 + [0, 1, 2]
    assert item["frames"].shape == (8, 8, 8, 3)
    assert [int(f[0, 0, 0]) for f in item["frames"]] == [0] * 5 + [10, 20, 30]
    assert item["answer"] == ANSWERS[2] and item["prompt"].count("<image>") == 8


def test_frame_sampling_re_derives_each_samples_frames_from_its_step(tmp_path):
    """Collected samples store NaVILA's uniform choice; a model trained with the geometric rule trains on that
    rule's frames of the same stored trajectory (frame t is grey 10 * (t + 1))."""
    from vlm.mm_utils import frame_indices

    answers = [ANSWERS[0]] * 24  # 10 * (t + 1) fits uint8
    root = write_collected(tmp_path / "d", {"a": answers, "b": answers[:3]})
    data = MixtureDataset([DatasetEntry("d", root)])
    data.set_frame_sampling("geometric")
    ds = data.datasets[0]
    assert ds.frame_sampling == "geometric"
    for index in (0, 2, 7, 8, 20, 23, 25):
        t = ds.samples[index]["t"]
        expected = frame_indices(t + 1, 8, "geometric")
        assert ds.samples[index]["frames"] == expected
        assert [int(f[0, 0, 0]) for f in data[index]["frames"]] == [10 * (i + 1) if i >= 0 else 0 for i in expected]
    assert ds.samples[23]["frames"] == [0, 10, 15, 19, 20, 21, 22, 23]
    data.set_frame_sampling("uniform")
    assert ds.samples[23]["frames"] == frame_indices(24, 8, "uniform") == [0, 3, 6, 9, 13, 16, 19, 23]
    with pytest.raises(ValueError, match="unknown frame sampling rule 'dense'"):
        data.set_frame_sampling("dense")
    del ds.samples[5]["t"]
    with pytest.raises(ValueError, match="dataset 'd': sample 'a:5' has no step 't'"):
        ds.set_frame_sampling("geometric")


def test_progress_cue_adds_each_navigation_samples_step_to_its_prompt(tmp_path):
    """Collected prompts are NaVILA's; a model trained with the step-count cue trains on prompts that carry each
    sample's step (as the agent will show it), scene QA prompts are left alone, and "none" restores the originals.
    A prompt without NaVILA's anchor is refused, naming the dataset and the sample, and nothing is changed."""
    import json

    from vlm.mm_utils import PROGRESS_ANCHOR

    root = write_collected(tmp_path / "d", {"a": ANSWERS, "b": ANSWERS[:2]})
    data = MixtureDataset([DatasetEntry("d", root)])
    with pytest.raises(ValueError, match="dataset 'd': sample 'a:0': progress cue 'steps': the prompt has no"):
        data.set_progress_cue("steps")
    assert data[0]["prompt"] == "<image>\n" * 8 + "Go a." and data.datasets[0].progress_cue == "none"

    samples_file = root / "shard-00000" / "samples.jsonl"
    rows = [json.loads(line) for line in samples_file.read_text().splitlines()]
    for row in rows:
        row["conversations"][0]["value"] += f" {PROGRESS_ANCHOR}."
    rows[1]["task"] = "scene_qa"
    samples_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = MixtureDataset([DatasetEntry("d", root)])
    plain = [data[i]["prompt"] for i in range(len(data))]
    data.set_progress_cue("steps")
    assert data[2]["prompt"] == "<image>\n" * 8 + f"Go a. You have taken 2 steps so far. {PROGRESS_ANCHOR}."
    assert data[4]["prompt"] == "<image>\n" * 8 + f"Go b. You have taken 1 steps so far. {PROGRESS_ANCHOR}."
    assert data[1]["prompt"] == plain[1]  # scene QA
    data.set_progress_cue("steps")  # twice is once
    assert data[2]["prompt"].count("You have taken") == 1
    assert data.datasets[0].samples[2]["conversations"][0]["value"] == plain[2]  # the collected text is kept
    data.set_progress_cue("none")
    assert [data[i]["prompt"] for i in range(len(data))] == plain
    with pytest.raises(ValueError, match="unknown progress cue 'meters'"):
        data.set_progress_cue("meters")
    del data.datasets[0].samples[3]["t"]
    with pytest.raises(ValueError, match="dataset 'd': sample 'b:0' has no step 't'"):
        data.set_progress_cue("steps")
    assert [data[i]["prompt"] for i in range(len(data))] == plain


def test_num_frames_re_derives_frames_and_prompt_markers_and_follow_model_takes_all_three(tmp_path):
    """A model of another frame count trains on that many frames of the stored trajectory, with that many <image>
    markers in NaVILA's prompt; `follow_model` sets the count, the history rule and the cue from a model's config."""
    from agent.prompt import build_user_prompt
    from vlm.mm_utils import frame_indices

    answers = [ANSWERS[0]] * 20
    root = write_collected(tmp_path / "d", {"a": answers}, navila_prompt=True)
    data = MixtureDataset([DatasetEntry("d", root)])
    data.set_num_frames(8)  # as collected: nothing to do
    assert data.datasets[0].num_frames is None
    data.set_num_frames(12)
    item = data[19]
    assert item["prompt"] == build_user_prompt("Go a.", 12) and len(item["frames"]) == 12
    assert data.datasets[0].samples[19]["frames"] == frame_indices(20, 12) == [0, 1, 3, 5, 6, 8, 10, 12, 13, 15, 17, 19]
    assert [int(f[0, 0, 0]) for f in item["frames"]] == [10 * (i + 1) for i in frame_indices(20, 12)]
    assert data[2]["prompt"].count("<image>") == 12 and len(data[2]["frames"]) == 12

    class Config:
        num_video_frames = 4
        frame_sampling = "geometric"
        progress_cue = "steps"

    class Model:
        config = Config()

    data.follow_model(Model())
    assert data[19]["prompt"] == build_user_prompt("Go a.", 4, "steps", 19)
    assert data.datasets[0].samples[19]["frames"] == frame_indices(20, 4, "geometric")
    data.follow_model(object())  # no config: NaVILA's rule and prompt, the count stays
    assert data[19]["prompt"] == build_user_prompt("Go a.", 4)
    assert data.datasets[0].samples[19]["frames"] == frame_indices(20, 4)
    with pytest.raises(ValueError, match="dataset 'd': num_frames must be >= 1, got 0"):
        data.set_num_frames(0)
    plain = write_collected(tmp_path / "p", {"a": ANSWERS})  # not NaVILA's prompt
    with pytest.raises(ValueError, match="dataset 'p': sample 'a:0': the prompt has no NaVILA frame markers"):
        TrajectoryDataset(plain, "p").set_num_frames(6)


def test_unfinished_trajectories_are_ignored_and_missing_folder_is_explained(tmp_path):
    root = write_collected(tmp_path / "d", {"a": ANSWERS, "b": ANSWERS[:1]})
    (root / "shard-00000" / "trajectories.jsonl").write_text('{"traj": "a"}\n')
    assert len(TrajectoryDataset(root)) == 3
    with pytest.raises(ValueError, match="navila-agent collect"):
        TrajectoryDataset(tmp_path / "nope")


def test_labels_cover_only_the_answer(tokenizer, tmp_path):
    ds = TrajectoryDataset(write_collected(tmp_path / "d", {"a": ANSWERS}))
    enc = SampleEncoder(tokenizer, ImageProcessor(size=16))
    out = enc.encode(ds[0])
    assert (out["input_ids"] == IMAGE_TOKEN_INDEX).sum() == 8
    assert out["images"].shape == (8, 3, 16, 16)
    answer_ids = out["labels"][out["labels"] != IGNORE_INDEX].tolist()
    assert tokenizer.decode(answer_ids) == ANSWERS[0] + EOT
    n = len(answer_ids)
    assert out["input_ids"][-n:].tolist() == answer_ids  # the labelled tokens are the last ones
    assert torch.all(out["label_weights"][:-n] == 0) and torch.all(out["label_weights"][-n:] == 1)


def test_uint8_batches_normalise_like_the_model_preprocessing(tokenizer, tmp_path):
    from vlm.mm_utils import process_images

    ds = TrajectoryDataset(write_collected(tmp_path / "d", {"a": ANSWERS}, size=20))
    processor = ImageProcessor(size=16, image_mean=(0.4, 0.5, 0.6), image_std=(0.2, 0.3, 0.4))
    fast = SampleEncoder(tokenizer, processor).encode(ds[2])
    slow = SampleEncoder(tokenizer, processor, EncoderConfig(uint8_images=False)).encode(ds[2])
    assert fast["images"].dtype == torch.uint8 and slow["images"].dtype == torch.float32
    expected = process_images(list(ds[2]["frames"]), processor, "resize")
    assert torch.allclose(SampleEncoder(tokenizer, processor).normalize(fast["images"]), expected, atol=1e-5)
    assert torch.allclose(slow["images"], expected)


def test_action_tokens_get_extra_weight(tokenizer, tmp_path):
    ds = TrajectoryDataset(write_collected(tmp_path / "d", {"a": ANSWERS}))
    enc = SampleEncoder(tokenizer, ImageProcessor(size=16), EncoderConfig(action_token_weight=3.0))
    out = enc.encode(ds[0])
    heavy = out["input_ids"][out["label_weights"] == 3.0].tolist()
    text = tokenizer.decode(heavy)
    assert "75" in text and "forward" in text and "The next" not in text


def test_collate_pads(tokenizer, tmp_path):
    ds = TrajectoryDataset(write_collected(tmp_path / "d", {"a": ANSWERS}))
    enc = SampleEncoder(tokenizer, ImageProcessor(size=16))
    batch = enc.collate([ds[0], ds[2]])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["images"].shape == (16, 3, 16, 16)
    short = int(batch["attention_mask"][1].sum())
    assert short < batch["input_ids"].shape[1] and torch.all(batch["labels"][1, short:] == IGNORE_INDEX)


def test_progress_targets_come_from_expert_routes_only(tokenizer, tmp_path):
    """progress = t / (steps - 1) on a route the expert drove to its STOP; None on a DAgger route (a policy drove
    part of it), on a record without steps (older collections) and on scene QA; collate gives NaN for None."""
    four = [*ANSWERS, ANSWERS[0]]  # 4 decisions: t = 0..3
    root = write_collected(tmp_path / "d", {"a": four, "b": ANSWERS}, routes=True, policy_driven=("b",))
    ds = TrajectoryDataset(root)
    assert [ds[i]["progress"] for i in range(4)] == [0.0, 1 / 3, 2 / 3, 1.0]
    assert all(ds[i]["progress"] is None for i in range(4, 7))  # "b": policy-driven
    ds.samples[1]["task"] = "scene_qa"
    assert ds.progress(1) is None
    assert TrajectoryDataset(write_collected(tmp_path / "old", {"a": ANSWERS}))[0]["progress"] is None
    enc = SampleEncoder(tokenizer, ImageProcessor(size=16))
    batch = enc.collate([ds[2], ds[4]])
    assert batch["progress"][0] == pytest.approx(2 / 3) and torch.isnan(batch["progress"][1])
    assert "progress" not in enc.collate([ds[4], ds[5]])  # no target in the batch: the key is absent


def test_mixture_weights_and_resumable_order(tmp_path):
    a = write_collected(tmp_path / "a", {"a": ANSWERS})
    b = write_collected(tmp_path / "b", {"b": ANSWERS[:1]})
    mix = MixtureDataset([DatasetEntry("a", a), DatasetEntry("b", b, weight=9.0)])
    assert len(mix) == 4 and mix[3]["dataset"] == "b" and mix.sizes() == {"a": 3, "b": 1}
    stream = sample_index_stream(mix.weights, seed=1)
    first = [next(stream) for _ in range(4000)]
    assert np.mean([i == 3 for i in first]) > 0.65  # 9 / (3 + 9) = 0.75 of the draws
    resumed = sample_index_stream(mix.weights, seed=1, start=1234)
    assert [next(resumed) for _ in range(100)] == first[1234:1334]
    uniform = sample_index_stream(torch.ones(5, dtype=torch.float64), seed=0)
    assert sorted(next(uniform) for _ in range(5)) == [0, 1, 2, 3, 4]  # an epoch is a permutation


def test_current_frames_decode_each_samples_last_frame_one_file_at_a_time(tmp_path):
    """TrajectoryDataset.current_frames: positions into the given indices, grouped by trajectory file, and the
    current (last) frame of each sample, equal to frames_for(i)[-1]."""
    data = TrajectoryDataset(write_collected(tmp_path, {"a": ["stop"] * 3, "b": ["stop"] * 2}, num_frames=2))
    indices = [4, 0, 2, 3]  # samples a:0 a:1 a:2 b:0 b:1; the order of the request is kept inside each file
    groups = list(data.current_frames(indices))
    assert [positions for positions, _ in groups] == [[0, 3], [1, 2]]
    for positions, frames in groups:
        for position, frame in zip(positions, frames, strict=True):
            assert np.array_equal(frame, data.frames_for(indices[position])[-1])


def test_resized_frame_cache_gives_the_processors_pixels_within_its_byte_budget(tmp_path):
    """resize_frames (used while a tower trains): each trajectory is decoded once and resized by the processor's
    own `resize`; samples then carry exactly the pixels the encoder would have made, and the cache keeps at most
    `max_bytes` of frames (least recently used out first)."""
    root = write_collected(tmp_path / "d", {"a": ANSWERS, "b": ANSWERS}, size=16)
    plain = TrajectoryDataset(root)
    data = TrajectoryDataset(root)
    processor = ImageProcessor(size=4, resample="bilinear")
    one_trajectory = 3 * 4 * 4 * 3  # 3 frames of 4 x 4 RGB
    data.resize_frames(processor.resize, max_bytes=one_trajectory)
    for i in range(len(data)):
        expected = np.stack([processor.resize(f) for f in plain.frames_for(i)])
        assert np.array_equal(data.frames_for(i), expected)
    assert len(data._cache) == 1 and data._cached_bytes == one_trajectory  # "a" went when "b" came
    encoder = SampleEncoder(build_tokenizer(ANSWERS, vocab_size=300), processor)
    assert torch.equal(encoder.encode(data[4])["images"], encoder.encode(plain[4])["images"])
    with pytest.raises(ValueError, match="max_bytes"):
        data.resize_frames(processor.resize, max_bytes=-1)
