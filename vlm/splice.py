"""The multimodal splice: token ids with IMAGE_TOKEN_INDEX placeholders + image features -> LM input embeddings.

Every -200 in a sample's ids is replaced by that image's projected embeddings [T', D] (images are consumed in order
of appearance across the batch); labels over those positions are IGNORE_INDEX. The result is padded to a common
length on the left (generation: the last position of every row is a real token) or the right (training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vlm.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX


@dataclass
class SplicedInputs:
    """What the language model consumes after the splice."""

    inputs_embeds: torch.Tensor  # [B, L, D]
    attention_mask: torch.Tensor  # [B, L] long, 1 = real position
    position_ids: torch.Tensor  # [B, L] 0.. over the real positions (padding gets 0)
    labels: torch.Tensor | None  # [B, L] or None


def splice_image_features(
    input_ids: Sequence[torch.Tensor],
    image_features: Sequence[torch.Tensor],
    embed_tokens: torch.nn.Module,
    labels: Sequence[torch.Tensor] | None = None,
    padding_side: str = "left",
) -> SplicedInputs:
    """Build LM inputs from per-sample unpadded ids ([T_b] each) and the images' features ([T', D] each, in order).

    Raises ValueError when the number of -200 placeholders differs from the number of images.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"unknown padding_side '{padding_side}'; available: left, right")
    n_placeholders = sum(int((ids == IMAGE_TOKEN_INDEX).sum()) for ids in input_ids)
    if n_placeholders != len(image_features):
        raise ValueError(f"the prompts hold {n_placeholders} <image> placeholders but {len(image_features)} images were given")
    weight = embed_tokens.weight
    device, dtype = weight.device, weight.dtype
    rows_embeds: list[torch.Tensor] = []
    rows_labels: list[torch.Tensor] = []
    image_iter = iter(image_features)
    for b, ids in enumerate(input_ids):
        ids = ids.to(device)
        is_image = ids == IMAGE_TOKEN_INDEX
        text_embeds = embed_tokens(ids.masked_fill(is_image, 0))  # [T_b, D]; placeholder rows are discarded below
        row_labels = labels[b].to(device) if labels is not None else None
        pieces: list[torch.Tensor] = []
        label_pieces: list[torch.Tensor] = []
        start = 0
        for pos in [*torch.nonzero(is_image).flatten().tolist(), len(ids)]:
            pieces.append(text_embeds[start:pos])
            if row_labels is not None:
                label_pieces.append(row_labels[start:pos])
            if pos < len(ids):
                feats = next(image_iter).to(device=device, dtype=dtype)  # [T', D]
                pieces.append(feats)
                if row_labels is not None:
                    label_pieces.append(torch.full((feats.shape[0],), IGNORE_INDEX, dtype=torch.long, device=device))
            start = pos + 1
        rows_embeds.append(torch.cat(pieces))  # [L_b, D]
        if row_labels is not None:
            rows_labels.append(torch.cat(label_pieces))
    return _pad(rows_embeds, rows_labels if labels is not None else None, padding_side)


def _pad(rows: list[torch.Tensor], rows_labels: list[torch.Tensor] | None, side: str) -> SplicedInputs:
    batch, longest, dim = len(rows), max(r.shape[0] for r in rows), rows[0].shape[1]
    device, dtype = rows[0].device, rows[0].dtype
    embeds = torch.zeros(batch, longest, dim, device=device, dtype=dtype)  # [B, L, D]
    mask = torch.zeros(batch, longest, dtype=torch.long, device=device)
    positions = torch.zeros(batch, longest, dtype=torch.long, device=device)
    labels = torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long, device=device) if rows_labels is not None else None
    for b, row in enumerate(rows):
        n = row.shape[0]
        span = slice(longest - n, longest) if side == "left" else slice(0, n)
        embeds[b, span] = row
        mask[b, span] = 1
        positions[b, span] = torch.arange(n, device=device)
        if labels is not None:
            labels[b, span] = rows_labels[b]
    return SplicedInputs(embeds, mask, positions, labels)


def unpad(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> list[torch.Tensor]:
    """Per-row ids without padding, from a padded [B, T] batch (either side) and its mask."""
    if attention_mask is None:
        return list(input_ids)
    return [row[mask.bool()] for row, mask in zip(input_ids, attention_mask, strict=True)]
