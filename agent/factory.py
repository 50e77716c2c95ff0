"""The one place that maps agent names to agents: `make_agent(name, **kwargs)`.

make_agent("navila", model=vlm.load(path))          # kwargs: model, config or NavilaAgentConfig fields
make_agent("random", seed=0)
make_agent("oracle", backend=env.backend)
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from agent.baselines import ForwardOnlyAgent, OracleAgent, RandomAgent, ReplayAgent
from agent.navila import NavilaAgent, NavilaAgentConfig


def _make_navila(model: Any = None, config: NavilaAgentConfig | None = None, **fields: Any) -> NavilaAgent:
    """NavilaAgent(model, config); config fields may also be given directly (num_frames=8, ...)."""
    if model is None:
        raise ValueError("make_agent('navila') needs model= (a loaded vlm model, e.g. vlm.load(path))")
    if config is not None and fields:
        raise ValueError(
            f"make_agent('navila'): give either config= or config fields, not both ({sorted(fields)})"
        )
    if config is None:
        known = {f.name for f in dataclasses.fields(NavilaAgentConfig)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(
                f"make_agent('navila'): unknown option(s) {unknown}; available: model, config, "
                f"{', '.join(sorted(known))}"
            )
        config = NavilaAgentConfig(**fields)
    return NavilaAgent(model, config)


# The explicit mapping: name -> constructor. Add new agents here.
AGENTS: dict[str, Callable[..., Any]] = {
    "navila": _make_navila,
    "random": RandomAgent,
    "forward": ForwardOnlyAgent,
    "oracle": OracleAgent,
    "replay": ReplayAgent,
}


def make_agent(name: str, **kwargs: Any) -> Any:
    """Build agent `name` with `kwargs`; unknown names and options raise a ValueError listing what exists."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent '{name}'; available: {', '.join(AGENTS)}")
    constructor = AGENTS[name]
    if constructor is not _make_navila:
        accepted = [p for p in inspect.signature(constructor).parameters if p != "self"]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(
                f"make_agent('{name}'): unknown option(s) {unknown}; available: {', '.join(accepted)}"
            )
    return constructor(**kwargs)
