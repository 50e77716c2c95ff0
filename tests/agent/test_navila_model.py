"""The NaVILA agent against a real (tiny, random-weight) vlm model: the interface contract end to end."""

from __future__ import annotations

import pytest

from agent.actions import MidLevelAction, format_action
from agent.navila import BatchedNavilaPolicy, NavilaAgent
from agent.prompt import build_prompt
from tests.agent.fakes import make_episode, make_obs

pytestmark = pytest.mark.slow  # builds a torch model (about 10 s on one CPU core, most of it imports)


@pytest.fixture(scope="module")
def tiny_model():
    torch = pytest.importorskip("torch")
    import vlm

    texts = [
        build_prompt("Walk to the door."),
        format_action(MidLevelAction("forward", 75)),
        "The next action is stop.",
    ]
    tokenizer = vlm.build_tokenizer(texts * 5, vocab_size=300)
    torch.manual_seed(0)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer)), tokenizer)
    return model.eval()


def test_agent_runs_on_a_real_model_and_manages_its_feature_cache(tiny_model) -> None:
    agent = NavilaAgent(tiny_model)
    episode = make_episode()
    agent.reset(episode)
    actions = [agent.act(make_obs(t, size=32)) for t in range(4)]
    assert all(a in (0, 1, 2, 3) for a in actions)
    stats = agent.episode_stats()
    assert stats["decisions"] >= 1 and stats["model_calls"] >= stats["decisions"]
    assert all(isinstance(d["raw_text"], str) for d in stats["decision_log"])
    cached = [k for k in tiny_model.feature_cache._entries if isinstance(k, tuple) and k[0] == episode.uid]
    assert cached  # frames were encoded under (uid, t) keys
    agent.reset(make_episode("other"))
    assert not [k for k in tiny_model.feature_cache._entries if isinstance(k, tuple) and k[0] == episode.uid]


def test_batched_policy_on_a_real_model(tiny_model) -> None:
    policy = BatchedNavilaPolicy(tiny_model, num_envs=2)
    for env in range(2):
        policy.reset(env, make_episode(str(env)))
    for t in range(3):
        actions = policy.act([make_obs(t, seed=env, size=32) for env in range(2)], env_indices=[0, 1])
        assert len(actions) == 2 and all(a in (0, 1, 2, 3) for a in actions)
