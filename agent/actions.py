"""Mid-level actions ("move forward 75 cm") and the conversions to and from text and low-level steps.

Three named pure functions sit at the model boundary:

- `parse_action(text)`: the model's answer → a `MidLevelAction`, with NaVILA's exact rules
  (NAVILA_REFERENCE.md "Parsing the answer") and an explicit success flag, so failures can be counted;
- `format_action(action)`: the inverse, the training label text (`"The next action is move forward 75 cm."`);
- `merge_low_level(actions)`: NaVILA's training labelling, which merges up to 3 identical consecutive
  low-level actions (25/50/75 cm, 15/30/45°) and leaves STOP alone.

Where these rules differ from the reference they do so only to design out its defects: an answer with no
action word, or an amount of 0, is reported as a failure (`ok=False`) instead of producing an empty action
list, and a huge amount is expanded to at most `MAX_EPISODE_STEPS` low-level steps (an episode cannot run
longer, so behaviour is unchanged while memory stays bounded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from envs.constants import MAX_EPISODE_STEPS, MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT

ActionKind = Literal["stop", "forward", "left", "right"]
ACTION_KINDS: tuple[str, ...] = ("stop", "forward", "left", "right")

# One low-level step of each kind, in the units the model speaks (cm, degrees).
FORWARD_STEP_CM = 25
TURN_STEP_DEG = 15
# Values a non-multiple snaps to: the training labels only ever contain these (1-3 merged steps).
FORWARD_SNAP_CM = (25, 50, 75)
TURN_SNAP_DEG = (15, 30, 45)
# Most consecutive identical low-level actions merged into one training label.
MAX_MERGE = 3

_KIND_TO_LOW: dict[str, int] = {"stop": STOP, "forward": MOVE_FORWARD, "left": TURN_LEFT, "right": TURN_RIGHT}
_LOW_TO_KIND: dict[int, str] = {v: k for k, v in _KIND_TO_LOW.items()}
_STEP_UNIT: dict[str, int] = {
    "stop": 0,
    "forward": FORWARD_STEP_CM,
    "left": TURN_STEP_DEG,
    "right": TURN_STEP_DEG,
}

# NaVILA's action words, in its order: the first pattern that matches anywhere in the answer wins
# (so "stop" beats everything, even "The next action is move forward, then stop.").
_ACTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("stop", re.compile(r"\bstop\b", re.IGNORECASE)),
    ("forward", re.compile(r"\bis move forward\b", re.IGNORECASE)),
    ("left", re.compile(r"\bis turn left\b", re.IGNORECASE)),
    ("right", re.compile(r"\bis turn right\b", re.IGNORECASE)),
)
# NaVILA's amount patterns. They are case-sensitive in the reference (only the action words are not), and
# they search the whole answer, not just the text after the action word; both kept as is.
_AMOUNT_PATTERNS: dict[str, re.Pattern[str]] = {
    "forward": re.compile(r"move forward (\d+) cm"),
    "left": re.compile(r"turn left (\d+) degree"),
    "right": re.compile(r"turn right (\d+) degree"),
}
# More digits than this saturate: no episode can use more steps, and int() refuses > 4300 digits.
_MAX_AMOUNT_DIGITS = 9


@dataclass(frozen=True)
class MidLevelAction:
    """One model decision: a kind and an amount in cm (forward) or degrees (turns); 0 for stop."""

    kind: ActionKind  # "stop" | "forward" | "left" | "right"
    amount: int = 0  # cm for forward (multiple of 25), degrees for turns (multiple of 15), 0 for stop

    def __post_init__(self) -> None:
        if self.kind not in _KIND_TO_LOW:
            raise ValueError(
                f"MidLevelAction.kind: unknown kind {self.kind!r}; available: {', '.join(ACTION_KINDS)}"
            )
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise ValueError(f"MidLevelAction.amount must be an int, got {type(self.amount).__name__}")
        if self.kind == "stop":
            if self.amount != 0:
                raise ValueError(f"MidLevelAction.amount must be 0 for stop, got {self.amount}")
            return
        unit = _STEP_UNIT[self.kind]
        if self.amount <= 0 or self.amount % unit != 0:
            what = "cm" if self.kind == "forward" else "degrees"
            raise ValueError(
                f"MidLevelAction.amount for {self.kind} must be a positive multiple of {unit} {what}, got {self.amount}"
            )

    @property
    def num_steps(self) -> int:
        """How many low-level steps this decision stands for (1 for stop), before the episode-length cap."""
        return 1 if self.kind == "stop" else self.amount // _STEP_UNIT[self.kind]

    def to_low_level(self) -> list[int]:
        """The habitat action ids this decision expands to, e.g. forward 75 → [1, 1, 1]; stop → [0].

        Capped at MAX_EPISODE_STEPS: an episode ends there anyway, so a longer queue would never run.
        """
        return [_KIND_TO_LOW[self.kind]] * min(self.num_steps, MAX_EPISODE_STEPS)


@dataclass(frozen=True)
class ParseResult:
    """What `parse_action` made of an answer; `ok` is False exactly when `action` is None."""

    action: MidLevelAction | None
    ok: bool
    reason: str  # why it failed, or what was assumed on success ("" when the answer was exact)


def _read_amount(digits: str) -> int | None:
    """The amount as an int, exact up to `_MAX_AMOUNT_DIGITS` significant digits; longer numbers saturate
    but keep their remainder modulo 75 (which decides snapping for both 25 cm and 15°), because int() refuses
    more than 4300 digits. None if unreadable."""
    try:
        # \d also matches digits of other scripts; int() reads each of them.
        ascii_digits = "".join(str(int(ch)) for ch in digits).lstrip("0") or "0"
    except ValueError:
        return None
    if len(ascii_digits) <= _MAX_AMOUNT_DIGITS:
        return int(ascii_digits)
    modulus = 75  # lcm(25, 15)
    remainder = 0
    for ch in ascii_digits:
        remainder = (remainder * 10 + int(ch)) % modulus
    saturated = 10**_MAX_AMOUNT_DIGITS
    return saturated - saturated % modulus + remainder


def _shorten(digits: str) -> str:
    return digits if len(digits) <= 12 else digits[:6] + "..." + digits[-3:]


def parse_action(text: str) -> ParseResult:
    """Turn the model's answer into a mid-level action with NaVILA's rules; never raises.

    Action word (case-insensitive, first match in this order wins): `\\bstop\\b`, `\\bis move forward\\b`,
    `\\bis turn left\\b`, `\\bis turn right\\b`. Amount: `move forward (\\d+) cm` / `turn left|right (\\d+) degree`;
    a missing number means one step; a non-multiple of 25 cm / 15° snaps to the nearest of 25/50/75 or
    15/30/45; multiples are kept uncapped (100 cm = 4 steps). No action word, or an amount of 0 (which the
    reference turns into an empty action list), is a failure.
    """
    if not isinstance(text, str):
        return ParseResult(None, False, f"answer is not text ({type(text).__name__})")
    kind = next((name for name, pattern in _ACTION_PATTERNS if pattern.search(text)), None)
    if kind is None:
        return ParseResult(
            None, False, "no action phrase (stop / is move forward / is turn left / is turn right)"
        )
    if kind == "stop":
        return ParseResult(MidLevelAction("stop"), True, "")

    unit = _STEP_UNIT[kind]
    grid = FORWARD_SNAP_CM if kind == "forward" else TURN_SNAP_DEG
    match = _AMOUNT_PATTERNS[kind].search(text)
    if match is None:
        return ParseResult(MidLevelAction(kind, unit), True, "no amount; one step assumed")
    digits = match.group(1)
    value = _read_amount(digits)
    if value is None:
        return ParseResult(None, False, f"unreadable amount {digits[:20]!r}")
    if value == 0:
        return ParseResult(None, False, f"amount 0 for {kind}")
    if value % unit == 0:
        # Uncapped in the reference; capped here at what one episode can execute (same behaviour).
        snapped = min(value, MAX_EPISODE_STEPS * unit)
    else:
        snapped = min(grid, key=lambda g: abs(g - value))  # ties go to the smaller value, as in the reference
    reason = "" if snapped == value else f"amount {_shorten(digits)} -> {snapped}"
    return ParseResult(MidLevelAction(kind, snapped), True, reason)


def format_action(action: MidLevelAction) -> str:
    """The answer text NaVILA is trained to produce for `action` (the inverse of `parse_action`)."""
    if action.kind == "stop":
        return "The next action is stop."
    if action.kind == "forward":
        return f"The next action is move forward {action.amount} cm."
    return f"The next action is turn {action.kind} {action.amount} degrees."


def merge_low_level(actions: list[int]) -> list[MidLevelAction]:
    """NaVILA's training labelling: merge runs of identical low-level actions, at most 3 per label, greedily
    from the start ([1, 1, 1, 1, 2] → forward 75, forward 25, left 15); every STOP is its own label."""
    merged: list[MidLevelAction] = []
    i = 0
    while i < len(actions):
        action = actions[i]
        if action not in _LOW_TO_KIND:
            raise ValueError(
                f"merge_low_level: unknown low-level action {action!r} at index {i}; available: 0, 1, 2, 3"
            )
        kind = _LOW_TO_KIND[action]
        if kind == "stop":
            merged.append(MidLevelAction("stop"))
            i += 1
            continue
        run = 1
        while run < MAX_MERGE and i + run < len(actions) and actions[i + run] == action:
            run += 1
        merged.append(MidLevelAction(kind, run * _STEP_UNIT[kind]))
        i += run
    return merged
