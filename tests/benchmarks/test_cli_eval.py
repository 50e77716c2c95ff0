"""`navila-agent eval` / `run` end to end on the fake env: outputs, resume, refusals and input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks import runner
from benchmarks.cli import app
from benchmarks.cli import evaluate as cli_eval
from benchmarks.store import load_results
from tests.benchmarks import fakes


@pytest.fixture(autouse=True)
def _fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "DEFAULT_FACTORIES", fakes.FAKE_FACTORIES)
    monkeypatch.setenv("NAVILA_FAKE_EPISODES", "4")
    monkeypatch.setenv("COLUMNS", "160")


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_eval_writes_a_run_folder_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _invoke("eval", "--agent", "oracle", "--split", "r2r_val_unseen", "--output", str(out), "--record")
    assert res.exit_code == 0, res.output
    assert "SR %" in res.output and "per step: sim" in res.output
    run = json.loads((out / "run.json").read_text())
    assert run["format"] == "navila-agent-run/1" and run["config"]["agent"] == "oracle" and run["fingerprint"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sr"] == 1.0 and summary["episodes"] == 4 and summary["dtw"] == "fastdtw"
    assert "| SR % |" in (out / "summary.md").read_text()
    assert len(list((out / "rollouts").glob("*/record.json"))) == 4
    again = _invoke(
        "eval", "--agent", "oracle", "--split", "r2r_val_unseen", "--output", str(out), "--workers", "2"
    )
    assert again.exit_code == 0, again.output
    assert "0 episodes run, 4 already recorded" in again.output
    assert (out / "results.jsonl").read_text().count("\n") == 4


def test_eval_refuses_a_folder_of_another_configuration(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    assert _invoke("eval", "--agent", "oracle", "--output", out, "--limit", "1").exit_code == 0
    res = _invoke("eval", "--agent", "random", "--output", out, "--limit", "1")
    assert res.exit_code == 2
    assert (
        "different configuration" in res.output and "--overwrite" in res.output and "--output" in res.output
    )
    res = _invoke("eval", "--agent", "random", "--output", out, "--limit", "1", "--overwrite")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["eval", "--agent", "bogus"], "--agent"),
        (["eval", "--agent", "oracle", "--split", "r2r_val_unsen"], "--split"),
        (["eval", "--agent", "oracle", "--gpus", "a,b"], "--gpus"),
        (["eval", "--agent", "oracle", "--dtw", "slow"], "--dtw"),
        (["eval", "--agent", "navila", "--model", "/nonexistent/ckpt"], "--model"),
        (["run", "--episode", "r2r_val_unseen:999", "--agent", "oracle"], "999"),
        (["run", "--episode", "nope:1", "--agent", "oracle"], "--episode"),
        (["eval", "--agent", "oracle", "--rank", "2", "--world-size", "2"], "--rank"),
        (["eval", "--agent", "oracle", "--rank", "0"], "--world-size"),
        (["eval", "--agent", "oracle", "--monitor-stop", "0.9"], "--monitor-stop"),
        (["eval", "--agent", "navila", "--monitor-stop", "1.5"], "--monitor-stop"),
        (["eval", "--agent", "oracle", "--monitor-patience", "2"], "--monitor-patience"),
        (["eval", "--agent", "navila", "--monitor-patience", "0"], "--monitor-patience"),
    ],
)
def test_bad_input_fails_with_a_message_naming_the_flag(tmp_path: Path, args: list[str], flag: str) -> None:
    res = _invoke(*args, "--output", str(tmp_path / "o"))
    assert res.exit_code == 2, res.output
    assert flag in res.output and "Traceback" not in res.output


def test_a_folder_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    res = _invoke(
        "eval", "--agent", "navila", "--model", str(tmp_path / "ckpt"), "--output", str(tmp_path / "o")
    )
    assert res.exit_code == 2 and "not a checkpoint folder" in res.output and "--model" in res.output


def test_run_without_a_shipped_model_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_eval, "default_model_path", lambda: tmp_path / "models" / "navila-tiny")
    res = _invoke("run", "--episode", "r2r_val_unseen", "--output", str(tmp_path / "o"))
    assert res.exit_code == 2
    assert "navila-tiny" in res.output and "--model" in res.output and "--agent oracle" in res.output


def test_run_one_episode_prints_its_line_and_records(tmp_path: Path) -> None:
    out = tmp_path / "one"
    res = _invoke(
        "run", "--episode", "r2r_val_unseen:3", "--agent", "oracle", "--record", "--output", str(out)
    )
    assert res.exit_code == 0, res.output
    assert "r2r_val_unseen:3  SR 1  SPL" in res.output and "parse_failures 0" in res.output
    assert (out / "rollouts" / "r2r_val_unseen__3" / "record.json").is_file()
    assert len((out / "results.jsonl").read_text().splitlines()) == 1


def test_run_default_output_folder_is_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = _invoke("run", "--episode", "r2r_val_unseen", "--agent", "forward", "--limit", "1")
    assert res.exit_code == 0, res.output
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("r2r_val_unseen-forward-")
    assert folders[0].name in res.output.replace("\n", "")


def test_crashed_episodes_give_exit_code_1_and_retry_errors_reruns_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "run")
    monkeypatch.setenv("NAVILA_FAKE_CRASH", "2")
    res = _invoke("eval", "--agent", "oracle", "--output", out)
    assert res.exit_code == 1 and "1 errors" in res.output and "--retry-errors" in res.output
    monkeypatch.delenv("NAVILA_FAKE_CRASH")
    res = _invoke("eval", "--agent", "oracle", "--output", out, "--retry-errors")
    assert res.exit_code == 0, res.output


def test_merge_only_summarises_rank_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "multi"
    monkeypatch.setenv("RANK", "0")  # torchrun's variables ...
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _invoke("eval", "--agent", "oracle", "--output", str(out)).exit_code == 0
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    flags = ["--rank", "1", "--world-size", "2"]  # ... or the flags
    assert _invoke("eval", "--agent", "oracle", "--output", str(out), *flags).exit_code == 0
    assert len(list(out.glob("results-rank*.jsonl"))) == 2
    (out / "results.jsonl").unlink()
    (out / "summary.json").unlink()
    res = _invoke("eval", "--merge-only", "--output", str(out))
    assert res.exit_code == 0, res.output
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    assert json.loads((out / "summary.json").read_text())["episodes"] == 4
    assert _invoke("eval", "--merge-only", "--output", str(tmp_path / "nothing")).exit_code == 2


# ------------------------------------------------------------------------------ scripts/slurm_eval.sh, with fakes

SLURM_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm_eval.sh"
FAKE_SRUN = """#!/usr/bin/env bash
# Fake srun: drop srun's own options, then run the command once per rank, in parallel, as SLURM would.
while [[ "$1" == --* ]]; do shift; done
echo "$@" > "$FAKE_LOG/srun_cmd"
pids=()
for ((r = 0; r < FAKE_NTASKS; r++)); do SLURM_PROCID=$r SLURM_NTASKS=$FAKE_NTASKS "$@" & pids+=($!); done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=$?; done; exit $rc
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
echo "$@" >> "$FAKE_LOG/scontrol"
"""


def _slurm_env(tmp_path: Path, bin_cmd: str, ntasks: int) -> dict[str, str]:
    import os
    import sys

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL), ("navila-fake", bin_cmd)):
        (bindir / name).write_text(text.replace("PYTHON", sys.executable))
        (bindir / name).chmod(0o755)
    repo = str(SLURM_SCRIPT.parents[1])
    return {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path),
        "PYTHONPATH": repo,
        "FAKE_NTASKS": str(ntasks),
        "NAVILA_EVAL_BIN": "navila-fake",
        "SLURM_JOB_ID": "42",
        "SLURM_GPUS_ON_NODE": "0",
        "NAVILA_FAKE_EPISODES": "5",
        "OMP_NUM_THREADS": "1",
    }


def test_slurm_script_runs_one_rank_per_task_and_the_last_merges(tmp_path: Path) -> None:
    import subprocess

    fake_cli = (
        '#!/usr/bin/env bash\nexec PYTHON -c "import tests.benchmarks.fakes as f; f.install(); '
        'from benchmarks.cli import main; main()" "$@"\n'
    )
    env = _slurm_env(tmp_path, fake_cli, ntasks=2)
    out = tmp_path / "run"
    res = subprocess.run(
        ["bash", str(SLURM_SCRIPT), "--agent", "oracle", "--output", str(out)],
        env=env,
        cwd=SLURM_SCRIPT.parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.glob("results-rank*.jsonl")) == [
        "results-rank000.jsonl",
        "results-rank001.jsonl",
    ]
    assert len((out / "results.jsonl").read_text().splitlines()) == 5
    assert json.loads((out / "summary.json").read_text())["sr"] == 1.0


def test_slurm_script_requeues_on_usr1_and_needs_output(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    env = _slurm_env(tmp_path, "#!/usr/bin/env bash\nsleep 30\n", ntasks=1)
    res = subprocess.run(
        ["bash", str(SLURM_SCRIPT), "--agent", "oracle"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 2 and "--output" in res.stderr
    env["SLURM_GPUS_ON_NODE"] = "gpu:4"
    with open(tmp_path / "stderr.txt", "w") as log:  # not a pipe: the fake srun's sleep outlives the script
        proc = subprocess.Popen(
            ["bash", str(SLURM_SCRIPT), "--agent", "oracle", "--output", str(tmp_path / "o")],
            env=env,
            stderr=log,
        )
        deadline = time.monotonic() + 20
        while not (tmp_path / "srun_cmd").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=20) == 0
    assert "--gpus 0,1,2,3" in (tmp_path / "srun_cmd").read_text()
    assert (tmp_path / "scontrol").read_text().split() == ["requeue", "42"]
    assert "requeued job 42" in (tmp_path / "stderr.txt").read_text()


# ------------------------------------------------------------ generated splits on the embedded simulator (real)


def _real(
    monkeypatch: pytest.MonkeyPatch, houses: int | None, episodes: int | None, cache: Path | None = None
) -> None:
    """Real factories; generated split sizes from the arguments (None = the preset), in `cache` if given.

    A complete generated split is reused whatever its size, so a test that needs a specific size uses its own cache.
    """
    monkeypatch.setattr(runner, "DEFAULT_FACTORIES", runner.Factories())
    if cache is not None:
        monkeypatch.setenv("NAVILA_AGENT_CACHE", str(cache))
    for var, value in (("NAVILA_AGENT_GEN_HOUSES", houses), ("NAVILA_AGENT_GEN_EPISODES", episodes)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, str(value))


def test_oracle_and_replay_on_a_small_generated_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _real(monkeypatch, houses=1, episodes=3, cache=tmp_path / "cache")
    res = _invoke(
        "eval", "--agent", "oracle", "--split", "r2r_val_unseen", "--output", str(tmp_path / "oracle")
    )
    assert res.exit_code == 0, res.output
    oracle = json.loads((tmp_path / "oracle" / "summary.json").read_text())
    assert oracle["episodes"] == 3 and oracle["sr"] == 1.0 and oracle["errors"] == 0
    res = _invoke(
        "eval",
        "--agent",
        "replay",
        "--split",
        "r2r_val_unseen",
        "--dtw",
        "exact",
        "--output",
        str(tmp_path / "rp"),
    )
    assert res.exit_code == 0, res.output
    replay = json.loads((tmp_path / "rp" / "summary.json").read_text())
    assert replay["ndtw"] > 0.98 and replay["sr"] == 1.0 and replay["dtw"] == "exact"


@pytest.mark.slow
def test_oracle_succeeds_on_the_generated_r2r_val_unseen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _real(monkeypatch, houses=None, episodes=None, cache=tmp_path / "cache")  # the full preset, built here
    res = _invoke(
        "eval",
        "--agent",
        "oracle",
        "--split",
        "r2r_val_unseen",
        "--workers",
        "2",
        "--output",
        str(tmp_path / "oracle"),
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "oracle" / "summary.json").read_text())
    assert summary["errors"] == 0 and summary["episodes"] >= 100
    assert summary["sr"] >= 0.99


@pytest.mark.slow  # imports torch + transformers (vlm.checkpoint): seconds on a loaded machine
def test_a_checkpoint_with_a_wrong_layout_is_refused_before_running(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "bert"}))
    res = _invoke("eval", "--agent", "navila", "--model", str(ckpt), "--output", str(tmp_path / "o"))
    assert res.exit_code == 2 and "--model" in res.output and "model_type" in res.output
    assert not (tmp_path / "o").exists()


def test_video_writes_one_mp4_per_episode(tmp_path: Path) -> None:
    out = tmp_path / "v"
    res = _invoke("eval", "--agent", "oracle", "--limit", "2", "--video", "--output", str(out))
    assert res.exit_code == 0, res.output
    videos = sorted(p.name for p in (out / "videos").glob("*.mp4"))
    assert videos == ["r2r_val_unseen__1.mp4", "r2r_val_unseen__2.mp4"]
    assert all(p.stat().st_size > 1000 for p in (out / "videos").glob("*.mp4"))


@pytest.mark.slow  # builds and loads a (tiny) model: torch + transformers
def test_navila_agent_with_a_random_weight_checkpoint_batched_equals_sequential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.bench_eval import random_checkpoint

    # The fake env with the real agents (the real NavilaAgent and model).
    factories = runner.Factories(fakes.load_fake_episodes, fakes.make_fake_env, runner.make_agent)
    monkeypatch.setattr(runner, "DEFAULT_FACTORIES", factories)

    ckpt = random_checkpoint(tmp_path / "ckpt", "tiny")
    common = ["eval", "--agent", "navila", "--model", str(ckpt), "--limit", "3", "--max-steps", "12"]
    res = _invoke(*common, "--output", str(tmp_path / "k1"), "--record")
    assert res.exit_code == 0, res.output
    res = _invoke(*common, "--output", str(tmp_path / "k3"), "--envs-per-worker", "3")
    assert res.exit_code == 0, res.output
    k1 = {u: r["metrics"] for u, r in load_results(tmp_path / "k1").items()}
    k3 = {u: r["metrics"] for u, r in load_results(tmp_path / "k3").items()}
    assert k1 == k3 and len(k1) == 3
    record = json.loads((tmp_path / "k1" / "rollouts" / "r2r_val_unseen__1" / "record.json").read_text())
    assert record["decisions"] and all(isinstance(d["raw_text"], str) for d in record["decisions"])
    assert len(record["decisions"][0]["frames_seen"]) == 8


@pytest.mark.slow  # builds and loads a (tiny) model: torch + transformers
def test_monitor_stop_stops_on_the_models_progress_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--monitor-stop: refused for a model without a progress head (naming the flag); with a head and a threshold
    below any estimate, every episode stops at its first decision, the rollout saying why; recorded estimates."""
    import torch

    import vlm
    from benchmarks.bench_eval import random_checkpoint
    from vlm.progress_head import ProgressHead

    factories = runner.Factories(fakes.load_fake_episodes, fakes.make_fake_env, runner.make_agent)
    monkeypatch.setattr(runner, "DEFAULT_FACTORIES", factories)
    plain = random_checkpoint(tmp_path / "plain", "tiny")
    common = ["eval", "--agent", "navila", "--limit", "2", "--max-steps", "12", "--record"]
    res = _invoke(*common, "--model", str(plain), "--monitor-stop", "0.5", "--output", str(tmp_path / "r0"))
    assert res.exit_code == 2 and "--monitor-stop needs a model with a progress monitor" in res.output
    model = vlm.load(plain)
    torch.manual_seed(0)
    model.progress_head = ProgressHead(model.llm.config.hidden_size)
    model.save_pretrained(tmp_path / "monitored")
    res = _invoke(*common, "--model", str(tmp_path / "monitored"), "--output", str(tmp_path / "r1"))
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "r1" / "rollouts" / "r2r_val_unseen__1" / "record.json").read_text())
    assert all(0.0 < d["progress"] < 1.0 for d in record["decisions"])  # logged without the rule
    res = _invoke(*common, "--model", str(tmp_path / "monitored"), "--monitor-stop", "1e-6", "--output", str(tmp_path / "r2"))
    assert res.exit_code == 0, res.output
    for uid, result in load_results(tmp_path / "r2").items():
        assert result["decisions"] == 1 and result["metrics"]["steps"] == 1, uid
    record = json.loads((tmp_path / "r2" / "rollouts" / "r2r_val_unseen__1" / "record.json").read_text())
    assert "progress monitor" in record["decisions"][0]["reason"] and record["decisions"][0]["action"] == "stop"
    assert json.loads((tmp_path / "r2" / "run.json").read_text())["config"]["monitor_stop"] == 1e-6


def test_missing_scenes_fail_before_any_episode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, r2r_sample_dir: Path
) -> None:
    monkeypatch.setattr(runner, "DEFAULT_FACTORIES", runner.Factories())
    sample = str(r2r_sample_dir)  # real R2R-CE episodes, no Matterport3D scenes
    res = _invoke(
        "eval",
        "--agent",
        "oracle",
        "--split",
        "r2r_val_seen",
        "--data-root",
        sample,
        "--output",
        str(tmp_path / "o"),
    )
    assert res.exit_code == 2 and "scene file(s)" in res.output and "--data-root" in res.output
    assert not (tmp_path / "o").exists()
