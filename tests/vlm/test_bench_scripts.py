"""The VLM benchmark scripts run end to end on tiny shapes (the GPU check is run for real by the lead on an H100)."""

from __future__ import annotations

import json

import pytest


def test_gpu_vlm_check_tiny_runs_and_reports(tmp_path, capsys) -> None:
    from benchmarks import gpu_vlm_check

    out = tmp_path / "rows.json"
    code = gpu_vlm_check.main(["--tiny", "--repeats", "1", "--history", "9", "--new-tokens", "4", "--batches", "1,2", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| attention | batch |" in printed and "feature cache speed-up" in printed
    rows = json.loads(out.read_text())["rows"]
    assert {(r["batch"], r["feature_cache"]) for r in rows} == {(1, False), (1, True), (2, False), (2, True)}
    assert all(r["call_ms"] > 0 and r["positions"] == 62 + 110 + 8 + 8 * 4 for r in rows)


def test_gpu_vlm_check_full_shapes_are_navila_8b() -> None:
    from benchmarks.gpu_vlm_check import model_config

    config = model_config(tiny=False)
    llm, tower = config.llm_cfg, config.vision_tower_cfg
    assert (llm["hidden_size"], llm["num_hidden_layers"], llm["num_attention_heads"], llm["num_key_value_heads"]) == (4096, 32, 32, 8)
    assert (llm["intermediate_size"], llm["vocab_size"]) == (14336, 128256)
    assert (tower["hidden_size"], tower["num_hidden_layers"], tower["num_attention_heads"], tower["intermediate_size"]) == (1152, 27, 16, 4304)
    assert (tower["patch_size"], tower["image_size"]) == (14, 384)


@pytest.mark.slow
def test_bench_vlm_embedded_runs(capsys) -> None:
    from benchmarks import bench_vlm

    assert bench_vlm.main(["--calls", "2", "--batch", "2", "--new-tokens", "4"]) == 0
    assert "whole-call speed-up" in capsys.readouterr().out


def test_bench_train_both_paths_report_and_agree(capsys) -> None:
    """bench_train times pixels and cached features in one run on the same data and init: both rows, the
    ratio, the precompute rate, and the same final loss (the cached path trains the same model)."""
    from benchmarks import bench_train

    argv = ["--init", "tiny", "--steps", "2", "--warmup", "1", "--trajectories", "2", "--frame-size", "32"]
    assert bench_train.main([*argv, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["path"] for r in rows] == ["pixels", "cached features"]
    assert rows[0]["precompute_frames_per_s"] is None and rows[1]["precompute_frames_per_s"] > 0
    assert all(r["samples_per_s"] > 0 and 0 <= r["data_share"] <= 1 for r in rows)
    assert rows[0]["final_loss"] == pytest.approx(rows[1]["final_loss"], abs=2e-3)
    assert {r["precision"] for r in rows} == {"fp32"}  # the default is the trainer's: fp32 on a CPU
    assert bench_train.main(argv) == 0
    assert "cached features train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench_train.main([*argv, "--paths", "pixels,bogus"])


def test_bench_train_precision_rows_and_ratio(capsys) -> None:
    """--precision fp32,bf16: one row per precision on the same data and init (so nearly the same loss: bf16
    autocast only rounds), the bf16-against-fp32 line, and an unknown precision refused by name."""
    from benchmarks import bench_train

    argv = ["--init", "tiny", "--steps", "2", "--warmup", "0", "--trajectories", "2", "--frame-size", "32",
            "--paths", "cached", "--devices", "cpu", "--precision", "fp32,bf16"]  # fmt: skip
    assert bench_train.main([*argv, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["path"], r["precision"]) for r in rows] == [("cached features", "fp32"), ("cached features", "bf16")]
    assert all(r["samples_per_s"] > 0 for r in rows)
    assert rows[0]["final_loss"] == pytest.approx(rows[1]["final_loss"], abs=0.1)
    assert bench_train.main(argv) == 0
    out = capsys.readouterr().out
    assert "bf16 trains" in out and "the samples/s of fp32" in out and "CPU bf16 instructions" in out
    with pytest.raises(SystemExit):
        bench_train.main([*argv[:-1], "fp16"])
    assert "unknown --precision ['fp16']" in capsys.readouterr().err


def test_bench_train_speed_ratios_pair_like_with_like() -> None:
    """Cached against pixels within one precision, a precision against another within one path, and no ratio
    where a path ran in one precision only."""
    from benchmarks import bench_train

    rows = [
        {"device": "cpu", "path": "pixels", "precision": "fp32", "samples_per_s": 2.0, "final_loss": 1.0},
        {"device": "cpu", "path": "cached features", "precision": "fp32", "samples_per_s": 20.0, "final_loss": 1.0},
        {"device": "cpu", "path": "cached features", "precision": "bf16", "samples_per_s": 30.0, "final_loss": 1.01},
    ]
    lines = bench_train.speed_ratios(rows)
    assert "cpu (fp32): cached features train 10.0x the samples/s of pixels" in lines
    assert any(line.startswith("cpu (cached features): bf16 trains 1.50x") for line in lines)
    assert not any("(pixels): " in line for line in lines)  # one precision on pixels: nothing to compare


def test_bench_train_embedded_cnn_trains_its_tower_on_pixels(capsys) -> None:
    """--init embedded-cnn: the convnet tower always trains, so only the pixels path runs (cached features need a
    frozen tower, and asking for them says so)."""
    from benchmarks import bench_train

    argv = ["--init", "embedded-cnn", "--steps", "1", "--warmup", "0", "--trajectories", "1", "--frame-size", "64",
            "--batch-size", "2"]  # fmt: skip
    assert bench_train.main([*argv, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["path"], r["init"], r["trainable_vision_tower"]) for r in rows] == [("pixels", "embedded-cnn", True)]
    assert rows[0]["samples_per_s"] > 0
    with pytest.raises(SystemExit):
        bench_train.main([*argv, "--paths", "cached"])


def test_bench_train_features_times_the_encoding_per_worker_count(capsys) -> None:
    """--features 1,2: one row per worker count over the same frames, and the speed against the first row."""
    from benchmarks import bench_train

    argv = ["--init", "tiny", "--trajectories", "2", "--frame-size", "32", "--features", "1,2"]
    assert bench_train.main([*argv, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["workers"] for r in rows] == [1, 2] and rows[0]["frames"] == rows[1]["frames"] == 2 * 60
    assert all(r["frames_per_s"] > 0 for r in rows)
    assert bench_train.main([*argv[:-1], "1"]) == 0
    assert "1.00x" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench_train.main([*argv[:-1], "0,2"])


def test_bench_monitor_memory_measures_both_reads(capsys) -> None:
    """Both reads run in their own processes and agree on the final hidden state; at a shape where every layer's
    states (13 × 8 MiB) stand above the allocator's noise (tens of MiB), keeping them costs the more memory."""
    import re

    from benchmarks import bench_monitor_memory

    assert bench_monitor_memory.main(["--layers", "12", "--hidden", "512", "--batch", "8", "--length", "512"]) == 0
    printed = capsys.readouterr().out
    every = float(re.search(r"every layer\): peak \+(\d+) MiB", printed).group(1))
    final = float(re.search(r"the last only\): peak \+(\d+) MiB", printed).group(1))
    assert every - final > 40, printed
