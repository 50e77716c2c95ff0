"""benchmarks.stop_rule_sweep: a stop rule replayed on a run recorded without it scores each episode exactly as an
evaluation with the rule does."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks import runner
from benchmarks.cli import app
from benchmarks.stop_rule_sweep import Rule, _same, first_firing, main, sweep
from benchmarks.store import load_results
from tests.benchmarks import fakes
from viz.run_folder import RunFolderError


def _eval(*args: str) -> None:
    res = CliRunner().invoke(app, ["eval", "--agent", "navila", "--limit", "4", "--max-steps", "30", "--record", *args])
    assert res.exit_code == 0, res.output


def _use_fakes(mp: pytest.MonkeyPatch) -> None:
    """The fake env, and models whose monitor estimate is a fixed function of the state (episode, step): the
    random head of a tiny model says nearly the same at every decision, which would cut no episode mid-way."""
    load = runner.load_model

    def load_varied(path: str, device: str):
        model = load(path, device)
        generate = model.generate_text

        def generate_text(samples, max_new_tokens=32, return_progress=False):
            if not return_progress:
                return generate(samples, max_new_tokens=max_new_tokens)
            texts, _ = generate(samples, max_new_tokens=max_new_tokens, return_progress=True)
            keys = [images[-1].key for images, _ in samples]  # (uid, t) of the current frame
            return texts, [(zlib.crc32(f"{uid}:{t}".encode()) % 1000) / 1000 for uid, t in keys]

        model.generate_text = generate_text
        return model

    mp.setattr(runner, "load_model", load_varied)
    mp.setattr(runner, "DEFAULT_FACTORIES", runner.Factories(fakes.load_fake_episodes, fakes.make_fake_env, runner.make_agent))
    mp.setenv("NAVILA_FAKE_EPISODES", "4")


@pytest.fixture(scope="module")
def monitored_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model with a progress monitor on the fake env, and its run without the rule."""
    import torch

    import vlm
    from benchmarks.bench_eval import random_checkpoint
    from vlm.progress_head import ProgressHead

    mp = pytest.MonkeyPatch()
    _use_fakes(mp)
    root = tmp_path_factory.mktemp("sweep")
    plain = random_checkpoint(root / "plain", "tiny")
    model = vlm.load(plain)
    torch.manual_seed(0)
    model.progress_head = ProgressHead(model.llm.config.hidden_size)
    model.save_pretrained(root / "monitored")
    runs = {"model": root / "monitored", "plain": plain, "none": root / "none"}
    _eval("--model", str(root / "monitored"), "--monitor-stop", "0", "--output", str(runs["none"]))
    mp.undo()
    return runs


def _estimates(run: Path) -> list[list[float]]:
    records = sorted((run / "rollouts").glob("*/record.json"))
    return [[d["progress"] for d in json.loads(p.read_text())["decisions"]] for p in records]


@pytest.mark.slow  # builds and runs a (tiny) model: torch + transformers
@pytest.mark.parametrize("patience", [1, 2])
def test_a_replayed_rule_scores_every_episode_as_an_evaluation_with_it(
    monitored_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patience: int
) -> None:
    _use_fakes(monkeypatch)
    estimates = sorted(e for episode in _estimates(monitored_runs["none"]) for e in episode)
    threshold = estimates[len(estimates) // 2]  # the median: the rule fires in some episodes, at various decisions
    rule = Rule(threshold, patience)
    _, [result] = sweep(monitored_runs["none"], [rule])
    firings = [first_firing([{"progress": e} for e in episode], rule) for episode in _estimates(monitored_runs["none"])]
    assert any(k is not None and k > 0 for k in firings), firings  # the test cuts episodes mid-way
    out = tmp_path / "with_rule"
    _eval("--model", str(monitored_runs["model"]), "--monitor-stop", repr(threshold), "--monitor-patience",
          str(patience), "--output", str(out))  # fmt: skip
    real = {uid: r["metrics"] for uid, r in load_results(out).items()}
    records = [json.loads(p.read_text()) for p in out.glob("rollouts/*/record.json")]
    assert result.ended == sum("progress monitor" in r["decisions"][-1]["reason"] for r in records) > 0
    assert set(real) == set(result.per_episode)
    for uid, metrics in real.items():
        assert result.per_episode[uid] == pytest.approx(metrics, abs=1e-9), uid
    assert result.summary["sr"] == pytest.approx(sum(m["sr"] for m in real.values()) / len(real))
    # a run where the rule fired is not a run without it
    with pytest.raises(RunFolderError, match=r"stopped by the progress monitor.*--monitor-stop 0 --record"):
        sweep(out, [rule])


@pytest.mark.slow
def test_the_sweep_refuses_runs_it_cannot_replay(
    monitored_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    _use_fakes(monkeypatch)
    plain = tmp_path / "plain_run"
    _eval("--model", str(monitored_runs["plain"]), "--output", str(plain))
    with pytest.raises(RunFolderError, match="no decision has a progress estimate"):
        sweep(plain, [Rule(0.5, 1)])
    tampered = tmp_path / "tampered"
    shutil.copytree(monitored_runs["none"], tampered)
    record_file = sorted((tampered / "rollouts").glob("*/record.json"))[0]
    record = json.loads(record_file.read_text())
    record["metrics"]["tl"] += 1.0
    record_file.write_text(json.dumps(record))
    with pytest.raises(RunFolderError, match=r"record.json: metrics.tl is .* but the record's steps give"):
        sweep(tampered, [Rule(0.5, 1)])
    shutil.rmtree(tampered / "rollouts")
    with pytest.raises(RunFolderError, match="no rollout records"):
        sweep(tampered, [Rule(0.5, 1)])


@pytest.mark.slow
def test_the_command_prints_a_row_per_rule_and_writes_json(
    monitored_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "sweep.json"
    assert main([str(monitored_runs["none"]), "--thresholds", "0.3,0.6", "--patience", "1,2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for label in ("none (the run)", "T=0.3, K=1", "T=0.6, K=1", "T=0.3, K=2", "T=0.6, K=2"):
        assert label in printed
    data = json.loads(out.read_text())
    assert [(r["threshold"], r["patience"]) for r in data["rules"]] == [(0.3, 1), (0.6, 1), (0.3, 2), (0.6, 2)]
    assert data["none"]["episodes"] == 4
    assert main([str(tmp_path / "missing")]) == 2
    with pytest.raises(SystemExit):
        main([str(monitored_runs["none"]), "--thresholds", "1.5"])
    with pytest.raises(SystemExit):
        main([str(monitored_runs["none"]), "--patience", "0"])


def test_first_firing_is_the_agents_rule() -> None:
    decisions = [{"progress": p} for p in (0.2, 0.91, 0.5, 0.92, 0.95, 0.99)]
    assert first_firing(decisions, Rule(0.9, 1)) == 1
    assert first_firing(decisions, Rule(0.9, 2)) == 4
    assert first_firing(decisions, Rule(0.9, 3)) == 5
    assert first_firing(decisions, Rule(0.9, 4)) is None
    assert first_firing([{"progress": None}, {"progress": 0.95}], Rule(0.9, 2)) is None


def test_rescoring_matches_non_finite_values_a_record_stores_as_none() -> None:
    assert _same(float("nan"), None) and _same(float("inf"), float("nan")) and _same(1.0, 1.0 + 1e-9)
    assert not _same(float("nan"), 0.5) and not _same(0.5, None) and not _same(1.0, 1.1)
