"""Projectors: the mlp_downsample token order pinned against a hand-computed example; VILA parameter keys."""

from __future__ import annotations

import pytest
import torch

from vlm.projector import MultimodalProjector, ProjectorConfig, downsample_2x2


def test_downsample_order_hand_computed_4x4() -> None:
    # 4 x 4 grid, one channel, value = 10 * row + col (row-major tokens).
    grid = torch.tensor([[10.0 * r + c for c in range(4)] for r in range(4)]).reshape(1, 16, 1)
    out = downsample_2x2(grid)
    assert out.shape == (1, 4, 4)
    # token k = 2 * j + i covers rows 2i, 2i+1 and columns 2j, 2j+1; channels (2i,2j), (2i,2j+1), (2i+1,2j), (2i+1,2j+1)
    expected = [
        [0, 1, 10, 11],  # k=0: i=0, j=0
        [20, 21, 30, 31],  # k=1: i=1, j=0
        [2, 3, 12, 13],  # k=2: i=0, j=1
        [22, 23, 32, 33],  # k=3: i=1, j=1
    ]
    assert out[0].tolist() == expected


def test_downsample_pads_odd_grid_and_keeps_channel_blocks() -> None:
    c = 2
    grid = torch.arange(1, 9 * c + 1, dtype=torch.float32).reshape(1, 9, c)  # 3 x 3 grid, 2 channels
    out = downsample_2x2(grid)  # padded to 4 x 4 -> 4 tokens of 8 channels
    assert out.shape == (1, 4, 4 * c)
    cell = lambda r, col: grid[0, 3 * r + col].tolist() if r < 3 and col < 3 else [0.0] * c  # noqa: E731
    for k in range(4):
        j, i = divmod(k, 2)
        want = cell(2 * i, 2 * j) + cell(2 * i, 2 * j + 1) + cell(2 * i + 1, 2 * j) + cell(2 * i + 1, 2 * j + 1)
        assert out[0, k].tolist() == want


def test_27x27_gives_196_tokens() -> None:
    assert downsample_2x2(torch.zeros(2, 729, 3)).shape == (2, 196, 12)
    with pytest.raises(ValueError, match="square token grid"):
        downsample_2x2(torch.zeros(1, 10, 3))


@pytest.mark.parametrize(
    ("kind", "keys"),
    [
        ("linear", {"layers.weight", "layers.bias"}),
        ("mlp2x_gelu", {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}),
        ("mlp_downsample", {f"layers.{i}.{p}" for i in (1, 2, 4) for p in ("weight", "bias")}),
    ],
)
def test_parameter_keys_match_vila(kind: str, keys: set[str]) -> None:
    projector = MultimodalProjector(ProjectorConfig(kind, mm_hidden_size=8, hidden_size=16))
    assert set(projector.state_dict()) == keys
    out = projector(torch.randn(3, 16, 8))
    assert out.shape == (3, projector.tokens_out(16), 16)
    if kind == "mlp_downsample":
        assert projector.state_dict()["layers.1.weight"].shape == (32,)  # LayerNorm over 4 x 8 channels


def test_unknown_projector_type() -> None:
    with pytest.raises(ValueError, match="unknown mm_projector_type 'conv'; available"):
        ProjectorConfig("conv")
