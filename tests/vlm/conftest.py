"""Shared tiny model and tokenizer for the vlm tests (built once per session: a few seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm.conversation import get_conv_template
from vlm.media import Image

CORPUS = [
    "The next action is move forward 75 cm.",
    "The next action is turn left 30 degrees.",
    "The next action is turn right 45 degrees.",
    "The next action is stop.",
    "Walk past the table and stop at the door.",
]


@pytest.fixture(scope="session")
def tokenizer():
    from vlm.tokenizer import build_tokenizer

    return build_tokenizer(CORPUS, vocab_size=320)


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    import vlm

    torch.manual_seed(0)
    return vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer)), tokenizer).eval()


def make_prompt(n_images: int, instruction: str = "Walk past the table and stop at the door.") -> str:
    """The NaVILA-style llama_3 prompt with `n_images` <image> markers."""
    conv = get_conv_template("llama_3")
    history = "<image>\n" * (n_images - 1)
    conv.append_message(conv.roles[0], f"video {history}, current <image>\n. task: \"{instruction}\" next action?")
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


def make_frames(n: int, episode: str = "ep", seed: int = 0, size: tuple[int, int] = (40, 48)) -> list[Image]:
    rng = np.random.default_rng(seed)
    return [Image(rng.integers(0, 256, (*size, 3), dtype=np.uint8), key=(episode, i)) for i in range(n)]


def stored_float_dtypes(folder) -> dict[str, set[torch.dtype]]:
    """The floating-point dtypes stored in each part (llm, mm_projector, vision_tower) of a VILA-layout folder."""
    from safetensors.torch import load_file

    parts = ("llm", "mm_projector", "vision_tower")
    return {p: {v.dtype for v in load_file(str(folder / p / "model.safetensors")).values() if v.is_floating_point()} for p in parts}
