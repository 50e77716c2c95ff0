"""VILA/NaVILA-style vision-language model: architecture, checkpoints, inference utilities.

    import vlm
    model = vlm.load("path/to/checkpoint", device="cuda")       # VILA layout: config.json, llm/, vision_tower/, mm_projector/
    answers = model.generate_text([(frames, prompt)], max_new_tokens=32)

Light submodules (`vlm.constants`, `vlm.conversation`, `vlm.media`, `vlm.mm_utils`) import without torch models;
the model entry points below are imported on first use so `import vlm` stays fast.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "load": "vlm.checkpoint",
    "build_model": "vlm.checkpoint",
    "save_checkpoint": "vlm.checkpoint",
    "save_compact": "vlm.checkpoint",
    "register_auto_classes": "vlm.checkpoint",
    "LlavaLlamaModel": "vlm.model",
    "LlavaLlamaConfig": "vlm.configuration",
    "tiny_config": "vlm.configuration",
    "embedded_config": "vlm.configuration",
    "build_tokenizer": "vlm.tokenizer",
    "FeatureCache": "vlm.feature_cache",
    "vlnce_frame_sampling": "vlm.mm_utils",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vlm' has no attribute '{name}'")
