"""Named training datasets and their mixtures (`--data-mixture r2r_gen+rxr_gen`).

A registry is a YAML file mapping a dataset name to where its collected trajectories live, what format they
are in and how often it is sampled, in the spirit of VILA's `data/registry/default.yaml` +
`datasets_mixture.py` but without a global registry filled by import side effects:

    datasets:
      r2r_gen:
        path: "{cache}/train_data/r2r_gen"   # relative paths are relative to this file
        type: trajectories                   # the format written by `navila-agent collect`
        weight: 1.0                          # sampling-weight multiplier (1.0 = its natural share)
        description: R2R-style generated episodes, shortest-path expert

A mixture string is `name[*weight]` items joined by `+`; an item may also be a folder written by
`navila-agent collect` (it has a `manifest.json`), so a freshly collected dataset trains without editing a
registry: `--data-mixture r2r_gen*2+/tmp/my_collect`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_REGISTRY = Path(__file__).parent / "registry" / "default.yaml"
DATASET_TYPES = ("trajectories",)  # formats the training Dataset can read
MANIFEST_NAME = "manifest.json"  # marks a folder written by `navila-agent collect`

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class DatasetEntry:
    name: str  # registry key, e.g. "r2r_gen"
    path: Path  # folder written by `navila-agent collect`
    type: str = "trajectories"  # one of DATASET_TYPES
    weight: float = (
        1.0  # sampling-weight multiplier: each sample is drawn weight× as often as under plain concatenation
    )
    description: str = ""

    def __post_init__(self) -> None:
        if self.type not in DATASET_TYPES:
            raise ValueError(
                f"dataset '{self.name}': unknown type '{self.type}'; available: {', '.join(DATASET_TYPES)}"
            )
        if not self.weight > 0:
            raise ValueError(f"dataset '{self.name}': weight must be > 0, got {self.weight}")


def default_variables() -> dict[str, str]:
    """Placeholder values for registry paths: `{cache}` is the navila-agent cache root.

    Mirrors `envs.paths.cache_dir()` (vlm may not import envs); the CLI passes the real value explicitly.
    """
    cache = os.environ.get("NAVILA_AGENT_CACHE", str(Path.home() / ".cache" / "navila-agent"))
    return {"cache": str(Path(cache).expanduser())}


def _substitute(text: str, variables: dict[str, str], where: str) -> str:
    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in variables:
            raise ValueError(
                f"{where}: unknown placeholder '{{{key}}}'; available: {', '.join(sorted(variables))}"
            )
        return variables[key]

    return _PLACEHOLDER.sub(repl, text)


def load_registry(
    path: str | Path | None = None, variables: dict[str, str] | None = None
) -> dict[str, DatasetEntry]:
    """Read a registry YAML file into `{name: DatasetEntry}`.

    Paths get `{placeholder}` substitution (default: `{cache}`), `~` expansion, and are resolved relative to the
    registry file, so a registry can live next to its data. Errors name the file and the offending entry.
    """
    path = Path(path) if path is not None else DEFAULT_REGISTRY
    if not path.is_file():
        raise ValueError(f"data registry '{path}' does not exist (pass --registry PATH)")
    variables = {**default_variables(), **(variables or {})}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"data registry '{path}' is not valid YAML: {exc}") from None
    datasets = raw.get("datasets") if isinstance(raw, dict) else None
    if not isinstance(datasets, dict):
        raise ValueError(f"data registry '{path}': expected a top-level 'datasets:' mapping")
    entries: dict[str, DatasetEntry] = {}
    for name, spec in datasets.items():
        where = f"data registry '{path}', dataset '{name}'"
        if not isinstance(spec, dict) or "path" not in spec:
            raise ValueError(f"{where}: expected a mapping with at least 'path'")
        unknown = set(spec) - {"path", "type", "weight", "description"}
        if unknown:
            raise ValueError(
                f"{where}: unknown field(s) {sorted(unknown)}; allowed: path, type, weight, description"
            )
        data_path = Path(_substitute(str(spec["path"]), variables, where)).expanduser()
        if not data_path.is_absolute():
            data_path = (path.parent / data_path).resolve()
        try:
            entries[str(name)] = DatasetEntry(
                name=str(name),
                path=data_path,
                type=str(spec.get("type", "trajectories")),
                weight=float(spec.get("weight", 1.0)),
                description=str(spec.get("description", "")),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    return entries


def parse_mixture(mixture: str, registry: dict[str, DatasetEntry]) -> list[DatasetEntry]:
    """Resolve `a+b*2+/path/to/collected` into dataset entries (weights from `*w` override the registry's).

    An item that is not a registry name but a folder containing `manifest.json` becomes an ad-hoc entry named
    after the folder. Unknown names raise a ValueError listing the available ones.
    """
    items = [item.strip() for item in mixture.split("+")]
    if not mixture.strip() or any(not item for item in items):
        raise ValueError(f"--data-mixture '{mixture}': expected names joined by '+', e.g. r2r_gen+rxr_gen")
    out: list[DatasetEntry] = []
    for item in items:
        name, weight = item, None
        if "*" in item:
            name, _, w = item.rpartition("*")
            try:
                weight = float(w)
            except ValueError:
                raise ValueError(f"--data-mixture item '{item}': weight after '*' must be a number") from None
        if name in registry:
            entry = registry[name]
        elif (Path(name).expanduser() / MANIFEST_NAME).is_file():
            folder = Path(name).expanduser().resolve()
            entry = DatasetEntry(name=folder.name, path=folder)
        else:
            raise ValueError(
                f"--data-mixture: unknown dataset '{name}'; available: {', '.join(sorted(registry)) or '(none)'} "
                f"(or a folder written by `navila-agent collect`)"
            )
        if weight is not None:
            entry = DatasetEntry(entry.name, entry.path, entry.type, weight, entry.description)
        out.append(entry)
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise ValueError(
            f"--data-mixture '{mixture}': a dataset appears twice; give it a weight instead (name*2)"
        )
    return out


def describe(entries: list[DatasetEntry]) -> list[dict[str, Any]]:
    """Plain-dict form of a mixture, for logs and the training run's config.json."""
    return [{"name": e.name, "path": str(e.path), "type": e.type, "weight": e.weight} for e in entries]
