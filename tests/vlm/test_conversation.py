"""Conversation templates: the llama_3 prompt must equal NaVILA's byte for byte."""

from __future__ import annotations

import pytest

from vlm.conversation import auto_set_conversation_mode, conv_templates, get_conv_template

NAVILA_USER = (
    "Imagine you are a robot programmed for navigation tasks. You have been given a video of historical "
    "observations " + "<image>\n" * 7 + ", and current observation <image>\n. Your assigned task is: "
    '"Walk past the table and stop at the door." Analyze this series of images to decide your next action, '
    "which could be turning left or right by a specific degree, moving forward a certain distance, or stop if "
    "the task is completed."
)
SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language."
)


def test_llama_3_prompt_matches_reference_bytes() -> None:
    conv = conv_templates["llama_3"].copy()
    conv.append_message(conv.roles[0], NAVILA_USER)
    conv.append_message(conv.roles[1], None)
    expected = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + SYSTEM + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n" + NAVILA_USER + "<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert conv.get_prompt() == expected


def test_copy_leaves_template_untouched() -> None:
    conv = conv_templates["llama_3"].copy()
    conv.append_message(conv.roles[0], "hi")
    assert conv_templates["llama_3"].messages == []


def test_llama_3_finished_answer_ends_with_sep2() -> None:
    conv = get_conv_template("llama_3")
    conv.append_message(conv.roles[0], "q")
    conv.append_message(conv.roles[1], "The next action is stop.")
    assert conv.get_prompt().endswith("<|start_header_id|>assistant<|end_header_id|>\n\nThe next action is stop.<|end_of_text|>")


def test_vicuna_mistral_plain() -> None:
    conv = get_conv_template("vicuna_v1")
    conv.append_message("USER", "q")
    conv.append_message("ASSISTANT", None)
    assert conv.get_prompt().endswith("the user's questions. USER: q ASSISTANT:")
    conv = get_conv_template("mistral")
    conv.append_message("USER", "q")
    conv.append_message("ASSISTANT", "a")
    assert conv.get_prompt() == "[INST] q [/INST] a </s>"
    conv = get_conv_template("plain")
    conv.append_message("", "<image>")
    conv.append_message("", "caption")
    assert conv.get_prompt() == "<image>\ncaption\n"


def test_unknown_template_and_role() -> None:
    with pytest.raises(ValueError, match="unknown conversation template 'nope'; available"):
        get_conv_template("nope")
    with pytest.raises(ValueError, match="unknown role"):
        get_conv_template("llama_3").append_message("bob", "x")


@pytest.mark.parametrize(
    ("name", "mode"),
    [("a8cheng/navila-llama3-8b-8f", "llama_3"), ("Efficient-Large-Model/VILA1.5-3b", "vicuna_v1"), ("/x/Llama-3-8B", "llama_3"), ("/models/small", "llama_3")],
)
def test_auto_set_conversation_mode(name: str, mode: str) -> None:
    assert auto_set_conversation_mode(name) == mode
