"""VLNCEEnv: Gymnasium API (check_env, vector envs), episode order, termination, info, input errors."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # registers navila/VLNCE-v0
from envs.constants import MOVE_FORWARD, STOP, TURN_LEFT
from envs.env import VLNCEEnv, instruction_text, to_observation
from tests.envs.fakes import make_data_root, make_episode


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(make_data_root(tmp_path_factory.mktemp("env")))


def episodes():
    return [
        make_episode("1", start=(1.0, 0.0, 1.0), goal=(5.0, 0.0, 3.0)),
        make_episode("2", start=(2.0, 0.0, 3.0), goal=(2.0, 0.0, 2.0), text="Go forward a little. Stop."),
    ]


def make_env(data_root, **kw):
    return VLNCEEnv(episodes=episodes(), data_root=data_root, width=32, height=24, **kw)


def test_check_env(data_root):
    env = make_env(data_root)
    check_env(env, skip_render_check=True)
    env.close()


def test_spaces_and_observation(data_root):
    env = make_env(data_root)
    obs, info = env.reset()
    assert env.observation_space.contains(obs)
    assert obs["rgb"].shape == (24, 32, 3) and obs["depth"].shape == (24, 32, 1)
    assert obs["instruction"] == episodes()[0].instruction.instruction_text
    assert env.action_space.n == 4
    assert info["episode_id"] == "1" and info["steps"] == 0 and not info["collided"]
    assert info["distance_to_goal"] == pytest.approx(np.hypot(4, 2), abs=0.05)
    env.close()


def test_episode_order_and_explicit_id(data_root):
    env = make_env(data_root)
    ids = [env.reset()[1]["episode_id"] for _ in range(3)]
    assert ids == ["1", "2", "1"]
    assert env.reset(options={"episode_id": "2"})[1]["episode_id"] == "2"
    with pytest.raises(ValueError, match="episode '9' not in this split"):
        env.reset(options={"episode_id": "9"})
    with pytest.raises(ValueError, match="unknown option"):
        env.reset(options={"scene": "x"})
    env.close()


def test_shuffle_is_seeded(data_root):
    a = make_env(data_root, shuffle=True)
    b = make_env(data_root, shuffle=True)
    seq_a = [a.reset(seed=3 if i == 0 else None)[1]["episode_id"] for i in range(4)]
    seq_b = [b.reset(seed=3 if i == 0 else None)[1]["episode_id"] for i in range(4)]
    assert seq_a == seq_b and sorted(seq_a[:2]) == ["1", "2"]


def test_stop_terminates_and_success(data_root):
    env = make_env(data_root)
    env.reset(options={"episode_id": "2"})  # goal 1 m ahead: success distance 3 m
    _, reward, terminated, truncated, info = env.step(MOVE_FORWARD)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert np.allclose(info["position"], [2.0, 0.0, 2.75])
    _obs, reward, terminated, truncated, info = env.step(STOP)
    assert terminated and not truncated and info["is_success"] and info["steps"] == 2
    with pytest.raises(RuntimeError, match="reset"):
        env.step(MOVE_FORWARD)
    env.reset(options={"episode_id": "1"})  # 4.5 m away: STOP right away fails
    assert not env.step(STOP)[4]["is_success"]
    env.close()


def test_truncated_at_max_steps(data_root):
    env = make_env(data_root, max_steps=3)
    env.reset()
    outs = [env.step(TURN_LEFT) for _ in range(3)]
    assert [o[3] for o in outs] == [False, False, True] and not any(o[2] for o in outs)
    assert not outs[-1][4]["is_success"]
    env.close()


def test_render_returns_last_frame(data_root):
    env = make_env(data_root, render_mode="rgb_array")
    obs, _ = env.reset()
    assert np.array_equal(env.render(), obs["rgb"])
    env.close()


def test_gymnasium_make(data_root):
    env = gymnasium.make(envs.ENV_ID, episodes=episodes(), data_root=data_root, width=32, height=24)
    obs, _info = env.reset()
    assert obs["rgb"].shape == (24, 32, 3)
    env.close()


def test_bad_inputs(data_root, tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'bullet'; available: embedded, habitat"):
        VLNCEEnv(episodes=episodes(), backend="bullet")
    with pytest.raises(ValueError, match="exactly one of split"):
        VLNCEEnv()
    env = make_env(data_root)
    env.reset()
    with pytest.raises(ValueError, match="invalid action 4"):
        env.step(4)
    env.close()
    missing = VLNCEEnv(episodes=[make_episode("3", scene_id="gen/h9/h9.glb")], data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="episode 3: scene mesh not found"):
        missing.reset()
    off = VLNCEEnv(episodes=[make_episode("4", start=(-2.0, 0.0, 1.0))], data_root=data_root, width=8, height=8)
    with pytest.raises(ValueError, match=r"episode 4: start position \[-2\.0, 0\.0, 1\.0\]"):
        off.reset()
    off.close()


def test_instruction_outside_charset_is_replaced():
    assert instruction_text("Walk past the “blue” café → stop") == "Walk past the “blue” café ? stop"
    assert len(instruction_text("x" * 10_000)) == 4096


def test_to_observation_cleans_raw_output():
    raw = {"rgb": np.zeros((2, 3, 4), np.uint8), "depth": np.array([[np.nan, -1, 2], [0, np.inf, 1]], np.float32)}
    obs = to_observation(raw, "go", 2, 3)
    assert obs["rgb"].shape == (2, 3, 3)
    assert obs["depth"].shape == (2, 3, 1) and obs["depth"].min() == 0.0 and obs["depth"][0, 2, 0] == 2.0
    with pytest.raises(ValueError, match="expected \\(4, 3, 3\\)"):
        to_observation(raw, "go", 4, 3)


def _make_vec_env(data_root):
    return VLNCEEnv(episodes=episodes(), data_root=data_root, width=16, height=16)


def test_async_vector_env(data_root):
    from functools import partial

    # "spawn": each worker starts clean and opens its own GL context (a forked child must not reuse the
    # parent's EGL context, which other tests in this process may have created).
    vec = gymnasium.vector.AsyncVectorEnv([partial(_make_vec_env, data_root)] * 2, context="spawn")
    try:
        obs, infos = vec.reset(seed=0)
        assert obs["rgb"].shape == (2, 16, 16, 3) and obs["depth"].shape == (2, 16, 16, 1)
        obs, _rew, term, _trunc, infos = vec.step(np.array([MOVE_FORWARD, STOP]))
        assert term.tolist() == [False, True]
        assert np.allclose(infos["position"][0], [1.0, 0.0, 0.75])
    finally:
        vec.close()


def test_package_exports_and_registration():
    assert envs.ENV_ID in gymnasium.registry
    assert gymnasium.registry[envs.ENV_ID].entry_point == "envs.env:VLNCEEnv"
    assert envs.VLNCEEnv is VLNCEEnv
    from envs.factory import make_backend

    assert envs.make_backend is make_backend
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = envs.Nope


def test_real_r2r_sample_without_scenes_names_the_missing_mesh(r2r_sample_dir):
    env = VLNCEEnv(split="r2r_val_seen", data_root=r2r_sample_dir, width=16, height=16)
    assert len(env.episodes) == 20 and env.episodes[0].scene_id.startswith("mp3d/")
    with pytest.raises(FileNotFoundError, match=r"episode \S+: scene mesh not found at .*scene_datasets/mp3d/"):
        env.reset()


def test_action_id():
    from envs.env import action_id

    assert action_id(2) == 2 and action_id(np.int64(3)) == 3 and action_id(np.array(1)) == 1
    for bad in (4, -1, 1.0, "1", True, np.array([1]), None):
        with pytest.raises(ValueError, match="invalid action"):
            action_id(bad)
