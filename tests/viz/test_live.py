"""Live mode: LiveSession over a fake env + agent, its HTTP routes, and the live page in headless Chromium."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.viz.browser import ARTIFACTS, skip_reason
from tests.viz.fake_live import FakeLiveAgent, FakeLiveEnv
from viz.live import LiveConfig, LiveError, LiveSession, encode_jpeg
from viz.server import ViewerConfig, ViewerServer, make_server, start_in_thread


def make_session(agent: bool = True, topdown: Any = None) -> LiveSession:
    return LiveSession(
        env=FakeLiveEnv(),
        agent=FakeLiveAgent() if agent else None,
        config=LiveConfig(episode_id="7"),
        agent_name="fake",
        topdown=topdown,
    )


def test_reset_step_and_finish() -> None:
    s = make_session()
    st = s.reset()
    assert st["started"] and st["t"] == 0 and st["uid"] == "r2r_val_unseen:7"
    assert st["instruction"].startswith("Walk straight") and st["steps"][0][
        "distance_to_goal"
    ] == pytest.approx(2.0)
    st = s.step_agent(2)
    assert st["t"] == 2 and [x["action"] for x in st["steps"][1:]] == [1, 1]
    assert st["steps"][2]["position"][2] == pytest.approx(-0.5)
    assert st["n_decisions"] == 1 and st["decisions"][0]["raw_text"].startswith("The next action")
    st = s.step_agent(50)  # runs until the agent stops
    assert st["done"] and st["outcome"] == "success" and st["t"] == 7
    assert st["parse_failures"] == 1
    assert s.step_agent(1)["t"] == 7  # nothing more to do
    with pytest.raises(LiveError, match="reset"):
        s.manual("forward")
    st = s.reset()
    assert st["t"] == 0 and not st["done"] and st["n_decisions"] == 0  # agent reset too
    assert json.dumps(st, allow_nan=False)  # JSON-safe (numpy poses converted)


def test_manual_actions_and_frames() -> None:
    s = make_session(agent=False)
    with pytest.raises(LiveError, match="reset first"):
        s.manual(1)
    s.reset()
    first = s.frame_jpeg()
    assert first is not None and first[:2] == b"\xff\xd8"
    st = s.manual("left")
    assert st["steps"][-1]["source"] == "manual" and st["steps"][-1]["action"] == 2
    assert s.frame_jpeg() != first
    st = s.manual(1)
    assert st["steps"][-1]["position"][0] == pytest.approx(-0.25 * np.sin(np.radians(15)))
    with pytest.raises(LiveError, match="unknown action"):
        s.manual("jump")
    with pytest.raises(LiveError, match="0-3"):
        s.manual(7)
    with pytest.raises(LiveError, match="no agent"):
        s.step_agent()
    assert s.manual("stop")["done"]


def test_map_framing_without_renderer_and_with_one() -> None:
    st = make_session().reset()
    m = st["map"]
    assert not st["has_map_image"] and m["image"] is None
    for x, _, z in ([0, 0, 0], [0, 0, -2]):  # start and goal inside the framed map
        col, row = (x - m["origin"][0]) / m["resolution"], (z - m["origin"][1]) / m["resolution"]
        assert 0 < col < m["width"] and 0 < row < m["height"]

    def topdown(env: Any) -> tuple[np.ndarray, dict[str, Any]]:
        return np.full((40, 50, 3), 200, np.uint8), {"origin": [-1.25, -2.5], "resolution": 0.05}

    s = make_session(topdown=topdown)
    st = s.reset()
    assert st["has_map_image"] and st["map"]["width"] == 50 and st["map"]["height"] == 40
    assert s.map_png()[:4] == b"\x89PNG"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="episode_id"):
        LiveConfig(episode_id="")
    with pytest.raises(ValueError, match="jpeg_quality"):
        LiveConfig(episode_id="1", jpeg_quality=0)
    assert encode_jpeg(np.zeros((8, 8, 3), np.uint8), 80)[:2] == b"\xff\xd8"


@pytest.fixture()
def live_server() -> Iterator[ViewerServer]:
    srv = make_server(None, ViewerConfig(open_browser=False), live=make_session())
    start_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()


def request(srv: ViewerServer, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=5)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    return resp.status, out


def test_live_http_routes(live_server: ViewerServer) -> None:
    status, body = request(live_server, "GET", "/")
    assert status == 200 and b"live.js" in body
    assert json.loads(request(live_server, "GET", "/api/live/state")[1])["started"] is False
    assert request(live_server, "GET", "/api/live/frame.jpg")[0] == 404
    assert request(live_server, "POST", "/api/live/step", {"n": 1})[0] == 409  # not started
    assert json.loads(request(live_server, "POST", "/api/live/reset")[1])["t"] == 0
    status, body = request(live_server, "GET", "/api/live/frame.jpg?v=1")
    assert status == 200 and body[:2] == b"\xff\xd8"
    assert json.loads(request(live_server, "POST", "/api/live/step", {"n": 3})[1])["t"] == 3
    assert json.loads(request(live_server, "POST", "/api/live/action", {"action": "left"})[1])["t"] == 4
    assert request(live_server, "POST", "/api/live/action", {"action": "fly"})[0] == 400
    assert request(live_server, "POST", "/api/live/step", {"n": "many"})[0] == 400
    # no renderer: the page draws the path on a blank map
    assert request(live_server, "GET", "/api/live/topdown.png")[0] == 404
    assert request(live_server, "GET", "/api/episodes")[0] == 404  # no run folder in live mode
    # every request ran on its own server thread, but the env only ever saw the session's one env thread
    assert len(live_server.live.env.threads) == 1
    assert threading.get_ident() not in live_server.live.env.threads
    assert request(live_server, "GET", "/files/run.json")[0] == 404


@pytest.mark.browser
@pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
def test_live_page_steps_agent_and_manual_keys(live_server: ViewerServer, browser) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server.url)
    page.wait_for_function("window.live.state && window.live.state.started")
    assert "Walk straight ahead" in page.inner_text("#instruction")
    marker0 = page.get_attribute("#map", "data-marker")
    page.click("#btn-step")
    page.wait_for_function("window.live.state.t === 1")
    assert page.get_attribute("#map", "data-marker") != marker0
    assert "move forward 75 cm" in page.inner_text("#answers")
    page.click("#btn-run")
    page.wait_for_function("window.live.state.done", timeout=5000)
    assert "success" in page.inner_text("#status")
    assert page.locator(".raw.first").count() == 1  # the unparsable first answer is shown in red
    page.click("#btn-reset")
    page.wait_for_function("window.live.state.t === 0 && !window.live.state.done")
    page.check("#manual")
    page.keyboard.press("a")
    page.wait_for_function("window.live.state.t === 1")
    page.keyboard.press("ArrowUp")
    page.wait_for_function("window.live.state.t === 2")
    steps = page.evaluate("window.live.state.steps.map(s => [s.action, s.source])")
    assert steps[1:] == [[2, "manual"], [1, "manual"]]
    page.wait_for_function("document.getElementById('frame').complete")
    page.screenshot(path=str(ARTIFACTS / "live.png"))
    page.close()
    assert not errors, errors
