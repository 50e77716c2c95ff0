"""Instruction generation: facts follow the path geometry, text names them, phrasing varies with the seed."""

from __future__ import annotations

import itertools
import statistics

import pytest

from envs.datasets.instructions import (
    InstructionConfig,
    build_vocab,
    describe_path,
    encode,
    generate_instruction,
    render_instruction,
    tokenize,
)
from envs.scenes.semantics import HouseSemantics, Room, SceneObject


def _house() -> HouseSemantics:
    """Bedroom (x 0-4), hallway (x 4-10) along z 0-4, kitchen south of the hallway (z -6..0)."""
    rooms = [
        Room(0, "bedroom", [[0, 0], [4, 0], [4, 4], [0, 4]], [0.5] * 3, [0.8] * 3, "the blue bedroom"),
        Room(1, "hallway", [[4, 0], [10, 0], [10, 4], [4, 4]], [0.5] * 3, [0.8] * 3, ""),
        Room(2, "kitchen", [[4, -6], [10, -6], [10, 0], [4, 0]], [0.5] * 3, [0.8] * 3, "kitchen"),
    ]
    objects = [
        SceneObject(0, "table", "green", [0, 1, 0], [5.0, 0.0, 3.3], [0.6, 0.8, 0.6], 1),
        SceneObject(1, "sofa", "red", [1, 0, 0], [6.9, 0.0, -4.6], [1.0, 0.8, 1.0], 2),
        SceneObject(2, "bed", "white", [1, 1, 1], [0.5, 0.0, 0.5], [1.0, 0.5, 1.0], 0),
    ]
    return HouseSemantics("h", 0, 0.0, rooms=rooms, objects=objects)


# East along z=2 from the bedroom into the hallway, then south (-z) into the kitchen: facing +x, -z is LEFT.
LEFT_PATH = [[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [6.0, 0.0, 2.0], [6.0, 0.0, -1.0], [6.0, 0.0, -4.0]]


def _dense(path, step=0.25):
    out = []
    for a, b in itertools.pairwise(path):
        n = max(1, round(((b[0] - a[0]) ** 2 + (b[2] - a[2]) ** 2) ** 0.5 / step))
        out += [[a[0] + (b[0] - a[0]) * k / n, 0.0, a[2] + (b[2] - a[2]) * k / n] for k in range(n)]
    return [*out, path[-1]]


def test_describe_path_turns_rooms_landmarks_goal():
    d = describe_path(_dense(LEFT_PATH), _house(), start_heading=(1.0, 0.0))
    assert d.turns == ["left"]
    assert d.start_turn == ""
    assert d.start_room == "the blue bedroom"
    assert d.rooms_entered == ["the hallway", "the kitchen"]
    assert d.goal_room == "the kitchen"
    assert d.goal_landmark == "the red sofa"
    passes = [e.landmark for e in d.events if e.kind == "pass"]
    assert [(p.name, p.side) for p in passes] == [("the green table", "right")]  # facing +x, +z is right
    assert d.length == pytest.approx(11.0)


def test_mirrored_path_turns_right_and_start_turn_follows_heading():
    mirrored = [[x, y, -z] for x, y, z in LEFT_PATH]  # north instead of south: a right turn
    d = describe_path(mirrored, HouseSemantics("e", 0, 0.0), start_heading=(-1.0, 0.0))
    assert d.turns == ["right"]
    assert d.start_turn == "around"  # facing -x, the first leg goes +x
    d2 = describe_path(mirrored, HouseSemantics("e", 0, 0.0), start_heading=(0.0, -1.0))
    assert d2.start_turn == "right"  # facing -z, +x is to the right


def test_staircase_grid_path_is_not_a_string_of_turns():
    # a diagonal walked on a 0.25 m grid zig-zags; it must read as one straight leg
    stairs = []
    for k in range(24):
        stairs.append([k * 0.25, 0.0, -(k // 2) * 0.25])
    d = describe_path(stairs, HouseSemantics("e", 0, 0.0))
    assert d.turns == []


@pytest.mark.parametrize("seed", range(20))
def test_r2r_text_mentions_goal_and_only_true_turns(seed):
    house = _house()
    house.objects = [o for o in house.objects if o.category != "table"]  # no "on your right" landmark
    text = generate_instruction(_dense(LEFT_PATH), house, seed=seed, style="r2r", start_heading=(1.0, 0.0))
    low = text.lower()
    assert "red sofa" in low or "kitchen" in low
    assert "left" in low
    assert "right" not in low
    assert 1 <= text.count(".") <= 4


def test_text_is_deterministic_and_varies_with_seed():
    path = _dense(LEFT_PATH)
    a = generate_instruction(path, _house(), seed=1)
    assert a == generate_instruction(path, _house(), seed=1)
    texts = {generate_instruction(path, _house(), seed=s) for s in range(30)}
    assert len(texts) >= 15


def test_lengths_r2r_short_rxr_long():
    d = describe_path(_dense(LEFT_PATH), _house(), start_heading=(0.0, 1.0))
    r2r = [len(render_instruction(d, s, "r2r").split()) for s in range(50)]
    rxr = [len(render_instruction(d, s, "rxr").split()) for s in range(50)]
    assert 12 <= statistics.mean(r2r) <= 40
    assert statistics.mean(rxr) >= 2 * statistics.mean(r2r)
    text = render_instruction(d, 0, "rxr")
    assert "blue bedroom" in text and "red sofa" in text


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown instruction style 'x'"):
        render_instruction(describe_path(LEFT_PATH, _house()), 0, "x")
    with pytest.raises(ValueError, match="at least 2 distinct points"):
        describe_path([[0, 0, 0], [0, 0, 0]], _house())
    with pytest.raises(ValueError, match="turn_threshold_deg"):
        InstructionConfig(turn_threshold_deg=0)


def test_vocab_and_encoding_follow_r2r_layout():
    texts = ["Walk past the red sofa.", "Turn left, then stop."]
    vocab = build_vocab(texts)
    assert vocab["word_list"][:2] == ["<pad>", "<unk>"]
    assert vocab["num_vocab"] == len(vocab["itos"]) == len(vocab["stoi"])
    ids = encode("Walk past the green sofa.", vocab)
    assert len(ids) == 200 and ids[6:] == [0] * 194
    assert ids[3] == vocab["UNK_INDEX"]  # "green" is not in the vocabulary
    assert [vocab["itos"][i] for i in ids[:5]] == ["walk", "past", "the", "<unk>", "sofa"]
    assert tokenize("You're done.") == ["you're", "done", "."]
