"""Checkpoints: VILA-layout round trip, loading a NaVILA-schema checkpoint written by hand, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vlm
from tests.vlm.conftest import make_frames, make_prompt, stored_float_dtypes
from vlm.mm_utils import tokenizer_image_token


def _logits(model, tokenizer, frames, prompt) -> torch.Tensor:
    ids = tokenizer_image_token(prompt, tokenizer, return_tensors="pt")[None]
    with torch.no_grad():
        return model(input_ids=ids, images=frames).logits


@pytest.mark.parametrize("tower", ["siglip", "clip", "efficientnet", "convnet"])
def test_save_load_round_trip_identical_logits(tmp_path: Path, tokenizer, tower: str) -> None:
    torch.manual_seed(1)
    projector = "mlp2x_gelu" if tower == "clip" else "mlp_downsample"
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer), tower=tower, projector=projector), tokenizer, pretrained_vision=False).eval()
    model.save_pretrained(tmp_path / "ckpt")
    for part in ("config.json", "llm/config.json", "llm/tokenizer.json", "vision_tower/config.json", "vision_tower/preprocessor_config.json",
                 "mm_projector/config.json", "mm_projector/model.safetensors"):  # fmt: skip
        assert (tmp_path / "ckpt" / part).is_file(), part
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["model_type"] == "llava_llama" and config["architectures"] == ["LlavaLlamaModel"]
    assert {"llm_cfg", "vision_tower_cfg", "mm_projector_cfg", "mm_hidden_size", "image_aspect_ratio", "num_video_frames"} <= set(config)
    loaded = vlm.load(tmp_path / "ckpt")
    frames, prompt = make_frames(3), make_prompt(3)
    assert torch.equal(_logits(model, tokenizer, frames, prompt), _logits(loaded, loaded.tokenizer, frames, prompt))
    assert loaded.generate_text([(frames, prompt)], 8) == model.generate_text([(frames, prompt)], 8)


def test_auto_classes_know_llava_llama(tmp_path: Path, tiny_model) -> None:
    from transformers import AutoConfig

    vlm.register_auto_classes()
    tiny_model.save_pretrained(tmp_path / "c")
    config = AutoConfig.from_pretrained(tmp_path / "c")
    assert type(config).__name__ == "LlavaLlamaConfig" and config.mm_projector_cfg["mm_projector_type"] == "mlp_downsample"


def write_navila_schema_checkpoint(folder: Path, tokenizer) -> dict[str, torch.Tensor]:
    """A tiny checkpoint with the exact config keys and parameter names of the released NaVILA 8B (a8cheng/navila-llama3-8b-8f).

    Written with transformers and safetensors directly (not with vlm's save code). Returns the projector tensors.
    """
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(7)
    llm_cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, architectures=["LlamaForCausalLM"])  # fmt: skip
    LlamaForCausalLM(llm_cfg).save_pretrained(folder / "llm")
    tokenizer.save_pretrained(folder / "llm")
    vt_cfg = SiglipVisionConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, image_size=42, patch_size=14,
                                architectures=["SiglipVisionModel"])  # fmt: skip  # 3 x 3 grid: odd, like 27 x 27
    SiglipVisionModel(vt_cfg).save_pretrained(folder / "vision_tower")
    (folder / "vision_tower" / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5], "processor_class": "SiglipProcessor",
        "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"height": 42, "width": 42}}))  # fmt: skip
    proj = {
        "layers.1.weight": torch.rand(192) + 0.5, "layers.1.bias": torch.randn(192) * 0.1,
        "layers.2.weight": torch.randn(64, 192) * 0.05, "layers.2.bias": torch.randn(64) * 0.05,
        "layers.4.weight": torch.randn(64, 64) * 0.1, "layers.4.bias": torch.randn(64) * 0.1,
    }  # fmt: skip
    (folder / "mm_projector").mkdir()
    save_file(proj, str(folder / "mm_projector" / "model.safetensors"))
    (folder / "mm_projector" / "config.json").write_text(json.dumps({
        "architectures": ["MultimodalProjector"], "mm_projector_type": "mlp_downsample", "model_type": "v2l_projector",
        "torch_dtype": "bfloat16", "transformers_version": "4.36.2"}))  # fmt: skip
    top = {
        "_name_or_path": "./checkpoints/navila-llama3-8b-8f", "architectures": ["LlavaLlamaModel"], "drop_path_rate": 0.0,
        "fps": 0.0, "hidden_size": 64, "image_aspect_ratio": "resize", "interpolate_mode": "linear",
        "llm_cfg": {**llm_cfg.to_dict(), "_name_or_path": "./checkpoints/navila-llama3-8b-8f/llm"},
        "mm_hidden_size": 48,
        "mm_projector_cfg": {"architectures": ["MultimodalProjector"], "mm_projector_type": "mlp_downsample", "model_type": "v2l_projector",
                             "torch_dtype": "bfloat16", "transformers_version": "4.36.2"},
        "mm_projector_lr": None, "mm_use_im_patch_token": False, "mm_use_im_start_end": False,
        "mm_vision_select_feature": "cls_patch", "mm_vision_select_layer": -2, "model_dtype": "torch.bfloat16",
        "model_type": "llava_llama", "num_video_frames": 8, "resume_path": "./checkpoints/navila-llama3-8b-8f",
        "s2": False, "s2_max_split_size": 336, "s2_scales": "336,672,1008", "soft_ce_std": 1.0, "transformers_version": "4.36.2",
        "tune_language_model": True, "tune_mm_projector": True, "tune_vision_tower": True, "vision_resolution": -1,
        "vision_tower_cfg": {**vt_cfg.to_dict(), "_name_or_path": "./checkpoints/navila-llama3-8b-8f/vision_tower"},
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(top, indent=2))
    return proj


def test_loads_navila_schema_checkpoint_and_computes_reference_features(tmp_path: Path, tokenizer) -> None:
    folder = tmp_path / "navila-llama3-8b-8f"
    folder.mkdir()
    proj = write_navila_schema_checkpoint(folder, tokenizer)
    model = vlm.load(folder)
    assert model.conv_mode == "llama_3"
    assert model.vision_tower.num_tokens == 9 and model.tokens_per_image == 4  # 3 x 3 -> padded 4 x 4 -> 2 x 2
    assert torch.equal(model.mm_projector.layers[2].weight, proj["layers.2.weight"])
    frame = make_frames(1, size=(42, 42))[0]
    got = model.encode_media([frame], use_cache=False)[0]  # [4, 64]
    # Reference computed by hand: SigLIP second-to-last hidden states -> zero pad 3x3 -> 4x4 -> 2x2 merge in the
    # released order -> LayerNorm -> Linear -> GELU -> Linear.
    pixels = torch.from_numpy(frame.pixels).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.no_grad():
        hidden = model.vision_tower.encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][0]  # [9, 48]
        grid = torch.zeros(4, 4, 48)
        grid[:3, :3] = hidden.reshape(3, 3, 48)
        tokens = [torch.cat([grid[2 * i, 2 * j], grid[2 * i, 2 * j + 1], grid[2 * i + 1, 2 * j], grid[2 * i + 1, 2 * j + 1]])
                  for j in range(2) for i in range(2)]  # fmt: skip  # k = 2 * j + i
        x = F.layer_norm(torch.stack(tokens), (192,), proj["layers.1.weight"], proj["layers.1.bias"], eps=1e-5)
        x = F.gelu(F.linear(x, proj["layers.2.weight"], proj["layers.2.bias"]))
        expected = F.linear(x, proj["layers.4.weight"], proj["layers.4.bias"])
    assert torch.allclose(got, expected, atol=1e-5)
    answers = model.generate_text([(make_frames(8, size=(42, 42)), make_prompt(8))], max_new_tokens=4)
    assert len(answers) == 1 and isinstance(answers[0], str)


@pytest.fixture()
def saved(tmp_path: Path, tiny_model) -> Path:
    tiny_model.save_pretrained(tmp_path / "ok")
    return tmp_path / "ok"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: shutil.rmtree(p / "mm_projector"), r"missing the folder\(s\) mm_projector/"),
        (lambda p: shutil.rmtree(p / "vision_tower"), r"missing the folder\(s\) vision_tower/"),
        (lambda p: (p / "config.json").unlink(), "has no config.json"),
        (lambda p: (p / "mm_projector" / "model.safetensors").unlink(), "missing mm_projector/model.safetensors"),
        (lambda p: [f.unlink() for f in (p / "llm").glob("*.safetensors")], "missing the language model weights"),
        (lambda p: (p / "llm" / "config.json").unlink(), "missing llm/config.json"),
    ],
)
def test_incomplete_checkpoint_names_the_missing_part(saved: Path, damage, message: str) -> None:
    damage(saved)
    with pytest.raises(FileNotFoundError, match=message):
        vlm.load(saved)


def test_wrong_model_type_and_bad_options(saved: Path, tmp_path: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type is 'llama', expected 'llava_llama'"):
        vlm.load(saved)
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        vlm.load(saved, load_4bit=True)
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        vlm.load(saved, dtype="float8")
    with pytest.raises(ValueError, match="unknown attn_implementation 'fast'"):
        vlm.load(saved, attn_implementation="fast")
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found"):
        vlm.load(tmp_path / "nowhere")


def test_frame_sampling_round_trips_and_a_bad_rule_is_named(saved: Path, tmp_path: Path, tiny_model) -> None:
    assert json.loads((saved / "config.json").read_text())["frame_sampling"] == "uniform"
    assert vlm.load(saved).config.frame_sampling == "uniform"
    tiny_model.config.frame_sampling = "geometric"
    tiny_model.save_pretrained(tmp_path / "g")
    assert vlm.load(tmp_path / "g").config.frame_sampling == "geometric"
    config = json.loads((saved / "config.json").read_text())
    del config["frame_sampling"]  # a released NaVILA checkpoint has no such key: NaVILA's uniform rule
    (saved / "config.json").write_text(json.dumps(config))
    assert vlm.load(saved).config.frame_sampling == "uniform"
    (saved / "config.json").write_text(json.dumps({**config, "frame_sampling": "dense"}))
    with pytest.raises(ValueError, match="unknown frame_sampling 'dense'; available: uniform, geometric"):
        vlm.load(saved)


def test_progress_cue_round_trips_and_a_bad_cue_is_named(saved: Path, tmp_path: Path, tiny_model) -> None:
    assert json.loads((saved / "config.json").read_text())["progress_cue"] == "none"
    tiny_model.config.progress_cue = "steps"
    tiny_model.save_pretrained(tmp_path / "p")
    assert vlm.load(tmp_path / "p").config.progress_cue == "steps"
    config = json.loads((saved / "config.json").read_text())
    del config["progress_cue"]  # a released NaVILA checkpoint has no such key: NaVILA's prompt
    (saved / "config.json").write_text(json.dumps(config))
    assert vlm.load(saved).config.progress_cue == "none"
    (saved / "config.json").write_text(json.dumps({**config, "progress_cue": "meters"}))
    with pytest.raises(ValueError, match="unknown progress_cue 'meters'; available: none, steps"):
        vlm.load(saved)


def test_save_compact_halves_lm_and_projector_keeps_tower_exact(tmp_path: Path, tokenizer) -> None:
    torch.manual_seed(2)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer), tower="efficientnet"), tokenizer, pretrained_vision=False).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    vlm.save_compact(model, tmp_path / "compact")
    assert all(v.dtype == before[k].dtype and torch.equal(v, before[k]) for k, v in model.state_dict().items())  # caller's model untouched

    stored = stored_float_dtypes(tmp_path / "compact")
    assert stored["llm"] == {torch.float16} and stored["mm_projector"] == {torch.float16}
    assert stored["vision_tower"] == {torch.float32}
    loaded = vlm.load(tmp_path / "compact")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    tower_before = model.vision_tower.state_dict()
    assert all(torch.equal(v, tower_before[k]) for k, v in loaded.vision_tower.state_dict().items())
    frames, prompt = make_frames(3), make_prompt(3)
    expected, got = _logits(model, tokenizer, frames, prompt), _logits(loaded, loaded.tokenizer, frames, prompt)
    assert not torch.equal(expected, got)  # the LM really went through float16
    assert torch.allclose(expected, got, atol=0.05)
