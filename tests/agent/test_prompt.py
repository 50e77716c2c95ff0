"""The NaVILA prompt, pinned character for character."""

from __future__ import annotations

import pytest

from agent.prompt import build_prompt, build_user_prompt

INSTRUCTION = "Walk past the sofa and stop at the door."

EXPECTED_USER = (
    "Imagine you are a robot programmed for navigation tasks. You have been given a video of historical "
    "observations <image>\n<image>\n<image>\n<image>\n<image>\n<image>\n<image>\n, and current observation "
    '<image>\n. Your assigned task is: "Walk past the sofa and stop at the door." Analyze this series of images '
    "to decide your next action, which could be turning left or right by a specific degree, moving forward a "
    "certain distance, or stop if the task is completed."
)

EXPECTED_LLAMA_3 = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n" + EXPECTED_USER + "<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def test_user_prompt_is_the_reference_text() -> None:
    assert build_user_prompt(INSTRUCTION) == EXPECTED_USER
    assert build_user_prompt(INSTRUCTION).count("<image>") == 8


def test_llama_3_prompt_is_the_reference_template() -> None:
    assert build_prompt(INSTRUCTION) == EXPECTED_LLAMA_3


def test_frame_count_and_suffix() -> None:
    one = build_user_prompt("x", num_frames=1)
    assert one.count("<image>") == 1 and "historical observations , and current observation <image>\n." in one
    assert build_prompt("x", num_frames=4).count("<image>\n") == 4
    with_suffix = build_prompt(INSTRUCTION, suffix=" Be brief.")
    assert with_suffix == EXPECTED_LLAMA_3.replace("completed.<|eot_id|>", "completed. Be brief.<|eot_id|>")
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        build_user_prompt("x", num_frames=0)


def test_progress_cue_adds_the_step_count_after_the_instruction() -> None:
    from vlm.mm_utils import PROGRESS_ANCHOR

    assert PROGRESS_ANCHOR in EXPECTED_USER  # the cue's anchor is NaVILA's own wording
    assert build_user_prompt(INSTRUCTION, progress_cue="none", steps=9) == EXPECTED_USER
    assert build_user_prompt(INSTRUCTION, progress_cue="steps", steps=9) == EXPECTED_USER.replace(
        'door." Analyze', 'door." You have taken 9 steps so far. Analyze'
    )
    assert build_prompt(INSTRUCTION, progress_cue="steps", steps=9, suffix=" Be brief.") == EXPECTED_LLAMA_3.replace(
        'door." Analyze', 'door." You have taken 9 steps so far. Analyze'
    ).replace("completed.<|eot_id|>", "completed. Be brief.<|eot_id|>")


def test_unknown_template_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown conversation template 'llama_9'; available: .*llama_3"):
        build_prompt(INSTRUCTION, conv_mode="llama_9")


def test_prompt_phrases_cover_the_fixed_prompt_text() -> None:
    """Every phrase occurs in every prompt; what is left between phrases, markers and the instruction is only
    whitespace, role names and special tokens."""
    import re

    from agent.prompt import ANSWER_PREFIX, build_prompt, prompt_phrases
    from vlm.constants import DEFAULT_IMAGE_TOKEN

    phrases = prompt_phrases()
    instruction = "Walk past the sofa."
    prompt = build_prompt(instruction)
    for phrase in phrases:
        if phrase != ANSWER_PREFIX:
            assert phrase in prompt, phrase
    rest = prompt.replace(instruction, "").replace(DEFAULT_IMAGE_TOKEN, "")
    for phrase in sorted(phrases, key=len, reverse=True):
        rest = rest.replace(phrase, "")
    assert re.sub(r"<\|[a-z_]+\|>", "", rest).strip() == ""
    assert "The next action is move forward 75 cm.".startswith(ANSWER_PREFIX)
