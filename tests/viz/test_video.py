"""MP4 export: the file opens with OpenCV, has one frame per step and the composed size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from viz.run_folder import RunFolderError, load_record
from viz.video import (
    MONITOR_STOP_MARK,
    VideoConfig,
    _text_panel,
    compose_frame,
    export_episode,
    heading_xz,
    world_to_pixel,
    write_episode_video,
)


def _read_all(path: Path) -> tuple[int, int, int, list[np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return w, h, len(frames), frames


def test_video_has_one_frame_per_step_and_expected_size(run_dir: Path, tmp_path: Path) -> None:
    ep = run_dir / "rollouts" / "r2r_val_unseen__2"
    rec = load_record(ep)
    out = write_episode_video(ep, tmp_path / "ep2.mp4", fps=4)
    w, h, n, frames = _read_all(out)
    # 64 px frames scaled to 360 high (square), the 220x180 map scaled to 360 high, 400 px text panel
    assert (w, h) == (360 + 440 + 400, 360)
    assert n == len(rec["steps"]) == 14
    assert abs(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) - 4) < 1e-3
    # The frames change over time (the egocentric panel follows the steps)
    assert np.abs(frames[0][:, :360].astype(int) - frames[-1][:, :360].astype(int)).mean() > 3


def test_composed_frame_marks_parse_failure_in_red_and_moves_marker(run_dir: Path) -> None:
    ep = run_dir / "rollouts" / "r2r_val_unseen__2"
    rec = load_record(ep)
    cfg = VideoConfig()
    base = Image.open(ep / "topdown.png").convert("RGB")
    at_fail = compose_frame(rec, ep, 5, base, cfg)  # decision 2 (unparsable) was made at t=5
    clean = compose_frame(rec, ep, 0, base, cfg)
    text_fail, text_ok = at_fail[:, -400:], clean[:, -400:]

    def red_pixels(a: np.ndarray) -> int:
        return int(((a[..., 0] > 180) & (a[..., 1] < 80) & (a[..., 2] < 90)).sum())

    assert red_pixels(text_fail) > 50 and red_pixels(text_ok) == 0
    # the pose marker (amber) sits where the map transform puts the agent
    map_panel = at_fail[:, 360:800]
    col, row = world_to_pixel(rec["map"], rec["steps"][5]["position"][0], rec["steps"][5]["position"][2])
    scale = 360 / rec["map"]["height"]
    amber = np.argwhere(
        (map_panel[..., 0] > 240)
        & (np.abs(map_panel[..., 1].astype(int) - 176) < 12)
        & (map_panel[..., 2] < 40)
    )
    assert len(amber) > 10
    cy, cx = amber.mean(axis=0)
    assert abs(cx - col * scale) < 10 and abs(cy - row * scale) < 10


def test_a_monitor_stop_is_marked_by_the_agents_own_reason_text(run_dir: Path) -> None:
    """viz spells the agent's monitor-stop reason itself (it never imports the agent): the video, the web page and the
    agent must agree, or a monitor stop would silently lose its mark."""
    import viz
    from agent.navila import MONITOR_STOP_REASON

    assert MONITOR_STOP_MARK == MONITOR_STOP_REASON
    assert f'includes("{MONITOR_STOP_REASON}")' in (Path(viz.__file__).parent / "static" / "app.js").read_text()
    ep = run_dir / "rollouts" / "r2r_val_unseen__1"  # its last STOP was made by the monitor
    rec = load_record(ep)
    last = rec["decisions"][-1]
    assert last["reason"].startswith(MONITOR_STOP_REASON)
    t = last["t"]
    marked = _text_panel(rec, t, (400, 360))
    last["reason"] = "answer"
    unmarked = _text_panel(rec, t, (400, 360))
    assert np.asarray(marked).tobytes() != np.asarray(unmarked).tobytes()


def test_missing_frames_and_map_still_export(run_dir: Path, tmp_path: Path) -> None:
    ep = run_dir / "rollouts" / "r2r_val_unseen__1"
    for f in list((ep / "frames").iterdir())[::2]:
        f.unlink()
    (ep / "topdown.png").unlink()
    out = write_episode_video(ep, tmp_path / "ep1.mp4", fps=2)
    _, h, n, _ = _read_all(out)
    assert n == 20 and h == 360


def test_export_episode_from_run_folder(run_dir: Path) -> None:
    out = export_episode(run_dir, "r2r_val_unseen:4")
    assert out == run_dir.resolve() / "videos" / "r2r_val_unseen__4.mp4"
    assert _read_all(out)[2] == 27
    with pytest.raises(RunFolderError, match="no rollout record"):
        export_episode(run_dir, "r2r_val_unseen:3")  # the error episode has no record
    with pytest.raises(RunFolderError, match="invalid episode uid"):
        export_episode(run_dir, "..")


def test_bad_config_and_output() -> None:
    with pytest.raises(ValueError, match="fps"):
        VideoConfig(fps=0)
    with pytest.raises(ValueError, match="height"):
        VideoConfig(height=101)


def test_bad_output_suffix(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.mp4"):
        write_episode_video(run_dir / "rollouts" / "r2r_val_unseen__1", tmp_path / "x.avi")


def test_heading_matches_habitat_convention() -> None:
    assert heading_xz([0, 0, 0, 1]) == pytest.approx((0.0, -1.0))  # identity looks along -z
    s = np.sin(np.pi / 4)
    # +90 degrees about y (a left turn) looks along -x
    assert heading_xz([0, s, 0, s]) == pytest.approx((-1.0, 0.0))


def test_action_text_forms() -> None:
    from viz.video import _action_text

    assert _action_text({"action": "forward", "amount": 75, "parse_ok": True}) == "forward 75 cm"
    assert _action_text({"action": "left", "amount": 30, "parse_ok": True}) == "left 30 deg"
    assert _action_text({"action": "stop", "amount": 0, "parse_ok": True}) == "stop"
    # the doc's form (no action) and the agent's form (a fallback action) of an unparsable answer
    assert (
        _action_text({"action": None, "low_level": [], "parse_ok": False})
        == "PARSE FAILURE (unparsable answer)"
    )
    assert (
        _action_text({"action": "stop", "amount": 0, "parse_ok": False}) == "PARSE FAILURE -> fallback stop"
    )
