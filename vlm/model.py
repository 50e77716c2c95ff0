"""`LlavaLlamaModel`: vision tower -> projector -> spliced into a causal LM. The composition root of `vlm`.

    model = vlm.load("checkpoints/navila-small")           # or vlm.build_model(vlm.tiny_config(), tokenizer)
    answers = model.generate_text([(frames, prompt)])      # prompt: llama_3 text with one <image> per frame

Training uses `forward(input_ids, attention_mask, images, labels)` (loss over the answer tokens only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from vlm.configuration import LlavaLlamaConfig
from vlm.constants import DEFAULT_IMAGE_TOKEN, END_OF_TEXT, EOT
from vlm.conversation import auto_set_conversation_mode
from vlm.feature_cache import FeatureCache
from vlm.generation import greedy_generate
from vlm.media import Image
from vlm.mm_utils import process_images, tokenizer_image_token
from vlm.projector import MultimodalProjector
from vlm.splice import SplicedInputs, splice_image_features, unpad
from vlm.vision import VisionTower

Sample = tuple[Sequence[Image], str]  # (frames, templated prompt with one <image> per frame)


class LlavaLlamaModel(PreTrainedModel):
    """The VILA / NaVILA architecture over any causal LM; see the module docstring for use."""

    config_class = LlavaLlamaConfig
    base_model_prefix = "llava"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(
        self,
        config: LlavaLlamaConfig,
        llm: PreTrainedModel | None = None,
        vision_tower: VisionTower | None = None,
        mm_projector: MultimodalProjector | None = None,
        tokenizer: Any = None,
        feature_cache_size: int = 4096,
    ) -> None:
        super().__init__(config)
        if llm is None or vision_tower is None or mm_projector is None:
            raise ValueError("LlavaLlamaModel needs its parts; use vlm.build_model(config) or vlm.load(path)")
        self.llm = llm
        self.vision_tower = vision_tower
        self.mm_projector = mm_projector
        self.tokenizer = tokenizer
        # The progress monitor (vlm.progress_head), when the model was trained with one; not a VILA part.
        self.progress_head: nn.Module | None = None
        self.feature_cache = FeatureCache(feature_cache_size)
        # Frames per vision-tower forward in encode_media; None: 2 on CPU (bigger batches overflow the CPU caches and
        # cost ~2x per frame, measured on EfficientNet-Lite0), 64 on GPU (bounds activation memory).
        self.max_vision_batch: int | None = None
        self.conv_mode: str = config.conv_mode or auto_set_conversation_mode(str(getattr(config, "_name_or_path", "")))

    # -- parts -------------------------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.llm.get_input_embeddings()

    @property
    def image_processor(self):
        return self.vision_tower.image_processor

    @property
    def tokens_per_image(self) -> int:
        """LM positions one frame occupies (196 for NaVILA 8B, 16 for the embedded model)."""
        return self.mm_projector.tokens_out(self.vision_tower.num_tokens)

    def train(self, mode: bool = True) -> LlavaLlamaModel:
        """Switch mode; entering training empties `feature_cache`, whose features would go stale as weights change."""
        if mode:
            self.feature_cache.clear()
        return super().train(mode)

    def _init_weights(self, module: nn.Module) -> None:
        """Weights come from the parts' own initialisation or from a checkpoint; nothing to do here."""

    # -- vision ------------------------------------------------------------------------------------------------
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [N, 3, S, S] -> projected features [N, T', D] (no cache)."""
        features = self.vision_tower(pixels)  # [N, T, C]
        proj_dtype = next(self.mm_projector.parameters()).dtype
        return self.mm_projector(features.to(proj_dtype))  # [N, T', D]

    def vision_batch_size(self) -> int:
        """How many frames go through the tower at once (see `max_vision_batch`)."""
        if self.max_vision_batch is not None:
            return max(1, int(self.max_vision_batch))
        return 2 if next(self.vision_tower.parameters()).device.type == "cpu" else 64

    def encode_media(self, images: Sequence[Image], use_cache: bool = True) -> list[torch.Tensor]:
        """Features [T', D] per image; keyed images come from / go to `feature_cache` (off while training).

        All frames that must be encoded go through the tower in one batch; repeated keys within the call are
        encoded once.
        """
        cache = use_cache and not self.training
        out: list[torch.Tensor | None] = [None] * len(images)
        todo: dict[Any, list[int]] = {}  # key (or a unique marker for keyless images) -> positions in `images`
        for i, image in enumerate(images):
            if not isinstance(image, Image):
                raise ValueError(f"images must be vlm.media.Image objects, got {type(image).__name__} at position {i}")
            if cache and image.key is not None:
                hit = self.feature_cache.get(image.key)
                if hit is not None:
                    out[i] = hit
                    continue
            marker = image.key if (cache and image.key is not None) else ("__uncached__", i)
            todo.setdefault(marker, []).append(i)
        if todo:
            first = [positions[0] for positions in todo.values()]
            chunks = []
            step = self.vision_batch_size()
            # Cached features are detached anyway: no autograd graph (it would hold every activation of the tower).
            with torch.no_grad() if cache else contextlib.nullcontext():
                for start in range(0, len(first), step):
                    batch = [images[i] for i in first[start : start + step]]
                    chunks.append(self.encode_images(process_images(batch, self.image_processor, self.config.image_aspect_ratio)))
            features = torch.cat(chunks)  # [N_new, T', D]
            for (marker, positions), feats in zip(todo.items(), features, strict=True):
                if cache and not (isinstance(marker, tuple) and marker[:1] == ("__uncached__",)):
                    feats = feats.detach()  # the cached tensor itself is returned, so hits and misses look alike
                    self.feature_cache.put(marker, feats)
                for i in positions:
                    out[i] = feats
        return out  # type: ignore[return-value]

    def _features_from(self, images: Any) -> list[torch.Tensor]:
        """Image features for `forward`: a pixel tensor [N, 3, S, S] or a sequence of `Image`s (in order)."""
        if images is None:
            return []
        if isinstance(images, torch.Tensor):
            return list(self.encode_images(images))
        return self.encode_media(list(images), use_cache=False)

    # -- training / scoring ------------------------------------------------------------------------------------
    def prepare_inputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, images: Any, labels: torch.Tensor | None, padding_side: str
    ) -> SplicedInputs:
        """Splice image features into padded [B, T] ids (with -200 placeholders) and labels."""
        rows = unpad(input_ids, attention_mask)
        label_rows = unpad(labels, attention_mask) if labels is not None else None
        return splice_image_features(rows, self._features_from(images), self.get_input_embeddings(), label_rows, padding_side)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        images: Any = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits [B, L, V] over the spliced sequence; `loss` when `labels` [B, T] is given (IGNORE_INDEX skipped).

        `images`: pixels [N, 3, S, S] or `Image`s, one per -200 in `input_ids`, in order of appearance.
        """
        spliced = self.prepare_inputs(input_ids, attention_mask, images, labels, padding_side="right")
        return self.llm(
            inputs_embeds=spliced.inputs_embeds,
            attention_mask=spliced.attention_mask,
            position_ids=spliced.position_ids,
            labels=spliced.labels,
            **kwargs,
        )

    # -- inference ---------------------------------------------------------------------------------------------
    def stop_token_ids(self) -> set[int]:
        """eos plus <|eot_id|> / <|end_of_text|> when the vocabulary has them."""
        tok = self._require_tokenizer()
        stops = set()
        eos = tok.eos_token_id
        stops.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        vocab = tok.get_vocab()
        stops.update(vocab[t] for t in (EOT, END_OF_TEXT) if t in vocab)
        return stops

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: build it with vlm.build_model(config, tokenizer) or load a checkpoint")
        return self.tokenizer

    def prepare_samples(self, samples: Sequence[Sample], use_cache: bool = True) -> SplicedInputs:
        """Tokenise prompts, encode frames (cached) and splice them, left-padded for generation."""
        tok = self._require_tokenizer()
        ids, images = [], []
        for n, (frames, prompt) in enumerate(samples):
            count = prompt.count(DEFAULT_IMAGE_TOKEN)
            if count != len(frames):
                raise ValueError(f"sample {n}: the prompt has {count} {DEFAULT_IMAGE_TOKEN} markers but {len(frames)} frames were given")
            ids.append(tokenizer_image_token(prompt, tok, return_tensors="pt"))
            images.extend(frames)
        features = self.encode_media(images, use_cache=use_cache)
        return splice_image_features(ids, features, self.get_input_embeddings(), None, padding_side="left")

    @torch.inference_mode()
    def generate_text(
        self,
        samples: Sequence[Sample],
        max_new_tokens: int = 32,
        use_cache: bool = True,
        use_feature_cache: bool = True,
        return_progress: bool = False,
    ) -> list[str] | tuple[list[str], list[float]]:
        """Greedy answers for a batch of (frames, templated prompt) samples, in order.

        Frames with a key are encoded once across calls (`feature_cache`); `use_cache` is the LM's KV cache.
        `return_progress`: also the progress monitor's estimate per sample (`(answers, estimates)`), read from the
        same forward pass; ValueError when the model has no `progress_head`.
        """
        if return_progress and self.progress_head is None:
            raise ValueError(
                "this model has no progress monitor (progress_head/): train it with --progress-loss-weight"
            )
        if not samples:
            return ([], []) if return_progress else []
        tok = self._require_tokenizer()
        inputs = self.prepare_samples(samples, use_cache=use_feature_cache)
        pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(self.stop_token_ids()))
        prefill: list[torch.Tensor] = []
        tokens = greedy_generate(self.llm, inputs, max_new_tokens, self.stop_token_ids(), pad, use_cache=use_cache,
                                 on_prefill_hidden=prefill.append if return_progress else None)  # fmt: skip
        texts = [tok.decode(t, skip_special_tokens=True).strip() for t in tokens]
        if not return_progress:
            return texts
        return texts, self.progress_head(prefill[0]).tolist()  # type: ignore[misc]

    # -- checkpoints -------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:  # type: ignore[override]
        """Write the VILA layout (config.json, llm/, vision_tower/, mm_projector/); see `vlm.checkpoint`."""
        from vlm.checkpoint import save_checkpoint

        save_checkpoint(self, Path(save_directory))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any) -> LlavaLlamaModel:  # type: ignore[override]
        """Same as `vlm.load(path, device=..., dtype=...)` (keyword arguments are passed through)."""
        from vlm.checkpoint import load

        return load(pretrained_model_name_or_path, **kwargs)
