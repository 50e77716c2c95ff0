"""Embedded VLN-CE simulator, generated houses, episode datasets and the Gymnasium env.

Importing `envs` registers the Gymnasium id "navila/VLNCE-v0" (entry point `envs.env:VLNCEEnv`) and nothing
else: the names below are imported on first access, so `import envs.constants` stays cheap.

    import gymnasium, envs
    env = gymnasium.make("navila/VLNCE-v0", split="r2r_val_unseen")
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium

ENV_ID = "navila/VLNCE-v0"

if ENV_ID not in gymnasium.registry:
    # The env enforces its own step limit (max_steps, reported as `truncated`), so no TimeLimit wrapper.
    gymnasium.register(id=ENV_ID, entry_point="envs.env:VLNCEEnv", disable_env_checker=False)

_EXPORTS = {
    "VLNCEEnv": "envs.env",
    "EmbeddedSimulator": "envs.embedded",
    "EmbeddedSimConfig": "envs.embedded",
    "HabitatSimulator": "envs.habitat_backend",
    "HabitatSimConfig": "envs.habitat_backend",
    "make_backend": "envs.factory",
    "available_backends": "envs.factory",
    "NavGrid": "envs.navigation",
    "NavGridConfig": "envs.navigation",
    "ShortestPathFollower": "envs.follower",
    "SimulatorBackend": "envs.backend",
}

__all__ = ["ENV_ID", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'envs' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
