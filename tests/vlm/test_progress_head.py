"""The progress monitor's head in the model: saved and loaded beside the VILA parts, read by generation exactly where
training reads it, refused where it cannot fit."""

from __future__ import annotations

import copy

import pytest
import torch

import vlm
from tests.vlm.conftest import make_frames, make_prompt
from vlm.constants import IGNORE_INDEX
from vlm.mm_utils import tokenizer_image_token
from vlm.progress_head import PROGRESS_HEAD_FOLDER, ProgressHead, last_prompt_positions, load_progress_head


@pytest.fixture
def monitored(tiny_model):
    """A copy of the tiny model with a random progress head."""
    model = copy.deepcopy(tiny_model)
    torch.manual_seed(3)
    model.progress_head = ProgressHead(model.llm.config.hidden_size)
    return model.eval()


def test_generation_reads_the_estimate_training_reads(monitored, tokenizer) -> None:
    """generate_text(return_progress=True) on left-padded prompts of different lengths gives, per sample, the head
    on the final hidden state at the last prompt position of the right-padded training batch; answers unchanged."""
    samples = [(make_frames(2), make_prompt(2)), (make_frames(3), make_prompt(3, "Turn left at the sofa."))]
    answers, estimates = monitored.generate_text(samples, max_new_tokens=4, return_progress=True)
    assert answers == monitored.generate_text(samples, max_new_tokens=4) and len(estimates) == 2
    answer = tokenizer("The next action is stop.", add_special_tokens=False).input_ids
    rows = [tokenizer_image_token(prompt, tokenizer) + answer for _, prompt in samples]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    labels = torch.tensor([[IGNORE_INDEX] * (len(r) - len(answer)) + answer + [IGNORE_INDEX] * (width - len(r)) for r in rows])
    images = [f for frames, _ in samples for f in frames]
    with torch.no_grad():
        spliced = monitored.prepare_inputs(ids, mask, images, labels, padding_side="right")
        hidden = monitored.llm(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask,
                               position_ids=spliced.position_ids, output_hidden_states=True).hidden_states[-1]  # fmt: skip
        expected = monitored.progress_head(hidden[torch.arange(2), last_prompt_positions(spliced.labels)])
    assert torch.allclose(torch.tensor(estimates), expected, atol=1e-5)
    assert monitored.generate_text([], return_progress=True) == ([], [])


def test_the_head_is_saved_beside_the_vila_parts_and_loaded_back(monitored, tiny_model, tmp_path) -> None:
    monitored.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / PROGRESS_HEAD_FOLDER / "model.safetensors").is_file()
    loaded = vlm.load(tmp_path / "m")
    assert torch.equal(loaded.progress_head.proj.weight, monitored.progress_head.proj.weight)
    vlm.save_compact(monitored, tmp_path / "c")  # LM in fp16, the head stays fp32
    compact = vlm.load(tmp_path / "c")
    assert torch.equal(compact.progress_head.proj.weight, monitored.progress_head.proj.weight)
    tiny_model.save_pretrained(tmp_path / "plain")
    plain = vlm.load(tmp_path / "plain")
    assert plain.progress_head is None and not (tmp_path / "plain" / PROGRESS_HEAD_FOLDER).exists()
    with pytest.raises(ValueError, match="no progress monitor"):
        plain.generate_text([(make_frames(1), make_prompt(1))], return_progress=True)
    with pytest.raises(ValueError, match="hidden_size 64 does not fit the language model's 32"):
        load_progress_head(tmp_path / "m", 32)
    (tmp_path / "m" / PROGRESS_HEAD_FOLDER / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"without model\.safetensors"):
        vlm.load(tmp_path / "m")


def test_last_prompt_positions_need_a_prompt_and_an_answer() -> None:
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6], [IGNORE_INDEX, 7, 8, IGNORE_INDEX]])
    assert last_prompt_positions(labels).tolist() == [1, 0]
    with pytest.raises(ValueError, match="no label"):
        last_prompt_positions(torch.full((1, 3), IGNORE_INDEX))
    with pytest.raises(ValueError, match="a prompt before"):
        last_prompt_positions(torch.tensor([[4, 5]]))


def test_the_stop_threshold_is_written_read_and_validated(monitored, tmp_path) -> None:
    from vlm.progress_head import model_monitor_stop, set_stop_threshold

    monitored.save_pretrained(tmp_path / "m")
    assert vlm.load(tmp_path / "m").progress_head.stop_threshold is None  # training never writes one
    set_stop_threshold(tmp_path / "m", 0.9)
    loaded = vlm.load(tmp_path / "m")
    assert model_monitor_stop(loaded) == 0.9
    loaded.save_pretrained(tmp_path / "again")  # kept through save / load
    assert model_monitor_stop(vlm.load(tmp_path / "again")) == 0.9
    set_stop_threshold(tmp_path / "m", None)
    assert model_monitor_stop(vlm.load(tmp_path / "m")) is None
    with pytest.raises(ValueError, match=r"must be in \(0, 1\], got 1.5"):
        set_stop_threshold(tmp_path / "m", 1.5)
    with pytest.raises(ValueError, match="has no progress monitor"):
        set_stop_threshold(tmp_path, 0.9)
    config = tmp_path / "m" / PROGRESS_HEAD_FOLDER / "config.json"
    config.write_text('{"hidden_size": 64, "stop_threshold": 2}')
    with pytest.raises(ValueError, match=r"config.json: a progress monitor's stop_threshold must be in \(0, 1\]"):
        vlm.load(tmp_path / "m")
