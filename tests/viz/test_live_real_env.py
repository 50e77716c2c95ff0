"""Live mode on the real env (envs.VLNCEEnv, embedded simulator, generated split) with the oracle agent.

Slow: the first use of a generated split builds its houses (about a minute on one CPU core).
"""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_live_session_with_real_env_and_oracle() -> None:
    from benchmarks.cli.viz import _live_session

    session = _live_session("r2r_val_unseen:1", "oracle", None, None, "embedded")
    st = session.reset()
    assert st["uid"] == "r2r_val_unseen:1" and st["has_map_image"]
    m = st["map"]
    start = st["steps"][0]["position"]
    col, row = (start[0] - m["origin"][0]) / m["resolution"], (start[2] - m["origin"][1]) / m["resolution"]
    assert 0 <= col < m["width"] and 0 <= row < m["height"]  # the start lies on the map
    assert session.map_png()[:4] == b"\x89PNG" and session.frame_jpeg()[:2] == b"\xff\xd8"
    for _ in range(20):
        st = session.step_agent(50)
        if st["done"]:
            break
    assert st["done"] and st["outcome"] == "success"
    assert st["steps"][-1]["distance_to_goal"] < 3.0 and st["n_decisions"] > 0
    json.dumps(st, allow_nan=False)
    st = session.reset()
    st = session.manual("left")
    assert st["t"] == 1 and st["steps"][1]["source"] == "manual"
    session.env.close()
