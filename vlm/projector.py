"""Projectors: vision tokens [N, T, C] -> language-model embeddings [N, T', D].

Kinds (VILA's names and parameter keys, so released `mm_projector/model.safetensors` files load unchanged):
- `linear`: Linear(C, D)                                               keys `layers.*`
- `mlp{k}x_gelu`: Linear(C, D), then (GELU, Linear(D, D)) x (k - 1)     keys `layers.0/2/...`
- `mlp_downsample` (NaVILA): 2 x 2 token merge (`DownSampleBlock`), LayerNorm(4C), Linear(4C, D), GELU,
  Linear(D, D)                                                          keys `layers.1/2/4`
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from vlm.constants import PROJECTOR_MODEL_TYPE

PROJECTOR_TYPES = ("linear", "mlp2x_gelu", "mlp_downsample", "mlp{k}x_gelu")
_MLP_GELU = re.compile(r"^mlp(\d+)x_gelu$")


@dataclass
class ProjectorConfig:
    """Configuration of the multimodal projector (mm_projector/config.json)."""

    mm_projector_type: str = "mlp_downsample"  # linear | mlp{k}x_gelu | mlp_downsample
    mm_hidden_size: int = 1152  # channels of a vision token (C)
    hidden_size: int = 4096  # the language model's embedding width (D)

    def __post_init__(self) -> None:
        t = self.mm_projector_type
        if t not in ("linear", "mlp_downsample") and not _MLP_GELU.match(t):
            raise ValueError(f"unknown mm_projector_type '{t}'; available: {', '.join(PROJECTOR_TYPES)}")
        if self.mm_hidden_size < 1 or self.hidden_size < 1:
            raise ValueError(f"projector sizes must be positive, got mm_hidden_size={self.mm_hidden_size}, hidden_size={self.hidden_size}")

    def to_dict(self) -> dict:
        """config.json content; `model_type` and `architectures` as in VILA's MultimodalProjectorConfig."""
        return {
            "architectures": ["MultimodalProjector"],
            "model_type": PROJECTOR_MODEL_TYPE,
            "mm_projector_type": self.mm_projector_type,
            "mm_hidden_size": self.mm_hidden_size,
            "hidden_size": self.hidden_size,
        }


def downsample_2x2(x: torch.Tensor) -> torch.Tensor:
    """Merge each 2 x 2 block of a square token grid into one token with 4x the channels (VILA's DownSampleBlock).

    x: [N, T, C] with T = s * s (row-major grid). An odd side is zero-padded at the end first (27 -> 28). Output
    [N, (s/2)^2, 4C] in the reference's order: token k = (s/2) * j + i covers rows 2i, 2i+1 and columns 2j, 2j+1
    (column-block-major), channels ordered (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1). Released weights depend
    on exactly this order, so it reproduces the reference's view/permute/view sequence.
    """
    n, t, c = x.shape
    side = round(t**0.5)
    if side * side != t:
        raise ValueError(f"mlp_downsample needs a square token grid, got {t} tokens")
    grid = x.reshape(n, side, side, c)  # [N, rows, cols, C]
    if side % 2:
        grid = torch.cat([grid, grid.new_zeros(n, 1, side, c)], dim=1)  # pad a row at the bottom
        grid = torch.cat([grid, grid.new_zeros(n, side + 1, 1, c)], dim=2)  # pad a column at the right
        side += 1
    half = side // 2
    grid = grid.reshape(n, side, half, 2 * c)  # [N, rows, col pairs, 2C]: (r, 2j), (r, 2j+1)
    grid = grid.permute(0, 2, 1, 3).contiguous()  # [N, col pairs j, rows, 2C]
    grid = grid.reshape(n, half, half, 4 * c)  # [N, j, i, 4C]: rows 2i, 2i+1 merged
    return grid.reshape(n, half * half, 4 * c)  # [N, T/4, 4C]


class DownSampleBlock(nn.Module):
    """`downsample_2x2` as a module (position 0 of the mlp_downsample Sequential, no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample_2x2(x)


class MultimodalProjector(nn.Module):
    """vision tokens [N, T, C] -> [N, T', D]; `self.layers` holds the parameters under VILA's keys."""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        self.config = config
        c, d, kind = config.mm_hidden_size, config.hidden_size, config.mm_projector_type
        if kind == "linear":
            self.layers: nn.Module = nn.Linear(c, d)
        elif kind == "mlp_downsample":
            self.layers = nn.Sequential(DownSampleBlock(), nn.LayerNorm(4 * c), nn.Linear(4 * c, d), nn.GELU(), nn.Linear(d, d))
        else:
            depth = int(_MLP_GELU.match(kind).group(1))
            modules: list[nn.Module] = [nn.Linear(c, d)]
            for _ in range(1, depth):
                modules += [nn.GELU(), nn.Linear(d, d)]
            self.layers = nn.Sequential(*modules)

    def tokens_out(self, tokens_in: int) -> int:
        """How many embeddings one image of `tokens_in` vision tokens becomes."""
        if self.config.mm_projector_type != "mlp_downsample":
            return tokens_in
        side = round(tokens_in**0.5)
        return ((side + 1) // 2) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # [N, T', D]
