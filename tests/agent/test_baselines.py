"""Baselines and the agent factory."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent import make_agent
from agent.baselines import (
    VLNCE_FORWARD_STEPS,
    ForwardOnlyAgent,
    OracleAgent,
    RandomAgent,
    ReplayAgent,
)
from agent.navila import NavilaAgent
from envs.constants import FORWARD_STEP_M, MOVE_FORWARD, STOP, TURN_ANGLE_DEG, TURN_LEFT, TURN_RIGHT
from envs.geometry import heading_to_forward, heading_to_quaternion, quaternion_to_heading
from tests.agent.fakes import FakeModel, make_episode, make_obs


def run(agent: Any, episode: Any, limit: int = 500) -> list[int]:
    agent.reset(episode)
    actions: list[int] = []
    for t in range(limit):
        actions.append(agent.act(make_obs(t)))
        if actions[-1] == STOP:
            break
    return actions


# --- random -----------------------------------------------------------------------------------------------------


def test_random_agent_is_seeded_per_episode_and_order_independent() -> None:
    a, b = make_episode("1"), make_episode("2")
    first = RandomAgent(seed=3)
    run_a, run_b = run(first, a), run(first, b)
    second = RandomAgent(seed=3)
    assert run(second, b) == run_b and run(second, a) == run_a  # other order, same actions
    assert run(RandomAgent(seed=4), a) != run_a or run(RandomAgent(seed=4), b) != run_b


def test_random_agent_follows_the_vlnce_distribution() -> None:
    agent = RandomAgent(seed=0)
    agent.reset(make_episode())
    counts = Counter(agent.act({}) for _ in range(4000))
    freq = [counts[a] / 4000 for a in (STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT)]
    assert freq == pytest.approx([0.02, 0.68, 0.15, 0.15], abs=0.025)
    assert agent.episode_stats()["decisions"] == 4000


def test_random_agent_max_steps_and_validation() -> None:
    agent = RandomAgent(seed=0, probs=(0.0, 1.0, 0.0, 0.0), max_steps=5)
    assert run(agent, make_episode()) == [1, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match=r"RandomAgent\.probs must be 4 non-negative numbers summing to 1"):
        RandomAgent(probs=(0.5, 0.5))


# --- forward-only / hand-crafted --------------------------------------------------------------------------------


def test_forward_only_walks_straight_then_stops() -> None:
    actions = run(ForwardOnlyAgent(), make_episode())
    assert actions == [MOVE_FORWARD] * VLNCE_FORWARD_STEPS + [STOP]
    assert run(ForwardOnlyAgent(forward_steps=0), make_episode()) == [STOP]


def test_forward_only_with_random_heading_is_vlnce_handcrafted() -> None:
    turns = []
    for i in range(40):
        actions = run(ForwardOnlyAgent(random_heading=True, seed=1), make_episode(str(i)))
        n = actions.count(TURN_RIGHT)
        assert actions == [TURN_RIGHT] * n + [MOVE_FORWARD] * 37 + [STOP]
        turns.append(n)
    assert min(turns) >= 0 and max(turns) <= 24 and len(set(turns)) > 5
    again = run(ForwardOnlyAgent(random_heading=True, seed=1), make_episode("0"))
    assert again.count(TURN_RIGHT) == turns[0]


# --- replay -----------------------------------------------------------------------------------------------------


def test_replay_agent_replays_ground_truth_then_stops() -> None:
    episode = make_episode(actions=[3, 3, 1, 1, 2, 0])
    assert run(ReplayAgent(), episode) == [3, 3, 1, 1, 2, 0]
    agent = ReplayAgent()
    agent.reset(make_episode(actions=[1]))
    assert [agent.act({}) for _ in range(3)] == [1, 0, 0]
    with pytest.raises(ValueError, match="has no ground-truth actions"):
        ReplayAgent().reset(make_episode())
    with pytest.raises(ValueError, match=r"unknown action ids \[9\]"):
        ReplayAgent().reset(make_episode(actions=[1, 9, 0]))


def test_replay_agent_on_the_real_sample(r2r_sample_dir: Path) -> None:
    from envs.datasets.io import read_r2r_split

    episodes = read_r2r_split(r2r_sample_dir, "val_seen").episodes
    assert len(episodes) == 20
    for episode in episodes:
        assert run(ReplayAgent(), episode, limit=1000) == episode.gt.actions


# --- oracle -----------------------------------------------------------------------------------------------------


class OpenPlaneBackend:
    """An empty floor: straight-line geodesics and paths, habitat kinematics (0.25 m steps, 15° turns)."""

    def __init__(self, position: list[float], heading: float = 0.0) -> None:
        self.position = np.asarray(position, dtype=np.float64)
        self.heading = heading
        self.geodesic_calls = 0

    def agent_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.position.copy(), heading_to_quaternion(self.heading)

    def step(self, action: int) -> bool:
        if action == MOVE_FORWARD:
            self.position = self.position + FORWARD_STEP_M * heading_to_forward(self.heading)
        elif action in (TURN_LEFT, TURN_RIGHT):
            sign = 1.0 if action == TURN_LEFT else -1.0
            self.heading = quaternion_to_heading(
                heading_to_quaternion(self.heading + sign * math.radians(TURN_ANGLE_DEG))
            )
        return False

    def geodesic_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        self.geodesic_calls += 1
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))

    def shortest_path(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)]


def test_oracle_agent_reaches_the_goal_with_the_shortest_path_follower() -> None:
    episode = make_episode()
    episode.goals[0].position = [3.0, 0.0, 4.0]  # behind and to the right of the start (facing -z)
    backend = OpenPlaneBackend(episode.start_position)
    agent = OracleAgent(backend)
    agent.reset(episode)
    actions = []
    for _ in range(200):
        actions.append(agent.act({}))
        if actions[-1] == STOP:
            break
        backend.step(actions[-1])
    assert actions[-1] == STOP
    assert np.linalg.norm(backend.position - np.array(episode.goal_position)) <= 0.5
    assert actions.count(MOVE_FORWARD) <= math.ceil(5.0 / FORWARD_STEP_M)  # 5 m straight line
    assert agent.episode_stats()["decisions"] == len(actions)


def test_oracle_agent_uses_a_custom_follower_and_rejects_a_missing_backend() -> None:
    class Scripted:
        def __init__(self, backend: Any) -> None:
            self.seen: list[np.ndarray] = []

        def next_action(self, position: np.ndarray, rotation: np.ndarray, goal: np.ndarray) -> int:
            self.seen.append(goal)
            return TURN_LEFT

    agent = OracleAgent(OpenPlaneBackend([0, 0, 0]), follower_factory=Scripted)
    agent.reset(make_episode())
    assert agent.act({}) == TURN_LEFT
    assert agent.follower.seen[0].tolist() == [0.0, 0.0, -5.0]
    with pytest.raises(ValueError, match="OracleAgent needs the env's simulator backend"):
        OracleAgent(None)


# --- factory ----------------------------------------------------------------------------------------------------


def test_factory_builds_every_agent_and_rejects_unknown_names_and_options() -> None:
    assert isinstance(make_agent("random", seed=2), RandomAgent)
    assert isinstance(make_agent("forward", forward_steps=3), ForwardOnlyAgent)
    assert isinstance(make_agent("oracle", backend=OpenPlaneBackend([0, 0, 0])), OracleAgent)
    assert isinstance(make_agent("replay"), ReplayAgent)
    navila = make_agent("navila", model=FakeModel(["stop"]), num_frames=4, fallback_action="right")
    assert isinstance(navila, NavilaAgent) and navila.config.num_frames == 4
    with pytest.raises(
        ValueError, match="unknown agent 'cma'; available: navila, random, forward, oracle, replay"
    ):
        make_agent("cma")
    with pytest.raises(ValueError, match=r"make_agent\('forward'\): unknown option\(s\) \['steps'\]"):
        make_agent("forward", steps=3)
    with pytest.raises(ValueError, match=r"make_agent\('navila'\) needs model="):
        make_agent("navila")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['frames'\]"):
        make_agent("navila", model=FakeModel(["stop"]), frames=8)


def test_every_agent_reports_decisions_in_the_rollout_format() -> None:
    keys = {"k", "t", "frames_seen", "raw_text", "action", "amount", "low_level", "parse_ok", "retried"}
    for agent in (RandomAgent(), ForwardOnlyAgent(forward_steps=2), ReplayAgent()):
        run(agent, make_episode(actions=[1, 1, 0]))
        stats = agent.episode_stats()
        assert stats["parse_failures"] == 0 and stats["decisions"] == stats["steps"] > 0
        for k, decision in enumerate(stats["decision_log"]):
            assert (
                set(decision) >= keys and decision["k"] == k == decision["t"] and decision["raw_text"] is None
            )


def test_oracle_on_the_embedded_simulator_succeeds_with_vlnce_metrics(tmp_path: Any) -> None:
    """Oracle agent + real env + metrics: through the doorway of the two-room test scene, STOP near the goal."""
    from benchmarks.metrics import episode_metrics
    from envs.env import VLNCEEnv
    from tests.envs.fakes import make_episode as make_scene_episode
    from tests.envs.fakes import two_room_mesh, write_scene

    write_scene(tmp_path / "scene_datasets", two_room_mesh())
    episode = make_scene_episode()
    env = VLNCEEnv(episodes=[episode], data_root=str(tmp_path), width=32, height=32)
    try:
        obs, info = env.reset()
        agent = make_agent("oracle", backend=env.sim)
        agent.reset(episode)
        positions, collisions, terminated, truncated = [info["position"]], 0, False, False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(agent.act(obs))
            positions.append(info["position"])
            collisions += int(info["collided"])
        metrics = episode_metrics(
            positions,
            terminated,
            episode.goal_position,
            [],
            env.sim.geodesic_distance,
            collisions=collisions,
            steps=len(positions) - 1,
        )
    finally:
        env.close()
    assert terminated and metrics["sr"] == 1.0 and metrics["os"] == 1.0
    assert metrics["ne"] <= 0.5 and metrics["spl"] > 0.9 and metrics["collisions"] == 0
