"""Vision towers: pixels -> a sequence of feature tokens per image.

Four kinds, picked by the `model_type` of the tower config (one explicit mapping, `TOWER_KINDS`):
- `siglip_vision_model` (NaVILA: SigLIP so400m-patch14-384, 27 x 27 = 729 tokens of 1152 channels),
- `clip_vision_model` (CLIP ViT; its CLS token is dropped by `mm_vision_select_feature="patch"`),
- `efficientnet_lite0` (this project's CPU default: ImageNet EfficientNet-Lite0, 7 x 7 = 49 tokens of 1280 at
  224 px; see `vlm/efficientnet.py`),
- `navila_convnet` (a small CNN trained from scratch with the navigator, 8 x 8 = 64 tokens of 128 at 64 px; see
  `vlm/convnet.py`).

For the transformer towers the features are the hidden states of layer `mm_vision_select_layer` (-2: the
second-to-last, like VILA); `mm_vision_select_feature` "patch" drops the first token when the tower has a CLS token,
"cls_patch" keeps every token (SigLIP has no CLS token, so both keep all 729).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vlm.convnet import ConvNetConfig, ConvNetTower
from vlm.efficientnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EfficientNetLite0,
    EfficientNetLiteConfig,
    load_imagenet_weights,
)
from vlm.image_processor import ImageProcessor

SELECT_FEATURES = ("patch", "cls_patch")
OWN_TOWERS = (EfficientNetLite0, ConvNetTower)  # this project's towers: config.grid x config.grid tokens, own save format


@dataclass
class VisionSelection:
    """Which hidden states of a transformer tower become the image tokens."""

    select_layer: int = -2  # index into hidden_states (-2: second-to-last layer, VILA's default)
    select_feature: str = "cls_patch"  # "patch" drops a CLS token; "cls_patch" keeps all tokens

    def __post_init__(self) -> None:
        if self.select_feature not in SELECT_FEATURES:
            raise ValueError(
                f"unknown mm_vision_select_feature '{self.select_feature}'; available: {', '.join(SELECT_FEATURES)}"
            )


class VisionTower(nn.Module):
    """Wraps one encoder; `forward(pixels [N, 3, S, S]) -> tokens [N, T, C]` with T = `num_tokens`, C = `hidden_size`."""

    def __init__(self, encoder: nn.Module, kind: str, selection: VisionSelection, image_processor: ImageProcessor) -> None:
        super().__init__()
        self.encoder = encoder
        self.kind = kind
        self.selection = selection
        self.image_processor = image_processor
        self.has_cls_token = kind == "clip_vision_model"

    @property
    def config_dict(self) -> dict:
        """The tower's config as saved in vision_tower/config.json and the top-level `vision_tower_cfg`."""
        return self.encoder.config.to_dict()  # EfficientNetLiteConfig and HF configs both have to_dict()

    @property
    def hidden_size(self) -> int:
        if isinstance(self.encoder, OWN_TOWERS):
            return self.encoder.config.token_channels
        return int(self.encoder.config.hidden_size)

    @property
    def colour_grid(self) -> int:
        """K when each token also carries its cell's K x K mean colours (`EfficientNetLiteConfig.colour_grid`), else 0."""
        return int(getattr(self.encoder.config, "colour_grid", 0))

    @property
    def image_size(self) -> int:
        return int(self.encoder.config.image_size)

    @property
    def num_tokens(self) -> int:
        """Tokens per image after feature selection."""
        if isinstance(self.encoder, OWN_TOWERS):
            return self.encoder.config.grid**2
        patches = (self.image_size // int(self.encoder.config.patch_size)) ** 2
        keep_cls = self.has_cls_token and self.selection.select_feature == "cls_patch"
        return patches + int(keep_cls)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"vision tower expects pixels [N, 3, H, W], got shape {tuple(pixels.shape)}")
        param = next(self.encoder.parameters())
        pixels = pixels.to(device=param.device, dtype=param.dtype)
        if isinstance(self.encoder, OWN_TOWERS):
            return self.encoder(pixels)  # [N, g*g, C]
        out = self.encoder(pixel_values=pixels, output_hidden_states=True)
        features = out.hidden_states[self.selection.select_layer]  # [N, T(+1), C]
        if self.has_cls_token and self.selection.select_feature == "patch":
            features = features[:, 1:]  # drop CLS
        return features


def _siglip_encoder(config: dict | None, folder: Path | None, dtype: torch.dtype | None) -> nn.Module:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    if folder is not None:
        return SiglipVisionModel.from_pretrained(folder, dtype=dtype)
    return SiglipVisionModel(SiglipVisionConfig.from_dict(_hf_fields(config)))


def _clip_encoder(config: dict | None, folder: Path | None, dtype: torch.dtype | None) -> nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if folder is not None:
        return CLIPVisionModel.from_pretrained(folder, dtype=dtype)
    return CLIPVisionModel(CLIPVisionConfig.from_dict(_hf_fields(config)))


def _efficientnet_encoder(config: dict | None, folder: Path | None, dtype: torch.dtype | None, pretrained: bool = True) -> nn.Module:
    net = EfficientNetLite0(EfficientNetLiteConfig.from_dict(config or {}))
    if folder is not None:
        _load_own_weights(net, folder, "the EfficientNet-Lite0 tower")
    elif pretrained:
        load_imagenet_weights(net)
    return net if dtype is None else net.to(dtype)


def _convnet_encoder(config: dict | None, folder: Path | None, dtype: torch.dtype | None) -> nn.Module:
    net = ConvNetTower(ConvNetConfig.from_dict(config or {}))  # fresh: PyTorch's default init (seeded by the caller)
    if folder is not None:
        _load_own_weights(net, folder, "the convnet tower")
    return net if dtype is None else net.to(dtype)


def _load_own_weights(net: nn.Module, folder: Path, name: str) -> None:
    """Load one of this project's towers (`OWN_TOWERS`) from `folder/model.safetensors`, every parameter or an error."""
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"missing model.safetensors in {folder} ({name}'s weights)")
    missing, unexpected = net.load_state_dict(load_file(str(weights)), strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: parameters do not match {name} (missing {missing[:5]}, unexpected {unexpected[:5]})")


def _hf_fields(config: dict | None) -> dict:
    """A tower config dict without the keys that `from_dict` must not see twice."""
    return {k: v for k, v in (config or {}).items() if k not in ("architectures", "transformers_version")}


# model_type -> builder(config dict or None, checkpoint folder or None, dtype). The one place towers are registered.
TOWER_KINDS: dict[str, Callable[..., nn.Module]] = {
    "siglip_vision_model": _siglip_encoder,
    "clip_vision_model": _clip_encoder,
    "efficientnet_lite0": _efficientnet_encoder,
    "navila_convnet": _convnet_encoder,
}


def default_image_processor(kind: str, config: dict) -> ImageProcessor:
    """The preprocessing a tower expects when its folder has no preprocessor_config.json (fresh builds)."""
    size = int(config.get("image_size", {"efficientnet_lite0": 224, "navila_convnet": 64}.get(kind, 384)))
    if kind == "efficientnet_lite0":
        return ImageProcessor(size=size, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, processor_type="EfficientNetImageProcessor")
    if kind == "navila_convnet":  # [-1, 1] (the SigLIP-style default); bilinear PIL downscaling is antialiased
        return ImageProcessor(size=size, resample="bilinear", processor_type="ConvNetImageProcessor")
    if kind == "clip_vision_model":
        return ImageProcessor(
            size=size, image_mean=(0.48145466, 0.4578275, 0.40821073), image_std=(0.26862954, 0.26130258, 0.27577711),
            processor_type="CLIPImageProcessor",
        )
    return ImageProcessor(size=size)


def _kind_of(config: dict, source: str) -> str:
    kind = config.get("model_type")
    if kind not in TOWER_KINDS:
        raise ValueError(f"{source}: unknown vision tower model_type '{kind}'; available: {', '.join(TOWER_KINDS)}")
    return kind


def build_vision_tower(config: dict, selection: VisionSelection, pretrained: bool = True) -> VisionTower:
    """A freshly initialised tower from its config dict (EfficientNet gets its ImageNet weights when `pretrained`)."""
    kind = _kind_of(config, "vision_tower_cfg")
    builder = TOWER_KINDS[kind]
    encoder = builder(config, None, None, pretrained) if kind == "efficientnet_lite0" else builder(config, None, None)
    return VisionTower(encoder, kind, selection, default_image_processor(kind, config))


def load_vision_tower(folder: Path, selection: VisionSelection, dtype: torch.dtype | None = None) -> VisionTower:
    """The tower saved in a checkpoint's `vision_tower/` folder (config.json, weights, preprocessor_config.json)."""
    import json

    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"missing config.json in {folder} (the vision tower's configuration)")
    config = json.loads(config_path.read_text())
    kind = _kind_of(config, str(config_path))
    encoder = TOWER_KINDS[kind](config, folder, dtype)
    if (folder / "preprocessor_config.json").is_file():
        processor = ImageProcessor.from_pretrained(folder)
    else:
        processor = default_image_processor(kind, config)
    return VisionTower(encoder, kind, selection, processor)


def save_vision_tower(tower: VisionTower, folder: Path) -> None:
    """Write `vision_tower/` so `load_vision_tower` (and VILA, for HF towers) can read it back."""
    import json

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(tower.encoder, OWN_TOWERS):
        (folder / "config.json").write_text(json.dumps(tower.config_dict, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in tower.encoder.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
    else:
        tower.encoder.save_pretrained(folder)
    tower.image_processor.save_pretrained(folder)

