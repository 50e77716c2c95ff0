"""benchmarks.failure_modes: each failure class on hand-made records, and the tool on a recorded run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks import failure_modes, runner
from benchmarks.cli import app
from benchmarks.failure_modes import classify, route_position, summarise
from envs.constants import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT
from tests.benchmarks import fakes
from viz.run_folder import RunFolderError

# Reference path: 5 m along x (leg 0), then 5 m along z (leg 1); the goal at (5, 0, 5).
PATH = [[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [5.0, 0.0, 5.0]]
GOAL = np.array([5.0, 5.0])


def record(xz: list[tuple[float, float]], actions: list[int], sr: float = 0.0, collided: set[int] = frozenset()):
    """A rollout record walking through floor points `xz`; actions[i] led to point i + 1."""
    assert len(actions) == len(xz) - 1
    steps = []
    for i, (x, z) in enumerate(xz):
        steps.append(
            {
                "t": i,
                "position": [x, 0.0, z],
                "action": actions[i - 1] if i else None,
                "collided": i in collided,
                "distance_to_goal": float(np.linalg.norm(np.array([x, z]) - GOAL)),
            }
        )
    return {"uid": "r2r_val_unseen:1", "reference_path": PATH, "success_distance": 3.0, "steps": steps,
            "metrics": {"sr": sr}}  # fmt: skip


def test_route_position_projects_on_the_polyline():
    path = np.array([[0.0, 0.0], [5.0, 0.0], [5.0, 5.0]])
    assert route_position(np.array([2.0, 1.0]), path) == pytest.approx((1.0, 2.0, 0))
    assert route_position(np.array([6.0, 4.0]), path) == pytest.approx((1.0, 9.0, 1))


def test_each_class():
    walk = [(float(x), 0.0) for x in range(3)]  # 2 m along leg 0, on the route
    short = classify(record(walk, [MOVE_FORWARD, STOP]))
    assert short.category == "stopped_short" and short.progress == pytest.approx(0.2)
    assert short.left_leg is None and short.route_m == pytest.approx(10.0)

    off = classify(record([(0, 0), (1, 0), (1, 2.5), (1, 3)], [MOVE_FORWARD, MOVE_FORWARD, STOP]))
    assert off.category == "left_route" and off.left_leg == 0 and off.left_progress == pytest.approx(0.1)

    late = classify(record([(0, 0), (5, 0), (5, 3), (8, 3)], [MOVE_FORWARD, MOVE_FORWARD, STOP]))
    assert late.category == "missed_stop"  # it passed within 3 m of the goal at (5, 3)

    spin = classify(record([(0, 0)] * 4, [TURN_LEFT, TURN_LEFT, TURN_LEFT]))
    assert spin.category == "no_stop" and spin.max_progress == 0.0

    done = classify(record([(0, 0), (5, 0), (5, 4)], [MOVE_FORWARD, STOP], sr=1.0))
    assert done.category == "success" and done.progress == pytest.approx(0.9)

    bumps = classify(record([(0, 0), (1, 0), (1, 0), (1, 0)], [MOVE_FORWARD, MOVE_FORWARD, STOP], collided={2}))
    assert (bumps.forward_steps, bumps.collided_forward) == (2, 1)


def test_summary_counts_and_table():
    rows = [
        classify(record([(0, 0), (1, 0), (2, 0)], [MOVE_FORWARD, STOP])),
        classify(record([(0, 0), (1, 0), (1, 3)], [MOVE_FORWARD, STOP], collided={1})),
        classify(record([(0, 0), (5, 0), (5, 4)], [MOVE_FORWARD, STOP], sr=1.0)),
    ]
    s = summarise(rows)
    assert s["episodes"] == 3 and s["classes"]["left_route"]["episodes"] == 1
    assert s["classes"]["stopped_short"]["share"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["left_route_legs"] == {0: 1} and s["collided_forward_share"] == pytest.approx(1 / 3, abs=1e-4)
    table = failure_modes.failure_table(s)
    assert "left the route" in table and "leg 0: 1" in table and "33.3%" in table


def test_success_by_the_routes_legs():
    two_legs = classify(record([(0, 0), (5, 0), (5, 4)], [MOVE_FORWARD, STOP], sr=1.0))
    assert two_legs.legs == 2
    long = {**record([(0, 0), (1, 0), (2, 0)], [MOVE_FORWARD, STOP]), "reference_path": [[x, 0.0, 0.0] for x in range(9)]}
    eight_legs = [classify(long), classify({**long, "metrics": {"sr": 1.0}}), classify(long)]
    assert [r.legs for r in eight_legs] == [8, 8, 8]
    s = summarise([two_legs, *eight_legs])
    assert s["success_by_legs"] == {
        "0-3": {"episodes": 1, "successes": 1, "sr": 1.0},
        "8-9": {"episodes": 3, "successes": 1, "sr": 0.3333},
    }
    assert "success by the route's legs: 0-3: 1/1 (100.0%), 8-9: 1/3 (33.3%)" in failure_modes.failure_table(s)


def test_collided_share_without_the_never_stopping_episodes():
    # A stuck episode (no STOP, every forward step against a wall) dominates the run's collided share.
    rows = [
        classify(record([(0, 0), (1, 0), (2, 0)], [MOVE_FORWARD, STOP], collided={1})),
        classify(record([(0, 0), (1, 0), (2, 0), (3, 0)], [MOVE_FORWARD, MOVE_FORWARD, STOP])),
        classify(record([(0, 0)] * 7, [MOVE_FORWARD] * 6, collided={1, 2, 3, 4, 5, 6})),
    ]
    s = summarise(rows)
    assert s["classes"]["no_stop"]["episodes"] == 1
    assert s["collided_forward_share"] == pytest.approx(7 / 9, abs=1e-4)
    assert s["collided_forward_share_without_no_stop"] == pytest.approx(1 / 3, abs=1e-4)
    assert "77.8% (33.3% without the 1 never-stopping episodes)" in failure_modes.failure_table(s)
    only_stuck = summarise(rows[2:])
    assert only_stuck["collided_forward_share_without_no_stop"] is None
    assert "100.0% (- without the 1 never-stopping episodes)" in failure_modes.failure_table(only_stuck)


def test_bad_record_names_the_field():
    bad = record([(0, 0), (1, 0)], [STOP])
    del bad["reference_path"]
    with pytest.raises(RunFolderError, match="reference_path"):
        classify(bad)


def test_tool_on_a_recorded_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setattr(runner, "DEFAULT_FACTORIES", fakes.FAKE_FACTORIES)
    monkeypatch.setenv("NAVILA_FAKE_EPISODES", "3")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["eval", "--agent", "oracle", "--split", "r2r_val_unseen", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert failure_modes.main([str(out)]) == 2  # no --record: nothing to classify
    assert "evaluate with --record" in capsys.readouterr().err
    res = CliRunner().invoke(
        app, ["eval", "--agent", "oracle", "--split", "r2r_val_unseen", "--output", str(tmp_path / "rec"), "--record"]
    )
    assert res.exit_code == 0, res.output
    assert failure_modes.main([str(tmp_path / "rec"), "--json", str(tmp_path / "f.json")]) == 0
    summary = json.loads((tmp_path / "f.json").read_text())
    assert summary["classes"]["success"]["episodes"] == 3 and len(summary["per_episode"]) == 3


def test_first_turn_against_the_first_waypoint():
    from envs.geometry import heading_to_quaternion

    # Start at the origin facing -z; the route starts along +x, i.e. 90 degrees to the right.
    headings = [0.0, -15.0, -30.0, -45.0, -45.0]
    rec = record([(0, 0)] * 4 + [(1, 0)], [TURN_RIGHT, TURN_RIGHT, TURN_RIGHT, MOVE_FORWARD])
    for step, h in zip(rec["steps"], headings, strict=True):
        step["rotation"] = heading_to_quaternion(np.radians(h)).tolist()
    row = classify(rec)
    assert row.first_turn_needed == pytest.approx(-90.0) and row.first_turn_made == pytest.approx(-45.0)
    assert row.first_turn_error == pytest.approx(45.0)
    turn = summarise([row])["first_turn"]
    assert turn["right_direction_share"] == 1.0 and turn["share_error_over_45"] == 0.0
    assert classify(record([(0, 0), (1, 0)], [STOP])).first_turn_error is None  # no rotations recorded
