"""A small convolutional vision tower trained from scratch on low-resolution frames (`navila_convnet`).

Why: the frozen ImageNet EfficientNet-Lite0 tower describes the generated houses poorly (an 8 x 8 thumbnail tells a
room's paint colour better than its features, docs/training_log.md session 11), and a probe that predicts the
expert's next action from the current and previous frame in held-out houses does better with a small CNN trained
from scratch on 64 x 64 frames than with an MLP on the ImageNet features (session 16). This tower is that CNN:
cheap enough to train end to end with the navigator on a CPU (`navila-agent train --init embedded-cnn
--tune-vision-tower`), at a resolution where the generated houses are still legible.

Layout: `len(widths)` stages of [3 x 3 conv stride 2, GroupNorm, GELU, 3 x 3 conv, GroupNorm, GELU]; a 64 px frame
becomes an 8 x 8 grid of `widths[-1]` channels with three stages, i.e. 64 tokens that the `mlp_downsample` projector
merges to 16 per frame, as many as the EfficientNet tower gives at 224 px. Pixels are scaled to [-1, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

MODEL_TYPE = "navila_convnet"


@dataclass
class ConvNetConfig:
    """Configuration of the convnet tower (saved as vision_tower/config.json)."""

    image_size: int = 64  # square input resolution; the token grid is image_size / 2**len(widths) per side
    widths: tuple[int, ...] = (32, 64, 128)  # channels of each stride-2 stage; the last is the token width
    groups: int = 8  # GroupNorm groups (no batch statistics: train and eval behave alike)
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if not self.widths or any(w < 1 or w % self.groups for w in self.widths):
            raise ValueError(
                f"ConvNetConfig.widths must be positive multiples of groups={self.groups}, got {self.widths}"
            )
        stride = 2 ** len(self.widths)
        if self.image_size < stride or self.image_size % stride:
            raise ValueError(
                f"ConvNetConfig.image_size must be a positive multiple of {stride} (2 ** stages), got {self.image_size}"
            )
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"ConvNetConfig.model_type must be '{MODEL_TYPE}', got '{self.model_type}'")

    @property
    def grid(self) -> int:
        """Tokens per side of the output grid."""
        return self.image_size // 2 ** len(self.widths)

    @property
    def hidden_size(self) -> int:
        """Channels of each output token."""
        return self.widths[-1]

    @property
    def token_channels(self) -> int:
        """Channels of each output token (as `EfficientNetLiteConfig.token_channels`; no extras here)."""
        return self.hidden_size

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths), "architectures": ["ConvNetTower"]}

    @classmethod
    def from_dict(cls, data: dict) -> ConvNetConfig:
        return cls(**{k: data[k] for k in ("image_size", "widths", "groups", "model_type") if k in data})


def _stage(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
        nn.GroupNorm(groups, c_out),
        nn.GELU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.GroupNorm(groups, c_out),
        nn.GELU(),
    )


class ConvNetTower(nn.Module):
    """pixels [N, 3, S, S] (normalised to [-1, 1]) -> tokens [N, (S / 2**stages)**2, widths[-1]], row-major."""

    def __init__(self, config: ConvNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = (3, *config.widths)
        self.stages = nn.Sequential(
            *(_stage(widths[i], widths[i + 1], config.groups) for i in range(len(config.widths)))
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.stages(pixels)  # [N, C, g, g]
        return x.flatten(2).transpose(1, 2)  # [N, g*g, C]
