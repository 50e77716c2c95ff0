"""The progress monitor's head (beyond NaVILA): how far along its route the model thinks it is, in [0, 1].

The auxiliary task of Ma et al. 2019 ("Self-Monitoring Navigation Agent via Auxiliary Progress Estimation") on this
architecture: a linear read-out of the LM's final hidden state at the last prompt position — the state that has read
every frame and the instruction and predicts the answer — squashed to (0, 1). `navila-agent train
--progress-loss-weight W` trains it (mean squared error against t / (steps - 1) of each expert sample,
`vlm.train.dataset.TrajectoryDataset.progress`) beside the answer loss; the agent can read it at every decision
(`LlavaLlamaModel.generate_text(..., return_progress=True)`) and stop when it passes a threshold
(`navila-agent eval --monitor-stop T`).

A model trained with it saves the head beside the VILA parts, which VILA's loaders ignore:

    checkpoint/progress_head/config.json        {"hidden_size": D} (+ "stop_threshold": T, see below)
    checkpoint/progress_head/model.safetensors  proj.weight [1, D], proj.bias [1] (float32)

`stop_threshold` is the threshold the agent uses when none is asked for (`--monitor-stop` absent): a value chosen by
evaluating these very weights (`set_stop_threshold`, e.g. when a model is installed as the shipped one). Training
never writes one: a fine-tune changes the LM under the head, so an old threshold would no longer be validated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

PROGRESS_HEAD_FOLDER = "progress_head"


class ProgressHead(nn.Module):
    """hidden [B, D] → progress estimates [B] in (0, 1); see the module docstring."""

    def __init__(self, hidden_size: int, stop_threshold: float | None = None) -> None:
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"ProgressHead: hidden_size must be >= 1, got {hidden_size}")
        self.proj = nn.Linear(hidden_size, 1)
        self.stop_threshold = check_stop_threshold(stop_threshold)  # the agent's default (module docstring)

    @property
    def hidden_size(self) -> int:
        return int(self.proj.in_features)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.proj(hidden.to(self.proj.weight.dtype)).float()).squeeze(-1)


def check_stop_threshold(value: float | None) -> float | None:
    """`value` when it is None or in (0, 1]; ValueError otherwise."""
    if value is not None and not 0.0 < float(value) <= 1.0:
        raise ValueError(f"a progress monitor's stop_threshold must be in (0, 1], got {value}")
    return None if value is None else float(value)


def monitor_stop_fires(estimates: Sequence[float | None], threshold: float, patience: int = 1) -> bool:
    """The monitor's stop rule at the latest decision: its estimate and the `patience` - 1 before it (the
    episode's estimates in decision order, the latest last) all at least `threshold`.

    The agent applies it at every decision (`--monitor-stop`, `--monitor-patience`), and
    `benchmarks.stop_rule_sweep` replays it on recorded decisions; one definition keeps the two the same."""
    if patience < 1:
        raise ValueError(f"the monitor's stop patience must be >= 1, got {patience}")
    recent = estimates[-patience:]
    return len(recent) == patience and all(e is not None and e >= threshold for e in recent)


def model_monitor_stop(model: object) -> float | None:
    """The stop threshold a model's progress monitor comes with (None without a monitor or threshold)."""
    head = getattr(model, "progress_head", None)
    return getattr(head, "stop_threshold", None) if head is not None else None


def monitor_stop_in_force(model: object, asked: float | None, who: str) -> float | None:
    """The threshold a model's driver stops at: `asked` when given (0 = never), else the one the monitor comes with;
    None = never. ValueError naming `who` (e.g. "--monitor-stop") when a threshold is asked of a model without a
    monitor. The agent and the DAgger collector's policy both decide so."""
    if asked and getattr(model, "progress_head", None) is None:
        raise ValueError(f"{who} needs a model with a progress monitor (progress_head/: train it with --progress-loss-weight)")
    return (asked if asked is not None else model_monitor_stop(model)) or None


def last_prompt_positions(labels: torch.Tensor) -> torch.Tensor:
    """labels [B, L] (IGNORE_INDEX over the prompt, right padded) → [B] index of each row's last prompt position,
    the one whose output predicts the first answer token. ValueError for a row without an answer or prompt."""
    from vlm.constants import IGNORE_INDEX

    answer = labels != IGNORE_INDEX
    if not bool(answer.any(dim=1).all()):
        raise ValueError("the progress monitor needs an answer in every sample (a row has no label)")
    first = answer.float().argmax(dim=1)  # first answer position
    if bool((first == 0).any()):
        raise ValueError("the progress monitor needs a prompt before every answer")
    return first - 1


def prompt_end(hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """hidden [B, L, D] over a right-padded labelled batch → [B, D], each row's state at its last prompt position:
    what the head reads in training (`vlm.train.losses`) and in scoring (`vlm.train.action_eval`)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_prompt_positions(labels).to(hidden.device)]


def has_progress_head(folder: Path) -> bool:
    """Whether the checkpoint `folder` has a progress monitor (`progress_head/`)."""
    return (Path(folder) / PROGRESS_HEAD_FOLDER).is_dir()


def save_progress_head(head: ProgressHead, folder: Path) -> None:
    """Write `head` to `folder/progress_head/` (float32)."""
    from safetensors.torch import save_file

    out = Path(folder) / PROGRESS_HEAD_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    config: dict[str, float | int] = {"hidden_size": head.hidden_size}
    if getattr(head, "stop_threshold", None) is not None:
        config["stop_threshold"] = head.stop_threshold  # type: ignore[assignment]
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().float().contiguous().cpu() for k, v in head.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))


def load_progress_head(folder: Path, hidden_size: int) -> ProgressHead | None:
    """The head saved in `folder/progress_head/`, or None when the checkpoint has none. ValueError when it does not
    fit a language model of width `hidden_size` or its files are incomplete."""
    from safetensors.torch import load_file

    if not has_progress_head(folder):
        return None
    root = Path(folder) / PROGRESS_HEAD_FOLDER
    config, weights = root / "config.json", root / "model.safetensors"
    for path in (config, weights):
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {folder} has a {PROGRESS_HEAD_FOLDER}/ folder without {path.name}")
    settings = json.loads(config.read_text())
    saved = int(settings.get("hidden_size", -1))
    if saved != hidden_size:
        raise ValueError(f"{config}: hidden_size {saved} does not fit the language model's {hidden_size}")
    try:
        head = ProgressHead(hidden_size, settings.get("stop_threshold"))
    except ValueError as e:
        raise ValueError(f"{config}: {e}") from None
    head.load_state_dict(load_file(str(weights)))
    return head


def set_stop_threshold(folder: Path, threshold: float | None) -> None:
    """Write (or with None remove) the stop threshold of the checkpoint `folder`'s progress monitor; ValueError when
    the checkpoint has none or the value is outside (0, 1]."""
    config = Path(folder) / PROGRESS_HEAD_FOLDER / "config.json"
    if not config.is_file():
        raise ValueError(f"{folder} has no progress monitor ({PROGRESS_HEAD_FOLDER}/config.json)")
    settings = json.loads(config.read_text())
    settings.pop("stop_threshold", None)
    if check_stop_threshold(threshold) is not None:
        settings["stop_threshold"] = float(threshold)  # type: ignore[arg-type]
    tmp = config.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(settings, indent=2) + "\n")
    tmp.replace(config)
