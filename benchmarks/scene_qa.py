"""Scene question answering: auxiliary grounding samples about the current view, from the house's semantics.

NaVILA does not train on navigation data alone: it mixes in ScanQA and general VQA so that the model keeps
naming what it sees. Generated houses know their rooms and objects exactly, so every expert frame can carry a
question with an exact answer — the words the instructions use ("the blue bedroom", "the red sofa") tied to
the frames that show them, plus how far the agent can walk straight ahead (what the frozen ImageNet tower was
measured not to encode, and why the navigator walks into walls). `navila-agent collect --scene-qa-every K`
writes one such sample every K frames of each expert trajectory, beside the navigation samples and over the
same stored frames (no extra frames, no extra tower features).

A sample is a LLaVA conversation over the same 8 frames a decision at that step would see (NaVILA's frame
sampling), with NaVILA's video preamble and a question about the current observation:

    Q: ... and current observation <image>\\n. Answer about your current observation: Which room are you in?
    A: I am in the blue bedroom.

Three kinds of question, one per sampled frame in turn (`QA_KINDS`):
- `room`: the room the agent stands in (`HouseSemantics.room_at`), named as instructions name it;
- `object`: the nearest object in view — in the agent's room, within the camera's field of view and
  `max_distance` of its footprint — with its distance (whole metres) and side (left / ahead / right);
- `clearance`: how far the agent can move straight ahead before it would collide (`NavGrid.free_fraction`),
  in half metres up to `max_clearance`.

Facts are computed from geometry alone (`scene_facts`); occlusion by furniture inside a room is ignored.

`object_id_map` is the dense counterpart for the tower (`collect --object-size S`, `train-tower --tasks objects`):
which object, if any, each pixel of a frame shows. It needs no semantic render pass: every pixel's depth puts the
surface it sees at a point in the house, and the point lies in an object's box or in none (walls, floors, doors).
Occlusion is exact this way, because the depth is what the camera saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.constants import CAMERA_HEIGHT_M, HFOV_DEG
from envs.datasets.instructions import object_name, room_name
from envs.geometry import heading_to_forward
from envs.scenes.semantics import HouseSemantics

QA_KINDS = ("room", "object", "clearance")
QUESTIONS = {
    "room": "Which room are you in?",
    "object": "What is the nearest object in view?",
    "clearance": "How far can you move forward?",
}
SIDE_DEG = 15.0  # bearings within ±15° of straight ahead are "ahead"


@dataclass(frozen=True)
class SceneFacts:
    """What is true of one pose in a generated house."""

    room: str  # "the blue bedroom"; "" between rooms (a doorway)
    nearest_object: str  # "the red sofa"; "" when nothing is in view
    object_distance: float  # metres from the agent to the object's footprint (nan when none)
    object_side: str  # "left" | "ahead" | "right" | ""
    clearance: float  # metres the agent can move straight ahead (capped at max_clearance)


def scene_facts(
    semantics: HouseSemantics,
    grid: Any,
    position: Sequence[float],
    heading: float,
    hfov_deg: float = HFOV_DEG,
    max_distance: float = 4.0,
    max_clearance: float = 3.0,
) -> SceneFacts:
    """The room, the nearest object in view and the free distance ahead of an agent at `position` facing `heading`.

    `heading` is habitat's yaw in radians (0 faces -z, positive turns left); `grid` a `NavGrid` (its
    `free_fraction` measures the clearance on the eroded navigable cells, i.e. what the agent's body can reach).
    """
    x, z = float(position[0]), float(position[2])
    fwd = heading_to_forward(heading)  # [x, 0, z]; habitat: yaw 0 looks along -z
    room = semantics.room_at(x, z)
    best, best_d, best_bearing = None, max_distance, 0.0
    if room is not None:
        for obj in semantics.objects:
            if obj.room_id != room.id:
                continue
            dx, dz = obj.position[0] - x, obj.position[2] - z
            # Bearing: positive to the right. Right of forward (fx, fz) is (-fz, fx) in x-z.
            ahead = dx * fwd[0] + dz * fwd[2]
            right = dx * -fwd[2] + dz * fwd[0]
            bearing = math.degrees(math.atan2(right, ahead))
            if abs(bearing) > hfov_deg / 2:
                continue
            d = max(0.0, math.hypot(dx, dz) - 0.5 * max(obj.size[0], obj.size[2]))
            if d < best_d:
                best, best_d, best_bearing = obj, d, bearing
    side = ""
    if best is not None:
        side = "ahead" if abs(best_bearing) <= SIDE_DEG else ("right" if best_bearing > 0 else "left")
    p = np.array([x, float(position[1]), z])
    clearance = max_clearance * grid.free_fraction(p, p + max_clearance * fwd)
    return SceneFacts(
        room=room_name(room) if room is not None else "",
        nearest_object=object_name(best) if best is not None else "",
        object_distance=best_d if best is not None else float("nan"),
        object_side=side,
        clearance=float(clearance),
    )


def object_id_map(
    depth: np.ndarray,
    position: Sequence[float],
    rotation_xyzw: Sequence[float],
    semantics: HouseSemantics,
    hfov_deg: float = HFOV_DEG,
    camera_height: float = CAMERA_HEIGHT_M,
    margin: float = 0.05,
    stride: int = 1,
) -> np.ndarray:
    """Which object each pixel shows: [H, W] int16, 1 + the object's index in `semantics.objects`, 0 for none.

    `depth` [H, W] is the frame's z-depth in metres (0 where nothing was hit), seen from the agent at `position`
    (its feet; the camera is `camera_height` above) with rotation `rotation_xyzw`, as the env reports them. Each
    pixel's surface point is tested against the objects' boxes (`SceneObject.position` is the centre of the
    footprint at the box's bottom, `size` its extent), grown by `margin` metres: thin things (rugs, paintings,
    windows) lie on the surfaces they decorate. A point in several boxes goes to the smallest (a lamp on a table).
    `stride` > 1 labels only every stride-th pixel of each row and column ([H // stride, W // stride], the pixel in
    the middle of each block): ~100 ms for a 224-px frame at stride 1, a few ms at 4.
    """
    from envs.render import quaternion_to_matrix

    d = np.asarray(depth, dtype=np.float64)
    if d.ndim == 3 and d.shape[-1] == 1:  # the env's [H, W, 1]
        d = d[..., 0]
    if d.ndim != 2:
        raise ValueError(f"object_id_map: depth must be [H, W], got shape {tuple(np.shape(depth))}")
    if stride < 1:
        raise ValueError(f"object_id_map: stride must be >= 1, got {stride}")
    h, w = d.shape
    ys = np.arange(stride // 2, h - h % stride, stride)  # the labelled pixels' rows and columns
    xs = np.arange(stride // 2, w - w % stride, stride)
    out = np.zeros((len(ys), len(xs)), dtype=np.int16)
    if not semantics.objects:
        return out
    tan_x = math.tan(math.radians(hfov_deg) / 2.0)
    tan_y = tan_x * h / w  # square pixels, as the renderer
    u = (2.0 * (xs + 0.5) / w - 1.0) * tan_x  # right, per labelled column
    v = (1.0 - 2.0 * (ys + 0.5) / h) * tan_y  # up, per labelled row (row 0 is the top of the image)
    d = d[np.ix_(ys, xs)]
    hit = d > 0
    dz = d[hit]
    rows, cols = np.nonzero(hit)
    camera = np.stack([u[cols] * dz, v[rows] * dz, -dz], axis=1)  # [P, 3]; the camera looks along -z
    eye = np.asarray(position, dtype=np.float64).reshape(3) + np.array([0.0, camera_height, 0.0])
    points = camera @ quaternion_to_matrix(np.asarray(rotation_xyzw, dtype=np.float64)).T + eye  # [P, 3] world
    best = np.zeros(len(points), dtype=np.int16)
    best_volume = np.full(len(points), np.inf)
    for k, obj in enumerate(semantics.objects):
        (px, py, pz), (sx, sy, sz) = obj.position, obj.size
        lo = np.array([px - sx / 2, py, pz - sz / 2]) - margin
        hi = np.array([px + sx / 2, py + sy, pz + sz / 2]) + margin
        inside = np.all((points >= lo) & (points <= hi), axis=1)
        volume = float(np.prod(hi - lo))
        take = inside & (volume < best_volume)
        best[take] = k + 1
        best_volume[take] = volume
    out[rows, cols] = best
    return out


def answer(kind: str, facts: SceneFacts, max_clearance: float = 3.0) -> str:
    """The answer sentence to question `kind` about `facts`."""
    if kind == "room":
        return f"I am in {facts.room}." if facts.room else "I am between two rooms."
    if kind == "object":
        if not facts.nearest_object:
            return "No object is in view."
        d = facts.object_distance
        where = "less than 1 meter away" if d < 1.0 else f"{round(d)} meter{'s' if round(d) > 1 else ''} away"
        side = "straight ahead" if facts.object_side == "ahead" else f"on the {facts.object_side}"
        return f"{facts.nearest_object[0].upper()}{facts.nearest_object[1:]}, {where} {side}."
    if kind == "clearance":
        c = facts.clearance
        if c < 0.25:
            return "I cannot move forward: the way is blocked."
        if c < 0.5:
            return "Less than half a meter."
        if c >= max_clearance - 1e-6:
            return f"At least {max_clearance:g} meters."
        half = math.floor(c * 2) / 2  # whole half metres, rounded down: never promise more room than there is
        return f"About {half:g} meter{'' if half == 1 else 's'}."
    raise ValueError(f"unknown scene QA kind '{kind}'; available: {', '.join(QA_KINDS)}")


def qa_prompt(question: str, num_frames: int) -> str:
    """NaVILA's video preamble (history `<image>` markers and the current one), then the question."""
    from agent.prompt import build_user_prompt

    marker = "\x00TASK\x00"
    preamble = build_user_prompt(marker, num_frames).split('Your assigned task is: "')[0]
    return f"{preamble}Answer about your current observation: {question}"


def qa_samples(
    key: str,
    episode_uid: str,
    facts: Sequence[SceneFacts],
    every: int,
    num_frames: int,
    frames_file: str,
    frame_indices: Any,
) -> list[dict[str, Any]]:
    """One sample every `every` frames (t = 0, every, 2·every, …), the kinds taken in turn.

    `facts[t]` describes frame t; `frame_indices(t + 1, num_frames)` picks the sample's frames (NaVILA's
    sampling, as for a decision at t). Samples carry `"task": "scene_qa"` and no action.
    """
    if every < 1:
        raise ValueError(f"--scene-qa-every must be >= 1, got {every}")
    out = []
    for n, t in enumerate(range(0, len(facts), every)):
        kind = QA_KINDS[n % len(QA_KINDS)]
        out.append(
            {
                "id": f"{key}:qa{t}",
                "traj": key,
                "episode_uid": episode_uid,
                "frames_file": frames_file,
                "t": t,
                "frames": frame_indices(t + 1, num_frames),
                "task": "scene_qa",
                "qa_kind": kind,
                "conversations": [
                    {"from": "human", "value": qa_prompt(QUESTIONS[kind], num_frames)},
                    {"from": "gpt", "value": answer(kind, facts[t])},
                ],
                "action": None,
                "copy": 0,
            }
        )
    return out
