"""NaVILA answer parsing, formatting and training-label merging."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.actions import (
    MidLevelAction,
    ParseResult,
    format_action,
    merge_low_level,
    parse_action,
)
from envs.constants import MAX_EPISODE_STEPS, MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT


def steps(text: str) -> list[int] | None:
    result = parse_action(text)
    return None if result.action is None else result.action.to_low_level()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The next action is move forward 75 cm.", [1, 1, 1]),
        ("The next action is move forward 25 cm.", [1]),
        ("The next action is turn left 30 degrees.", [2, 2]),
        ("The next action is turn right 45 degrees.", [3, 3, 3]),
        ("The next action is turn right 15 degree.", [3]),
        ("The next action is stop.", [0]),
        # multiples are not capped
        ("The next action is move forward 100 cm.", [1, 1, 1, 1]),
        ("The next action is turn left 90 degrees.", [2] * 6),
        # non-multiples snap to the nearest of 25/50/75 or 15/30/45 (ties to the smaller)
        ("The next action is move forward 62 cm.", [1, 1]),
        ("The next action is move forward 63 cm.", [1, 1, 1]),
        ("The next action is move forward 110 cm.", [1, 1, 1]),
        ("The next action is move forward 10 cm.", [1]),
        ("The next action is turn left 22 degrees.", [2]),
        ("The next action is turn left 23 degrees.", [2, 2]),
        ("The next action is turn right 100 degrees.", [3, 3, 3]),
        # a missing (or unmatched) number means one step
        ("The next action is move forward.", [1]),
        ("The next action is turn left by some degrees.", [2]),
        ("The next action is turn right 30°.", [3]),  # "degree" is required by the amount pattern
        # action words are case-insensitive, amount patterns are not (as in the reference)
        ("THE NEXT ACTION IS MOVE FORWARD 75 CM.", [1]),
        ("The next action Is Turn Left 30 degrees.", [2]),  # "Turn Left 30" misses the amount pattern
        # first match wins in the order stop, forward, left, right — anywhere in the text
        ("The next action is move forward 75 cm, then stop.", [0]),
        (
            "The next action is turn right 30 degrees, not: the next action is turn left 45 degrees.",
            [2, 2, 2],
        ),
        # the amount pattern searches the whole answer, not only after the action word (reference behaviour)
        ("I could move forward 50 cm but the next action is turn left.", [2]),
        ("Move forward 50 cm; the next action is move forward.", [1]),  # "Move" is capitalised: one step
    ],
)
def test_parse_reference_rules(text: str, expected: list[int]) -> None:
    assert steps(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I see a sofa and a door.",
        "The next action: move forward 75 cm.",  # needs "is move forward"
        "The robot is stopping now.",  # \bstop\b does not match "stopping"
        "nonstop walking",
        "The next action is move forward 0 cm.",  # the reference would queue nothing
        "The next action is turn left 0 degrees.",
    ],
)
def test_parse_failures_are_reported_not_raised(text: str) -> None:
    result = parse_action(text)
    assert result == ParseResult(None, False, result.reason)
    assert result.reason


def test_parse_notes_assumptions_and_caps_huge_amounts() -> None:
    assert parse_action("The next action is move forward 40 cm.").reason == "amount 40 -> 50"
    assert parse_action("The next action is turn left.").reason == "no amount; one step assumed"
    assert parse_action("The next action is move forward 75 cm.").reason == ""
    huge = parse_action("The next action is move forward " + "1" + "0" * 6000 + " cm.")
    assert huge.ok and huge.action is not None
    assert huge.action.to_low_level() == [MOVE_FORWARD] * MAX_EPISODE_STEPS
    huge_turn = parse_action("The next action is turn right " + "1" + "0" * 6000 + " degrees.")
    assert huge_turn.action == MidLevelAction("right", 45)  # 10^6000 is not a multiple of 15: snaps


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    result = parse_action(text)
    assert isinstance(result, ParseResult)
    assert result.ok == (result.action is not None)
    if result.action is not None:
        low = result.action.to_low_level()
        assert 1 <= len(low) <= MAX_EPISODE_STEPS


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("is move forward turn left right stop cm degrees 0123456789٣.")))
def test_near_miss_text_never_raises(text: str) -> None:
    parse_action(text)


def _expected_steps(value: int, unit: int) -> int:
    if value % unit == 0:
        return min(value // unit, MAX_EPISODE_STEPS)
    grid = [unit, 2 * unit, 3 * unit]
    return min(grid, key=lambda g: abs(g - value)) // unit


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["forward", "left", "right"]), value=st.integers(1, 20000))
def test_every_reference_form_maps_to_the_right_steps(kind: str, value: int) -> None:
    if kind == "forward":
        text, unit, low = f"The next action is move forward {value} cm.", 25, MOVE_FORWARD
    else:
        text, unit, low = (
            f"The next action is turn {kind} {value} degrees.",
            15,
            TURN_LEFT if kind == "left" else TURN_RIGHT,
        )
    assert steps(text) == [low] * _expected_steps(value, unit)


mid_level_actions = st.one_of(
    st.just(MidLevelAction("stop")),
    st.builds(lambda n: MidLevelAction("forward", 25 * n), st.integers(1, MAX_EPISODE_STEPS)),
    st.builds(
        lambda k, n: MidLevelAction(k, 15 * n), st.sampled_from(["left", "right"]), st.integers(1, 500)
    ),
)


@settings(max_examples=300, deadline=None)
@given(mid_level_actions)
def test_format_then_parse_round_trip(action: MidLevelAction) -> None:
    result = parse_action(format_action(action))
    assert result.ok and result.action == action and result.reason == ""


def test_format_exact_strings() -> None:
    assert format_action(MidLevelAction("forward", 75)) == "The next action is move forward 75 cm."
    assert format_action(MidLevelAction("left", 30)) == "The next action is turn left 30 degrees."
    assert format_action(MidLevelAction("right", 15)) == "The next action is turn right 15 degrees."
    assert format_action(MidLevelAction("stop")) == "The next action is stop."


@pytest.mark.parametrize(
    ("kind", "amount", "message"),
    [
        ("jump", 0, "unknown kind 'jump'; available: stop, forward, left, right"),
        ("stop", 25, "must be 0 for stop"),
        ("forward", 30, "positive multiple of 25 cm"),
        ("left", 0, "positive multiple of 15 degrees"),
        ("right", -15, "positive multiple of 15 degrees"),
    ],
)
def test_mid_level_action_validation(kind: str, amount: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MidLevelAction(kind, amount)  # type: ignore[arg-type]


def test_merge_low_level_examples() -> None:
    assert merge_low_level([1, 1, 1, 1, 2, 0]) == [
        MidLevelAction("forward", 75),
        MidLevelAction("forward", 25),
        MidLevelAction("left", 15),
        MidLevelAction("stop"),
    ]
    assert merge_low_level([3, 3, 2, 2, 2, 2, 2, 0, 0]) == [
        MidLevelAction("right", 30),
        MidLevelAction("left", 45),
        MidLevelAction("left", 30),
        MidLevelAction("stop"),
        MidLevelAction("stop"),
    ]
    assert merge_low_level([]) == []
    with pytest.raises(ValueError, match="unknown low-level action 7 at index 1"):
        merge_low_level([1, 7])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT]), max_size=60))
def test_merge_expands_back_and_labels_parse(actions: list[int]) -> None:
    merged = merge_low_level(actions)
    assert [a for m in merged for a in m.to_low_level()] == actions
    assert all(1 <= m.num_steps <= 3 for m in merged)
    assert all(m.num_steps == 1 for m in merged if m.kind == "stop")
    # greedy: two consecutive labels of the same non-stop kind only when the first is full (3 steps)
    for a, b in itertools.pairwise(merged):
        if a.kind == b.kind and a.kind != "stop":
            assert a.num_steps == 3
    assert [parse_action(format_action(m)).action for m in merged] == merged
