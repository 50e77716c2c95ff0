"""Greedy batched decoding over input embeddings with a KV cache and per-sample stopping.

The rows are left-padded (see `vlm.splice`), so every row's next token is predicted at the last position. A row that
emitted a stop token is frozen: it keeps being fed the pad token and its outputs are ignored until every row is done
or `max_new_tokens` is reached. `use_cache=False` recomputes the whole sequence each step (for equivalence tests).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import torch
from transformers import PreTrainedModel

from vlm.language_model import final_hidden_states
from vlm.splice import SplicedInputs


def cache_argument(lm: PreTrainedModel) -> str:
    """The keyword a causal LM takes its KV cache under: `cache` (transformers >= 5.2x) or `past_key_values`."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def _returned_cache(out: Any) -> Any:
    return getattr(out, "cache", None) if getattr(out, "cache", None) is not None else getattr(out, "past_key_values", None)


@torch.inference_mode()
def greedy_generate(
    lm: PreTrainedModel,
    inputs: SplicedInputs,
    max_new_tokens: int,
    stop_token_ids: Iterable[int],
    pad_token_id: int,
    use_cache: bool = True,
    on_prefill_hidden: Callable[[torch.Tensor], Any] | None = None,
) -> list[list[int]]:
    """New token ids per row (stop tokens excluded), greedy argmax at each step.

    `on_prefill_hidden`, when given, is called once with the LM's final hidden state at every row's last prompt
    position [B, D] (the state that predicts the first answer token; the rows are left padded), e.g. for the progress
    monitor (`vlm.progress_head`)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    stops = torch.tensor(sorted(set(stop_token_ids)), device=inputs.inputs_embeds.device, dtype=torch.long)
    embed = lm.get_input_embeddings()
    embeds, mask, positions = inputs.inputs_embeds, inputs.attention_mask, inputs.position_ids  # [B, L, D], [B, L]
    batch = embeds.shape[0]
    done = torch.zeros(batch, dtype=torch.bool, device=embeds.device)
    generated: list[list[int]] = [[] for _ in range(batch)]
    past = None
    cache_kw = cache_argument(lm)
    # Only the last position's logits are needed: skips the [B, L, V] lm_head product over the prompt.
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(lm.forward).parameters else {}
    step_embeds, step_positions = embeds, positions
    # Without padding the mask is all ones and stays so: passing None lets the LM take its causal fast path
    # (no 4-D mask to build at every step; ~10 % of a small model's decoding time on CPU).
    needs_mask = not bool(mask.all())
    for step in range(max_new_tokens):
        # The prefill's final hidden state for the caller: the last layer only, not output_hidden_states' every layer.
        read = step == 0 and on_prefill_hidden is not None
        with final_hidden_states(lm) if read else nullcontext([]) as final:
            out = lm(inputs_embeds=step_embeds, attention_mask=mask if needs_mask else None, position_ids=step_positions,
                     use_cache=use_cache, **{cache_kw: past}, **extra)  # fmt: skip
        if read:
            on_prefill_hidden(final[-1][:, -1])  # type: ignore[misc]
        next_tokens = out.logits[:, -1].argmax(dim=-1)  # [B]
        next_tokens = torch.where(done, torch.full_like(next_tokens, pad_token_id), next_tokens)
        stopped = torch.isin(next_tokens, stops) & ~done
        # One device-to-host copy per step for all rows (indexing GPU tensors per row would sync 2B times).
        for b, (token, was_done, now_stopped) in enumerate(zip(next_tokens.tolist(), done.tolist(), stopped.tolist(), strict=True)):
            if not was_done and not now_stopped:
                generated[b].append(token)
        done |= stopped
        if bool(done.all()):
            break
        new_embeds = embed(next_tokens[:, None])  # [B, 1, D]
        new_positions = positions[:, -1:] + 1  # [B, 1]
        mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)  # finished rows keep running; their output is ignored
        positions = torch.cat([positions, new_positions], dim=1)
        if use_cache:
            past = _returned_cache(out)
            step_embeds, step_positions = new_embeds, new_positions
        else:
            embeds = torch.cat([embeds, new_embeds], dim=1)
            step_embeds, step_positions = embeds, positions
    return generated
