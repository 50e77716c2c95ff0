"""`eval --perturb`: the PerturbedCamera wrapper (Gymnasium API, what it changes, its draws) and the runner with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

from benchmarks import runner
from benchmarks.cli import app
from benchmarks.perturb import PerturbedCamera
from envs.constants import MOVE_FORWARD, TURN_LEFT
from envs.env import VLNCEEnv
from tests.benchmarks import fakes
from tests.envs.fakes import make_data_root, make_episode
from vlm.media import perturb_frames


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_data_root(tmp_path_factory.mktemp("perturb")))


def _env(data_root: str) -> VLNCEEnv:
    episodes = [
        make_episode("1", start=(1.0, 0.0, 1.0), goal=(5.0, 0.0, 3.0)),
        make_episode("2", start=(2.0, 0.0, 3.0), goal=(2.0, 0.0, 2.0)),
    ]
    return VLNCEEnv(episodes=episodes, data_root=data_root, width=32, height=24)


def _walk(env, episode: str) -> list[dict]:
    obs, _ = env.reset(options={"episode_id": episode})
    out = [obs]
    for action in (MOVE_FORWARD, TURN_LEFT, MOVE_FORWARD):
        out.append(env.step(action)[0])
    return out


def test_the_wrapped_env_passes_check_env(data_root: str) -> None:
    for kind in ("pixel_noise", "jpeg"):
        env = PerturbedCamera(_env(data_root), kind)
        check_env(env, skip_render_check=True)
        env.close()


def test_only_the_rgb_changes_by_what_nobody_can_see_and_the_draws_repeat(data_root: str) -> None:
    clean = _walk(_env(data_root), "1")
    noisy_env = PerturbedCamera(_env(data_root), "pixel_noise", seed=0)
    noisy = _walk(noisy_env, "1")
    for c, n in zip(clean, noisy, strict=True):
        diff = n["rgb"].astype(int) - c["rgb"].astype(int)
        assert np.abs(diff).max() == 1 and np.abs(diff).sum() > 0  # every frame changed, by 1 at most
        assert np.array_equal(n["depth"], c["depth"]) and n["instruction"] == c["instruction"]
    assert not np.array_equal(noisy[1]["rgb"] - clean[1]["rgb"], noisy[2]["rgb"] - clean[2]["rgb"])  # per step
    again = _walk(noisy_env, "1")  # an episode's draws depend on the seed, its id and the step only
    assert all(np.array_equal(a["rgb"], n["rgb"]) for a, n in zip(again, noisy, strict=True))
    _walk(noisy_env, "2")
    assert all(np.array_equal(a["rgb"], n["rgb"]) for a, n in zip(_walk(noisy_env, "1"), noisy, strict=True))
    other_seed = _walk(PerturbedCamera(_env(data_root), "pixel_noise", seed=1), "1")
    assert not np.array_equal(other_seed[0]["rgb"], noisy[0]["rgb"])
    jpeg = _walk(PerturbedCamera(_env(data_root), "jpeg"), "1")
    assert all(
        np.array_equal(j["rgb"], perturb_frames(c["rgb"][None], "jpeg")[0]) for j, c in zip(jpeg, clean, strict=True)
    )
    with pytest.raises(ValueError, match="--perturb"):
        PerturbedCamera(_env(data_root), "blur")


class _SeeingAgent(fakes.FakeAgent):
    """The fake oracle, which also writes down the mean of every RGB frame it is given."""

    seen: ClassVar[list[float]] = []

    def act(self, obs: dict) -> int:
        _SeeingAgent.seen.append(float(np.asarray(obs["rgb"]).astype(float).mean()))
        return super().act(obs)


def _seeing_agent(config: runner.EvalConfig, env, device: str) -> _SeeingAgent:
    return _SeeingAgent(config.agent, env, config.seed)


def test_eval_perturb_reaches_the_agent_and_is_part_of_the_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        runner, "DEFAULT_FACTORIES", runner.Factories(fakes.load_fake_episodes, fakes.make_fake_env, _seeing_agent)
    )
    monkeypatch.setenv("NAVILA_FAKE_EPISODES", "2")
    seen = {}
    for perturb in (None, "pixel_noise"):
        _SeeingAgent.seen = []
        out = tmp_path / f"run_{perturb}"
        args = ["eval", "--agent", "oracle", "--output", str(out)] + (["--perturb", perturb] if perturb else [])
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        seen[perturb] = list(_SeeingAgent.seen)
    # the oracle walks the same way (it ignores the frames), so the frames match one for one, moved by < 1 each
    assert len(seen[None]) == len(seen["pixel_noise"]) > 0
    moved = np.abs(np.array(seen["pixel_noise"]) - np.array(seen[None]))
    assert moved.max() < 1 and moved.sum() > 0
    run = json.loads((tmp_path / "run_pixel_noise" / "run.json").read_text())
    assert run["config"]["perturb"] == "pixel_noise"
    res = CliRunner().invoke(app, ["eval", "--agent", "oracle", "--output", str(tmp_path / "run_None"),
                                   "--perturb", "jpeg"])  # fmt: skip
    assert res.exit_code == 2 and "different configuration" in res.output  # never mixed into a clean run
    res = CliRunner().invoke(app, ["eval", "--agent", "oracle", "--output", str(tmp_path / "run_pixel_noise")])
    assert res.exit_code == 2 and "perturb" in res.output  # nor clean episodes into a perturbed one
    res = CliRunner().invoke(app, ["eval", "--agent", "oracle", "--output", str(tmp_path / "o"), "--perturb", "blur"])
    assert res.exit_code == 2 and "--perturb" in res.output and "pixel_noise" in res.output
