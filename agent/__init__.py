"""Agents: the NaVILA agent, its prompt and parser, and baselines.

Import what you need from the submodules (`agent.navila`, `agent.actions`, ...); `make_agent` is re-exported
because it is the usual entry point. Nothing heavy is imported here (torch only loads with a model).
"""

from agent.factory import AGENTS, make_agent

__all__ = ["AGENTS", "make_agent"]
