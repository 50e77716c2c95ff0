"""Live mode on the real env (envs.VLNCEEnv, embedded simulator, generated split) with the oracle agent.

Slow: the first use of a generated split builds its houses (about a minute on one CPU core). Each check runs in
a fresh Python process: the embedded renderer keeps one GL context per process, bound to the thread that made
it, so a test process in which other tests already rendered on the main thread cannot host a live session.
"""

from __future__ import annotations

import json

import pytest


def _in_subprocess(check: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = f"import tests.viz.test_live_real_env as m; m.{check}()"
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


@pytest.mark.slow
def test_live_session_with_real_env_and_oracle() -> None:
    _in_subprocess("check_session")


@pytest.mark.slow
def test_live_frames_over_http_are_rendered_on_the_env_thread() -> None:
    """Each HTTP request runs on a new thread; frames must still come from the GL context's own thread."""
    _in_subprocess("check_http_frames")


def check_session() -> None:
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
    session.close()


def _smooth(jpeg: bytes) -> float:
    """Mean absolute difference between neighbouring pixels: about 2 for a rendered room, 25+ for GL garbage."""
    import io

    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.float64)
    return float(np.abs(np.diff(a, axis=1)).mean())


def check_http_frames() -> None:
    import http.client

    from benchmarks.cli.viz import _live_session
    from viz.server import ViewerConfig, make_server, start_in_thread

    session = _live_session("r2r_val_unseen:1", "oracle", None, None, "embedded")
    session.reset()  # as the CLI does, on the main thread of the command
    srv = make_server(None, ViewerConfig(open_browser=False), live=session)
    start_in_thread(srv)
    try:
        for _ in range(3):
            conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
            conn.request(
                "POST", "/api/live/step", body=b'{"n": 2}', headers={"Content-Type": "application/json"}
            )
            assert conn.getresponse().status == 200
            conn.close()
            conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
            conn.request("GET", "/api/live/frame.jpg")
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            assert resp.status == 200 and _smooth(body) < 10, _smooth(body)
    finally:
        srv.shutdown()
        srv.server_close()
        session.close()
