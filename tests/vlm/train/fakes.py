"""Small stand-ins for the training tests: a collected dataset on disk and a tiny VILA-shaped model.

The fake model has the three VILA parts (`vision_tower`, `mm_projector`, `llm`), takes the trainer's batch
(`input_ids` with IMAGE_TOKEN_INDEX, `images` [B*N, 3, S, S], `labels`) and returns a real cross-entropy, so the
trainer's freezing, checkpointing and resume are exercised without the real model.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from vlm.constants import IGNORE_INDEX


def write_collected(
    root: Path,
    trajectories: dict[str, list[str]],
    num_frames: int = 8,
    size: int = 8,
    instructions: dict[str, str] | None = None,
    asymmetric: bool = False,
    navila_prompt: bool = False,
    routes: bool = False,
    policy_driven: tuple[str, ...] = (),
) -> Path:
    """A folder in `navila-agent collect`'s format: one shard, `trajectories` = {traj: [answer per decision]}.

    Each trajectory's instruction is `instructions[traj]` (default "Go <traj>."), its prompt's text. Frame t is
    uniformly grey 10 * (t + 1), or with `asymmetric` its left half only (the right half black), so a frame and
    its mirror image differ. With `navila_prompt` the prompt is NaVILA's user turn (`agent.prompt.build_user_prompt`)
    instead of the `<image>` markers followed by the instruction. With `routes` each trajectory record also has
    collect's `steps` (one per answer), `ended_with_stop` and `policy_decisions` (1 for the trajectories in
    `policy_driven`, as a DAgger collection writes, else 0)."""
    shard = root / "shard-00000"
    (shard / "frames").mkdir(parents=True, exist_ok=True)
    samples, trajs = [], []
    for key, answers in trajectories.items():
        frames = np.stack(
            [np.full((size, size, 3), 10 * (t + 1), dtype=np.uint8) for t in range(len(answers))]
        )
        if asymmetric:
            frames[:, :, size // 2 :] = 0
        instruction = (instructions or {}).get(key, f"Go {key}.")
        np.savez_compressed(shard / "frames" / f"{key}.npz", rgb=frames)
        for t, answer in enumerate(answers):
            idx = [-1] * max(0, num_frames - t - 1) + list(range(max(0, t + 1 - num_frames), t + 1))
            samples.append(
                {
                    "id": f"{key}:{t}",
                    "traj": key,
                    "frames_file": f"frames/{key}.npz",
                    "t": t,
                    "frames": idx[-num_frames:],
                    "action": answer.split()[4] if "stop" not in answer else "stop",
                    "instruction": instruction,
                    "conversations": [
                        {"from": "human", "value": _prompt(instruction, num_frames, navila_prompt)},
                        {"from": "gpt", "value": answer},
                    ],
                }
            )
        record: dict = {"traj": key}
        if routes:
            record |= {"steps": len(answers), "ended_with_stop": True, "policy_decisions": int(key in policy_driven)}
        trajs.append(record)
    (shard / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (shard / "trajectories.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trajs))
    (root / "manifest.json").write_text(
        json.dumps({"format": "navila-agent-trajectories/1", "samples": len(samples)})
    )
    return root


def _prompt(instruction: str, num_frames: int, navila: bool) -> str:
    if navila:
        from agent.prompt import build_user_prompt

        return build_user_prompt(instruction, num_frames)
    return "<image>\n" * num_frames + instruction


def tiny_vlm(tokenizer) -> nn.Module:
    """The real VILA-architecture model at its tiny test size (`vlm.tiny_config`), weights from seed 0."""
    import vlm

    torch.manual_seed(0)
    return vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer)), tokenizer)


class TinyLM(nn.Module):
    """Embedding, one `q_proj` (a LoRA target) and a head; reached by attribute so a peft wrapper passes through."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.lm_head = nn.Linear(dim, vocab_size)


class FakeVLM(nn.Module):
    """Pixels → mean colour → projector → one vector added to every text embedding → next-token logits."""

    def __init__(self, vocab_size: int, dim: int = 16) -> None:
        super().__init__()
        self.vision_tower = nn.Linear(3, 8)
        self.mm_projector = nn.Linear(8, dim)
        self.llm = TinyLM(vocab_size, dim)
        self.vocab_size = vocab_size

    def forward(self, input_ids, attention_mask, images, labels):
        batch = input_ids.shape[0]
        colour = images.mean(dim=(2, 3)).view(batch, -1, 3).mean(1)  # [B, 3]
        visual = self.mm_projector(torch.relu(self.vision_tower(colour)))  # [B, D]
        text = self.llm.embed(input_ids.clamp(min=0))  # [B, L, D]; image tokens use id 0
        hidden = torch.tanh(self.llm.q_proj(text + visual[:, None]))
        logits = self.llm.lm_head(hidden)  # [B, L, V]
        loss = nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, self.vocab_size), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
        )
        return SimpleNamespace(loss=loss, logits=logits)

    def save_pretrained(self, folder) -> None:
        folder = Path(folder)
        for part in ("llm", "vision_tower", "mm_projector"):
            (folder / part).mkdir(parents=True, exist_ok=True)
            torch.save(getattr(self, part).state_dict(), folder / part / "weights.pt")
        (folder / "config.json").write_text(json.dumps({"model_type": "fake", "vocab_size": self.vocab_size}))

    @classmethod
    def load(cls, folder) -> FakeVLM:
        folder = Path(folder)
        model = cls(json.loads((folder / "config.json").read_text())["vocab_size"])
        for part in ("llm", "vision_tower", "mm_projector"):
            getattr(model, part).load_state_dict(torch.load(folder / part / "weights.pt"))
        return model
