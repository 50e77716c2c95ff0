"""Stage 0: fine-tune the top of the vision tower on scene facts before the navigator trains on its features.

An ImageNet tower keeps what tells ImageNet classes apart, not what a navigation instruction names. In the
generated houses, `benchmarks/probe_tower.py` showed this for the shipped EfficientNet-Lite0: a linear probe read
the room's name in an unseen house at 0.27 (the majority guess is 0.23), and its paint colour worse than an 8 × 8
thumbnail does. This stage trains the last `tune_blocks` blocks and the head of the tower, through one linear
classifier per task on the mean of the tower's tokens, to name scene facts of the current frame: the room it is in,
the nearest object in view. The facts come from scene-QA samples (`navila-agent collect --scene-qa-every K`). The
heads are dropped afterwards; the result is the input checkpoint with the new tower, and its projector and LM
unchanged. Train the navigator on it next (`navila-agent train --model OUTPUT`).

Only the tuned top of the tower runs in the training loop. The frozen stem and lower blocks run once per frame, and
their activations are kept in memory as fp16 (about 44 KB per 224-px frame when the last 5 blocks are tuned). This
makes the stage a CPU job: session 11 ran 8,000 frames for 6 epochs in about 25 minutes on 2 cores. BatchNorm keeps
its running statistics (`EfficientNetLite0.train`).

The dense task `depth` teaches geometry instead of names: a linear head on every token predicts the log depth of
its cell of the frame (the env's depth, stored by `collect --depth-size S` and averaged onto the tower's 7 × 7
grid), with an L1 loss. Its "accuracy" is the share of cells whose predicted depth is within a factor 1.25 of the
truth (δ1, the usual monocular-depth score). Why: the navigator's failures are about where it can go (session 17:
the first turn has the right sign but the wrong size), and sessions 13–14 found that free distance does not decode
from the tower's features, even with a clearance head; the clearance label is one ray, depth is dense.

`augment` (`train-tower --augment pixel_noise,jpeg`) teaches the tower to ignore changes nobody can see. Session 33
found the shipped navigator's answers flipping on 10-18 % of its decisions under +-1/255 pixel noise or JPEG q90,
and traced it to the tower: its tokens move by 47 % of their size under the noise, more than a step of walking
moves them, and the ImageNet tower it started from moves by 102 %, so the frozen lower blocks amplify it. Each
perturbation is applied to the frames before the frozen part, whose output is cached once per kind (memory grows
by one copy per kind), so the tuned top learns to undo what the lower blocks make of it. Every training frame is
shown clean and perturbed (a random kind per frame) in one pass; the task loss is on the clean tokens, and the
squared relative change of the perturbed tokens (`relative_change`, against the clean ones, which get no gradient
from it) is added with weight `consistency_weight`. Each epoch logs that change per kind on held-out frames.
The default weight is 0.1: at 1.0 (session 34) the navigator trained on the tower kept its answers under the
perturbations but stopped walking (val_unseen SR 3.5 %); at 0.1 (sessions 35-36) depth is learnt better (held-out
delta1 0.935 against 0.921), most of the invariance stays, and the navigator walks (val_unseen SR 10.5 %, 12.0 under
+-1 noise), though still behind the same recipe on the unaugmented tower (both splits pooled: p = 0.016).

What the change is relative to matters: dividing by the clean tokens' norm rewards a tower for growing a part
common to all frames. Session 34's augmented tower did: its tokens moved 5.5 % under the noise, but also only 7.5 %
for a step of walking (31 % before). So each epoch also logs the change relative to the frame's tokens minus the
held-out batch's mean token map (`held_out_change_centred`), which a common part does not shrink. (Dividing by that
in the loss was tried on the toy test: the change against the spread grew, 0.034 → 0.080; the spread can shrink.)

The dense tasks `objects` and `object_colours` teach names where they are: a linear classifier on every token names
the object its cell shows ("sink", or "none" for walls, floors and doors), or that object's colour ("white"), from
the object maps `collect --object-size S` stores (`label_grid` onto the token grid: an object names a cell when it
covers at least `OBJECT_CELL_SHARE` of it). Why: the probes of sessions 11-18 read the nearest object's name in an
unseen house no better than the majority guess from any tower (depth tower 0.427, majority 0.447), and the goals
and landmarks of the instructions are objects ("stand near the white sink"); a global label per frame did not
teach it (sessions 11-13, 19), a dense target taught geometry (session 18). Their score is the mean over classes of
the share of each class's cells named right (balanced accuracy: "none" covers ~80 % of the cells); the share of all
cells is logged as `held_out_cell_acc`.

Examples marked `held_out` (the CLI holds out whole houses) are never trained on. After every epoch they are
scored: per-task accuracy of the heads on houses the tower never saw. A label that only held-out houses have
counts as an error. Progress is saved after every epoch in OUTPUT/tower_facts/, so rerunning the same command
continues from the last finished epoch. The final checkpoint is written last, with its config.json last of all.

Held-out accuracy usually peaks before the last epoch (session 13: room 0.315 at epoch 2, 0.295 at epoch 6), so the
tower of the best epoch so far (the highest mean held-out accuracy over the tasks) is kept beside the state, in
OUTPUT/tower_facts/best.pt. `keep="best"` writes that tower into the final checkpoint instead of the last one.

Only EfficientNet-Lite0 towers (the embedded model) can be split this way. A SigLIP/CLIP tower gets an error
naming the alternative: LLaVA stage 1 (`navila-agent train --stage1`), which trains tower and projector on the
navigation loss.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vlm.train.dataset import OBJECT_CELL_SHARE, depth_grid, label_grid

STATE_FOLDER = "tower_facts"  # OUTPUT/tower_facts/{state.pt, best.pt, log.jsonl, summary.json}
DEPTH = "depth"  # the dense task: log depth per token cell, from `collect --depth-size S` (no classes)
# The depth head's learning rate is head_lr × this. It sums 1280 features per cell; at the classifiers' rate AdamW's
# per-weight steps move its output by more than the whole depth range (the test's held-out δ1 swung 0.3–0.8 between
# epochs at ×1, and rose steadily to 1.0 at ×0.1).
DEPTH_LR_SCALE = 0.1
# Dense classification tasks: a class per token cell, from the stored object maps (`collect --object-size S`); the
# value names which of the objects' name arrays the class is read from.
OBJECT_MAPS = {"objects": "categories", "object_colours": "colours"}
NO_OBJECT = "none"  # the class of a cell that shows no object
DEPTH_DELTA = 1.25  # a cell counts as right when prediction and truth differ by less than this factor (δ1)
KEEP = ("last", "best")  # which epoch's tower the checkpoint gets (TowerFactsConfig.keep)


@dataclass(frozen=True)
class FactExample:
    """One labelled frame: the current frame of sample `sample` of a TrajectoryDataset, and one fact about it."""

    sample: int  # index into TrajectoryDataset.samples; its last frame index is the current view
    task: str  # what the label is about: "room", "object", ..., DEPTH or an OBJECT_MAPS task (stored maps)
    label: str  # the fact: "pink bedroom", "red sofa", "none"; "" for the dense tasks
    held_out: bool = False  # scored after every epoch, never trained on


@dataclass
class TowerFactsConfig:
    """Settings of the stage (saved with its state; a resume checks that they did not change)."""

    output_dir: str
    tune_blocks: int = 5  # the last N MBConv blocks of the tower, plus its head convolution, are trained
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-4  # the tower's learning rate (AdamW)
    head_lr: float = 1e-3  # the task heads' learning rate
    weight_decay: float = 1e-2
    seed: int = 0
    keep: str = "last"  # which epoch's tower the checkpoint gets: "last", or "best" (held-out mean accuracy)
    # Perturbations (vlm.media.PERTURBATIONS) the tower learns to ignore: each training frame is also shown
    # perturbed, and its tokens are pulled toward the clean frame's (a consistency loss of this weight).
    augment: tuple[str, ...] = ()
    consistency_weight: float = 0.1


@dataclass
class TowerFactsResult:
    """What the stage did: per-epoch training and held-out accuracy per task, and its time."""

    epochs: list[dict[str, Any]]
    classes: dict[str, list[str]]
    train_examples: int
    held_out_examples: int
    resumed_from: int  # epochs already finished when this invocation started
    seconds: float
    kept_epoch: int = 0  # the epoch whose tower the checkpoint holds


def _tower_net(model: Any) -> Any:
    from vlm.efficientnet import EfficientNetLite0

    net = model.vision_tower.encoder
    if not isinstance(net, EfficientNetLite0):
        raise ValueError(
            f"tower fine-tuning on scene facts splits EfficientNet-Lite0 towers (the embedded model); this "
            f"checkpoint's tower is '{model.vision_tower.kind}'. Use `navila-agent train --stage1` instead."
        )
    return net


def check_tune_blocks(model: Any, tune_blocks: int) -> int:
    """The index of the first tuned block; a clear error when `tune_blocks` is out of range for this tower."""
    blocks = len(_tower_net(model)._blocks)
    if not 0 <= tune_blocks <= blocks:
        raise ValueError(
            f"--tune-blocks must be between 0 and {blocks} (this tower's blocks), got {tune_blocks}"
        )
    return blocks - tune_blocks


def frozen_activations(
    model: Any,
    encoder: Any,
    data: Any,
    examples: Sequence[FactExample],
    first_block: int,
    progress: bool = True,
    perturb: str | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """The frozen part's output for every example's current frame, fp16 [N, C, H, W]; each trajectory file is
    opened once, only the frames that examples use are decoded, and a frame that several examples share (one per
    dense task) is encoded once. `perturb`: a vlm.media perturbation applied to the frames first (its draw seeded
    by `seed` and the group), so the frozen lower blocks see it too."""
    from vlm.media import perturb_frames

    net = _tower_net(model)
    samples = sorted({example.sample for example in examples})
    out: list[torch.Tensor | None] = [None] * len(samples)
    groups: Any = data.current_frames(samples)
    if progress:
        from rich.progress import track

        total = len({data.frame_source(i) for i in samples})
        what = f"frozen tower part ({perturb})" if perturb else "frozen tower part"
        groups = track(groups, total=total, description=what, transient=True)
    net.eval()
    with torch.no_grad():
        for positions, frames in groups:
            if perturb is not None:
                frames = perturb_frames(frames, perturb, seed=seed * 1_000_003 + positions[0])
            x = encoder.normalize(encoder.pixels(frames)).float()
            acts = net.forward_until(x, first_block).to(torch.float16)
            for n, a in zip(positions, acts, strict=True):
                out[n] = a
    row = {sample: n for n, sample in enumerate(samples)}
    return torch.stack(out)[[row[example.sample] for example in examples]]  # type: ignore[arg-type]


def depth_targets(data: Any, examples: Sequence[FactExample], cells: int) -> torch.Tensor:
    """Log depth [N, cells] per example on the tower's g × g token grid (row-major, as the tokens): the stored
    depth (`collect --depth-size S`) averaged into g × g cells over its pixels that hit something. NaN where a
    cell has none, and for every example of another task."""
    side = math.isqrt(cells)
    out = torch.full((len(examples), cells), float("nan"))
    rows = [n for n, e in enumerate(examples) if e.task == DEPTH]
    for positions, depth in data.current_depths([examples[n].sample for n in rows]):
        mean = torch.from_numpy(depth_grid(depth, side)).flatten(1)  # [n, g*g] metres, 0 = nothing hit
        out[[rows[p] for p in positions]] = torch.where(mean > 0, mean.log(), torch.nan)
    return out


def object_cell_names(
    data: Any, examples: Sequence[FactExample], cells: int, tasks: Sequence[str]
) -> dict[str, list[list[str] | None]]:
    """Per OBJECT_MAPS task in `tasks` and per example of that task, the name of each of the g × g token cells
    (row-major, as the tokens): the category or colour of the object that covers the most of the cell, if it covers
    at least OBJECT_CELL_SHARE of it, else NO_OBJECT. None for examples of other tasks.

    The examples of all the tasks are read in one pass, so a frame that several dense tasks share is loaded once."""
    side = math.isqrt(cells)
    out: dict[str, list[list[str] | None]] = {t: [None] * len(examples) for t in tasks}
    rows = [n for n, e in enumerate(examples) if e.task in out]
    for positions, ids, categories, colours in data.current_objects([examples[n].sample for n in rows]):
        grid = label_grid(ids, side, OBJECT_CELL_SHARE).reshape(len(positions), cells).tolist()  # [n, g*g]
        names = {"categories": [NO_OBJECT, *categories], "colours": [NO_OBJECT, *colours]}
        for p, cell_ids in zip(positions, grid, strict=True):
            task = examples[rows[p]].task
            out[task][rows[p]] = [names[OBJECT_MAPS[task]][i] for i in cell_ids]
    return out


def relative_change(moved: torch.Tensor, clean: torch.Tensor, centred: bool = False) -> torch.Tensor:
    """Per frame: how far its tokens moved, relative to their size: ||moved - clean|| / ||clean|| over all of a
    frame's tokens ([B, T, D] each -> [B]). 0.47 is the shipped tower under +-1 pixel noise (session 33).

    centred: relative to ||clean - the batch's mean token map|| instead (1.19 for the shipped tower), which a part
    common to all frames does not shrink; a batch of one frame has no spread, so it falls back to the plain norm."""
    reference = clean - clean.mean(0, keepdim=True) if centred and len(clean) > 1 else clean
    return (moved - clean).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1).clamp_min(1e-6)


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> int:
    return int((logits.argmax(1) == y).sum())


def held_out_score(record: dict[str, Any]) -> float | None:
    """An epoch's mean held-out accuracy over its tasks (what `keep="best"` maximises); None without held-out."""
    accs = list(record.get("held_out_acc", {}).values())
    return sum(accs) / len(accs) if accs else None


def train_tower_facts(
    model: Any,
    encoder: Any,
    data: Any,
    examples: Sequence[FactExample],
    config: TowerFactsConfig,
    console: Any = None,
) -> TowerFactsResult:
    """Fine-tune the top of `model`'s tower on `examples` and write `model` with that tower to config.output_dir.

    data: the TrajectoryDataset the examples index. Resumes from OUTPUT/tower_facts/state.pt when it exists."""
    t_start = time.perf_counter()
    output = Path(config.output_dir)
    state_dir = output / STATE_FOLDER
    first_block = check_tune_blocks(model, config.tune_blocks)
    if config.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {config.epochs}")
    if config.keep not in KEEP:
        raise ValueError(f"--keep must be 'last' or 'best', got '{config.keep}'")
    from vlm.media import PERTURBATIONS

    unknown = [k for k in config.augment if k not in PERTURBATIONS]
    if unknown or len(set(config.augment)) != len(config.augment):
        raise ValueError(
            f"--augment: {', '.join(unknown) or 'a perturbation named twice'}; available: {', '.join(PERTURBATIONS)}"
        )
    if config.consistency_weight < 0:
        raise ValueError(f"--consistency-weight must be >= 0, got {config.consistency_weight}")
    train_rows = [i for i, e in enumerate(examples) if not e.held_out]
    test_rows = [i for i, e in enumerate(examples) if e.held_out]
    if not train_rows:
        raise ValueError("no training examples: every example is held out")
    if config.keep == "best" and not test_rows:
        raise ValueError("--keep best needs held-out houses to score the epochs (--holdout > 0)")
    tasks = sorted({examples[i].task for i in train_rows})
    dense_classes = [t for t in tasks if t in OBJECT_MAPS]
    net = _tower_net(model)
    cells = 0
    if DEPTH in tasks or dense_classes:  # the token grid's size, from one frame through the whole tower
        net.eval()
        with torch.no_grad():
            probe = frozen_activations(model, encoder, data, examples[:1], 0, progress=False)
            cells = net.forward_from(probe.float(), 0).shape[1]
    cell_names = object_cell_names(data, examples, cells, dense_classes)
    classes = {
        t: sorted({examples[i].label for i in train_rows if examples[i].task == t})
        for t in tasks if t != DEPTH and t not in OBJECT_MAPS
    }  # fmt: skip
    for t in dense_classes:
        classes[t] = sorted({name for i in train_rows if cell_names[t][i] for name in cell_names[t][i]})
    for task, names in classes.items():
        if len(names) < 2:
            raise ValueError(
                f"task '{task}' has one class ({names[0]}) in the training examples: nothing to learn"
            )
    task_id = torch.tensor([tasks.index(e.task) if e.task in tasks else -1 for e in examples])
    index = {t: {c: k for k, c in enumerate(names)} for t, names in classes.items()}
    y = torch.tensor([index.get(e.task, {}).get(e.label, -1) for e in examples])  # -1: unseen in training
    # [N, cells] class per token cell for each dense classification task (-1: another task, or a class unseen in
    # training)
    y_cells = {
        t: torch.tensor([[index[t].get(n, -1) for n in names] if names else [-1] * cells for names in cell_names[t]])
        for t in dense_classes
    }  # fmt: skip

    tuned = [p for block in net._blocks[first_block:] for p in block.parameters()]
    tuned += list(net._conv_head.parameters())
    for p in net.parameters():
        p.requires_grad_(False)
    for p in tuned:
        p.requires_grad_(True)
    torch.manual_seed(config.seed)
    heads = torch.nn.ModuleDict(
        {t: torch.nn.Linear(net._conv_head.out_channels, len(c)) for t, c in classes.items()}
    )
    if DEPTH in tasks:  # one log-depth per token cell, from that token
        heads[DEPTH] = torch.nn.Linear(net._conv_head.out_channels, 1)
    # (the dense classification tasks' heads are in `heads` already: one classifier, applied to every token)
    groups = [{"params": tuned, "lr": config.lr}]  # the groups of a run without depth are as they always were,
    if classes:  # so its saved optimizer state still resumes
        groups.append({"params": [p for t in classes for p in heads[t].parameters()], "lr": config.head_lr})
    if DEPTH in tasks:
        groups.append({"params": list(heads[DEPTH].parameters()), "lr": config.head_lr * DEPTH_LR_SCALE})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    fixed = {k: v for k, v in asdict(config).items()
             if k not in ("output_dir", "epochs", "keep", "augment", "consistency_weight")}  # fmt: skip
    fingerprint: dict[str, Any] = {"config": fixed, "classes": classes, "examples": len(examples)}
    if DEPTH in tasks or dense_classes:  # only then: older states (without the key) still resume
        fingerprint["dense"] = [t for t in tasks if t == DEPTH or t in OBJECT_MAPS]
    if config.augment:  # the same: a state from before --augment still resumes
        fingerprint["augment"] = [list(config.augment), config.consistency_weight]
    done_epochs, history = 0, []
    state_path = state_dir / "state.pt"
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)  # plain data: no pickled code
        if state["fingerprint"] != fingerprint:
            raise ValueError(
                f"{state_path} was written with other settings or examples; use a new --output or delete "
                f"{state_dir} to start over"
            )
        net.load_state_dict(state["tower"])
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        done_epochs, history = state["epoch"], state["history"]
    resumed_from = done_epochs

    if done_epochs < config.epochs:
        acts = frozen_activations(model, encoder, data, examples, first_block, progress=console is not None)
        if console is not None:
            console.print(
                f"frozen part (stem + {first_block} blocks) encoded once: {tuple(acts.shape[1:])} per frame, "
                f"{acts.numel() * acts.element_size() / 2**30:.2f} GiB in memory",
                highlight=False,
            )
        # [K, N, C, H, W]: the same frames perturbed, each kind through the frozen part as well
        perturbed = torch.stack([
            frozen_activations(model, encoder, data, examples, first_block, console is not None, kind, config.seed)
            for kind in config.augment
        ]) if config.augment else None  # fmt: skip

        def encode(x: torch.Tensor) -> torch.Tensor:
            """Cached frozen-part activations [B, C, H, W] -> the tuned top's tokens [B, g*g, 1280]."""
            return net.forward_from(x.float().contiguous(memory_format=torch.channels_last), first_block)

        def tokens_of(rows: torch.Tensor, copy: torch.Tensor | None = None) -> torch.Tensor:
            """Tokens of the clean frames of `rows`, or of the perturbed copy `copy[j]` of each row j."""
            return encode(acts[rows] if copy is None else perturbed[copy, rows])  # type: ignore[index]

        log_depth = None
        if DEPTH in tasks:
            log_depth = depth_targets(data, examples, cells)
            train_depth = log_depth[[i for i in train_rows if examples[i].task == DEPTH]]
            if done_epochs == 0:  # start at the mean log depth everywhere: the head learns the layout, not the offset
                with torch.no_grad():
                    heads[DEPTH].weight.zero_()
                    heads[DEPTH].bias.fill_(float(train_depth[~train_depth.isnan()].mean()))

        def new_class_counts() -> dict[str, torch.Tensor]:
            return {t: torch.zeros(len(classes[t]) + 1, 2, dtype=torch.long) for t in dense_classes}

        def task_accuracy(counts: dict[str, list[int]], tallies: dict[str, torch.Tensor]) -> dict[str, float]:
            """Each task's accuracy; for the dense classification tasks the mean over classes of the share of
            their cells named right (balanced accuracy), classes unseen in training counted as one class."""
            out = {}
            for t, c in counts.items():
                if not c[1]:
                    continue
                if t in tallies:
                    tally = tallies[t][tallies[t][:, 1] > 0].double()
                    out[t] = float((tally[:, 0] / tally[:, 1]).mean())
                else:
                    out[t] = c[0] / c[1]
            return out

        class_counts = new_class_counts()

        def step_loss(rows: torch.Tensor, counts: dict[str, list[int]], tokens: torch.Tensor | None = None) -> torch.Tensor:
            if tokens is None:
                tokens = tokens_of(rows)
            features = tokens.mean(1)  # [B, 1280]
            loss = features.new_zeros(())
            for k, task in enumerate(tasks):
                mask = task_id[rows] == k
                if mask.any() and task == DEPTH:
                    pred = heads[DEPTH](tokens[mask]).squeeze(-1)  # [b, g*g] log metres
                    truth = log_depth[rows[mask]]  # type: ignore[index]
                    valid = ~truth.isnan()
                    error = (pred - truth.nan_to_num())[valid].abs()
                    if torch.is_grad_enabled() and error.numel():
                        loss = loss + error.mean() * mask.float().mean()
                    counts[task][0] += int((error < math.log(DEPTH_DELTA)).sum())
                    counts[task][1] += int(valid.sum())
                elif mask.any() and task in OBJECT_MAPS:
                    logits = heads[task](tokens[mask]).flatten(0, 1)  # [b * g*g, classes]
                    truth = y_cells[task][rows[mask]].flatten()  # [b * g*g]; -1: a class unseen in training
                    seen = truth >= 0
                    if torch.is_grad_enabled() and seen.any():
                        loss = loss + F.cross_entropy(logits[seen], truth[seen]) * mask.float().mean()
                    right = logits.argmax(1) == truth
                    # per class [right, cells]; the last row gathers the classes unseen in training
                    truth = torch.where(seen, truth, len(classes[task]))
                    tally = class_counts[task]
                    tally[:, 0] += torch.bincount(truth[right], minlength=len(tally))
                    tally[:, 1] += torch.bincount(truth, minlength=len(tally))
                    counts[task][0] += int(right.sum())
                    counts[task][1] += len(truth)
                elif mask.any():
                    logits = heads[task](features[mask])
                    if torch.is_grad_enabled():  # training rows; a held-out label may be -1 (unseen)
                        loss = loss + F.cross_entropy(logits, y[rows][mask]) * mask.float().mean()
                    counts[task][0] += _accuracy(logits, y[rows][mask])
                    counts[task][1] += int(mask.sum())
            return loss

        for epoch in range(done_epochs, config.epochs):
            t0 = time.perf_counter()
            net.train()
            order = torch.tensor(train_rows)[torch.randperm(len(train_rows))]
            train_counts = {t: [0, 0] for t in tasks}
            class_counts = new_class_counts()
            total = 0.0
            train_change = {kind: [0.0, 0] for kind in config.augment}
            for b in range(0, len(order), config.batch_size):
                rows = order[b : b + config.batch_size]
                if perturbed is None:
                    loss = step_loss(rows, train_counts)
                else:  # one pass over the clean frames and a perturbed copy of each (a random kind per row)
                    copy = torch.randint(len(config.augment), (len(rows),))
                    tokens = encode(torch.cat([acts[rows], perturbed[copy, rows]]))
                    clean, moved = tokens[: len(rows)], tokens[len(rows) :]
                    change = relative_change(moved, clean.detach())
                    loss = step_loss(rows, train_counts, clean) + config.consistency_weight * change.square().mean()
                    for k, kind in enumerate(config.augment):
                        train_change[kind][0] += float(change.detach()[copy == k].sum())
                        train_change[kind][1] += int((copy == k).sum())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            train_tallies = class_counts
            net.eval()
            test_counts = {t: [0, 0] for t in tasks}
            class_counts = new_class_counts()
            test_change = {kind: [0.0, 0] for kind in config.augment}
            test_centred = {kind: 0.0 for kind in config.augment}
            with torch.no_grad():
                for b in range(0, len(test_rows), 128):
                    rows = torch.tensor(test_rows[b : b + 128])
                    rows = rows[task_id[rows] >= 0]  # a task no training example has cannot be scored
                    if len(rows):
                        clean = tokens_of(rows)
                        step_loss(rows, test_counts, clean)
                        for k, kind in enumerate(config.augment):
                            moved = tokens_of(rows, torch.full((len(rows),), k))
                            test_change[kind][0] += float(relative_change(moved, clean).sum())
                            test_centred[kind] += float(relative_change(moved, clean, centred=True).sum())
                            test_change[kind][1] += len(rows)
            record = {
                "epoch": epoch + 1,
                "loss": total / len(train_rows),
                "train_acc": task_accuracy(train_counts, train_tallies),
                "held_out_acc": task_accuracy(test_counts, class_counts),
                "seconds": time.perf_counter() - t0,
            }
            if dense_classes:  # the plain share of cells named right, beside the balanced accuracy
                record["held_out_cell_acc"] = {t: test_counts[t][0] / test_counts[t][1]
                                               for t in dense_classes if test_counts[t][1]}  # fmt: skip
            if config.augment:  # how far each perturbation moves a frame's tokens, relative to their norm
                record["train_change"] = {k: c[0] / c[1] for k, c in train_change.items() if c[1]}
                record["held_out_change"] = {k: c[0] / c[1] for k, c in test_change.items() if c[1]}
                record["held_out_change_centred"] = {k: test_centred[k] / c[1] for k, c in test_change.items() if c[1]}
            scores = [held_out_score(r) for r in history]
            history.append(record)
            state_dir.mkdir(parents=True, exist_ok=True)
            score = held_out_score(record)
            if score is not None and all(score > s for s in scores if s is not None):
                _atomic_torch_save({"epoch": epoch + 1, "tower": net.state_dict()}, state_dir / "best.pt")
            _atomic_torch_save({"fingerprint": fingerprint, "epoch": epoch + 1, "history": history,
                                "tower": net.state_dict(), "heads": heads.state_dict(),
                                "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()},
                               state_path)  # fmt: skip
            with open(state_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if console is not None:
                held = ", ".join(f"{t} {a:.3f}" for t, a in record["held_out_acc"].items()) or "none held out"
                train = ", ".join(f"{t} {a:.3f}" for t, a in record["train_acc"].items())
                centred = record.get("held_out_change_centred", {})
                moved = "".join(
                    f"; held-out tokens move {c:.1%} under {k} ({centred[k]:.1%} centred)"
                    for k, c in record.get("held_out_change", {}).items()
                )
                console.print(
                    f"epoch {epoch + 1}/{config.epochs}: loss {record['loss']:.3f}; training acc {train}; "
                    f"held-out acc {held}{moved} ({record['seconds']:.0f} s)",
                    highlight=False,
                )
    kept_epoch = len(history)
    if config.keep == "best":
        if not (state_dir / "best.pt").is_file():
            raise ValueError(
                f"--keep best: {state_dir / 'best.pt'} is missing (a run from before --keep existed)"
            )
        best = torch.load(state_dir / "best.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(best["tower"])
        kept_epoch = best["epoch"]
        if console is not None:
            console.print(
                f"keeping epoch {kept_epoch}'s tower (held-out mean accuracy "
                f"{held_out_score(history[kept_epoch - 1]):.3f}, last epoch {held_out_score(history[-1]):.3f})",
                highlight=False,
            )
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    result = TowerFactsResult(
        epochs=history,
        classes=classes,
        train_examples=len(train_rows),
        held_out_examples=len(test_rows),
        resumed_from=resumed_from,
        seconds=time.perf_counter() - t_start,
        kept_epoch=kept_epoch,
    )
    _save_atomically(model, output)
    tmp = state_dir / f"summary.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({**asdict(result), "config": asdict(config)}, indent=2) + "\n")
    os.replace(tmp, state_dir / "summary.json")
    return result


def _atomic_torch_save(obj: dict[str, Any], path: Path) -> None:
    """torch.save through a temporary file in the same folder, then a rename: `path` is never half written."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _save_atomically(model: Any, output: Path) -> None:
    """The checkpoint into a temporary folder, then moved into `output`: its parts first, config.json last, so a
    folder with config.json is always a whole checkpoint."""
    from vlm.checkpoint import save_checkpoint

    tmp = output / f".checkpoint.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tmp)
    (output / "config.json").unlink(missing_ok=True)
    for part in sorted(tmp.iterdir()):
        if part.name == "config.json":
            continue
        target = output / part.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(part, target)
    os.replace(tmp / "config.json", output / "config.json")
    tmp.rmdir()
