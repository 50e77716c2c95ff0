"""The viewer page in headless Chromium: list, filters, timeline, map marker, parse-failure highlight.

Screenshots go to test-artifacts/viz/ (gitignored) so a failing run can be looked at.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.viz.browser import ARTIFACTS, skip_reason
from tests.viz.run_fixture import build_run
from viz.run_folder import load_run
from viz.server import ViewerConfig, ViewerServer, make_server, start_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")]


def _serve(run: Path) -> ViewerServer:
    srv = make_server(load_run(run), ViewerConfig(open_browser=False))
    start_in_thread(srv)
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    srv = _serve(build_run(tmp_path_factory.mktemp("browser") / "run", n_episodes=6))
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def page(browser):  # type: ignore[no-untyped-def]
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    pg.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def rows(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector_all("#episodes tbody tr", "trs => trs.map(t => t.dataset.uid)")


def test_list_loads_filters_searches_and_sorts(server: ViewerServer, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.url)
    page.wait_for_selector("#episodes tbody tr")
    assert len(rows(page)) == 6
    assert "6 of 6" in page.inner_text("#list-count")
    page.click("#filters button[data-filter=parse]")
    assert "r2r_val_unseen:2" in rows(page) and all(
        page.eval_on_selector(f'tr[data-uid="{u}"] td.pf', "e => Number(e.textContent) > 0")
        for u in rows(page)
    )
    page.click("#filters button[data-filter=error]")
    assert rows(page) == ["r2r_val_unseen:3"]
    page.click("#filters button[data-filter=success]")
    assert "r2r_val_unseen:1" in rows(page) and "r2r_val_unseen:2" not in rows(page)
    page.click("#filters button[data-filter=all]")
    page.fill("#search", "sofa")
    assert rows(page) == ["r2r_val_unseen:2"]
    page.fill("#search", "")
    page.click("th[data-key=ne]")  # ascending NE, errors (no NE) last
    ne = page.eval_on_selector_all("#episodes tbody tr td:nth-child(3)", "tds => tds.map(t => t.textContent)")
    values = [float(v) for v in ne if v != "–"]
    assert values == sorted(values) and ne[-1] == "–"
    page.click("th[data-key=ne]")
    ne = page.eval_on_selector_all("#episodes tbody tr td:nth-child(3)", "tds => tds.map(t => t.textContent)")
    values = [float(v) for v in ne if v != "–"]
    assert values == sorted(values, reverse=True)
    page.screenshot(path=str(ARTIFACTS / "list.png"))


def _frame_and_marker(page) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return page.get_attribute("#frame", "src") or "", page.get_attribute("#map", "data-marker") or ""


def test_episode_opens_and_timeline_moves_frame_and_marker(server: ViewerServer, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.url)
    page.click('tr[data-uid="r2r_val_unseen:4"]')
    page.wait_for_function("document.getElementById('map').dataset.marker")
    assert "Go straight through the doorway" in page.inner_text("#instruction")
    src0, marker0 = _frame_and_marker(page)
    assert src0.endswith("frames/000000.jpg")
    assert "step 0 / 26" in page.inner_text("#step-label")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    src3, marker3 = _frame_and_marker(page)
    assert src3.endswith("frames/000003.jpg") and marker3 != marker0  # three forward steps moved the marker
    assert page.evaluate("document.getElementById('frame').naturalWidth") in (0, 64)  # may still be loading
    page.wait_for_function(
        "document.getElementById('frame').complete && document.getElementById('frame').naturalWidth === 64"
    )
    page.click("#btn-last")
    src_end, marker_end = _frame_and_marker(page)
    assert src_end.endswith("frames/000026.jpg") and marker_end != marker3
    page.eval_on_selector("#slider", "s => { s.value = 9; s.dispatchEvent(new Event('input')); }")
    assert _frame_and_marker(page)[0].endswith("frames/000009.jpg")
    assert page.get_attribute("#plot line.now", "x1") is not None  # distance plot marks the current step
    page.click("#btn-first")
    page.select_option("#speed", "16")
    page.click("#btn-play")
    page.wait_for_function("window.viewer.t >= 4", timeout=3000)
    page.click("#btn-play")  # pause
    t_paused = page.evaluate("window.viewer.t")
    page.wait_for_timeout(200)
    assert page.evaluate("window.viewer.t") == t_paused
    page.screenshot(path=str(ARTIFACTS / "episode.png"))


def test_parse_failure_is_highlighted(server: ViewerServer, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.url + "#r2r_val_unseen%3A2")
    page.wait_for_selector("#decisions li")
    assert page.locator(".tick.fail").count() == 1
    bad = page.locator("#decisions li.parse-fail")
    assert bad.count() == 1
    bad.click()  # jumps to the step of the failed decision
    assert page.evaluate("window.viewer.t") == 5
    answer = page.locator(".answer.parse-fail")
    assert answer.count() == 1 and "look around the kitchen" in answer.inner_text()
    colour = answer.evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(207, 34, 46)"  # red text
    assert page.locator(".answer.ok").count() == 1  # the retried answer is shown beside it
    assert page.locator("#seen .thumb").count() == 8 and page.locator("#seen .thumb.pad").count() == 2
    page.keyboard.press("ArrowRight")  # the failure stays visible only at its decision
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.locator(".answer.parse-fail").count() == 0
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.screenshot(path=str(ARTIFACTS / "parse_failure.png"))


def test_retried_answer_is_highlighted(server: ViewerServer, page) -> None:  # type: ignore[no-untyped-def]
    """The NaVILA agent's form: one decision that kept its unparsable first answer (first_raw_text)."""
    page.goto(server.url + "#r2r_val_unseen%3A4")
    page.wait_for_selector("#decisions li")
    assert page.locator(".tick.fail").count() == 1
    page.locator("#decisions li.parse-fail").click()
    first = page.locator(".answer.parse-fail.first")
    assert first.count() == 1 and "Go go go towards the window" in first.inner_text()
    assert "asked again" in first.inner_text()
    assert page.locator(".answer.ok").count() == 1  # the retry's answer, which was acted on
    assert "fail" in (page.get_attribute("#instr-decision", "class") or "")


def test_progress_monitor_estimates_and_its_stop_are_shown(server: ViewerServer, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.url + "#r2r_val_unseen%3A1")
    page.wait_for_selector("#decisions li")
    assert page.locator(".answer .tag.progress").inner_text() == "progress 0.00"
    page.locator("#decisions li").last.click()
    tag = page.locator(".answer .tag.progress.monitor-stop")
    assert tag.inner_text() == "progress 0.95 · monitor stop"
    assert "progress monitor 0.950 >= 0.9: stop" in (tag.get_attribute("title") or "")
    page.goto(server.url + "#r2r_val_unseen%3A2")  # a model without a monitor: no tag
    page.reload()  # a new hash alone does not reopen the page
    page.wait_for_function("document.getElementById('instruction').innerText.includes('green room')")
    assert page.locator(".tag.progress").count() == 0


def test_error_episode_and_missing_frames(tmp_path: Path, page) -> None:  # type: ignore[no-untyped-def]
    run = build_run(tmp_path / "run")
    ep = run / "rollouts" / "r2r_val_unseen__1"
    for f in sorted((ep / "frames").iterdir())[3:]:
        f.unlink()
    shutil.rmtree(run / "rollouts" / "r2r_val_unseen__4")  # listed in results, record gone
    srv = _serve(run)
    try:
        page.goto(srv.url)
        page.click('tr[data-uid="r2r_val_unseen:3"]')
        assert "RuntimeError: scene failed to load" in page.inner_text("#banner")
        page.click('tr[data-uid="r2r_val_unseen:4"]')
        page.wait_for_function("document.getElementById('banner').textContent.includes('no rollout record')")
        page.click('tr[data-uid="r2r_val_unseen:1"]')
        page.wait_for_function("document.getElementById('banner').textContent.includes('missing')")
        assert page.locator("#frame-missing").is_hidden()
        page.click("#btn-last")
        assert page.locator("#frame-missing").is_visible()
        assert "frame missing" in page.inner_text("#frame-missing")
        assert page.locator("#seen .thumb.missing").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "missing_frames.png"))
    finally:
        srv.shutdown()
        srv.server_close()


def test_thousand_episode_run_lists_quickly(tmp_path: Path, page) -> None:  # type: ignore[no-untyped-def]
    """The list comes from /api/episodes alone; no record is fetched until an episode is opened."""
    srv = _serve(build_run(tmp_path / "big", n_episodes=1000, frame_size=16))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(srv.url)
        page.wait_for_function(
            "document.querySelectorAll('#episodes tbody tr').length === 1000", timeout=5000
        )
        ms = page.evaluate("performance.now()")
        assert ms < 3000, f"1000-episode list took {ms:.0f} ms"
        assert not any("/api/episode/" in u or "/files/" in u for u in requests)
        page.fill("#search", "number 999")
        assert rows(page) == ["r2r_val_unseen:999"]
        page.click("#filters button[data-filter=all]")
        page.fill("#search", "")
        page.click('tr[data-uid="r2r_val_unseen:2"]')
        page.wait_for_selector("#decisions li")
        assert sum("/api/episode/" in u for u in requests) == 1
    finally:
        srv.shutdown()
        srv.server_close()


def test_screenshot_tool(run_dir: Path, tmp_path: Path) -> None:
    """`python -m viz.screenshot` (in a subprocess: one Playwright sync session per thread)."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    out = tmp_path / "shot.png"
    cmd = [
        sys.executable,
        "-m",
        "viz.screenshot",
        str(run_dir),
        "--episode",
        "r2r_val_unseen:2",
        "--step",
        "5",
        "--out",
        str(out),
    ]
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2]
    )
    assert res.returncode == 0, res.stderr
    with Image.open(out) as im:
        assert im.size == (1440, 1020)
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 50  # a rendered page, not a blank one
