"""Builds a synthetic run folder in the exact format of docs/rollout_format.md, for viewer and video tests.

The episodes are simulated with the real task kinematics (0.25 m forward, 15° turns, agent looking along -z)
so poses, headings, distances and the map transform are consistent, and the model decisions are grouped the
way the NaVILA agent groups them (up to 3 identical low-level actions per answer). Frames and the top-down map
are drawn with numpy/PIL so that a test (or a screenshot) can see which step a frame belongs to.

Episodes written by `build_run` (uids r2r_val_unseen:<id>):
  1  success, clean answers from a model with a progress monitor (each decision's "progress"; the last one's STOP
     made by the monitor, as `eval --monitor-stop 0.9` records it)
  2  failure, one unparsable answer (parse_ok false, retried), parse_failures = 1
  3  status "error" with a traceback, no record
  4  success, longer path with a right turn; decision 4 retried after an unparsable first answer
     (the NaVILA agent's form: retried true, first_raw_text), counted in parse_failures
  5.. extra results.jsonl rows (no record) when n_episodes > 4, for large-list tests
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

FORWARD, LEFT, RIGHT, STOP = 1, 2, 3, 0
MAP_ORIGIN = (-1.0, -7.0)  # world (x0, z0) of map pixel (0, 0)
MAP_RES = 0.05  # metres per pixel
MAP_W, MAP_H = 220, 180  # 11 m x 9 m
SPLIT = "r2r_val_unseen"

ROOMS = [  # (x0, z0, x1, z1, colour): a hall and two rooms
    (-0.5, -1.0, 6.0, 1.0, (222, 214, 196)),
    (4.0, -6.5, 9.5, -1.0, (200, 218, 232)),
    (-0.5, -6.5, 4.0, -1.0, (214, 232, 206)),
]


def _quat_yaw(yaw: float) -> list[float]:
    """Quaternion [x, y, z, w] of a rotation by `yaw` radians about +y (habitat: y up)."""
    return [0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2)]


def simulate(actions: list[int], start: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> list[dict[str, Any]]:
    """Poses after reset and after each action: the agent looks along -z rotated by its yaw."""
    pos = np.array(start, dtype=float)
    yaw = 0.0
    poses = [{"position": pos.tolist(), "yaw": yaw, "action": None}]
    for a in actions:
        if a == FORWARD:
            pos = pos + 0.25 * np.array([-math.sin(yaw), 0.0, -math.cos(yaw)])
        elif a == LEFT:
            yaw += math.radians(15)
        elif a == RIGHT:
            yaw -= math.radians(15)
        poses.append({"position": [round(float(v), 4) for v in pos], "yaw": yaw, "action": a})
    return poses


def frames_seen(t: int, n: int = 8) -> list[int]:
    """Step indices the model saw at step t (NaVILA's sampling; -1 = black pad), current frame last."""
    buf = list(range(t + 1))
    if len(buf) < n:
        buf = [-1] * (n - len(buf)) + buf
    idx = np.linspace(0, len(buf) - 1, num=n - 1, endpoint=False, dtype=int)
    return [buf[i] for i in idx] + [buf[-1]]


def group_decisions(actions: list[int], fail_at: set[int] = frozenset()) -> list[dict[str, Any]]:
    """Model answers that produce `actions`: runs of up to 3 equal actions; `fail_at` = indices of the
    parsed answers that are preceded by an unparsable one (parse_ok false, then retried at the same step)."""
    decisions: list[dict[str, Any]] = []
    t = 0
    i = 0
    while i < len(actions):
        a = actions[i]
        n = 1
        while a != STOP and n < 3 and i + n < len(actions) and actions[i + n] == a:
            n += 1
        # An unparsable answer first: the agent counts it and asks again at the same step.
        if sum(d["parse_ok"] for d in decisions) in fail_at:
            decisions.append(
                {
                    "k": len(decisions),
                    "t": t,
                    "frames_seen": frames_seen(t),
                    "raw_text": "I would like to look around the kitchen before deciding.",
                    "action": None,
                    "amount": None,
                    "low_level": [],
                    "parse_ok": False,
                    "retried": False,
                }
            )
        if a == FORWARD:
            text, name, amount = f"The next action is move forward {25 * n} cm.", "forward", 25 * n
        elif a == LEFT:
            text, name, amount = f"The next action is turn left {15 * n} degrees.", "left", 15 * n
        elif a == RIGHT:
            text, name, amount = f"The next action is turn right {15 * n} degrees.", "right", 15 * n
        else:
            text, name, amount = "The next action is stop.", "stop", None
        retried = bool(decisions) and decisions[-1]["t"] == t and not decisions[-1]["parse_ok"]
        decisions.append(
            {
                "k": len(decisions),
                "t": t,
                "frames_seen": frames_seen(t),
                "raw_text": text,
                "action": name,
                "amount": amount,
                "low_level": [a] * n,
                "parse_ok": True,
                "retried": retried,
            }
        )
        i += n
        t += n
    return decisions


def draw_frame(t: int, yaw: float, size: int) -> Image.Image:
    """A fake egocentric view: floor/ceiling/walls whose colour follows the heading, step number printed."""
    img = Image.new("RGB", (size, size), (40, 40, 48))
    d = ImageDraw.Draw(img)
    hue = (math.degrees(yaw) % 360) / 360.0
    wall = tuple(int(120 + 100 * math.sin(2 * math.pi * (hue + k / 3))) for k in range(3))
    h = size // 2
    d.rectangle([0, h, size, size], fill=(150, 128, 100))  # floor
    d.rectangle([0, 0, size, h // 2], fill=(235, 235, 230))  # ceiling
    d.rectangle([0, h // 2, size, h], fill=wall)
    door = int((t * 7) % max(size - size // 4, 1))
    d.rectangle([door, h // 2 + 4, door + size // 5, h + size // 6], fill=(90, 60, 40))
    d.text((4, 4), f"t={t}", fill=(0, 0, 0))
    return img


def draw_topdown() -> Image.Image:
    """A top-down map: rooms on a dark background, like envs/topdown.py draws them (no path)."""
    img = Image.new("RGB", (MAP_W, MAP_H), (60, 60, 66))
    d = ImageDraw.Draw(img)
    for x0, z0, x1, z1, colour in ROOMS:
        c0 = ((x0 - MAP_ORIGIN[0]) / MAP_RES, (z0 - MAP_ORIGIN[1]) / MAP_RES)
        c1 = ((x1 - MAP_ORIGIN[0]) / MAP_RES, (z1 - MAP_ORIGIN[1]) / MAP_RES)
        d.rectangle([c0, c1], fill=colour, outline=(30, 30, 30), width=2)
    return img


EPISODES: dict[str, dict[str, Any]] = {
    "1": {
        "actions": [LEFT] * 6 + [FORWARD] * 12 + [STOP],
        "fail_at": set(),
        "instruction": "Turn left and walk down the hallway. Stop at the end of the hall next to the plant.",
        "monitor": True,
    },
    "2": {
        "actions": [FORWARD] * 5 + [RIGHT] * 3 + [FORWARD] * 4 + [STOP],
        "fail_at": {2},
        "instruction": "Walk forward into the green room and stop beside the sofa on your left.",
    },
    "4": {
        "actions": [FORWARD] * 9 + [RIGHT] * 6 + [FORWARD] * 10 + [STOP],
        "fail_at": set(),
        "retry_at": 4,
        "instruction": "Go straight through the doorway, turn right, and wait at the blue bedroom window.",
    },
}
GOALS = {"1": (2.0, 0.0, 0.0), "2": (0.5, 0.0, -5.0), "4": (3.5, 0.0, -1.75)}
STARTS = {"1": (5.0, 0.0, 0.0), "2": (2.0, 0.0, 0.0), "4": (1.0, 0.0, 0.5)}


def _metrics(poses: list[dict[str, Any]], goal: np.ndarray, n_collisions: int) -> dict[str, Any]:
    pts = np.array([p["position"] for p in poses])
    dists = np.linalg.norm(pts - goal, axis=1)
    tl = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
    ne = float(dists[-1])
    sr = 1.0 if ne <= 3.0 else 0.0
    shortest = float(dists[0])
    return {
        "ne": round(ne, 3),
        "os": 1.0 if dists.min() <= 3.0 else 0.0,
        "sr": sr,
        "spl": round(sr * shortest / max(shortest, tl), 3),
        "ndtw": round(0.5 + 0.4 * sr, 3),
        "sdtw": round(sr * (0.5 + 0.4 * sr), 3),
        "tl": round(tl, 3),
        "steps": len(poses) - 1,
        "collisions": n_collisions,
    }


def write_episode(run_dir: Path, ep_id: str, spec: dict[str, Any], frame_size: int) -> dict[str, Any]:
    """Write rollouts/<uid>/ (record.json, frames, topdown.png) and return the results.jsonl row."""
    uid = f"{SPLIT}:{ep_id}"
    ep_dir = run_dir / "rollouts" / uid.replace(":", "__")
    (ep_dir / "frames").mkdir(parents=True, exist_ok=True)
    poses = simulate(spec["actions"], STARTS[ep_id])
    goal = np.array(GOALS[ep_id])
    decisions = group_decisions(spec["actions"], spec["fail_at"])
    if "retry_at" in spec:  # the agent's own form: one decision that kept its unparsable first answer
        d = decisions[spec["retry_at"]]
        d.update(
            retried=True, first_raw_text="Go go go towards the window!!", reason="no action word; asked again"
        )
    if spec.get("monitor"):  # a model with a progress monitor; it made the last decision's STOP
        for d in decisions:
            d["progress"] = round(0.95 * d["k"] / (len(decisions) - 1), 3)
        decisions[-1]["reason"] = "progress monitor 0.950 >= 0.9: stop"
    ok_decisions = [d for d in decisions if d["parse_ok"]]
    decision_at = {d["t"]: d["k"] for d in ok_decisions}
    steps = []
    for t, p in enumerate(poses):
        frame = f"frames/{t:06d}.jpg"
        draw_frame(t, p["yaw"], frame_size).save(ep_dir / frame, quality=85)
        steps.append(
            {
                "t": t,
                "position": p["position"],
                "rotation": _quat_yaw(p["yaw"]),
                "action": p["action"],
                "collided": t == 3 and ep_id == "2",
                "distance_to_goal": round(float(np.linalg.norm(np.array(p["position"]) - goal)), 4),
                "frame": frame,
                "decision": decision_at.get(t),
            }
        )
    draw_topdown().save(ep_dir / "topdown.png")
    metrics = _metrics(poses, goal, sum(s["collided"] for s in steps))
    n_fail = sum(not d["parse_ok"] or bool(d.get("first_raw_text")) for d in decisions)
    record = {
        "format": "navila-agent-rollout/1",
        "uid": uid,
        "episode_id": ep_id,
        "split": SPLIT,
        "scene_id": "gen/h0003/h0003.glb",
        "instruction": spec["instruction"],
        "goal": list(goal),
        "success_distance": 3.0,
        "reference_path": [poses[0]["position"], poses[len(poses) // 2]["position"], list(goal)],
        "gt_locations": [p["position"] for p in poses[::2]],
        "steps": steps,
        "decisions": decisions,
        "metrics": metrics,
        "map": {
            "image": "topdown.png",
            "origin": list(MAP_ORIGIN),
            "resolution": MAP_RES,
            "width": MAP_W,
            "height": MAP_H,
        },
    }
    (ep_dir / "record.json").write_text(json.dumps(record, indent=1))
    return _result_row(ep_id, spec["instruction"], metrics, n_fail, len(decisions))


def _result_row(
    ep_id: str,
    instruction: str,
    metrics: dict[str, Any] | None,
    parse_failures: int,
    decisions: int,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "uid": f"{SPLIT}:{ep_id}",
        "episode_id": ep_id,
        "split": SPLIT,
        "scene_id": "gen/h0003/h0003.glb",
        "status": "error" if error else "ok",
        "error": error,
        "metrics": metrics or {},
        "parse_failures": parse_failures,
        "decisions": decisions,
        "instruction": instruction,
        "timings": {"sim_s": 0.4, "model_s": 3.1, "other_s": 0.2},
        "worker": 0,
    }


def build_run(run_dir: Path, n_episodes: int = 4, frame_size: int = 64) -> Path:
    """Write a complete run folder (run.json, results.jsonl, summary.json/md, rollouts/) and return it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "format": "navila-agent-run/1",
                "config": {"agent": "navila", "split": SPLIT, "record": True},
                "fingerprint": "0123abcd",
                "created": "2026-11-27T12:00:00+00:00",
            }
        )
    )
    rows = [
        write_episode(run_dir, "1", EPISODES["1"], frame_size),
        write_episode(run_dir, "2", EPISODES["2"], frame_size),
        _result_row(
            "3",
            "Exit the bathroom and go down the stairs.",
            None,
            0,
            0,
            error="Traceback (most recent call last):\n  ...\nRuntimeError: scene failed to load",
        ),
        write_episode(run_dir, "4", EPISODES["4"], frame_size),
    ]
    rng = np.random.default_rng(0)
    for i in range(5, n_episodes + 1):
        sr = float(rng.random() < 0.4)
        rows.append(
            _result_row(
                str(i),
                f"Synthetic instruction number {i}: walk to the chair.",
                {
                    "ne": round(float(rng.uniform(0, 9)), 3),
                    "os": sr,
                    "sr": sr,
                    "spl": round(sr * float(rng.random()), 3),
                    "ndtw": round(float(rng.random()), 3),
                    "sdtw": 0.0,
                    "tl": round(float(rng.uniform(2, 20)), 3),
                    "steps": int(rng.integers(10, 200)),
                    "collisions": 0,
                },
                int(rng.random() < 0.1),
                int(rng.integers(3, 40)),
            )
        )
    rows = rows[:n_episodes]
    with (run_dir / "results.jsonl").open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    ok = [r for r in rows if r["status"] == "ok"]
    summary = {
        k: round(float(np.mean([r["metrics"][k] for r in ok])), 3) for k in ("ne", "os", "sr", "spl", "ndtw")
    }
    summary.update({"episodes": len(rows), "errors": len(rows) - len(ok), "non_finite": {}, "dtw": "fastdtw"})
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "summary.md").write_text(
        "| metric | value |\n| --- | --- |\n"
        + "".join(f"| {k} | {v} |\n" for k, v in summary.items() if not isinstance(v, dict))
    )
    return run_dir
