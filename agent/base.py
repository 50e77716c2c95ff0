"""The agent contract and the per-episode bookkeeping every agent shares.

An agent is anything with `reset(episode)`, `act(obs) -> int` and `episode_stats() -> dict` (as small as
habitat-lab's `Agent`). An agent class may also offer a static `act_batch(agents, obs_list) -> list[int]` that
serves several agents (one per env) at once — the NaVILA agent uses it to make one batched model call;
`act_all` uses it when it is there and falls back to one `act` per agent otherwise.

    agent.reset(episode)
    while not done:
        obs, reward, done, truncated, info = env.step(agent.act(obs))
    stats = agent.episode_stats()  # parse_failures, decisions, retries, decision_log
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from envs.datasets.episode import Episode


@runtime_checkable
class Agent(Protocol):
    def reset(self, episode: Episode) -> None:
        """Start `episode`: forget everything about the previous one (history, queued actions, statistics)."""

    def act(self, obs: Mapping[str, Any]) -> int:
        """The next low-level action (habitat id: 0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT) for `obs`,
        the observation at step t (t = 0 is the observation returned by env.reset)."""

    def episode_stats(self) -> dict[str, Any]:
        """Statistics of the current episode: decisions, parse_failures, retries, decision_log (see DecisionLog)."""


@dataclass
class Decision:
    """One decision of an agent, as written to the rollout record's "decisions" (docs/rollout_format.md).

    A model decision fills raw_text; baselines leave it None. `low_level` is what the decision queued.
    """

    k: int  # index of the decision in the episode
    t: int  # step index of the observation it was made on
    frames_seen: list[
        int
    ]  # step index of each frame given to the model, -1 for a black pad ([] for baselines)
    raw_text: str | None  # the model's answer that was acted on (the retry's answer when retried)
    action: str  # "stop" | "forward" | "left" | "right"
    amount: int  # cm / degrees / 0
    low_level: list[int]  # the habitat action ids queued by this decision
    parse_ok: bool  # False when the action is the fallback for an unparsable answer
    retried: bool  # True when the first answer was unparsable and the model was asked again
    reason: str = ""  # the parser's note ("amount 40 -> 45", why parsing failed, "fallback: ...")
    first_raw_text: str | None = None  # the unparsable first answer, when retried
    progress: float | None = None  # the model's progress-monitor estimate (vlm.progress_head), when it has one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DecisionLog:
    """Per-episode decisions and counters; `reset()` at every episode start."""

    decisions: list[Decision] = field(default_factory=list)
    parse_failures: int = 0  # unparsable model answers (a retried decision can count 2)
    retries: int = 0  # decisions for which the model was asked a second time
    fallbacks: int = 0  # decisions that used the fallback action because no answer parsed

    def reset(self) -> None:
        self.decisions.clear()
        self.parse_failures = self.retries = self.fallbacks = 0

    @property
    def next_index(self) -> int:
        return len(self.decisions)

    def add(self, decision: Decision) -> None:
        if decision.k != len(self.decisions):
            raise ValueError(f"decision index {decision.k} out of order; expected {len(self.decisions)}")
        self.decisions.append(decision)

    def stats(self) -> dict[str, Any]:
        return {
            "decisions": len(self.decisions),
            "parse_failures": self.parse_failures,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "decision_log": [d.to_dict() for d in self.decisions],
        }


def act_all(agents: Sequence[Agent], obs_list: Sequence[Mapping[str, Any]]) -> list[int]:
    """One action per (agent, observation) pair, in order. All agents of a class that defines `act_batch` are
    served by one `act_batch` call per class (the NaVILA agent then makes one model call for all of them);
    others act one by one."""
    if len(agents) != len(obs_list):
        raise ValueError(f"act_all: {len(agents)} agents but {len(obs_list)} observations")
    actions: list[int | None] = [None] * len(agents)
    by_class: dict[type, list[int]] = {}
    for i, agent in enumerate(agents):
        if callable(getattr(type(agent), "act_batch", None)):
            by_class.setdefault(type(agent), []).append(i)
        else:
            actions[i] = int(agent.act(obs_list[i]))
    for cls, indices in by_class.items():
        batch = cls.act_batch([agents[i] for i in indices], [obs_list[i] for i in indices])
        for i, action in zip(indices, batch, strict=True):
            actions[i] = int(action)
    return [int(a) for a in actions if a is not None]
