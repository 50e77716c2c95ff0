"""The language model: any Hugging Face causal LM (Llama, Qwen2, Mistral, Gemma, Phi-3, ...) via AutoModelForCausalLM.

Also the small policy decisions around it: which attention kernel (`sdpa` by default, `flash_attention_2` when the
package is installed and the model runs in fp16/bf16 on CUDA) and how a dtype name is parsed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "torch.float32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16, "torch.float16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "torch.bfloat16": torch.bfloat16,
}  # fmt: skip


def flash_attention_available() -> bool:
    """True when the flash-attn package is importable (it only works on CUDA)."""
    return importlib.util.find_spec("flash_attn") is not None


def resolve_dtype(dtype: torch.dtype | str | None, device: str | torch.device) -> torch.dtype:
    """A torch dtype from a name or None: None / "auto" means float32 on CPU, bfloat16 on CUDA (fp16 if bf16 is unsupported)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if torch.device(device).type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype '{dtype}'; available: auto, {', '.join(sorted(DTYPE_NAMES))}")
    return DTYPE_NAMES[dtype]


def resolve_attn_implementation(requested: str | None, device: str | torch.device, dtype: torch.dtype) -> str:
    """`requested` if valid, else the fastest available: flash_attention_2 on CUDA in fp16/bf16 when installed, else sdpa."""
    on_cuda = torch.device(device).type == "cuda"
    if requested is None:
        if on_cuda and dtype in (torch.float16, torch.bfloat16) and flash_attention_available():
            return "flash_attention_2"
        return "sdpa"
    if requested not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"unknown attn_implementation '{requested}'; available: {', '.join(ATTN_IMPLEMENTATIONS)}")
    if requested == "flash_attention_2":
        if not flash_attention_available():
            raise ValueError("attn_implementation 'flash_attention_2' needs the flash-attn package: pip install flash-attn")
        if not on_cuda or dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"attn_implementation 'flash_attention_2' needs CUDA and fp16/bf16, got device '{device}', dtype {dtype}")
    return requested


def llm_config_from_dict(llm_cfg: dict) -> Any:
    """A transformers config object from the `llm_cfg` dict of a VILA config (any registered model_type)."""
    model_type = llm_cfg.get("model_type")
    if not model_type:
        raise ValueError("llm_cfg has no 'model_type' (e.g. 'llama', 'qwen2', 'mistral', 'gemma', 'phi3')")
    fields = {k: v for k, v in llm_cfg.items() if k not in ("model_type", "transformers_version")}
    try:
        return AutoConfig.for_model(model_type, **fields)
    except ValueError as error:
        raise ValueError(f"llm_cfg: unsupported language model type '{model_type}' ({error})") from error


def build_language_model(llm_cfg: dict, attn_implementation: str = "sdpa", dtype: torch.dtype | None = None) -> PreTrainedModel:
    """A randomly initialised causal LM from its config dict."""
    config = llm_config_from_dict(llm_cfg)
    kwargs: dict[str, Any] = {"attn_implementation": attn_implementation}
    if dtype is not None:
        kwargs["dtype"] = dtype
    return AutoModelForCausalLM.from_config(config, **kwargs)


def load_language_model(
    folder: Path, dtype: torch.dtype, attn_implementation: str, quantization_config: Any = None, device_map: Any = None
) -> PreTrainedModel:
    """The causal LM saved in a checkpoint's `llm/` folder (local files only: nothing is downloaded)."""
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn_implementation, "local_files_only": True}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    return AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)


@contextmanager
def final_hidden_states(lm: PreTrainedModel) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward of `lm` appends its final hidden state — the input of the output embedding
    (`lm_head`), i.e. after the last norm — to the yielded list.

    Why not `output_hidden_states=True`: that keeps every layer's hidden state of the whole sequence, 33 × [B, L, D]
    on an 8B Llama, where the progress monitor needs only the last. Reading the lm_head's input works for any causal
    LM with an output embedding, and gives only the positions whose logits are computed (the last one under
    `logits_to_keep=1`, as in `vlm.generation.greedy_generate`'s prefill)."""
    head = lm.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(lm).__name__} has no output embedding (lm_head) to read its final hidden state from")
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        yield captured
    finally:
        handle.remove()
