"""The NaVILA agent against a fake model: inputs, queueing, reset, parse failures, batching."""

from __future__ import annotations

import numpy as np
import pytest

from agent.base import act_all
from agent.baselines import ForwardOnlyAgent
from agent.navila import BatchedNavilaPolicy, NavilaAgent, NavilaAgentConfig
from agent.prompt import build_prompt
from tests.agent.fakes import FakeModel, make_episode, make_obs
from vlm.mm_utils import history_indices

FORWARD_75 = "The next action is move forward 75 cm."
LEFT_30 = "The next action is turn left 30 degrees."
STOP_TEXT = "The next action is stop."
ROLLOUT_DECISION_KEYS = {
    "k",
    "t",
    "frames_seen",
    "raw_text",
    "action",
    "amount",
    "low_level",
    "parse_ok",
    "retried",
}


def keys(images: list) -> list:
    return [image.key for image in images]


def test_first_call_sees_the_exact_prompt_and_eight_keyed_frames() -> None:
    model = FakeModel([FORWARD_75])
    agent = NavilaAgent(model)
    episode = make_episode()
    agent.reset(episode)
    obs = make_obs(0)
    assert agent.act(obs) == 1
    [[(images, prompt)]] = model.calls
    assert prompt == build_prompt(episode.instruction.instruction_text, "llama_3", 8)
    assert len(images) == 8
    assert keys(images) == [("black", 8, 8)] * 7 + [(episode.uid, 0)]
    assert all(not image.pixels.any() for image in images[:7])
    np.testing.assert_array_equal(images[7].pixels, obs["rgb"])
    assert model.max_new_tokens == [32]
    [decision] = agent.episode_stats()["decision_log"]
    assert set(decision) >= ROLLOUT_DECISION_KEYS
    assert decision["frames_seen"] == [-1] * 7 + [0]
    assert decision["raw_text"] == FORWARD_75 and decision["low_level"] == [1, 1, 1]
    assert (decision["action"], decision["amount"], decision["parse_ok"], decision["retried"]) == (
        "forward",
        75,
        True,
        False,
    )


def test_later_calls_sample_the_whole_history_with_navila_indices() -> None:
    model = FakeModel(["The next action is turn right 15 degrees."])  # one step per decision
    agent = NavilaAgent(model)
    episode = make_episode()
    agent.reset(episode)
    for t in range(20):
        agent.act(make_obs(t))
    assert len(model.calls) == 20
    images, _ = model.calls[-1][0]
    expected = [(episode.uid, i) for i in history_indices(20, 8)] + [(episode.uid, 19)]
    assert keys(images) == expected  # 0, 2, 5, 8, 10, 13, 16 then 19
    np.testing.assert_array_equal(images[3].pixels, make_obs(8)["rgb"])
    # 5 frames: 3 black pads in front; history over the padded buffer of 8 → indices 0..6
    images5, _ = model.calls[4][0]
    assert keys(images5) == [("black", 8, 8)] * 3 + [(episode.uid, i) for i in range(4)] + [(episode.uid, 4)]


def test_the_agent_follows_the_model_frame_sampling_rule() -> None:
    """A model trained with the geometric history (its config says so) gets that history; the agent config can
    override it; NaVILA's uniform rule otherwise."""

    class Config:
        frame_sampling = "geometric"

    episode = make_episode()
    for config, rule in ((None, "geometric"), (NavilaAgentConfig(frame_sampling="uniform"), "uniform")):
        model = FakeModel(["The next action is turn right 15 degrees."])
        model.config = Config()
        agent = NavilaAgent(model, config)
        assert agent.frame_sampling == rule
        agent.reset(episode)
        for t in range(30):
            agent.act(make_obs(t))
        images, _ = model.calls[-1][0]
        assert keys(images) == [(episode.uid, i) for i in history_indices(30, 8, rule)] + [(episode.uid, 29)]
        assert agent.episode_stats()["decision_log"][-1]["frames_seen"] == [*history_indices(30, 8, rule), 29]
    assert history_indices(30, 8, "geometric") != history_indices(30, 8)
    with pytest.raises(ValueError, match="frame_sampling: unknown rule 'dense'"):
        NavilaAgentConfig(frame_sampling="dense")


def test_the_agent_follows_the_model_progress_cue() -> None:
    """A model trained with the step-count cue (its config says so) is told the current frame's step at every
    decision, the retry included; the agent config can override it; NaVILA's prompt otherwise."""

    class Config:
        progress_cue = "steps"

    episode = make_episode()
    for config, cue in ((None, "steps"), (NavilaAgentConfig(progress_cue="none"), "none")):
        model = FakeModel([FORWARD_75, "no idea", "still no idea", LEFT_30])
        model.config = Config()
        agent = NavilaAgent(model, config)
        assert agent.progress_cue == cue
        agent.reset(episode)
        for t in range(5):  # decisions at t = 0 (forward 75: 3 steps), t = 3 (two failures: one left), t = 4
            agent.act(make_obs(t))
        prompts = [prompt for call in model.calls for _, prompt in call]
        assert len(prompts) == 4
        for prompt, t in zip(prompts, (0, 3, 3, 4), strict=True):
            assert (f"You have taken {t} steps so far. Analyze" in prompt) == (cue == "steps"), prompt
        assert prompts[0] == build_prompt(episode.instruction.instruction_text, progress_cue=cue, steps=0)
    with pytest.raises(ValueError, match="progress_cue: unknown cue 'meters'"):
        NavilaAgentConfig(progress_cue="meters")


def test_the_agent_shows_the_model_its_own_number_of_frames() -> None:
    """A checkpoint trained on 4 frames (config num_video_frames) gets 4 frames and 4 <image> markers, not
    NaVILA's 8; the agent config can still set the count; a model without the key gets 8."""

    class Config:
        num_video_frames = 4

    episode = make_episode()
    for config, count in ((None, 4), (NavilaAgentConfig(num_frames=6), 6)):
        model = FakeModel([FORWARD_75])
        model.config = Config()
        agent = NavilaAgent(model, config)
        agent.reset(episode)
        agent.act(make_obs(0))
        [[(images, prompt)]] = model.calls
        assert agent.num_frames == len(images) == prompt.count("<image>") == count
    assert NavilaAgent(FakeModel([FORWARD_75])).num_frames == 8


def test_queue_runs_before_the_model_is_asked_again() -> None:
    model = FakeModel([FORWARD_75, LEFT_30, STOP_TEXT])
    agent = NavilaAgent(model)
    agent.reset(make_episode())
    actions = [agent.act(make_obs(t)) for t in range(6)]
    assert actions == [1, 1, 1, 2, 2, 0]
    assert len(model.calls) == 3
    stats = agent.episode_stats()
    assert stats["decisions"] == 3 and stats["steps"] == 6 and stats["parse_failures"] == 0
    assert [d["t"] for d in stats["decision_log"]] == [0, 3, 5]
    assert agent.queued_actions == []


def test_reset_clears_queue_history_and_stats_and_drops_features() -> None:
    model = FakeModel([FORWARD_75])
    agent = NavilaAgent(model)
    first, second = make_episode("1"), make_episode("2")
    agent.reset(first)
    assert agent.act(make_obs(0)) == 1
    assert agent.queued_actions == [1, 1]
    agent.reset(second)
    assert agent.queued_actions == []
    assert agent.episode_stats()["decisions"] == 0
    agent.act(make_obs(0, seed=1))
    assert len(model.calls) == 2  # the queue of episode 1 was not carried over
    images, _prompt = model.calls[1][0]
    assert keys(images)[-1] == (second.uid, 0) and (first.uid, 0) not in keys(images)
    assert model.feature_cache.dropped == [first.uid, first.uid, second.uid]


def test_features_are_dropped_when_the_agent_stops() -> None:
    model = FakeModel([STOP_TEXT])
    agent = NavilaAgent(model)
    episode = make_episode()
    agent.reset(episode)
    model.feature_cache.dropped.clear()
    assert agent.act(make_obs(0)) == 0
    assert model.feature_cache.dropped == [episode.uid]


def test_parse_failure_is_retried_with_the_nudge_then_counted() -> None:
    model = FakeModel(["I see a kitchen.", STOP_TEXT])
    agent = NavilaAgent(model)
    agent.reset(make_episode())
    assert agent.act(make_obs(0)) == 0
    assert len(model.calls) == 2
    (images1, prompt1), (images2, prompt2) = model.calls[0][0], model.calls[1][0]
    assert keys(images1) == keys(images2)  # same frames
    config = NavilaAgentConfig()
    assert prompt2 == build_prompt(make_episode().instruction.instruction_text, suffix=config.retry_suffix)
    assert prompt2 != prompt1
    stats = agent.episode_stats()
    assert (stats["parse_failures"], stats["retries"], stats["fallbacks"]) == (1, 1, 0)
    [decision] = stats["decision_log"]
    assert decision["retried"] and decision["parse_ok"] and decision["raw_text"] == STOP_TEXT
    assert decision["first_raw_text"] == "I see a kitchen."


def test_two_failures_fall_back_to_one_left_turn() -> None:
    model = FakeModel(["blah"])
    agent = NavilaAgent(model)
    agent.reset(make_episode())
    assert [agent.act(make_obs(t)) for t in range(3)] == [2, 2, 2]
    stats = agent.episode_stats()
    assert (stats["parse_failures"], stats["retries"], stats["fallbacks"], stats["decisions"]) == (6, 3, 3, 3)
    assert stats["model_calls"] == 6
    decision = stats["decision_log"][0]
    assert decision["parse_ok"] is False and decision["action"] == "left" and decision["low_level"] == [2]
    assert "fallback: left" in decision["reason"]


def test_retry_can_be_disabled_and_fallback_chosen() -> None:
    model = FakeModel(["blah"])
    agent = NavilaAgent(model, NavilaAgentConfig(retry_on_parse_failure=False, fallback_action="stop"))
    agent.reset(make_episode())
    assert agent.act(make_obs(0)) == 0
    assert len(model.calls) == 1
    assert agent.episode_stats()["parse_failures"] == 1 and agent.episode_stats()["retries"] == 0


def test_the_progress_monitor_is_logged_and_monitor_stop_stops_on_it() -> None:
    """A model with a progress monitor: every decision logs its estimate (a retry keeps the first call's); with
    monitor_stop T the first decision whose estimate reaches T is a STOP, whatever the answer, and says why."""
    model = FakeModel([FORWARD_75, "no idea", LEFT_30, FORWARD_75], progress=[0.2, 0.5, 0.6])
    agent = NavilaAgent(model)
    agent.reset(make_episode())
    [agent.act(make_obs(t)) for t in range(7)]  # 3 steps forward, then a retried left turn (2 steps), forward
    log = agent.episode_stats()["decision_log"]
    # the retry asks for no estimate: the retried decision keeps its first call's
    assert [d["progress"] for d in log] == [0.2, 0.5, 0.6] and log[1]["retried"] and model.progress_calls == 3
    model = FakeModel([FORWARD_75], progress=[0.2, 0.89, 0.9])
    agent = NavilaAgent(model, NavilaAgentConfig(monitor_stop=0.9))
    agent.reset(make_episode())
    assert [agent.act(make_obs(t)) for t in range(7)] == [1, 1, 1, 1, 1, 1, 0]
    last = agent.episode_stats()["decision_log"][-1]
    assert last["action"] == "stop" and last["raw_text"] == FORWARD_75 and last["low_level"] == [0]
    assert last["reason"] == "progress monitor 0.900 >= 0.9: stop"
    no_monitor = NavilaAgent(FakeModel([STOP_TEXT]))
    no_monitor.reset(make_episode())
    no_monitor.act(make_obs(0))
    assert no_monitor.episode_stats()["decision_log"][0]["progress"] is None
    with pytest.raises(ValueError, match=r"monitor_stop \(--monitor-stop\) needs a model with a progress monitor"):
        NavilaAgent(FakeModel([STOP_TEXT]), NavilaAgentConfig(monitor_stop=0.9))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"monitor_stop \(--monitor-stop\) must be in \[0, 1\] \(0 = never\)"):
            NavilaAgentConfig(monitor_stop=bad)


def test_the_monitors_own_threshold_applies_unless_another_or_zero_is_asked_for() -> None:
    def actions_to_stop(config: NavilaAgentConfig | None) -> list[int]:
        """The agent's actions up to its first STOP (at most 9)."""
        agent = NavilaAgent(FakeModel([FORWARD_75], progress=[0.2, 0.85, 0.95], stop_threshold=0.8), config)
        agent.reset(make_episode())
        actions: list[int] = []
        while len(actions) < 9 and (not actions or actions[-1] != 0):
            actions.append(agent.act(make_obs(len(actions))))
        return actions

    assert actions_to_stop(None) == [1, 1, 1, 0]  # the monitor's own 0.8 stops the second decision
    assert actions_to_stop(NavilaAgentConfig(monitor_stop=0.9)) == [1, 1, 1, 1, 1, 1, 0]
    assert actions_to_stop(NavilaAgentConfig(monitor_stop=0.0)) == [1] * 9  # 0 = never
    assert NavilaAgent(FakeModel([STOP_TEXT]), NavilaAgentConfig(monitor_stop=0.0)).monitor_stop is None


def test_monitor_patience_needs_that_many_decisions_in_a_row_at_the_threshold() -> None:
    """With monitor_patience K the rule stops at the first decision that makes K consecutive estimates >= T; one
    below T in between starts the count again."""
    model = FakeModel([FORWARD_75], progress=[0.2, 0.85, 0.7, 0.9, 0.95])
    agent = NavilaAgent(model, NavilaAgentConfig(monitor_stop=0.8, monitor_patience=2))
    agent.reset(make_episode())
    assert [agent.act(make_obs(t)) for t in range(13)] == [1] * 12 + [0]  # decisions 3 and 4 reach 0.8
    last = agent.episode_stats()["decision_log"][-1]
    assert last["reason"] == "progress monitor 0.950 >= 0.8 (2 decisions running): stop"
    agent.reset(make_episode())  # a new episode counts from zero (the fake's last estimate, 0.95, repeats)
    assert [agent.act(make_obs(t)) for t in range(4)] == [1, 1, 1, 0]  # not at the first decision: at the second
    with pytest.raises(ValueError, match=r"monitor_patience \(--monitor-patience\) must be >= 1"):
        NavilaAgentConfig(monitor_patience=0)


def test_config_validation_and_template_choice() -> None:
    with pytest.raises(
        ValueError, match="fallback_action: unknown action 'jump'; available: stop, forward, left, right"
    ):
        NavilaAgentConfig(fallback_action="jump")
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        NavilaAgentConfig(num_frames=0)
    with pytest.raises(ValueError, match="conv_mode: unknown conversation template 'nope'"):
        NavilaAgentConfig(conv_mode="nope")
    model = FakeModel([STOP_TEXT], conv_mode="vicuna_v1")
    assert NavilaAgent(model).conv_mode == "vicuna_v1"  # the model's own template by default
    assert NavilaAgent(model, NavilaAgentConfig(conv_mode="llama_3")).conv_mode == "llama_3"


def test_bad_usage_gives_clear_errors() -> None:
    agent = NavilaAgent(FakeModel([STOP_TEXT]))
    with pytest.raises(RuntimeError, match="before reset"):
        agent.act(make_obs(0))
    agent.reset(make_episode())
    with pytest.raises(ValueError, match="no 'rgb' key"):
        agent.act({"depth": np.zeros((4, 4, 1), np.float32)})
    with pytest.raises(ValueError, match="observation 'rgb' must have dtype uint8"):
        agent.act({"rgb": np.zeros((4, 4, 3), np.float32)})


def test_frames_are_copied_from_the_observation() -> None:
    model = FakeModel(["The next action is turn left 15 degrees."])
    agent = NavilaAgent(model)
    agent.reset(make_episode())
    obs = make_obs(0)
    original = obs["rgb"].copy()
    agent.act(obs)
    obs["rgb"][:] = 0  # an env reusing its buffer
    agent.act(make_obs(1))
    images, _ = model.calls[1][0]
    np.testing.assert_array_equal(images[-2].pixels, original)


def _answer_from_current_frame(images: list, prompt: str) -> str:
    """A deterministic 'model': the answer depends on the current frame and the history it is shown."""
    answers = [
        FORWARD_75,
        LEFT_30,
        "The next action is turn right 15 degrees.",
        "garbage",
        "The next action is move forward 25 cm.",
    ]
    code = int(images[-1].pixels.sum()) + sum(1 for image in images if image.key[0] == "black")
    if "starts with" in prompt:  # the retry answers better
        return answers[code % 4]  # sometimes garbage again: a fallback
    return answers[code % len(answers)]


def _run_sequential(episodes: list, steps: int) -> tuple[list[list[int]], list[dict], int]:
    actions, stats, calls = [], [], 0
    for env, episode in enumerate(episodes):
        model = FakeModel(_answer_from_current_frame)
        agent = NavilaAgent(model)
        agent.reset(episode)
        actions.append([agent.act(make_obs(t, seed=env)) for t in range(steps)])
        stats.append(agent.episode_stats())
        calls += len(model.calls)
    return actions, stats, calls


def test_batched_decisions_equal_sequential_ones_with_one_call_per_round() -> None:
    num_envs, steps = 4, 20
    episodes = [make_episode(str(i), instruction=f"Instruction {i}.") for i in range(num_envs)]
    seq_actions, seq_stats, _ = _run_sequential(episodes, steps)
    # the script exercises every path: multi-step queues, retries that parse, retries that fall back
    assert sum(s["retries"] for s in seq_stats) > sum(s["fallbacks"] for s in seq_stats) > 0

    model = FakeModel(_answer_from_current_frame)
    policy = BatchedNavilaPolicy(model, num_envs=num_envs)
    for env, episode in enumerate(episodes):
        policy.reset(env, episode)
    batched: list[list[int]] = [[] for _ in range(num_envs)]
    for t in range(steps):
        actions = policy.act(
            [make_obs(t, seed=env) for env in range(num_envs)], env_indices=list(range(num_envs))
        )
        for env, action in enumerate(actions):
            batched[env].append(action)
    assert batched == seq_actions
    for env in range(num_envs):
        got, want = policy.episode_stats(env), seq_stats[env]
        assert got["decision_log"] == want["decision_log"]
        assert got["parse_failures"] == want["parse_failures"]
    # one generate_text call per round of decisions (plus one per retry round), never one per env
    decisions = sum(s["decisions"] for s in seq_stats)
    retries = sum(s["retries"] for s in seq_stats)
    assert model.num_samples == decisions + retries
    assert len(model.calls) <= 2 * steps
    assert any(len(call) > 1 for call in model.calls)
    # envs with a queue do not call the model: no call ever held more samples than envs needing a decision
    assert all(len(call) <= num_envs for call in model.calls)


def test_batch_over_a_subset_of_envs_and_duplicate_agents() -> None:
    model = FakeModel([FORWARD_75])
    policy = BatchedNavilaPolicy(model, num_envs=4)
    for env in range(4):
        policy.reset(env, make_episode(str(env)))
    assert policy.act([make_obs(0), make_obs(0)], env_indices=[1, 3]) == [1, 1]
    assert len(model.calls) == 1 and len(model.calls[0]) == 2
    assert policy.episode_stats(0)["decisions"] == 0
    with pytest.raises(ValueError, match=r"env index 4 out of range 0\.\.3"):
        policy.act([make_obs(1)], env_indices=[4])
    with pytest.raises(ValueError, match="same agent appears twice"):
        NavilaAgent.act_batch([policy.agents[0], policy.agents[0]], [make_obs(0), make_obs(0)])


def test_act_all_batches_navila_agents_and_steps_the_others() -> None:
    model = FakeModel([LEFT_30])
    agents = [NavilaAgent(model), ForwardOnlyAgent(forward_steps=1), NavilaAgent(model)]
    for i, agent in enumerate(agents):
        agent.reset(make_episode(str(i)))
    assert act_all(agents, [make_obs(0)] * 3) == [2, 1, 2]
    assert len(model.calls) == 1 and len(model.calls[0]) == 2
    assert act_all(agents, [make_obs(1)] * 3) == [2, 0, 2]
    assert len(model.calls) == 1  # both NaVILA agents still had a queued left turn


def test_a_bad_observation_in_a_batch_leaves_every_history_intact() -> None:
    model = FakeModel(["The next action is turn left 15 degrees."])
    policy = BatchedNavilaPolicy(model, num_envs=2)
    for env in range(2):
        policy.reset(env, make_episode(str(env)))
    with pytest.raises(ValueError, match="no 'rgb' key"):
        policy.act([make_obs(0), {"depth": None}], env_indices=[0, 1])
    assert model.calls == []
    policy.act([make_obs(0), make_obs(0)], env_indices=[0, 1])
    images, _ = model.calls[0][0]
    assert keys(images)[-2:] == [("black", 8, 8), (make_episode("0").uid, 0)]  # no frame recorded twice
