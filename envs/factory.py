"""Simulator backends by name: one explicit mapping, no registration side effects.

    sim = make_backend("embedded", width=224, height=224, scenes_root="data/scene_datasets")
    sim = make_backend("habitat", width=512, height=512, scenes_root="data/scene_datasets")

Keyword arguments are the fields of the backend's config dataclass (`EmbeddedSimConfig`, `HabitatSimConfig`)
plus `scenes_root`; a misspelt one is a ValueError that lists the valid names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from envs.backend import SimulatorBackend


def _config_from_kwargs(config_cls: type, backend: str, kwargs: dict[str, Any]):
    names = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise ValueError(f"backend '{backend}': unknown option(s) {unknown}; available: scenes_root, {', '.join(names)}")
    return config_cls(**kwargs)


def _make_embedded(scenes_root=None, **kwargs: Any) -> SimulatorBackend:
    from envs.embedded import EmbeddedSimConfig, EmbeddedSimulator

    return EmbeddedSimulator(_config_from_kwargs(EmbeddedSimConfig, "embedded", kwargs), scenes_root=scenes_root)


def _make_habitat(scenes_root=None, **kwargs: Any) -> SimulatorBackend:
    from envs.habitat_backend import HabitatSimConfig, HabitatSimulator

    return HabitatSimulator(_config_from_kwargs(HabitatSimConfig, "habitat", kwargs), scenes_root=scenes_root)


BACKENDS: dict[str, Callable[..., SimulatorBackend]] = {
    "embedded": _make_embedded,
    "habitat": _make_habitat,
}


def available_backends() -> list[str]:
    """Names `make_backend` accepts (whether their libraries are installed or not)."""
    return list(BACKENDS)


def make_backend(name: str, **kwargs: Any) -> SimulatorBackend:
    """A new simulator backend `name` configured by `kwargs` (see the module docstring)."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend '{name}'; available: {', '.join(BACKENDS)}") from None
    return factory(**kwargs)
