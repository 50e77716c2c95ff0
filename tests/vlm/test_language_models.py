"""Any Hugging Face causal LM works as the language model (Llama, Qwen2, Mistral, Gemma, Phi-3)."""

from __future__ import annotations

import pytest
import torch

import vlm
from tests.vlm.conftest import make_frames, make_prompt
from vlm.language_model import final_hidden_states, resolve_attn_implementation, resolve_dtype

SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}


@pytest.mark.parametrize("model_type", ["qwen2", "mistral", "gemma", "phi3"])
def test_other_causal_lms(model_type: str, tokenizer, tmp_path) -> None:
    config = vlm.tiny_config(vocab_size=len(tokenizer))
    extra = {"head_dim": 16} if model_type == "gemma" else {}
    config.llm_cfg = {"model_type": model_type, "vocab_size": len(tokenizer), **SHAPE, **extra, "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(0)
    model = vlm.build_model(config, tokenizer).eval()
    assert model.llm.config.model_type == model_type
    samples = [(make_frames(2, "a"), make_prompt(2)), (make_frames(3, "b", seed=1), make_prompt(3, "go"))]
    batched = model.generate_text(samples, 6)
    assert batched == [model.generate_text([s], 6)[0] for s in samples]
    model.save_pretrained(tmp_path / model_type)
    assert vlm.load(tmp_path / model_type).generate_text(samples, 6) == batched


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "mistral", "gemma", "phi3"])
def test_final_hidden_states_is_the_last_layer_output_hidden_states_gives(model_type: str, tokenizer) -> None:
    """The lm_head's input is the final (normed) hidden state in every family; under logits_to_keep=1 only the last
    position's, as the progress monitor's read in generation wants."""
    extra = {"head_dim": 16} if model_type == "gemma" else {}
    config = vlm.tiny_config(vocab_size=len(tokenizer))
    config.llm_cfg = {"model_type": model_type, "vocab_size": len(tokenizer), **SHAPE, **extra, "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(0)
    lm = vlm.build_model(config, tokenizer).eval().llm
    embeds = torch.randn(2, 5, 64)
    with torch.no_grad():
        expected = lm(inputs_embeds=embeds, output_hidden_states=True).hidden_states[-1]
        with final_hidden_states(lm) as final:
            lm(inputs_embeds=embeds)
            lm(inputs_embeds=embeds, logits_to_keep=1)
    assert len(final) == 2
    torch.testing.assert_close(final[0], expected)
    torch.testing.assert_close(final[1], expected[:, -1:])
    lm(inputs_embeds=embeds)  # the hook is gone after the block
    assert len(final) == 2


def test_unknown_llm_type(tokenizer) -> None:
    config = vlm.tiny_config(vocab_size=len(tokenizer))
    config.llm_cfg = {"model_type": "no-such-lm", **SHAPE}
    with pytest.raises(ValueError, match="unsupported language model type 'no-such-lm'"):
        vlm.build_model(config, tokenizer)


def test_dtype_and_attention_resolution() -> None:
    assert resolve_dtype(None, "cpu") == torch.float32 and resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_attn_implementation(None, "cpu", torch.float32) == "sdpa"
    with pytest.raises(ValueError, match="flash_attention_2"):
        resolve_attn_implementation("flash_attention_2", "cpu", torch.float32)
