"""The progress monitor's held-out report: its numbers by hand, where the head is found, and the command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.progress_monitor import format_report, main, roc_auc, summarise
from tests.vlm.train.fakes import write_collected


def test_roc_auc_by_hand() -> None:
    assert roc_auc([0.9, 0.8], [0.1, 0.2, 0.3]) == 1.0
    assert roc_auc([0.1], [0.2, 0.3]) == 0.0
    assert roc_auc([0.5], [0.5, 0.4]) == 0.75  # a tie counts half
    assert roc_auc([], [0.1]) is None


def test_summarise_by_hand() -> None:
    truth = [0.0, 0.5, 1.0, 0.0, 1.0]
    estimate = [0.1, 0.5, 0.7, 0.3, 0.9]
    t, steps = [0, 2, 4, 0, 2], [5, 5, 5, 3, 3]
    stop = [False, False, True, False, True]
    r = summarise(truth, estimate, t, steps, stop)
    errors = np.array(estimate) - np.array(truth)
    assert r["n"] == 5 and r["mse"] == pytest.approx(float((errors**2).mean()))
    assert r["mae"] == pytest.approx(float(np.abs(errors).mean()))
    assert r["mse_constant"] == pytest.approx(float(np.var(truth)))
    slope, intercept = np.polyfit(t, truth, 1)
    assert r["mse_steps_line"] == pytest.approx(float(((slope * np.array(t) + intercept - truth) ** 2).mean()))
    assert r["bins"]["t=0"] == {"n": 2, "truth": 0.0, "estimate": pytest.approx(0.2), "mae": pytest.approx(0.2)}
    # t=2 of 5 steps, t=2 of 3 and t=4 of 5 fall in the second, third and last quarter
    assert [r["bins"][b]["n"] for b in ("0-25%", "25-50%", "50-75%", "75-100%")] == [0, 1, 1, 1]
    assert r["stop"] == {"n": 2, "estimate_at_stop": pytest.approx(0.8), "estimate_elsewhere": pytest.approx(0.3),
                         "auc": 1.0}  # fmt: skip
    assert "AUC 1.000" in format_report({**r})


def test_the_command_reports_a_trained_head_and_refuses_a_model_without_one(tmp_path, capsys) -> None:
    import vlm
    from vlm.train.dataset import MixtureDataset, SampleEncoder
    from vlm.train.registry import DatasetEntry
    from vlm.train.trainer import TrainConfig, train

    answers = ["The next action is move forward 75 cm.", "The next action is stop."]
    data = write_collected(tmp_path / "val", {"a": answers * 3, "b": answers[::-1] * 2}, size=32, routes=True)
    tok = vlm.build_tokenizer([*answers, "Go a. Go b. <image>"], vocab_size=300)

    def run(name: str, weight: float):
        torch.manual_seed(0)
        model = vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok)
        cfg = TrainConfig(output_dir=str(tmp_path / name), steps=3, batch_size=4, save_every=2, warmup_ratio=0.0,
                          progress_loss_weight=weight)  # fmt: skip
        train(model, MixtureDataset([DatasetEntry("d", data)]), SampleEncoder(tok, model.image_processor), cfg,
              show_progress=False)  # fmt: skip

    run("m", 1.0)
    assert main([str(tmp_path / "m"), str(data), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "10 expert samples: MSE" in out and "at the expert's STOP (5)" in out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["n"] == 10 and sum(b["n"] for b in result["bins"].values()) == 10
    assert main([str(tmp_path / "m" / "checkpoints" / "checkpoint-2"), str(data)]) == 0  # checkpoints carry it
    run("plain", 0.0)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "plain"), str(data)])
    assert "trained without --progress-loss-weight" in capsys.readouterr().err
