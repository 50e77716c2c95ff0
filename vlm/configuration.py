"""`LlavaLlamaConfig`: the top-level config.json of a VILA/NaVILA checkpoint, plus ready-made configs.

The nested `llm_cfg`, `vision_tower_cfg` and `mm_projector_cfg` are plain dicts (as in released checkpoints); the
VILA keys (`mm_hidden_size`, `image_aspect_ratio`, `num_video_frames`, `mm_vision_select_layer`, ...) sit beside
them, with `frame_sampling` (beyond VILA: which history frames a call sees; absent = NaVILA's uniform rule) and
`progress_cue` (beyond VILA: a step count in the prompt; absent = none, NaVILA's prompt).
`tiny_config()` is for tests; `embedded_config(tokenizer)` is the small model shipped for CPU use.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

from vlm.constants import ARCHITECTURE, MODEL_TYPE, PROJECTOR_MODEL_TYPE
from vlm.convnet import ConvNetConfig
from vlm.efficientnet import EfficientNetLiteConfig
from vlm.mm_utils import FRAME_SAMPLING_RULES, PROGRESS_CUES
from vlm.vision import SELECT_FEATURES

ASPECT_RATIOS = ("resize", "pad")


class LlavaLlamaConfig(PreTrainedConfig):
    """VILA 1.5 / NaVILA model config (`model_type "llava_llama"`)."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        llm_cfg: dict | None = None,  # the language model's HF config (model_type llama/qwen2/...)
        vision_tower_cfg: dict | None = None,  # the vision tower's config (siglip/clip/efficientnet_lite0)
        mm_projector_cfg: dict | None = None,  # {"mm_projector_type": ..., "model_type": "v2l_projector"}
        hidden_size: int | None = None,  # the LM's width (projector output), filled from llm_cfg if None
        mm_hidden_size: int | None = None,  # the tower's token width (projector input), filled from the tower
        image_aspect_ratio: str = "resize",  # how frames become squares: resize (NaVILA) | pad
        num_video_frames: int = 8,  # frames per model call (7 history + current)
        frame_sampling: str = "uniform",  # which history frames: uniform (NaVILA) | geometric (vlm.mm_utils)
        progress_cue: str = "none",  # a step count in the prompt: none (NaVILA) | steps (vlm.mm_utils)
        mm_vision_select_layer: int = -2,  # which hidden layer of a transformer tower gives the features
        mm_vision_select_feature: str = "cls_patch",  # patch (drop CLS) | cls_patch (keep all)
        mm_use_im_start_end: bool = False,  # VILA flag; NaVILA: false (no start/end tokens around images)
        mm_use_im_patch_token: bool = False,  # VILA flag; NaVILA: false
        model_dtype: str = "torch.float32",  # dtype the weights were saved in
        conv_mode: str | None = None,  # conversation template; None -> picked from the name at load time
        **kwargs: Any,
    ) -> None:
        self.llm_cfg = dict(llm_cfg or {})
        self.vision_tower_cfg = dict(vision_tower_cfg or {})
        self.mm_projector_cfg = dict(mm_projector_cfg or {"mm_projector_type": "mlp_downsample", "model_type": PROJECTOR_MODEL_TYPE})
        self.mm_hidden_size = mm_hidden_size
        self.image_aspect_ratio = image_aspect_ratio
        self.num_video_frames = num_video_frames
        self.frame_sampling = frame_sampling
        self.progress_cue = progress_cue
        self.mm_vision_select_layer = mm_vision_select_layer
        self.mm_vision_select_feature = mm_vision_select_feature
        self.mm_use_im_start_end = mm_use_im_start_end
        self.mm_use_im_patch_token = mm_use_im_patch_token
        self.model_dtype = model_dtype
        self.conv_mode = conv_mode
        kwargs.setdefault("architectures", [ARCHITECTURE])
        super().__init__(**kwargs)
        self.hidden_size = hidden_size if hidden_size is not None else self.llm_cfg.get("hidden_size")
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when a value cannot work."""
        if self.image_aspect_ratio not in ASPECT_RATIOS:
            raise ValueError(f"unknown image_aspect_ratio '{self.image_aspect_ratio}'; available: {', '.join(ASPECT_RATIOS)}")
        if self.mm_vision_select_feature not in SELECT_FEATURES:
            raise ValueError(
                f"unknown mm_vision_select_feature '{self.mm_vision_select_feature}'; available: {', '.join(SELECT_FEATURES)}"
            )
        if int(self.num_video_frames) < 1:
            raise ValueError(f"num_video_frames must be >= 1, got {self.num_video_frames}")
        if self.frame_sampling not in FRAME_SAMPLING_RULES:
            raise ValueError(
                f"unknown frame_sampling '{self.frame_sampling}'; available: {', '.join(FRAME_SAMPLING_RULES)}"
            )
        if self.progress_cue not in PROGRESS_CUES:
            raise ValueError(f"unknown progress_cue '{self.progress_cue}'; available: {', '.join(PROGRESS_CUES)}")
        if self.mm_use_im_start_end:
            raise ValueError("mm_use_im_start_end=true is not supported (NaVILA and VILA 1.5 use false)")
        if self.mm_projector_cfg.get("model_type", PROJECTOR_MODEL_TYPE) != PROJECTOR_MODEL_TYPE:
            raise ValueError(f"mm_projector_cfg.model_type must be '{PROJECTOR_MODEL_TYPE}', got '{self.mm_projector_cfg.get('model_type')}'")


def llama_cfg(vocab_size: int, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, **extra: Any) -> dict:
    """A Llama config dict (what `llm_cfg` holds) with the given shape."""
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": intermediate,
        "max_position_embeddings": extra.pop("max_position_embeddings", 4096),
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": extra.pop("tie_word_embeddings", False),
        **extra,
    }


def tiny_config(vocab_size: int = 512, projector: str = "mlp_downsample", tower: str = "siglip", **llm_extra: Any) -> LlavaLlamaConfig:
    """A seconds-fast model for tests: a 2-layer SigLIP tower (32 px, patch 8 -> 4 x 4 tokens) and a 2-layer Llama."""
    towers = {
        "siglip": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        "clip": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "projection_dim": 32},
        "efficientnet": EfficientNetLiteConfig(image_size=64).to_dict(),
        "convnet": ConvNetConfig(image_size=32, widths=(8, 16)).to_dict(),
    }  # fmt: skip
    if tower not in towers:
        raise ValueError(f"unknown tiny tower '{tower}'; available: {', '.join(towers)}")
    return LlavaLlamaConfig(
        llm_cfg=llama_cfg(vocab_size, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, **llm_extra),
        vision_tower_cfg=towers[tower],
        mm_projector_cfg={"mm_projector_type": projector, "model_type": PROJECTOR_MODEL_TYPE},
        mm_vision_select_feature="patch" if tower == "clip" else "cls_patch",
        conv_mode="llama_3",
    )


EMBEDDED_TOWERS = ("efficientnet", "convnet")


def embedded_config(
    tokenizer: Any = None,
    vocab_size: int | None = None,
    projector: str = "mlp_downsample",
    tower: str = "efficientnet",
    colour_grid: int = 0,
) -> LlavaLlamaConfig:
    """The small CPU model of the NaVILA architecture: EfficientNet-Lite0 (ImageNet) + `projector` + 4-layer Llama.

    224 px frames -> 7 x 7 x 1280 tower tokens -> mlp_downsample -> 16 embeddings of 256 per frame (128 for 8 frames);
    `tower="convnet"` swaps the tower for `vlm/convnet.py`'s CNN (64 px frames -> 8 x 8 x 128 tokens -> the same 16
    embeddings per frame), which has no pretrained weights and is meant to train with the navigator;
    Llama: 4 layers, hidden 256, 4 heads of 64 (2 KV heads), MLP 512 (2.6 M parameters with a ~700-token vocabulary).
    The size is set by the CPU budget: >= 10 decisions/s on one core with 8 frames (measured with bench_vlm: hidden 384
    / MLP 1024 gave ~7/s, MLP 768 ~9-10/s, MLP 512 ~11/s; decoding is memory-bound on the weights).
    The vocabulary size comes from `tokenizer` (this project's BPE tokenizer) or `vocab_size`. `colour_grid` K > 0
    (EfficientNet only) appends each token's cell colours to it (`EfficientNetLiteConfig.colour_grid`).
    """
    if tokenizer is None and vocab_size is None:
        raise ValueError("embedded_config needs the tokenizer (or vocab_size) that the model will use")
    if tower not in EMBEDDED_TOWERS:
        raise ValueError(f"unknown embedded tower '{tower}'; available: {', '.join(EMBEDDED_TOWERS)}")
    if colour_grid and tower != "efficientnet":
        raise ValueError(f"colour_grid goes with the efficientnet tower, not '{tower}'")
    if tower == "efficientnet":
        tower_cfg = EfficientNetLiteConfig(image_size=224, colour_grid=colour_grid).to_dict()
    else:
        tower_cfg = ConvNetConfig().to_dict()
    vocab = len(tokenizer) if tokenizer is not None else int(vocab_size)
    special: dict[str, Any] = {}
    if tokenizer is not None:
        special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    return LlavaLlamaConfig(
        llm_cfg=llama_cfg(vocab, hidden=256, layers=4, heads=4, kv_heads=2, intermediate=512, **special),
        vision_tower_cfg=tower_cfg,
        mm_projector_cfg={"mm_projector_type": projector, "model_type": PROJECTOR_MODEL_TYPE},
        mm_vision_select_feature="patch",
        conv_mode="llama_3",
    )
