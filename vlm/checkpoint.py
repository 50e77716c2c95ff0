"""Building, saving and loading models in the VILA checkpoint layout, and the transformers Auto registration.

    checkpoint/
      config.json          LlavaLlamaConfig: llm_cfg, vision_tower_cfg, mm_projector_cfg + VILA keys
      llm/                 a Hugging Face causal LM (config.json, *.safetensors) and its tokenizer
      vision_tower/        config.json, weights, preprocessor_config.json
      mm_projector/        config.json (mm_projector_type, model_type "v2l_projector"), model.safetensors
      progress_head/       only for a model trained with a progress monitor (vlm.progress_head; not VILA's)

Released NaVILA / VILA 1.5 checkpoints have exactly this layout, so `load()` reads them too (nothing downloads).
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import torch

from vlm.configuration import LlavaLlamaConfig
from vlm.constants import (
    LLM_FOLDER,
    MM_PROJECTOR_FOLDER,
    MODEL_TYPE,
    PROJECTOR_MODEL_TYPE,
    VISION_TOWER_FOLDER,
)
from vlm.language_model import (
    build_language_model,
    load_language_model,
    resolve_attn_implementation,
    resolve_dtype,
)
from vlm.model import LlavaLlamaModel
from vlm.progress_head import load_progress_head, save_progress_head
from vlm.projector import MultimodalProjector, ProjectorConfig
from vlm.vision import VisionSelection, build_vision_tower, load_vision_tower, save_vision_tower

_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json")


def register_auto_classes() -> None:
    """Make AutoConfig / AutoModel know "llava_llama" (idempotent; the one place the registration happens)."""
    from transformers import AutoConfig, AutoModel

    with contextlib.suppress(ValueError):  # ValueError: already registered
        AutoConfig.register(MODEL_TYPE, LlavaLlamaConfig)
    with contextlib.suppress(ValueError):
        AutoModel.register(LlavaLlamaConfig, LlavaLlamaModel)


def _selection(config: LlavaLlamaConfig) -> VisionSelection:
    return VisionSelection(select_layer=int(config.mm_vision_select_layer), select_feature=config.mm_vision_select_feature)


def _projector_config(config: LlavaLlamaConfig, mm_hidden_size: int, hidden_size: int) -> ProjectorConfig:
    kind = config.mm_projector_cfg.get("mm_projector_type")
    if not kind:
        raise ValueError("mm_projector_cfg has no 'mm_projector_type' (e.g. 'mlp_downsample')")
    return ProjectorConfig(mm_projector_type=kind, mm_hidden_size=mm_hidden_size, hidden_size=hidden_size)


def build_model(
    config: LlavaLlamaConfig,
    tokenizer: Any = None,
    pretrained_vision: bool = True,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype | None = None,
) -> LlavaLlamaModel:
    """A new model from `config` with fresh weights (EfficientNet towers get ImageNet weights if `pretrained_vision`).

    `config.hidden_size` / `mm_hidden_size` are filled in from the parts. Random init follows each part's defaults.
    """
    llm = build_language_model(config.llm_cfg, attn_implementation=attn_implementation, dtype=dtype)
    tower = build_vision_tower(config.vision_tower_cfg, _selection(config), pretrained=pretrained_vision)
    hidden = int(llm.config.hidden_size)
    config.hidden_size, config.mm_hidden_size = hidden, tower.hidden_size
    projector = MultimodalProjector(_projector_config(config, tower.hidden_size, hidden))
    model = LlavaLlamaModel(config, llm=llm, vision_tower=tower, mm_projector=projector, tokenizer=tokenizer)
    return model if dtype is None else model.to(dtype)


def _to_config_dict(config: Any) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def save_checkpoint(model: LlavaLlamaModel, folder: Path) -> None:
    """Write `model` in the VILA layout (see the module docstring); the tokenizer goes to `llm/`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.llm_cfg = _to_config_dict(model.llm.config)
    config.vision_tower_cfg = model.vision_tower.config_dict
    config.mm_projector_cfg = {"mm_projector_type": model.mm_projector.config.mm_projector_type, "model_type": PROJECTOR_MODEL_TYPE,
                               "architectures": ["MultimodalProjector"]}  # fmt: skip
    config.hidden_size, config.mm_hidden_size = int(model.llm.config.hidden_size), model.vision_tower.hidden_size
    config.model_dtype = str(next(model.llm.parameters()).dtype)
    config.conv_mode = model.conv_mode
    config.save_pretrained(folder)
    model.llm.save_pretrained(folder / LLM_FOLDER)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(folder / LLM_FOLDER)
    save_vision_tower(model.vision_tower, folder / VISION_TOWER_FOLDER)
    projector_folder = folder / MM_PROJECTOR_FOLDER
    projector_folder.mkdir(parents=True, exist_ok=True)
    (projector_folder / "config.json").write_text(json.dumps(model.mm_projector.config.to_dict(), indent=2) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in model.mm_projector.state_dict().items()}
    save_file(state, str(projector_folder / "model.safetensors"))
    if getattr(model, "progress_head", None) is not None:
        save_progress_head(model.progress_head, folder)  # type: ignore[arg-type]


def save_compact(model: LlavaLlamaModel, folder: str | Path) -> None:
    """Write `model` in the VILA layout with the language model and projector in float16 and the vision tower kept
    in float32 — how `models/navila-tiny` ships (the repository's size budget is 30 MB; all-float32 is 30 MB).

    Why not all float16: the shipped model's EfficientNet tower in float16 changes its features enough to flip
    some greedy answers, and a flipped answer changes the rest of the episode (run F on all 200 generated
    val_unseen episodes: SR 12.5 % in float32, 10.5 % with only the tower in float16, 12.5 % with only the LM and
    projector in float16). `load` casts every part back to the dtype asked for. The caller's model is not changed.
    """
    compact = copy.deepcopy(model)
    compact.llm.to(torch.float16)
    compact.mm_projector.to(torch.float16)
    compact.vision_tower.to(torch.float32)
    save_checkpoint(compact, Path(folder))


def check_checkpoint_folder(folder: Path) -> dict:
    """Validate the layout before loading anything; returns the top-level config dict.

    Raises FileNotFoundError / ValueError naming the missing file or folder, or the wrong `model_type`.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"not a VILA checkpoint: {folder} has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path} is not valid JSON: {error}") from error
    if config.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{config_path}: model_type is '{config.get('model_type')}', expected '{MODEL_TYPE}' (a VILA/NaVILA checkpoint)")
    missing = [name for name in (LLM_FOLDER, VISION_TOWER_FOLDER, MM_PROJECTOR_FOLDER) if not (folder / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"checkpoint {folder} is missing the folder(s) {', '.join(m + '/' for m in missing)}")
    for name in (LLM_FOLDER, VISION_TOWER_FOLDER, MM_PROJECTOR_FOLDER):
        if not (folder / name / "config.json").is_file():
            raise FileNotFoundError(f"checkpoint {folder} is missing {name}/config.json")
    if not any(any((folder / LLM_FOLDER).glob(p)) for p in _WEIGHT_PATTERNS):
        raise FileNotFoundError(f"checkpoint {folder} is missing the language model weights (llm/*.safetensors)")
    if not (folder / MM_PROJECTOR_FOLDER / "model.safetensors").is_file():
        raise FileNotFoundError(f"checkpoint {folder} is missing mm_projector/model.safetensors")
    projector_type = json.loads((folder / MM_PROJECTOR_FOLDER / "config.json").read_text()).get("model_type")
    if projector_type != PROJECTOR_MODEL_TYPE:
        raise ValueError(f"{folder / MM_PROJECTOR_FOLDER / 'config.json'}: model_type is '{projector_type}', expected '{PROJECTOR_MODEL_TYPE}'")
    return config


def _quantization_config(load_8bit: bool, load_4bit: bool, device: str, dtype: torch.dtype) -> Any:
    if not (load_8bit or load_4bit):
        return None
    if load_8bit and load_4bit:
        raise ValueError("choose one of load_8bit and load_4bit")
    flag = "load_8bit" if load_8bit else "load_4bit"
    if torch.device(device).type != "cuda":
        raise ValueError(f"{flag} quantises through bitsandbytes, which needs a CUDA device; got device '{device}'")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(f"{flag} needs the bitsandbytes package: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    if load_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4")


def _load_projector(folder: Path, config: LlavaLlamaConfig, mm_hidden: int, hidden: int, dtype: torch.dtype) -> MultimodalProjector:
    from safetensors.torch import load_file

    saved = json.loads((folder / "config.json").read_text())
    kind = saved.get("mm_projector_type") or config.mm_projector_cfg.get("mm_projector_type")
    projector = MultimodalProjector(ProjectorConfig(mm_projector_type=kind, mm_hidden_size=mm_hidden, hidden_size=hidden))
    state = load_file(str(folder / "model.safetensors"))
    expected = projector.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{folder / 'model.safetensors'} does not fit a '{kind}' projector ({mm_hidden} -> {hidden}): "
            f"missing {missing}, unexpected {unexpected}, wrong shapes {wrong}"
        )
    projector.load_state_dict(state)
    return projector.to(dtype)


def load(
    path: str | Path,
    device: str = "cpu",
    dtype: torch.dtype | str | None = None,
    load_8bit: bool = False,
    load_4bit: bool = False,
    attn_implementation: str | None = None,
) -> LlavaLlamaModel:
    """Load a VILA-layout checkpoint (NaVILA 8B or this project's small model) ready for inference (eval mode).

    dtype: None/"auto" = float32 on CPU, bfloat16 on CUDA. attn_implementation: None = flash_attention_2 when
    installed on CUDA, else sdpa. Quantisation (load_8bit / load_4bit) applies to the LM, through bitsandbytes, CUDA only.
    """
    from transformers import AutoTokenizer

    register_auto_classes()
    folder = Path(path).expanduser()
    raw = check_checkpoint_folder(folder)
    torch_dtype = resolve_dtype(dtype, device)
    attn = resolve_attn_implementation(attn_implementation, device, torch_dtype)
    quantization = _quantization_config(load_8bit, load_4bit, device, torch_dtype)
    config = LlavaLlamaConfig.from_dict(raw)
    config._name_or_path = str(folder)

    tokenizer = AutoTokenizer.from_pretrained(str(folder / LLM_FOLDER), local_files_only=True)
    llm = load_language_model(folder / LLM_FOLDER, torch_dtype, attn, quantization, device_map={"": device} if quantization else None)
    tower = load_vision_tower(folder / VISION_TOWER_FOLDER, _selection(config), dtype=torch_dtype)
    hidden = int(llm.config.hidden_size)
    projector = _load_projector(folder / MM_PROJECTOR_FOLDER, config, tower.hidden_size, hidden, torch_dtype)
    config.hidden_size, config.mm_hidden_size = hidden, tower.hidden_size
    model = LlavaLlamaModel(config, llm=llm, vision_tower=tower, mm_projector=projector, tokenizer=tokenizer)
    model.progress_head = load_progress_head(folder, hidden)
    if quantization is None:
        model = model.to(device=device, dtype=torch_dtype)
    else:
        for part in (model.vision_tower, model.mm_projector, model.progress_head):
            if part is not None:
                part.to(device=device, dtype=torch_dtype)
    return model.eval()
