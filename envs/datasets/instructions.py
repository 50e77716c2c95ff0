"""R2R-style natural-language instructions for a path through a generated house.

Two steps, both pure functions:
1. `describe_path(path, semantics, start_heading)` reads the geometry: the turns (from heading changes along the
   simplified path), the rooms entered (`HouseSemantics.room_at`), the objects passed within a metre or two (and
   on which side), and where the path ends (the room and the nearest object there).
2. `render_instruction(description, seed, style)` turns those facts into English with many templates and
   synonyms, chosen by a seeded RNG: R2R style is 1-4 sentences (~30 words, like R2R's mean of 29), RxR style a
   longer guide's narration (~80-120 words).

Coordinates follow habitat: y up, the agent looks along -z at yaw 0, so turning right from -z faces +x. A turn
from direction a to direction b (x-z plane) is to the right when `a.x * b.z - a.z * b.x > 0`.

    text = generate_instruction(path, semantics, seed=3, style="r2r", start_heading=(0.0, -1.0))
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from envs.scenes.semantics import HouseSemantics, Room, SceneObject

STYLES = ("r2r", "rxr")


@dataclass
class InstructionConfig:
    turn_threshold_deg: float = 40.0  # heading changes below this are "keep going", not a turn
    simplify_tolerance: float = 0.35  # metres; Douglas-Peucker tolerance that removes grid staircase jitter
    landmark_radius: float = 1.2  # metres from the path (beyond the object's footprint) to count as "passed"
    goal_landmark_radius: float = 2.5  # metres from the end point to name an object as the stopping place
    room_sample_step: float = 0.25  # metres between the points sampled to detect room changes
    min_room_stay: float = 0.75  # metres; shorter visits (clipping a doorway corner) are not "entering"

    def __post_init__(self) -> None:
        for name in ("simplify_tolerance", "landmark_radius", "goal_landmark_radius", "room_sample_step"):
            if getattr(self, name) <= 0:
                raise ValueError(f"InstructionConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.turn_threshold_deg < 180:
            raise ValueError(
                f"InstructionConfig.turn_threshold_deg must be in (0, 180), got {self.turn_threshold_deg}"
            )


# --------------------------------------------------------------------------------------------- path facts


@dataclass
class Landmark:
    name: str  # "the red sofa"
    side: str  # "left" | "right" | "ahead"
    distance_along: float  # metres from the start where the path passes closest


@dataclass
class Event:
    kind: str  # "turn" | "enter" | "pass"
    distance_along: float  # metres from the start
    direction: str = ""  # turn: "left" | "right" | "around"
    room: str = ""  # enter: the room's name ("the kitchen")
    landmark: Landmark | None = None  # pass


@dataclass
class PathDescription:
    """Everything the renderer may say about a path; all derived from geometry and semantics."""

    start_room: str  # "" when the start is not inside a room polygon
    start_turn: str  # "", "left", "right" or "around": turn needed from start_heading to the first leg
    events: list[Event] = field(default_factory=list)  # turns, room entries and landmarks, in path order
    goal_room: str = ""
    goal_landmark: str = ""  # "the red sofa"; "" when nothing is near the end
    length: float = 0.0  # metres along the path

    @property
    def turns(self) -> list[str]:
        """Turn directions along the path, in order (excluding the initial turn)."""
        return [e.direction for e in self.events if e.kind == "turn"]

    @property
    def rooms_entered(self) -> list[str]:
        return [e.room for e in self.events if e.kind == "enter"]


def room_name(room: Room) -> str:
    """'the blue bedroom' from the room's name, else 'the <type>'."""
    name = (room.name or room.type).strip()
    return name if name.lower().startswith("the ") else f"the {name}"


def object_name(obj: SceneObject) -> str:
    """'the red sofa'."""
    color = obj.color_name.strip()
    return f"the {color} {obj.category}" if color else f"the {obj.category}"


def describe_path(
    path: Sequence[Sequence[float]],
    semantics: HouseSemantics,
    start_heading: Sequence[float] | None = None,
    config: InstructionConfig | None = None,
) -> PathDescription:
    """Turns, rooms, landmarks and the goal of a path of [x, y, z] points (dense or sparse).

    `start_heading` is the agent's initial facing direction (x, z); None skips the initial turn.
    """
    cfg = config or InstructionConfig()
    pts = _dedupe([(float(p[0]), float(p[2])) for p in path])
    if len(pts) < 2:
        raise ValueError(f"describe_path needs a path of at least 2 distinct points, got {len(pts)}")
    corners = _simplify(pts, cfg.simplify_tolerance)
    cum = _cumulative(corners)
    events: list[Event] = []

    threshold = math.radians(cfg.turn_threshold_deg)
    for i in range(1, len(corners) - 1):
        a = _sub(corners[i], corners[i - 1])
        b = _sub(corners[i + 1], corners[i])
        angle = _signed_angle(a, b)
        if abs(angle) >= threshold:
            direction = "around" if abs(angle) > math.radians(150) else ("right" if angle > 0 else "left")
            events.append(Event("turn", cum[i], direction=direction))

    start_turn = ""
    if start_heading is not None:
        angle = _signed_angle(
            (float(start_heading[0]), float(start_heading[1])), _sub(corners[1], corners[0])
        )
        if abs(angle) > math.radians(135):
            start_turn = "around"
        elif abs(angle) > math.radians(45):
            start_turn = "right" if angle > 0 else "left"

    # Rooms: sample the path densely and keep room changes that last long enough to be a real entry.
    samples = _resample(corners, cfg.room_sample_step)
    rooms = [semantics.room_at(x, z) for (x, z), _ in samples]
    start = next((r for r in rooms if r is not None), None)
    current = start.id if start is not None else None
    run_room, run_start = None, 0.0
    for (_, d), room in zip(samples, rooms, strict=True):
        rid = room.id if room is not None else None
        if rid is None or rid == current:
            run_room = None
            continue
        if rid != run_room:
            run_room, run_start = rid, d
        if d - run_start >= cfg.min_room_stay or d >= cum[-1] - 1e-6:
            events.append(Event("enter", run_start, room=room_name(room)))
            current, run_room = rid, None

    end = corners[-1]
    goal_room_obj = semantics.room_at(*end)
    goal_obj = _nearest_object(semantics.objects, end, cfg.goal_landmark_radius, goal_room_obj)

    # Landmarks: objects whose footprint comes within landmark_radius of the path (not the goal object).
    for obj in semantics.objects:
        if goal_obj is not None and obj.id == goal_obj.id:
            continue
        o = (obj.position[0], obj.position[2])
        dist, along, seg_dir = _closest_on_path(corners, cum, o)
        clearance = dist - 0.5 * max(obj.size[0], obj.size[2])
        if clearance > cfg.landmark_radius or along < 0.5 or along > cum[-1] - 0.5:
            continue
        closest = _point_at(corners, cum, along)
        off = _sub(o, closest)
        cross = seg_dir[0] * off[1] - seg_dir[1] * off[0]
        side = "ahead" if math.hypot(*off) < 0.3 else ("right" if cross > 0 else "left")
        events.append(Event("pass", along, landmark=Landmark(object_name(obj), side, along)))

    events.sort(key=lambda e: (e.distance_along, {"enter": 0, "pass": 1, "turn": 2}[e.kind]))
    return PathDescription(
        start_room=room_name(start) if start is not None else "",
        start_turn=start_turn,
        events=events,
        goal_room=room_name(goal_room_obj) if goal_room_obj is not None else "",
        goal_landmark=object_name(goal_obj) if goal_obj is not None else "",
        length=cum[-1],
    )


def _nearest_object(objects: list[SceneObject], p: tuple[float, float], radius: float, room: Room | None):
    best, best_d = None, radius
    for obj in objects:
        d = math.hypot(obj.position[0] - p[0], obj.position[2] - p[1]) - 0.5 * max(obj.size[0], obj.size[2])
        if room is not None and obj.room_id != room.id:
            continue
        if d < best_d:
            best, best_d = obj, d
    return best


# ----------------------------------------------------------------------------------------- 2-D geometry


def _sub(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return (a[0] - b[0], a[1] - b[1])


def _signed_angle(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Angle from a to b in radians, positive = clockwise seen from above = a right turn in habitat."""
    cross = a[0] * b[1] - a[1] * b[0]
    dot = a[0] * b[0] + a[1] * b[1]
    return math.atan2(cross, dot)


def _dedupe(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = [pts[0]] if pts else []
    for p in pts[1:]:
        if math.hypot(p[0] - out[-1][0], p[1] - out[-1][1]) > 1e-6:
            out.append(p)
    return out


def _simplify(pts: list[tuple[float, float]], tol: float) -> list[tuple[float, float]]:
    """Douglas-Peucker: keep the corners, drop points within `tol` of the chord."""
    if len(pts) < 3:
        return list(pts)
    a, b = pts[0], pts[-1]
    ab = _sub(b, a)
    norm = math.hypot(*ab)
    best_i, best_d = 0, -1.0
    for i in range(1, len(pts) - 1):
        ap = _sub(pts[i], a)
        d = abs(ab[0] * ap[1] - ab[1] * ap[0]) / norm if norm > 1e-9 else math.hypot(*ap)
        if d > best_d:
            best_i, best_d = i, d
    if best_d <= tol:
        return [a, b]
    left = _simplify(pts[: best_i + 1], tol)
    return left[:-1] + _simplify(pts[best_i:], tol)


def _cumulative(pts: list[tuple[float, float]]) -> list[float]:
    cum = [0.0]
    for i in range(1, len(pts)):
        cum.append(cum[-1] + math.hypot(*_sub(pts[i], pts[i - 1])))
    return cum


def _resample(pts: list[tuple[float, float]], step: float) -> list[tuple[tuple[float, float], float]]:
    cum = _cumulative(pts)
    n = max(1, int(cum[-1] / step))
    return [(_point_at(pts, cum, cum[-1] * k / n), cum[-1] * k / n) for k in range(n + 1)]


def _point_at(pts: list[tuple[float, float]], cum: list[float], d: float) -> tuple[float, float]:
    for i in range(1, len(pts)):
        if d <= cum[i] or i == len(pts) - 1:
            seg = cum[i] - cum[i - 1]
            t = 0.0 if seg <= 0 else min(1.0, max(0.0, (d - cum[i - 1]) / seg))
            return (
                pts[i - 1][0] + t * (pts[i][0] - pts[i - 1][0]),
                pts[i - 1][1] + t * (pts[i][1] - pts[i - 1][1]),
            )
    return pts[-1]


def _closest_on_path(
    pts: list[tuple[float, float]], cum: list[float], o: tuple[float, float]
) -> tuple[float, float, tuple[float, float]]:
    """(distance, distance along the path, unit direction of that segment) of the path point closest to o."""
    best = (math.inf, 0.0, (0.0, -1.0))
    for i in range(1, len(pts)):
        a, b = pts[i - 1], pts[i]
        ab = _sub(b, a)
        seg = math.hypot(*ab)
        if seg < 1e-9:
            continue
        t = max(0.0, min(1.0, ((o[0] - a[0]) * ab[0] + (o[1] - a[1]) * ab[1]) / (seg * seg)))
        p = (a[0] + t * ab[0], a[1] + t * ab[1])
        d = math.hypot(*_sub(o, p))
        if d < best[0]:
            best = (d, cum[i - 1] + t * seg, (ab[0] / seg, ab[1] / seg))
    return best


# --------------------------------------------------------------------------------------------- rendering

_WALK = ["walk", "go", "head", "proceed", "move"]
_WALK_ON = ["continue", "keep going", "keep walking", "go straight", "walk forward"]
_TURN = {
    "left": ["turn left", "make a left", "take a left", "hang a left", "go left"],
    "right": ["turn right", "make a right", "take a right", "hang a right", "go right"],
    "around": ["turn around", "turn all the way around", "make a u-turn", "do a u-turn"],
}
_PAST = ["past", "by", "past", "by", "alongside"]
_ENTER = ["into", "through to", "to", "into", "and enter"]
_STOP = [
    "stop next to {obj}",
    "wait by {obj}",
    "stop in front of {obj}",
    "stand near {obj}",
    "stop beside {obj}",
    "wait next to {obj}",
]
_STOP_ROOM = ["stop in {room}", "wait in {room}", "stop once you are in {room}", "stop inside {room}"]
_STOP_BOTH = [
    "stop next to {obj} in {room}",
    "wait near {obj} in {room}",
    "stop by {obj} in {room}",
    "stand beside {obj} in {room}",
]
_JOIN = [", then ", " and ", ", and ", ". Then ", ". "]


def _pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]


@dataclass
class _Leg:
    """A straight-ish stretch of the path: the rooms entered and landmarks passed before the next turn."""

    enters: list[str] = field(default_factory=list)
    passes: list[Landmark] = field(default_factory=list)
    length: float = 0.0
    turn: str = ""  # the turn that ends this leg ("" for the last leg)


def _legs(desc: PathDescription) -> list[_Leg]:
    legs, leg, last = [], _Leg(), 0.0
    for e in desc.events:
        if e.kind == "enter":
            leg.enters.append(e.room)
        elif e.kind == "pass" and e.landmark is not None:
            leg.passes.append(e.landmark)
        elif e.kind == "turn":
            leg.turn, leg.length = e.direction, e.distance_along - last
            last = e.distance_along
            legs.append(leg)
            leg = _Leg()
    leg.length = desc.length - last
    legs.append(leg)
    return legs


def _r2r_leg(leg: _Leg, rng: random.Random, first: bool, start_room: str, max_passes: int) -> str:
    verb = _pick(rng, _WALK) if first else _pick(rng, _WALK + _WALK_ON)
    parts = [verb]
    if first and start_room and leg.enters and rng.random() < 0.6:
        parts.append(f"out of {start_room}")
    if leg.passes and max_passes > 0:
        lm = leg.passes[0]
        if lm.side != "ahead" and rng.random() < 0.4:
            parts.append(f"{_pick(rng, _PAST)} {lm.name} on your {lm.side}")
        elif lm.side == "ahead":
            parts.append(f"{_pick(rng, ['towards', 'toward', 'up to'])} {lm.name}")
        else:
            parts.append(f"{_pick(rng, _PAST)} {lm.name}")
    if leg.enters:
        parts.append(f"{_pick(rng, _ENTER)} {leg.enters[-1]}")
    elif not leg.passes and verb not in ("go straight", "walk forward"):
        parts.append(_pick(rng, ["straight ahead", "forward", "a few steps", "straight"]))
    text = " ".join(parts)
    if leg.turn:
        text += _pick(rng, [" and ", ", then ", " and then "]) + _pick(rng, _TURN[leg.turn])
    return text


def _stop_phrase(desc: PathDescription, rng: random.Random) -> str:
    if desc.goal_landmark and desc.goal_room and rng.random() < 0.6:
        return _pick(rng, _STOP_BOTH).format(obj=desc.goal_landmark, room=desc.goal_room)
    if desc.goal_landmark:
        return _pick(rng, _STOP).format(obj=desc.goal_landmark)
    if desc.goal_room:
        return _pick(rng, _STOP_ROOM).format(room=desc.goal_room)
    return _pick(rng, ["stop there", "stop", "wait there", "stop when you reach the end"])


def _sentences(clauses: list[str], rng: random.Random, max_sentences: int) -> str:
    """Join clauses into at most `max_sentences` capitalised sentences."""
    groups: list[list[str]] = [[c] for c in clauses]
    while len(groups) > max_sentences:  # merge the shortest neighbouring pair
        i = min(range(len(groups) - 1), key=lambda k: len(" ".join(groups[k] + groups[k + 1])))
        groups[i : i + 2] = [groups[i] + groups[i + 1]]
    out = []
    for g in groups:
        s = g[0]
        for c in g[1:]:
            s += _pick(rng, [", then ", " and ", ", "])
            s += c
        out.append(s[0].upper() + s[1:] + ".")
    return " ".join(out)


def _render_r2r(desc: PathDescription, rng: random.Random) -> str:
    legs = _legs(desc)
    clauses = []
    if desc.start_turn:
        clauses.append(_pick(rng, _TURN[desc.start_turn]))
    for i, leg in enumerate(legs):
        # R2R annotators name a landmark or two, not one per leg: long paths keep those of the first and last leg.
        keep = len(legs) <= 2 or i in (0, len(legs) - 1)
        clauses.append(_r2r_leg(leg, rng, first=i == 0, start_room=desc.start_room, max_passes=int(keep)))
    # "...into the kitchen, stop by the sofa in the kitchen" says the room twice: name it once.
    just_entered = bool(legs[-1].enters) and legs[-1].enters[-1] == desc.goal_room
    clauses.append(
        _stop_phrase(replace(desc, goal_room="") if just_entered and desc.goal_landmark else desc, rng)
    )
    # Long paths: drop landmark detail of the middle legs first, R2R annotators summarise too.
    if len(clauses) > 6:
        keep = clauses[:2] + clauses[-3:]
        clauses = keep
    return _sentences(clauses, rng, max_sentences=rng.choice([2, 3, 3, 4]))


def _about(length: float, rng: random.Random) -> str:
    steps = max(1, round(length / 0.75))
    if length < 1.5:
        return _pick(rng, ["a couple of steps", "just a few steps", "a short distance"])
    metres = max(1, round(length))
    return _pick(
        rng, [f"about {metres} meters", f"roughly {steps} steps", f"around {metres} meters", "a little way"]
    )


def _indefinite(name: str) -> str:
    """'the red sofa' -> 'a red sofa' (first mention in a narration)."""
    bare = name.removeprefix("the ")
    return ("an " if bare[:1] in "aeiou" else "a ") + bare


def _render_rxr(desc: PathDescription, rng: random.Random) -> str:
    """A guide's narration: where you are, every leg with its length, rooms and landmarks, and the goal."""
    legs = _legs(desc)
    out = []
    if desc.start_room:
        out.append(
            _pick(
                rng, ["You are starting in {r}.", "You begin in {r}.", "Right now you are standing in {r}."]
            ).format(r=desc.start_room)
        )
    # Only an object passed within the first few metres is visible "from the start"; later ones come with their leg.
    intro = legs[0].passes[:1] if legs[0].passes and legs[0].passes[0].distance_along < 3.0 else []
    if intro:
        lm = intro[0]
        where = "in front of you" if lm.side == "ahead" else f"to your {lm.side}"
        out.append(
            _pick(rng, ["You can see {o} {w}.", "There is {o} {w}.", "Notice {o} {w}."]).format(
                o=_indefinite(lm.name), w=where
            )
        )
    if desc.start_turn:
        t = _pick(rng, _TURN[desc.start_turn])
        out.append(_pick(rng, ["First, {t}.", "To begin, {t}.", "Before you move, {t}."]).format(t=t))
    for i, leg in enumerate(legs):
        verb = _pick(rng, _WALK) if i == 0 else _pick(rng, ["continue", "keep going", "keep walking", "walk"])
        s = f"{verb} forward {_about(leg.length, rng)}"
        if leg.enters:
            s += ", " + _pick(rng, ["going through the doorway into", "entering", "until you get into"])
            s += " " + leg.enters[0]
            if len(leg.enters) > 1:
                s += " and then " + leg.enters[-1]
        out.append(s[0].upper() + s[1:] + ".")
        if leg.enters and rng.random() < 0.35:
            out.append(
                _pick(rng, ["You are now in {r}.", "This is {r}.", "Now you are inside {r}."]).format(
                    r=leg.enters[-1]
                )
            )
        for lm in leg.passes[len(intro) : len(intro) + 2] if i == 0 else leg.passes[:2]:
            if lm.side == "ahead":
                phrase = _pick(rng, ["You will walk right up to {o}.", "Head toward {o} in front of you."])
            else:
                phrase = _pick(
                    rng,
                    [
                        "You will pass {o} on your {s}.",
                        "On your {s} you will see {o}.",
                        "Keep {o} on your {s} as you go.",
                        "{O} should be on your {s}.",
                    ],
                )
            out.append(phrase.format(o=lm.name, O=lm.name[0].upper() + lm.name[1:], s=lm.side))
        if leg.turn:
            t = _pick(rng, _TURN[leg.turn])
            out.append(
                _pick(rng, ["Now {t}.", "Here, {t}.", "When you reach that point, {t}.", "Then {t}."]).format(
                    t=t
                )
            )
    if desc.goal_landmark:
        out.append(
            _pick(
                rng,
                [
                    "Look for {o}, that is where you are going.",
                    "Ahead of you there should be {o}.",
                    "You should be able to see {o} now.",
                ],
            ).format(o=_indefinite(desc.goal_landmark))
        )
    stop = _stop_phrase(desc, rng)
    out.append(_pick(rng, ["Finally, {s}.", "Once you get there, {s}.", "At the end, {s}."]).format(s=stop))
    if desc.goal_room and rng.random() < 0.4:
        out.append(
            _pick(rng, ["You should now be in {r}.", "You are now inside {r}."]).format(r=desc.goal_room)
        )
    out.append(
        _pick(
            rng,
            [
                "That's the end of your path.",
                "You're done.",
                "That is your destination.",
                "You have arrived.",
            ],
        )
    )
    return " ".join(out)


def render_instruction(desc: PathDescription, seed: int, style: str = "r2r") -> str:
    """English instruction for a described path; the same description and seed give the same text."""
    if style not in STYLES:
        raise ValueError(f"unknown instruction style '{style}'; available: {', '.join(STYLES)}")
    rng = random.Random(seed)
    text = _render_r2r(desc, rng) if style == "r2r" else _render_rxr(desc, rng)
    return re.sub(r"\s+", " ", text).strip()


def generate_instruction(
    path: Sequence[Sequence[float]],
    semantics: HouseSemantics,
    seed: int,
    style: str = "r2r",
    start_heading: Sequence[float] | None = None,
    config: InstructionConfig | None = None,
) -> str:
    """Instruction for following `path` ([x, y, z] points) in the house, from the start heading (x, z)."""
    return render_instruction(describe_path(path, semantics, start_heading, config), seed, style)


# ------------------------------------------------------------------------------------------------ tokens

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
PAD, UNK = "<pad>", "<unk>"
MAX_TOKENS = 200  # R2R-CE pads instruction_tokens to 200


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, like VLN-CE's instruction tokenizer."""
    return _TOKEN_RE.findall(text.lower())


def build_vocab(texts: Sequence[str]) -> dict:
    """An `instruction_vocab` object in R2R-CE's layout from the words of `texts` (sorted, so deterministic)."""
    words = [PAD, UNK, *sorted({w for t in texts for w in tokenize(t)} - {PAD, UNK})]
    index = {w: i for i, w in enumerate(words)}
    return {
        "word_list": words,
        "word2idx_dict": index,
        "stoi": dict(index),
        "itos": list(words),
        "num_vocab": len(words),
        "UNK_INDEX": 1,
        "PAD_INDEX": 0,
    }


def encode(text: str, vocab: dict, length: int = MAX_TOKENS) -> list[int]:
    """Token ids of `text`, truncated or padded with PAD_INDEX to `length` (R2R-CE's fixed 200)."""
    stoi, unk, pad = vocab["stoi"], vocab["UNK_INDEX"], vocab["PAD_INDEX"]
    ids = [stoi.get(w, unk) for w in tokenize(text)][:length]
    return ids + [pad] * (length - len(ids))
