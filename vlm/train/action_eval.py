"""Per-action accuracy of a model on held-out samples: is it reading the images or predicting a constant action?

The loss alone hides the failure this project's first attempt hit (a model that learns the answer sentence and
always says "move forward"): a model that predicts the majority action still gets a low loss on the
sentence. Here each held-out sample's answer is predicted teacher-forced (the argmax at every answer position,
given the true prefix, one forward pass per batch), parsed into an action, and compared with the label:

- `kind_acc`: the action kind (forward / left / right / stop) is right;
- `exact_acc`: kind and amount are right ("turn left 30 degrees");
- `per_kind`: recall of each kind, and `confusion[true][predicted]` counts (predicted "?" = unparseable);
- `predicted_share`: how often each kind is predicted (a constant-action model shows one kind near 1.0).

`mode="generate"` scores what the agent would actually answer instead: greedy generation from the prompt alone
(no true prefix), stopped at the model's stop tokens. Teacher forcing is one forward pass and shows the token
prior; generation is the agent's behaviour (a teacher-forced "?" — "turn" predicted where "move" was the label,
then a mixed-up continuation — is a plain "turn" here).

Works from cached tower features (`CachedFeatureDataset`) or from frames (the model's own tower).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from vlm.constants import IGNORE_INDEX

KINDS = ("forward", "left", "right", "stop")
_PARSE = re.compile(r"(move forward|turn left|turn right|stop)(?:\s+(\d+))?", re.IGNORECASE)


def parse_action(text: str) -> tuple[str, int | None]:
    """'The next action is turn left 30 degrees.' → ('left', 30); ('?', None) when no action is found."""
    m = _PARSE.search(text)
    if m is None:
        return "?", None
    kind = m.group(1).lower().split()[-1]
    return kind, int(m.group(2)) if m.group(2) else None


def on_device_with_features(
    model: Any, batch: dict[str, torch.Tensor], from_features: bool
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """The batch on the model's device and its projected image features (N x [T', D]): from cached tower
    features through the projector, or from pixels through the whole vision path."""
    device = next(model.llm.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    if from_features:
        dtype = next(model.mm_projector.parameters()).dtype
        return batch, list(model.mm_projector(batch["images"].to(dtype)))
    return batch, list(model.encode_images(batch["images"]))


def spliced_forward(model: Any, batch: dict[str, torch.Tensor], from_features: bool) -> tuple[Any, Any]:
    """The LM over a collated (right-padded, labelled) batch with its image features spliced in: (the LM's output,
    the spliced inputs whose `labels` align with it)."""
    from vlm.splice import splice_image_features, unpad

    batch, features = on_device_with_features(model, batch, from_features)
    spliced = splice_image_features(
        unpad(batch["input_ids"], batch["attention_mask"]),
        features,
        model.get_input_embeddings(),
        unpad(batch["labels"], batch["attention_mask"]),
        padding_side="right",
    )
    out = model.llm(
        inputs_embeds=spliced.inputs_embeds,
        attention_mask=spliced.attention_mask,
        position_ids=spliced.position_ids,
    )
    return out, spliced


def _encoded(items: Sequence[dict[str, Any]], encoder: Any) -> dict[str, torch.Tensor]:
    """One batch of dataset items (frames or cached `features`), collated and normalised as in training."""
    batch = encoder.collate(list(items))
    batch.pop("label_weights")
    batch["images"] = encoder.normalize(batch["images"])
    return batch


@torch.no_grad()
def prompt_end_states(model: Any, items: Sequence[dict[str, Any]], encoder: Any) -> torch.Tensor:
    """The LM's final hidden state at each item's last prompt position [B, D] (one batch): what the progress monitor
    reads (`vlm.progress_head`), in training and in `generate_text(..., return_progress=True)` alike."""
    from vlm.language_model import final_hidden_states
    from vlm.progress_head import prompt_end

    with final_hidden_states(model.llm) as final:
        _, spliced = spliced_forward(model, _encoded(items, encoder), "features" in items[0])
    return prompt_end(final[-1], spliced.labels)


@torch.no_grad()
def teacher_forced_answers(model: Any, batch: dict[str, torch.Tensor], from_features: bool) -> list[str]:
    """The argmax token at every answer position (given the true prefix), decoded, one string per sample."""
    out, spliced = spliced_forward(model, batch, from_features)
    logits = out.logits  # [B, L, V]
    predicted = logits[:, :-1].argmax(-1)  # [B, L-1]: the prediction for position t + 1
    targets = spliced.labels[:, 1:]  # [B, L-1]
    out = []
    for b in range(predicted.shape[0]):
        answer = targets[b] != IGNORE_INDEX
        out.append(model.tokenizer.decode(predicted[b][answer].tolist(), skip_special_tokens=True))
    return out


@torch.no_grad()
def generated_answers(
    model: Any, batch: dict[str, torch.Tensor], from_features: bool, max_new_tokens: int = 32
) -> list[str]:
    """Greedy answers from each sample's prompt (the tokens before its answer), left-padded, one string per sample."""
    from vlm.generation import greedy_generate
    from vlm.splice import splice_image_features, unpad

    batch, features = on_device_with_features(model, batch, from_features)
    prompts = []
    for ids, labels in zip(
        unpad(batch["input_ids"], batch["attention_mask"]),
        unpad(batch["labels"], batch["attention_mask"]),
        strict=True,
    ):
        answer = (labels != IGNORE_INDEX).nonzero()
        prompts.append(ids[: int(answer[0])] if len(answer) else ids)
    inputs = splice_image_features(prompts, features, model.get_input_embeddings(), None, padding_side="left")
    tok = model.tokenizer
    stops = list(model.stop_token_ids()) if hasattr(model, "stop_token_ids") else [tok.eos_token_id]
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    tokens = greedy_generate(model.llm, inputs, max_new_tokens, stops, pad)
    return [tok.decode(t, skip_special_tokens=True).strip() for t in tokens]


MODES = ("teacher_forced", "generate")


def answer_items(
    model: Any, items: Sequence[dict[str, Any]], encoder: Any, mode: str = "generate"
) -> list[str]:
    """The model's answer to each dataset item (one batch), one string per item: greedy generation from the prompt
    (`mode="generate"`, what the agent would say) or teacher-forced argmaxes. Items carry frames or cached
    `features`; the batch is encoded, moved and normalised as in training."""
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}'; available: {', '.join(MODES)}")
    answers_of = teacher_forced_answers if mode == "teacher_forced" else generated_answers
    return answers_of(model, _encoded(items, encoder), "features" in items[0])


def action_accuracy(
    model: Any,
    dataset: Any,
    encoder: Any,
    indices: Sequence[int] | None = None,
    batch_size: int = 16,
    mode: str = "teacher_forced",
) -> dict[str, Any]:
    """Kind / exact accuracy, per-kind recall, confusion and predicted shares over `indices` of `dataset`, and the
    predicted kind of each sample in `indices` order (`predicted`; '?' where the answer names none).

    mode: "teacher_forced" (argmax at every answer position given the true prefix; one forward pass) or
    "generate" (greedy answers from the prompt alone, at most 32 tokens like the agent: its behaviour). Teacher
    forcing is the lenient one: the true prefix can carry a half-right answer to a parseable string."""
    if mode not in MODES:
        raise ValueError(f"action_accuracy: unknown mode '{mode}'; available: {', '.join(MODES)}")
    indices = list(range(len(dataset))) if indices is None else list(indices)
    if not indices:
        raise ValueError("action_accuracy: no samples to score")
    was_training = model.training
    model.eval()
    confusion: dict[str, Counter] = {k: Counter() for k in KINDS}
    exact = kind_ok = 0
    kinds: list[str] = []
    try:
        for start in range(0, len(indices), batch_size):
            items = [dataset[i] for i in indices[start : start + batch_size]]
            for item, text in zip(items, answer_items(model, items, encoder, mode), strict=True):
                true_kind, true_amount = parse_action(item["answer"])
                kind, amount = parse_action(text)
                kinds.append(kind)
                confusion.setdefault(true_kind, Counter())[kind] += 1
                kind_ok += kind == true_kind
                exact += kind == true_kind and amount == true_amount
    finally:
        model.train(was_training)
    n = len(indices)
    predicted = Counter()
    for row in confusion.values():
        predicted.update(row)
    return {
        "mode": mode,
        "samples": n,
        "kind_acc": kind_ok / n,
        "exact_acc": exact / n,
        "per_kind": {k: (row[k] / sum(row.values())) for k, row in confusion.items() if sum(row.values())},
        "predicted_share": {k: predicted[k] / n for k in sorted(predicted)},
        "confusion": {k: dict(row) for k, row in confusion.items() if row},
        "predicted": kinds,
    }


def format_confusion(result: dict[str, Any]) -> str:
    """A small text table of `action_accuracy`'s confusion (rows: true kind, columns: predicted kind)."""
    cols = [*KINDS, "?"]
    lines = [f"{'true/pred':>10} " + " ".join(f"{c:>8}" for c in cols) + "   recall"]
    for kind, row in result["confusion"].items():
        cells = " ".join(f"{row.get(c, 0):>8}" for c in cols)
        lines.append(f"{kind:>10} {cells}   {result['per_kind'].get(kind, 0):.2f}")
    lines.append(
        f"kind acc {result['kind_acc']:.3f}  exact acc {result['exact_acc']:.3f}  (n={result['samples']}"
        f"{', ' + result['mode'].replace('_', '-') if 'mode' in result else ''})"
    )
    return "\n".join(lines)
