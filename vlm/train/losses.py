"""The training losses over the spliced sequence: the answer's (action-)weighted cross-entropy and the optional
progress monitor's squared error, and the module the trainer's two model wrappers share.

`ActionWeightedLoss` (vlm/train/trainer.py: pixels through the tower) and `CachedFeatureModel`
(vlm/train/frame_features.py: cached tower features through the projector) differ only in how they splice the image
features in; both then run `SplicedLoss.losses`.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from types import SimpleNamespace
from typing import Any

import torch

from vlm.language_model import final_hidden_states
from vlm.progress_head import prompt_end


class SplicedLoss(torch.nn.Module):
    """Base of the trainer's model wrappers: holds the VLM (and the progress monitor's head and weight) and turns a
    spliced batch into the losses (`answer_losses`). `required` names the model attributes the wrapper needs;
    a model without one is refused with `need` ("... need a model with 'X'")."""

    def __init__(
        self,
        model: torch.nn.Module,
        required: tuple[str, ...],
        need: str,
        progress_head: torch.nn.Module | None = None,
        progress_weight: float = 0.0,
    ) -> None:
        super().__init__()
        for attr in required:
            if not hasattr(model, attr):
                raise ValueError(f"{need} a model with '{attr}' (vlm.LlavaLlamaModel)")
        self.model = model
        self.progress_head = progress_head  # the optional progress monitor (vlm.progress_head.ProgressHead)
        self.progress_weight = progress_weight

    def losses(
        self,
        spliced: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        label_weights: torch.Tensor,
        progress: torch.Tensor | None,
    ) -> Any:
        """`answer_losses` of the wrapped model's LM over `spliced`."""
        return answer_losses(
            self.model.llm,
            spliced,
            input_ids,
            attention_mask,
            label_weights,
            int(self.model.tokens_per_image),
            self.progress_head,
            self.progress_weight,
            progress,
        )


def answer_losses(
    llm: torch.nn.Module,
    spliced: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    label_weights: torch.Tensor,
    per_image: int,
    progress_head: torch.nn.Module | None = None,
    progress_weight: float = 0.0,
    progress: torch.Tensor | None = None,
) -> Any:
    """The LM over `spliced` → `weighted_answer_loss`'s result; with `progress_head`, its loss also holds
    `progress_weight` × the head's mean squared error against `progress` [B] (NaN = no target; none when
    `progress` is None), and `answer_loss` / `progress_loss` hold the two parts (detached).

    The head runs on every sample even without a target, so every process of a distributed run uses its
    parameters (DDP needs a gradient for each, here 0 where there is no target)."""
    # The head reads the final (normed) layer only, not output_hidden_states' every layer.
    with final_hidden_states(llm) if progress_head is not None else nullcontext([]) as final:
        out = llm(
            inputs_embeds=spliced.inputs_embeds,
            attention_mask=spliced.attention_mask,
            position_ids=spliced.position_ids,
        )
    result = weighted_answer_loss(out.logits, spliced, input_ids, attention_mask, label_weights, per_image)
    if progress_head is None:
        return result
    estimate = progress_head(prompt_end(final[-1], spliced.labels))  # [B]
    if progress is None:
        progress = torch.full_like(estimate, math.nan)
    target = progress.to(estimate.device, torch.float32)
    known = ~torch.isnan(target)
    squared = (estimate - torch.nan_to_num(target)) ** 2 * known
    mse = squared.sum() / known.sum().clamp(min=1)
    result.answer_loss = result.loss.detach()
    result.progress_loss = mse.detach() if bool(known.any()) else None
    result.loss = result.loss + progress_weight * mse
    return result


def weighted_answer_loss(
    logits: torch.Tensor,
    spliced: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    label_weights: torch.Tensor,
    per_image: int,
) -> Any:
    """Per-token weighted next-token cross-entropy over the spliced sequence → `.loss` (and `.logits`).

    logits [B, L, V] over `spliced` (right padded); input_ids / attention_mask / label_weights [B, T] before the
    splice: the weights are expanded like the labels (each IMAGE_TOKEN_INDEX becomes `per_image` zero-weight
    positions). With unit weights over the answer this is exactly the model's own mean cross-entropy.
    """
    from vlm.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

    # [B, L]: label weights expanded like the labels (image positions get 0)
    weights = torch.zeros(spliced.attention_mask.shape, dtype=torch.float32, device=logits.device)
    for b in range(input_ids.shape[0]):
        keep = attention_mask[b].bool()
        ids, w = input_ids[b][keep], label_weights[b][keep]  # [T_b]
        is_image = ids == IMAGE_TOKEN_INDEX
        reps = torch.where(is_image, per_image, 1)  # each image token spans per_image positions
        row = torch.repeat_interleave(w.masked_fill(is_image, 0.0), reps)  # [L_b]
        weights[b, : row.numel()] = row
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        spliced.labels[:, 1:].flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(logits.shape[0], -1)  # [B, L-1]
    w = weights[:, 1:]
    return SimpleNamespace(loss=(ce * w).sum() / w.sum().clamp(min=1e-8), logits=logits)
