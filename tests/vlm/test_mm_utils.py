"""Frame sampling against NaVILA's table, media validation, image processing, prompt tokenisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm.constants import IMAGE_TOKEN_INDEX
from vlm.image_processor import ImageProcessor
from vlm.media import Image
from vlm.mm_utils import (
    FRAME_SAMPLING_RULES,
    PROGRESS_ANCHOR,
    KeywordsStoppingCriteria,
    add_progress_cue,
    frame_indices,
    history_indices,
    model_frame_sampling,
    model_progress_cue,
    opencv_extract_frames,
    process_images,
    tokenizer_image_token,
    vlnce_frame_sampling,
)
from vlm.tokenizer import build_tokenizer


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (15, [0, 2, 4, 6, 8, 10, 12]),
        (20, [0, 2, 5, 8, 10, 13, 16]),
        (50, [0, 7, 14, 21, 28, 35, 42]),
        (200, [0, 28, 56, 85, 113, 142, 170]),
    ],
)
def test_history_indices_reference_table(length: int, expected: list[int]) -> None:
    assert history_indices(length, 8) == expected
    frames = [np.full((4, 4, 3), i % 256, dtype=np.uint8) for i in range(length)]
    sampled = vlnce_frame_sampling(frames, 8)
    assert [int(f[0, 0, 0]) for f in sampled] == [i % 256 for i in expected] + [(length - 1) % 256]


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (8, [0, 1, 2, 3, 4, 5, 6]),  # L = num_frames: every frame, as the uniform rule
        (20, [0, 8, 12, 15, 16, 17, 18]),
        (61, [0, 30, 45, 53, 57, 58, 59]),
        (200, [0, 117, 165, 185, 194, 197, 198]),
    ],
)
def test_geometric_history_sees_the_last_steps_densely(length: int, expected: list[int]) -> None:
    assert history_indices(length, 8, "geometric") == expected
    frames = [np.full((4, 4, 3), i % 256, dtype=np.uint8) for i in range(length)]
    sampled = vlnce_frame_sampling(frames, 8, rule="geometric")
    assert [int(f[0, 0, 0]) for f in sampled] == [i % 256 for i in expected] + [(length - 1) % 256]


@pytest.mark.parametrize("num_frames", [2, 3, 4, 8, 12])
def test_geometric_history_is_distinct_starts_at_zero_and_never_takes_the_current_frame(num_frames: int) -> None:
    for length in range(num_frames, 400):
        history = history_indices(length, num_frames, "geometric")
        assert len(history) == num_frames - 1 == len(set(history)), (length, history)
        assert history == sorted(history) and history[0] == 0 and history[-1] < length - 1
        if num_frames > 2 and length > num_frames:
            assert history[-1] == length - 2  # the step just before the current one
    assert history_indices(num_frames, num_frames, "geometric") == history_indices(num_frames, num_frames)


def test_geometric_offsets_floor_exact_powers_exactly() -> None:
    # c = 64: offsets 1, 2, 4, 8, 16, 32, 64 (64 ** (2 / 6) is 3.9999999999999996 in floating point)
    assert history_indices(65, 8, "geometric") == [0, 32, 48, 56, 60, 62, 63]


@pytest.mark.parametrize("rule", FRAME_SAMPLING_RULES)
def test_frame_indices_are_what_the_sampler_picks(rule: str) -> None:
    for seen in (1, 3, 8, 9, 30, 77):
        frames = [np.full((2, 2, 3), i + 1, dtype=np.uint8) for i in range(seen)]
        picked = [int(f[0, 0, 0]) - 1 for f in vlnce_frame_sampling(frames, 8, rule=rule)]
        assert frame_indices(seen, 8, rule) == picked  # black pads read -1
    assert frame_indices(0, 8, rule) == [-1] * 8
    assert frame_indices(5, 1, rule) == [4]


def test_unknown_frame_sampling_rule_is_named() -> None:
    with pytest.raises(ValueError, match="unknown frame sampling rule 'recent'; available: uniform, geometric"):
        history_indices(20, 8, "recent")
    with pytest.raises(ValueError, match="'recent'"):
        vlnce_frame_sampling([np.zeros((2, 2, 3), np.uint8)], 8, rule="recent")


def test_model_frame_sampling_defaults_to_navila_uniform() -> None:
    class Config:
        frame_sampling = "geometric"

    class Model:
        config = Config()

    assert model_frame_sampling(object()) == "uniform"  # no config: a released checkpoint's rule
    assert model_frame_sampling(Model()) == "geometric"
    Config.frame_sampling = "sparse"
    with pytest.raises(ValueError, match="'sparse'"):
        model_frame_sampling(Model())


def test_progress_cue_goes_before_the_last_anchor_and_none_is_navilas_prompt() -> None:
    prompt = f'Your assigned task is: "Go. {PROGRESS_ANCHOR} twice." {PROGRESS_ANCHOR} to decide.'
    assert add_progress_cue(prompt, "none", 12) == prompt
    assert add_progress_cue(prompt, "steps", 12) == (
        f'Your assigned task is: "Go. {PROGRESS_ANCHOR} twice." You have taken 12 steps so far. {PROGRESS_ANCHOR} '
        "to decide."
    )  # the instruction's own copy of the words is left alone
    assert "You have taken 0 steps so far. " in add_progress_cue(prompt, "steps", 0)
    with pytest.raises(ValueError, match="unknown progress cue 'meters'; available: none, steps"):
        add_progress_cue(prompt, "meters", 3)
    with pytest.raises(ValueError, match="steps must be >= 0, got -1"):
        add_progress_cue(prompt, "steps", -1)
    with pytest.raises(ValueError, match="progress cue 'steps': the prompt has no 'Analyze this series of images'"):
        add_progress_cue("<image>\nGo.", "steps", 3)


@pytest.mark.parametrize("count", [1, 2, 8, 12, 16])
def test_with_image_count_gives_the_prompt_of_that_many_frames(count: int) -> None:
    from agent.prompt import build_user_prompt
    from vlm.mm_utils import with_image_count

    for collected in (1, 8, 12):
        assert with_image_count(build_user_prompt('Say "observations <image>".', collected), count) == (
            build_user_prompt('Say "observations <image>".', count)
        )
    with pytest.raises(ValueError, match="no NaVILA frame markers"):
        with_image_count("<image>\n" * 8 + "Go.", count)
    with pytest.raises(ValueError, match="num_frames must be >= 1, got 0"):
        with_image_count(build_user_prompt("Go."), 0)


def test_model_progress_cue_defaults_to_navilas_prompt() -> None:
    class Config:
        progress_cue = "steps"

    class Model:
        config = Config()

    assert model_progress_cue(object()) == "none"  # a released checkpoint: no cue
    assert model_progress_cue(Model()) == "steps"
    Config.progress_cue = "meters"
    with pytest.raises(ValueError, match="'meters'"):
        model_progress_cue(Model())


def test_padding_with_black_frames_never_mutates_caller() -> None:
    frames = [np.full((4, 5, 3), 9, dtype=np.uint8) for _ in range(3)]
    before = list(frames)
    sampled = vlnce_frame_sampling(frames, 8)
    assert frames == before and len(frames) == 3
    assert len(sampled) == 8
    assert sampled[-1] is frames[-1]
    # padded buffer: 5 black + 3 real = 8, history indices 0..6 -> 5 black then the first two real frames
    assert [int(f.max()) for f in sampled] == [0, 0, 0, 0, 0, 9, 9, 9]
    assert sampled[0].shape == (4, 5, 3)


def test_zero_frames_and_images_get_black_keys() -> None:
    assert [f.shape for f in vlnce_frame_sampling([], 8, image_size=(6, 7))] == [(6, 7, 3)] * 8
    images = [Image(np.ones((4, 4, 3), np.uint8), key=("ep", i)) for i in range(2)]
    sampled = vlnce_frame_sampling(images, 8)
    assert [im.key for im in sampled] == [("black", 4, 4)] * 6 + [("ep", 0), ("ep", 1)]
    assert all(im.pixels.max() == 0 for im in sampled[:6])


@pytest.mark.parametrize(
    ("array", "message"),
    [(np.zeros((4, 4), np.uint8), r"shape \[H, W, 3\]"), (np.zeros((4, 4, 3), np.float32), "dtype uint8"), (np.zeros((4, 4, 4), np.uint8), "got shape")],
)
def test_image_validation(array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Image(array)
    with pytest.raises(ValueError, match=message):
        vlnce_frame_sampling([array], 8)


def test_process_images_resize_and_pad() -> None:
    proc = ImageProcessor(size=8, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5))
    white = np.full((4, 8, 3), 255, np.uint8)
    out = process_images([white, Image(white)], proc, "resize")
    assert out.shape == (2, 3, 8, 8) and out.dtype == torch.float32
    assert torch.allclose(out, torch.ones_like(out))
    padded = process_images([white], proc, "pad")
    assert torch.allclose(padded[0, :, 0, 0], torch.zeros(3), atol=0.01)  # mean colour -> 0 after normalising
    assert torch.allclose(padded[0, :, 4, 4], torch.ones(3))
    with pytest.raises(ValueError, match="unknown image_aspect_ratio 'crop'"):
        process_images([white], proc, "crop")


def test_image_processor_roundtrip(tmp_path) -> None:
    proc = ImageProcessor(size=224, image_mean=(0.1, 0.2, 0.3), image_std=(0.4, 0.5, 0.6))
    proc.save_pretrained(tmp_path)
    assert ImageProcessor.from_pretrained(tmp_path) == proc


def test_tokenizer_image_token_and_stopping() -> None:
    tok = build_tokenizer(["the next action is move forward 75 cm", "turn left 30 degrees"], vocab_size=300)
    prompt = "<|begin_of_text|>hello <image>\n<image>\nthe next"
    ids = tokenizer_image_token(prompt, tok)
    assert ids.count(IMAGE_TOKEN_INDEX) == 2
    assert ids[0] == tok.convert_tokens_to_ids("<|begin_of_text|>") and ids.count(ids[0]) == 1
    text_only = [i for i in ids if i != IMAGE_TOKEN_INDEX]
    assert tok.decode(text_only) == prompt.replace("<image>", "")
    tensor = tokenizer_image_token(prompt, tok, return_tensors="pt")
    assert tensor.dtype == torch.long and tensor.tolist() == ids

    start = torch.tensor([[1, 2]])
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    crit = KeywordsStoppingCriteria(["<|eot_id|>"], tok, start)
    out = torch.tensor([[1, 2, 5, eot], [1, 2, 5, 6]])
    assert crit(out, None).tolist() == [True, False]


def test_opencv_extract_frames(tmp_path) -> None:
    import cv2

    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 16))
    for i in range(20):
        writer.write(np.full((16, 16, 3), i * 10, np.uint8))
    writer.release()
    frames = opencv_extract_frames(path, frames=4)
    assert len(frames) == 4 and frames[0].shape == (16, 16, 3)
    assert [int(f.mean()) // 10 for f in frames] == pytest.approx([0, 6, 12, 19], abs=1)
    with pytest.raises(FileNotFoundError, match="video file not found"):
        opencv_extract_frames(tmp_path / "missing.mp4")


def _vila_reference_tokenizer_image_token(prompt, tokenizer, image_token_index=IMAGE_TOKEN_INDEX):
    """VILA/LLaVA's algorithm, written out to compare against (tokenise chunks with special tokens, strip one BOS)."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
    out, offset = [], 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        out.append(chunks[0][0])
    separated = [x for pair in zip(chunks, [[image_token_index] * (offset + 1)] * len(chunks), strict=True) for x in pair][:-1]
    for x in separated:
        out.extend(x[offset:])
    return out


def test_tokenizer_image_token_matches_vila_with_a_bos_adding_tokenizer(tokenizer) -> None:
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    backend = tokenizer.backend_tokenizer.__class__.from_str(tokenizer.backend_tokenizer.to_str())
    bos = tokenizer.bos_token_id
    backend.post_processor = TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    llama_like = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    prompt = "Go <image>\n<image>\n, now <image>\n. stop"
    ours = tokenizer_image_token(prompt, llama_like)
    assert ours == _vila_reference_tokenizer_image_token(prompt, llama_like)
    assert ours[0] == bos and ours.count(bos) == 1 and ours.count(IMAGE_TOKEN_INDEX) == 3
    # A llama_3 prompt already starting with <|begin_of_text|>: VILA doubles it, we keep one.
    reference = _vila_reference_tokenizer_image_token("<|begin_of_text|>" + prompt, llama_like)
    assert reference[:2] == [bos, bos]
    assert tokenizer_image_token("<|begin_of_text|>" + prompt, llama_like) == reference[1:]
