"""The NaVILA agent: every RGB frame of the episode → 8 sampled frames + prompt → model answer → action queue.

    model = vlm.load("checkpoints/navila-small", device="cpu")
    agent = NavilaAgent(model, NavilaAgentConfig())
    agent.reset(episode); action = agent.act(obs)

One decision: the agent keeps every low-level RGB frame (one `vlm.media.Image` keyed (episode uid, t), so the
model's feature cache encodes each frame once), samples the model's `num_video_frames` (NaVILA: 8) with
`vlnce_frame_sampling` (7 history frames with black pads in front, then the current one; the history rule is the
model's `frame_sampling`, NaVILA's uniform one unless the model was trained with another), asks the model with the NaVILA prompt
(plus the step count when the model was trained with `progress_cue` "steps"), parses the answer with
`parse_action`, and queues the low-level steps: the first runs now, the rest on the next `act` calls without
asking the model (NaVILA's behaviour). The queue and the history are cleared on `reset`; the episode's cached
features are dropped at `reset` and when the agent returns STOP.

Batching: `NavilaAgent.act_batch(agents, obs_list)` serves several agents (one per env) that share a model with
ONE `generate_text` call for all the agents whose queue is empty; agents with queued steps do not call the
model. Decisions are identical to calling `act` on each agent in turn (greedy decoding, per-sample inputs).
`BatchedNavilaPolicy` wraps N agents behind env indices.

Parse-failure policy (the reference sends an empty action to the simulator and crashes; we count instead):
1. Re-ask once. Greedy decoding on identical inputs returns the identical answer, so an unchanged re-ask would be
   wasted compute; the retry appends `retry_suffix` (a one-sentence reminder of the answer format) to the user
   turn, with the same frames. This is a deliberate, documented departure from the training prompt, used only
   after a failure; set `retry_on_parse_failure=False` to skip it.
2. If the retry also fails, take `fallback_action` for one step. The default is TURN_LEFT 15°, not STOP: STOP
   ends the episode and is almost always a failure, while a 15° turn is the least committal move — it cannot
   collide, does not change the position (so it costs no path length), and gives the next model call a new view
   (a new input, so possibly a parsable answer). MOVE_FORWARD could walk into a wall or off the path.
Every unparsable answer is counted (`parse_failures`), as are retries and fallbacks, per episode.

Progress monitor (beyond NaVILA): when the model has one (`vlm.progress_head`, trained with `train
--progress-loss-weight`), every decision logs its estimate of how much of the route is done (`Decision.progress`,
read from the same model call), and with `monitor_stop` T the agent stops as soon as the estimate reaches T,
whatever the answer (the decision's `reason` says so). Without `monitor_stop` the threshold is the one the monitor
comes with (`progress_head/config.json`'s `stop_threshold`, e.g. the shipped model's), if any; 0 turns it off.
With `monitor_patience` K > 1 it stops only when K consecutive decisions reach T (`vlm.progress_head.monitor_stop_fires`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.actions import (
    ACTION_KINDS,
    FORWARD_STEP_CM,
    TURN_STEP_DEG,
    MidLevelAction,
    ParseResult,
    parse_action,
)
from agent.base import Decision, DecisionLog
from agent.prompt import DEFAULT_CONV_MODE, build_prompt
from envs.constants import OBS_RGB, STOP
from envs.datasets.episode import Episode

DEFAULT_RETRY_SUFFIX = ' Answer with one sentence that starts with "The next action is".'
# How a decision's `reason` begins its part when the progress monitor's rule turned it into STOP (read back by
# benchmarks.stop_rule_sweep, which must know a run's trajectories are the rule's own).
MONITOR_STOP_REASON = "progress monitor"


@dataclass
class NavilaAgentConfig:
    """How the NaVILA agent asks the model and what it does with bad answers."""

    num_frames: int | None = None  # frames per model call (history + current); None = the model's num_video_frames
    frame_sampling: str | None = None  # which history frames (vlm.mm_utils); None = the model's own rule
    progress_cue: str | None = None  # a step count in the prompt (vlm.mm_utils); None = the model's own cue
    max_new_tokens: int = 32  # greedy decoding budget per answer (NaVILA: 32)
    conv_mode: str | None = None  # conversation template; None = the model's own `conv_mode` (else "llama_3")
    retry_on_parse_failure: bool = True  # re-ask once (with retry_suffix) when an answer does not parse
    retry_suffix: str = DEFAULT_RETRY_SUFFIX  # appended to the user turn for the retry only
    fallback_action: str = (
        "left"  # one step of this when no answer parsed: "stop" | "forward" | "left" | "right"
    )
    # Beyond NaVILA: STOP whenever the model's progress monitor (vlm.progress_head) estimates at least this much of
    # the route done, whatever the answer says. None = the threshold the monitor comes with (its stop_threshold; never
    # when it has none), 0 = never. The estimate is logged whenever the model has a monitor.
    monitor_stop: float | None = None
    # ... only once this many consecutive decisions' estimates reach it (1: the first one does).
    monitor_patience: int = 1

    def __post_init__(self) -> None:
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"NavilaAgentConfig.num_frames must be >= 1, got {self.num_frames}")
        if self.frame_sampling is not None:
            from vlm.mm_utils import FRAME_SAMPLING_RULES

            if self.frame_sampling not in FRAME_SAMPLING_RULES:
                raise ValueError(
                    f"NavilaAgentConfig.frame_sampling: unknown rule '{self.frame_sampling}'; "
                    f"available: {', '.join(FRAME_SAMPLING_RULES)}"
                )
        if self.progress_cue is not None:
            from vlm.mm_utils import PROGRESS_CUES

            if self.progress_cue not in PROGRESS_CUES:
                raise ValueError(
                    f"NavilaAgentConfig.progress_cue: unknown cue '{self.progress_cue}'; "
                    f"available: {', '.join(PROGRESS_CUES)}"
                )
        if self.max_new_tokens < 1:
            raise ValueError(f"NavilaAgentConfig.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.fallback_action not in ACTION_KINDS:
            raise ValueError(
                f"NavilaAgentConfig.fallback_action: unknown action '{self.fallback_action}'; "
                f"available: {', '.join(ACTION_KINDS)}"
            )
        if self.monitor_stop is not None and not 0.0 <= self.monitor_stop <= 1.0:
            raise ValueError(
                f"NavilaAgentConfig.monitor_stop (--monitor-stop) must be in [0, 1] (0 = never), got {self.monitor_stop}"
            )
        if self.monitor_patience < 1:
            raise ValueError(
                f"NavilaAgentConfig.monitor_patience (--monitor-patience) must be >= 1, got {self.monitor_patience}"
            )
        if self.conv_mode is not None:
            from vlm.conversation import conv_templates

            if self.conv_mode not in conv_templates:
                raise ValueError(
                    f"NavilaAgentConfig.conv_mode: unknown conversation template '{self.conv_mode}'; "
                    f"available: {', '.join(sorted(conv_templates))}"
                )


def fallback_decision(kind: str) -> MidLevelAction:
    """One low-level step of `kind` (the action taken when no answer parsed)."""
    amount = {"stop": 0, "forward": FORWARD_STEP_CM, "left": TURN_STEP_DEG, "right": TURN_STEP_DEG}[kind]
    return MidLevelAction(kind, amount)  # type: ignore[arg-type]


@dataclass
class ModelInput:
    """What one decision sends to the model."""

    images: list[Any]  # num_frames vlm.media.Image, current last
    prompt: str  # the templated prompt
    frames_seen: list[int]  # step index per image, -1 for a black pad


@dataclass
class _Outcome:
    """What one decision made of the model's answer(s)."""

    parsed: ParseResult
    raw_text: str | None
    first_raw_text: str | None = None
    retried: bool = False
    failures: int = 0  # unparsable answers in this decision (0, 1 or 2)
    progress: float | None = None  # the progress monitor's estimate (first call), when the model has one


class NavilaAgent:
    """NaVILA's inference loop for one env: history → sampled frames + prompt → answer → action queue."""

    def __init__(self, model: Any, config: NavilaAgentConfig | None = None) -> None:
        self.model = model
        self.config = config or NavilaAgentConfig()
        self.conv_mode: str = self.config.conv_mode or getattr(model, "conv_mode", None) or DEFAULT_CONV_MODE
        from vlm.mm_utils import model_frame_sampling, model_num_frames, model_progress_cue

        # The history rule, the prompt's progress cue and the frame count the model was trained with (NaVILA's uniform
        # rule, no cue and 8 frames unless its config says otherwise): a checkpoint of another frame count must not
        # silently get 8.
        self.frame_sampling: str = self.config.frame_sampling or model_frame_sampling(model)
        self.progress_cue: str = self.config.progress_cue or model_progress_cue(model)
        self.num_frames: int = self.config.num_frames or model_num_frames(model)
        build_prompt("", self.conv_mode, self.num_frames)  # fail now, not mid-episode, on a bad template
        # The progress monitor: its estimate is logged at every decision when the model has one; monitor_stop acts on it.
        from vlm.progress_head import monitor_stop_in_force

        self.has_monitor: bool = getattr(model, "progress_head", None) is not None
        # The threshold in force: the one asked for, else the monitor's own; None when never.
        self.monitor_stop: float | None = monitor_stop_in_force(
            model, self.config.monitor_stop, "NavilaAgentConfig.monitor_stop (--monitor-stop)"
        )
        self._uid: str | None = None
        self._instruction = ""
        self._frames: list[Any] = []  # every low-level frame of the episode, vlm.media.Image keyed (uid, t)
        self._queue: deque[int] = deque()  # low-level actions still to run from the last decision
        self._t = 0  # step index of the next observation
        self._log = DecisionLog()
        self._model_calls = 0
        self._model_seconds = 0.0

    # ------------------------------------------------------------------ the Agent contract

    def reset(self, episode: Episode) -> None:
        """Start `episode`: clear the queue, the frame history and the statistics; drop cached features of the
        previous episode and of this one (a stale entry from an earlier run of the same episode)."""
        self._drop_features()
        self._uid = episode.uid
        self._instruction = episode.instruction.instruction_text
        self._frames = []
        self._queue.clear()
        self._t = 0
        self._log.reset()
        self._model_calls = 0
        self._model_seconds = 0.0
        self._drop_features()

    def act(self, obs: Mapping[str, Any]) -> int:
        """The next low-level action; asks the model only when the queue of the last decision is empty."""
        return NavilaAgent.act_batch([self], [obs])[0]

    def episode_stats(self) -> dict[str, Any]:
        """decisions, parse_failures, retries, fallbacks, decision_log, steps, model_calls and model_s (seconds
        in generate_text; a batched call's time is split evenly among the agents it served)."""
        return {
            **self._log.stats(),
            "steps": self._t,
            "model_calls": self._model_calls,
            "model_s": self._model_seconds,
        }

    @property
    def queued_actions(self) -> list[int]:
        """The low-level actions still queued from the last decision (a copy)."""
        return list(self._queue)

    # ------------------------------------------------------------------ batching

    @staticmethod
    def act_batch(agents: Sequence[NavilaAgent], obs_list: Sequence[Mapping[str, Any]]) -> list[int]:
        """One action per agent for its observation; one `generate_text` call per model (and per retry round)
        serves every agent whose queue is empty. The same agent may not appear twice."""
        if len(agents) != len(obs_list):
            raise ValueError(f"act_batch: {len(agents)} agents but {len(obs_list)} observations")
        if len({id(a) for a in agents}) != len(agents):
            raise ValueError("act_batch: the same agent appears twice; use one agent per env")
        # Validate every observation before any agent records one, so a bad one leaves all histories intact.
        frames = [agent._frame_from(obs) for agent, obs in zip(agents, obs_list, strict=True)]
        for agent, frame in zip(agents, frames, strict=True):
            agent._frames.append(frame)
        groups: dict[tuple[int, int], list[NavilaAgent]] = {}
        for agent in agents:
            if not agent._queue:
                groups.setdefault((id(agent.model), agent.config.max_new_tokens), []).append(agent)
        for group in groups.values():
            _decide(group)
        return [agent._pop() for agent in agents]

    # ------------------------------------------------------------------ internals

    def _frame_from(self, obs: Mapping[str, Any]) -> Any:
        """This step's RGB frame as a keyed vlm Image (a copy: envs may reuse their observation buffers)."""
        from vlm.media import Image, check_rgb

        if self._uid is None:
            raise RuntimeError("NavilaAgent.act called before reset(episode)")
        if OBS_RGB not in obs:
            raise ValueError(f"NavilaAgent: the observation has no '{OBS_RGB}' key (keys: {sorted(obs)})")
        pixels = check_rgb(np.array(obs[OBS_RGB], copy=True), f"observation '{OBS_RGB}'")  # [H, W, 3] uint8
        return Image(pixels, key=(self._uid, self._t))

    def model_input(self, suffix: str = "") -> ModelInput:
        """The sampled frames and prompt for a decision on the current history (public for inspection)."""
        from vlm.mm_utils import vlnce_frame_sampling

        images = vlnce_frame_sampling(self._frames, num_frames=self.num_frames, rule=self.frame_sampling)
        frames_seen = [self._frame_index(image) for image in images]
        prompt = build_prompt(
            self._instruction, self.conv_mode, self.num_frames, suffix=suffix, progress_cue=self.progress_cue, steps=self._t
        )
        return ModelInput(images=images, prompt=prompt, frames_seen=frames_seen)

    def _frame_index(self, image: Any) -> int:
        key = getattr(image, "key", None)
        if isinstance(key, tuple) and len(key) == 2 and key[0] == self._uid:
            return int(key[1])
        return -1  # a black pad

    def _pop(self) -> int:
        action = self._queue.popleft()
        self._t += 1
        if action == STOP:
            self._drop_features()  # the episode ends here
        return action

    def _drop_features(self) -> None:
        cache = getattr(self.model, "feature_cache", None)
        if cache is not None and self._uid is not None:
            cache.drop(self._uid)

    def _monitor_stops(self, estimate: float | None) -> bool:
        """Whether the monitor's rule stops at this decision (its estimate after this episode's earlier ones)."""
        from vlm.progress_head import monitor_stop_fires

        patience = self.config.monitor_patience
        earlier = [d.progress for d in self._log.decisions[-(patience - 1) :]] if patience > 1 else []
        return monitor_stop_fires([*earlier, estimate], self.monitor_stop, patience)  # type: ignore[arg-type]

    def _record(self, inputs: ModelInput, outcome: _Outcome) -> None:
        """Turn a decision's outcome into queued actions and a log entry."""
        parsed = outcome.parsed
        log = self._log
        log.parse_failures += outcome.failures
        log.retries += int(outcome.retried)
        if parsed.ok and parsed.action is not None:
            action, reason = parsed.action, parsed.reason
        else:
            action = fallback_decision(self.config.fallback_action)
            log.fallbacks += 1
            reason = f"{parsed.reason}; fallback: {self.config.fallback_action}"
        if self.monitor_stop is not None and self._monitor_stops(outcome.progress):
            if action.kind != "stop":
                patience = self.config.monitor_patience
                times = f" ({patience} decisions running)" if patience > 1 else ""
                reason = "; ".join(r for r in (reason, f"{MONITOR_STOP_REASON} {outcome.progress:.3f} >= {self.monitor_stop}{times}: stop") if r)
            action = MidLevelAction("stop", 0)
        low_level = action.to_low_level()
        log.add(
            Decision(
                k=log.next_index,
                t=self._t,  # the latest observation (its frame has key (uid, _t); _pop advances _t)
                frames_seen=inputs.frames_seen,
                raw_text=outcome.raw_text,
                action=action.kind,
                amount=action.amount,
                low_level=low_level,
                parse_ok=parsed.ok,
                retried=outcome.retried,
                reason=reason,
                first_raw_text=outcome.first_raw_text,
                progress=outcome.progress,
            )
        )
        self._queue.extend(low_level)


def _generate(
    agents: Sequence[NavilaAgent], inputs: Sequence[ModelInput], with_progress: bool = False
) -> tuple[list[str], list[float | None]]:
    """One batched `generate_text` call for `agents` (which share one model and max_new_tokens): the answers, and
    the progress monitor's estimates when `with_progress` (else None each)."""
    model = agents[0].model
    samples = [(item.images, item.prompt) for item in inputs]
    start = time.perf_counter()
    estimates: list[float | None] = [None] * len(samples)
    if with_progress:
        texts, estimates = model.generate_text(samples, max_new_tokens=agents[0].config.max_new_tokens, return_progress=True)
    else:
        texts = model.generate_text(samples, max_new_tokens=agents[0].config.max_new_tokens)
    elapsed = time.perf_counter() - start
    texts, estimates = list(texts), list(estimates)
    if len(texts) != len(samples):
        raise RuntimeError(
            f"{type(model).__name__}.generate_text returned {len(texts)} answers for {len(samples)} samples"
        )
    if len(estimates) != len(samples):
        raise RuntimeError(
            f"{type(model).__name__}.generate_text returned {len(estimates)} progress estimates for {len(samples)} samples"
        )
    for agent in agents:
        agent._model_calls += 1
        agent._model_seconds += elapsed / len(agents)
    return texts, estimates


def _decide(agents: list[NavilaAgent]) -> None:
    """Make one decision for each of `agents` (same model, empty queues): a batched call, then one batched retry
    for the answers that did not parse (for agents whose config allows it)."""
    inputs = [agent.model_input() for agent in agents]
    texts, estimates = _generate(agents, inputs, agents[0].has_monitor)
    outcomes = [
        _Outcome(parsed=parse_action(text), raw_text=text, progress=estimate)
        for text, estimate in zip(texts, estimates, strict=True)
    ]
    to_retry = [i for i, o in enumerate(outcomes) if not o.parsed.ok]
    for i in to_retry:
        outcomes[i].failures += 1
    to_retry = [i for i in to_retry if agents[i].config.retry_on_parse_failure]
    if to_retry:
        retry_agents = [agents[i] for i in to_retry]
        retry_inputs = [
            ModelInput(
                inputs[i].images,
                agents[i].model_input(agents[i].config.retry_suffix).prompt,
                inputs[i].frames_seen,
            )
            for i in to_retry
        ]
        retry_texts, _ = _generate(retry_agents, retry_inputs)  # the estimate stays the first call's
        for i, text in zip(to_retry, retry_texts, strict=True):
            first = outcomes[i]
            second = parse_action(text)
            outcomes[i] = _Outcome(
                parsed=second,
                raw_text=text,
                first_raw_text=first.raw_text,
                retried=True,
                failures=first.failures + (0 if second.ok else 1),
                progress=first.progress,
            )
    for agent, item, outcome in zip(agents, inputs, outcomes, strict=True):
        agent._record(item, outcome)


class BatchedNavilaPolicy:
    """N NaVILA agents (one per env) sharing one model; `act` makes one model call for every env that needs a
    decision.

        policy = BatchedNavilaPolicy(model, num_envs=4)
        policy.reset(0, episode)
        actions = policy.act([obs0, obs2], env_indices=[0, 2])
    """

    def __init__(self, model: Any, num_envs: int, config: NavilaAgentConfig | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"BatchedNavilaPolicy: num_envs must be >= 1, got {num_envs}")
        self.agents = [NavilaAgent(model, config) for _ in range(num_envs)]

    def _agent(self, env_index: int) -> NavilaAgent:
        if not 0 <= env_index < len(self.agents):
            raise ValueError(
                f"BatchedNavilaPolicy: env index {env_index} out of range 0..{len(self.agents) - 1}"
            )
        return self.agents[env_index]

    def reset(self, env_index: int, episode: Episode) -> None:
        """Start `episode` in env `env_index`."""
        self._agent(env_index).reset(episode)

    def act(self, obs_list: Sequence[Mapping[str, Any]], env_indices: Sequence[int]) -> list[int]:
        """One action per listed env, for its observation."""
        return NavilaAgent.act_batch([self._agent(i) for i in env_indices], obs_list)

    def episode_stats(self, env_index: int) -> dict[str, Any]:
        return self._agent(env_index).episode_stats()
