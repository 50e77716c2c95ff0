"""The small BPE tokenizer: special tokens are single ids, any text round-trips, the chat template matches llama_3."""

from __future__ import annotations

import pytest

from vlm.conversation import get_conv_template
from vlm.tokenizer import SPECIAL_TOKENS, build_tokenizer


def test_special_tokens_and_round_trip(tokenizer) -> None:
    for token in SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False).input_ids
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids[0]) == token
    text = "Go up the stairs, turn left at the Ü-shaped sofa (unseen words!)."
    assert tokenizer.decode(tokenizer(text).input_ids) == text
    assert tokenizer.padding_side == "left" and tokenizer.eos_token == "<|eot_id|>"


def test_chat_template_equals_llama_3_conversation(tokenizer) -> None:
    conv = get_conv_template("llama_3")
    conv.append_message(conv.roles[0], "where now?")
    conv.append_message(conv.roles[1], None)
    messages = [{"role": "system", "content": conv.system}, {"role": "user", "content": "where now?"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == conv.get_prompt()


def test_save_and_reload(tmp_path, tokenizer) -> None:
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = "The next action is turn left 30 degrees.<|eot_id|>"
    assert again(text).input_ids == tokenizer(text).input_ids
    assert again.chat_template == tokenizer.chat_template


def test_vocab_size_validation() -> None:
    with pytest.raises(ValueError, match="vocab_size must be >= 262"):
        build_tokenizer(["a"], vocab_size=100)


def test_phrases_are_single_tokens_and_round_trip(tmp_path) -> None:
    """The embedded model's tokenizer: NaVILA's fixed prompt words cost one token each phrase, the prompt text
    (and any instruction) still round-trips exactly, and the saved tokenizer keeps the phrases."""
    from transformers import AutoTokenizer

    from agent.prompt import build_prompt, prompt_phrases

    instructions = ["Walk past the red sofa and stop at the door.", "Turn left, go into the kitchen and stop."]
    answers = ["The next action is turn left 30 degrees.", "The next action is move forward 75 cm."]
    corpus = [*(build_prompt(i).replace("<image>", "") for i in instructions), *answers] * 4
    plain = build_tokenizer(corpus, vocab_size=400)
    phrased = build_tokenizer(corpus, vocab_size=400, phrases=prompt_phrases())
    for phrase in prompt_phrases():
        assert len(phrased(phrase).input_ids) == 1, phrase
    prompt = build_prompt("Go up the stairs and stop by the Ü-shaped sofa.").replace("<image>", "")
    ids = phrased(prompt).input_ids
    assert phrased.decode(ids) == prompt
    assert len(ids) < len(plain(prompt).input_ids) / 2
    answer_ids = phrased(answers[0]).input_ids
    assert phrased.convert_ids_to_tokens(answer_ids[0]) == "The next action is"
    assert phrased.decode(answer_ids[1:]) == " turn left 30 degrees."
    phrased.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert again(prompt).input_ids == ids


def test_phrases_validation() -> None:
    with pytest.raises(ValueError, match=r"phrases\[1\] must be a non-empty string"):
        build_tokenizer(["a b c"], vocab_size=300, phrases=["ok", ""])
