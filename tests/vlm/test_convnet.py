"""The convnet tower (`navila_convnet`): token grid, config checks, preprocessing, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vlm
from vlm.convnet import ConvNetConfig, ConvNetTower
from vlm.vision import VisionSelection, build_vision_tower


def test_tokens_are_row_major_over_the_last_stage_grid() -> None:
    torch.manual_seed(0)
    net = ConvNetTower(ConvNetConfig()).eval()
    captured = {}
    net.stages[-1].register_forward_hook(lambda m, i, o: captured.setdefault("map", o))
    with torch.no_grad():
        tokens = net(torch.randn(2, 3, 64, 64))
    assert tokens.shape == (2, 64, 128)  # 64 px, three stride-2 stages: an 8 x 8 grid of 128 channels
    grid = captured["map"]  # [2, 128, 8, 8]
    assert torch.equal(tokens[1, 8 * 2 + 5], grid[1, :, 2, 5])


def test_config_validation_and_dict_round_trip() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        ConvNetConfig(image_size=60)
    with pytest.raises(ValueError, match="multiples of groups"):
        ConvNetConfig(widths=(12, 64))
    with pytest.raises(ValueError, match="model_type"):
        ConvNetConfig(model_type="efficientnet_lite0")
    config = ConvNetConfig(image_size=96, widths=(16, 32))
    assert config.grid == 24 and config.hidden_size == 32
    assert ConvNetConfig.from_dict(config.to_dict()) == config


def test_the_tower_resizes_to_64_px_and_scales_to_minus_one_one() -> None:
    tower = build_vision_tower(ConvNetConfig().to_dict(), VisionSelection())
    assert (tower.kind, tower.num_tokens, tower.hidden_size) == ("navila_convnet", 64, 128)
    processor = tower.image_processor
    assert processor.size == 64 and processor.resample == "bilinear"
    white = np.full((224, 224, 3), 255, dtype=np.uint8)
    pixels = processor.preprocess([white, np.zeros_like(white)])
    assert pixels.shape == (2, 3, 64, 64) and float(pixels[0].min()) == 1.0 and float(pixels[1].max()) == -1.0


def test_embedded_cnn_config_gives_16_tokens_per_frame_and_trains_end_to_end() -> None:
    """The embedded architecture with the convnet tower: the projector's 2 x 2 merge turns its 8 x 8 grid into the
    same 16 tokens per frame as the EfficientNet tower, and the answer loss reaches the tower's first conv."""
    tokenizer = vlm.build_tokenizer(["The next action is stop. Go. <image>"], vocab_size=300)
    config = vlm.embedded_config(tokenizer, tower="convnet")
    assert config.vision_tower_cfg["model_type"] == "navila_convnet"
    torch.manual_seed(0)
    model = vlm.build_model(config, tokenizer)
    assert model.tokens_per_image == 16
    with pytest.raises(ValueError, match="unknown embedded tower 'vit'"):
        vlm.embedded_config(tokenizer, tower="vit")
    from vlm.mm_utils import tokenizer_image_token

    ids = tokenizer_image_token("<image> Go. The next action is stop.", tokenizer, return_tensors="pt")[None]
    images = torch.randn(1, 3, 64, 64)
    out = model(input_ids=ids, images=images, labels=ids.clone())
    out.loss.backward()
    first_conv = model.vision_tower.encoder.stages[0][0].weight
    assert first_conv.grad is not None and float(first_conv.grad.abs().sum()) > 0


def test_saved_tower_loads_back_and_mismatched_weights_are_named(tmp_path) -> None:
    from vlm.vision import load_vision_tower, save_vision_tower

    torch.manual_seed(0)
    tower = build_vision_tower(ConvNetConfig(image_size=32, widths=(8, 16)).to_dict(), VisionSelection())
    save_vision_tower(tower, tmp_path / "vt")
    loaded = load_vision_tower(tmp_path / "vt", VisionSelection())
    x = torch.randn(1, 3, 32, 32)
    assert loaded.image_processor == tower.image_processor and torch.equal(loaded(x), tower(x))
    other = build_vision_tower(ConvNetConfig(image_size=32, widths=(8, 16, 32)).to_dict(), VisionSelection())
    save_vision_tower(other, tmp_path / "other")
    (tmp_path / "vt" / "model.safetensors").replace(tmp_path / "vt" / "gone.safetensors")
    with pytest.raises(FileNotFoundError, match="the convnet tower's weights"):
        load_vision_tower(tmp_path / "vt", VisionSelection())
    (tmp_path / "other" / "model.safetensors").replace(tmp_path / "vt" / "model.safetensors")
    with pytest.raises(ValueError, match="parameters do not match the convnet tower"):
        load_vision_tower(tmp_path / "vt", VisionSelection())
