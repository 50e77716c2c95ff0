"""MP4 export of one recorded episode: egocentric frame | top-down map with the path so far | model answer.

One video frame per recorded step (t = 0 .. T), composed with PIL and written with OpenCV's 'mp4v' writer, so
no ffmpeg binary is needed. The runner's `eval --video` calls `write_episode_video` on each record folder;
the CLI calls `export_episode` on a run folder.

    navila-agent viz export runs/my_run --episode r2r_val_unseen:17 --out ep17.mp4 --fps 4
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from viz.run_folder import RunFolderError, episode_dir_name, load_record, load_run, record_dir

ACTION_NAMES = {0: "STOP", 1: "FORWARD", 2: "LEFT", 3: "RIGHT"}
# How a decision's "reason" says the progress monitor stopped it: agent.navila.MONITOR_STOP_REASON, spelled here
# because viz reads run folders and never imports the agent (static/app.js spells it too; a test keeps all three equal).
MONITOR_STOP_MARK = "progress monitor"
BG = (245, 246, 248)
INK = (31, 35, 40)
MUTED = (101, 109, 118)
RED = (207, 34, 46)
GREEN = (26, 127, 55)
PATH = (230, 80, 20)
REFERENCE = (30, 100, 220)


@dataclass
class VideoConfig:
    """Layout of the exported video."""

    fps: float = 4.0  # video frames per second (one frame per low-level step)
    height: int = 360  # pixel height of every panel; widths follow the frame / map aspect ratios
    text_width: int = 400  # width of the answer-text panel
    fourcc: str = "mp4v"  # OpenCV codec tag; mp4v plays everywhere without an ffmpeg install

    def __post_init__(self) -> None:
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"VideoConfig.fps must be a positive number, got {self.fps}")
        if self.height < 64 or self.height % 2:
            raise ValueError(f"VideoConfig.height must be an even number >= 64, got {self.height}")
        if self.text_width < 160 or self.text_width % 2:
            raise ValueError(f"VideoConfig.text_width must be an even number >= 160, got {self.text_width}")
        if len(self.fourcc) != 4:
            raise ValueError(f"VideoConfig.fourcc must be a 4-character codec tag, got {self.fourcc!r}")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def world_to_pixel(map_info: dict[str, Any], x: float, z: float) -> tuple[float, float]:
    """Map pixel (col, row) of world (x, z): ((x - x0) / resolution, (z - z0) / resolution)."""
    x0, z0 = map_info["origin"]
    res = map_info["resolution"]
    return (x - x0) / res, (z - z0) / res


def heading_xz(q: list[float] | None) -> tuple[float, float]:
    """Unit (x, z) direction the agent looks along: its local -z axis rotated by quaternion [x, y, z, w]."""
    if not q or len(q) != 4:
        return 0.0, -1.0
    x, y, z, w = q
    fx, fz = -2 * (x * z + w * y), -(1 - 2 * (x * x + y * y))
    n = math.hypot(fx, fz) or 1.0
    return fx / n, fz / n


def _even(v: float) -> int:
    return max(2, round(v / 2) * 2)


def _load_image(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError):
        return None


def _placeholder(size: tuple[int, int], text: str) -> Image.Image:
    img = Image.new("RGB", size, (28, 28, 32))
    d = ImageDraw.Draw(img)
    d.text((12, size[1] // 2 - 8), text, fill=(240, 180, 180), font=_font(14))
    return img


def _map_panel(record: dict[str, Any], base_map: Image.Image | None, t: int, height: int) -> Image.Image:
    """The top-down map scaled to `height`, with reference path, goal radius, path so far and current pose."""
    m = record["map"]
    w0 = int(m.get("width") or (base_map.width if base_map else 200))
    h0 = int(m.get("height") or (base_map.height if base_map else 200))
    scale = height / h0
    size = (_even(w0 * scale), height)
    img = base_map.resize(size, Image.NEAREST) if base_map else _placeholder(size, "top-down map missing")
    d = ImageDraw.Draw(img, "RGBA")

    def px(p: list[float]) -> tuple[float, float]:
        c, r = world_to_pixel(m, p[0], p[2])
        return c * scale, r * scale

    goal = record.get("goal")
    if goal:
        gx, gy = px(goal)
        rad = float(record.get("success_distance") or 3.0) / m["resolution"] * scale
        d.ellipse(
            [gx - rad, gy - rad, gx + rad, gy + rad],
            fill=(46, 160, 67, 40),
            outline=(46, 160, 67, 230),
            width=2,
        )
        d.ellipse([gx - 4, gy - 4, gx + 4, gy + 4], fill=(46, 160, 67, 255))
    ref = [px(p) for p in record.get("reference_path") or []]
    if len(ref) > 1:
        d.line(ref, fill=(*REFERENCE, 200), width=2)
    path = [px(s["position"]) for s in record["steps"][: t + 1]]
    if len(path) > 1:
        d.line(path, fill=(*PATH, 255), width=3, joint="curve")
    step = record["steps"][t]
    x, y = path[-1]
    hx, hz = heading_xz(step.get("rotation"))
    s = 9.0
    side = (-hz, hx)  # perpendicular in image coordinates
    tip = (x + hx * s * 1.4, y + hz * s * 1.4)
    left = (x - hx * s * 0.8 + side[0] * s * 0.8, y - hz * s * 0.8 + side[1] * s * 0.8)
    right = (x - hx * s * 0.8 - side[0] * s * 0.8, y - hz * s * 0.8 - side[1] * s * 0.8)
    d.polygon(
        [tip, left, (x - hx * s * 0.4, y - hz * s * 0.4), right],
        fill=RED if step.get("collided") else (255, 176, 0),
        outline=(27, 27, 27),
    )
    return img


def _decision_at(record: dict[str, Any], t: int) -> list[dict[str, Any]]:
    """The decisions made at the step of the decision in force at t (a failed answer and its retry share it)."""
    current = None
    for d in record["decisions"]:
        if d.get("t", 0) <= t:
            current = d
    if current is None:
        return []
    return [d for d in record["decisions"] if d.get("t") == current.get("t")]


def _action_text(d: dict[str, Any]) -> str:
    """'forward 75 cm', 'left 30 deg', 'stop'; an unparsable answer says so, with the agent's fallback if any."""
    name, amount = d.get("action"), d.get("amount")
    if name is None:
        label = (
            " ".join(["low-level", *(str(a) for a in d.get("low_level") or [])]) if d.get("low_level") else ""
        )
    elif name == "stop" or amount is None:
        label = str(name)
    else:
        label = f"{name} {amount}{' cm' if name == 'forward' else ' deg'}"
    if not d.get("parse_ok", True):
        return f"PARSE FAILURE -> fallback {label}" if label else "PARSE FAILURE (unparsable answer)"
    return label or "-"


def _text_panel(record: dict[str, Any], t: int, size: tuple[int, int]) -> Image.Image:
    """uid, instruction, step info and the model's raw answer + parsed action (red when unparsable)."""
    img = Image.new("RGB", size, BG)
    d = ImageDraw.Draw(img)
    f_small, f_text, f_title = _font(12), _font(14), _font(16)
    chars = max(20, size[0] // 8)
    y = 10
    d.text((12, y), str(record.get("uid", "")), fill=INK, font=f_title)
    y += 24
    for line in textwrap.wrap(record.get("instruction") or "", chars)[:8]:
        d.text((12, y), line, fill=INK, font=f_text)
        y += 18
    y += 8
    step = record["steps"][t]
    dist = step.get("distance_to_goal")
    act = step.get("action")
    info = f"step {t}/{len(record['steps']) - 1}   action {ACTION_NAMES.get(act, '(start)') if act is not None else '(start)'}"
    d.text((12, y), info, fill=MUTED, font=f_small)
    y += 16
    d.text(
        (12, y),
        f"distance to goal {dist:.2f} m" if isinstance(dist, (int, float)) else "distance to goal -",
        fill=MUTED,
        font=f_small,
    )
    y += 16
    if step.get("collided"):
        d.text((12, y), "collided", fill=RED, font=f_small)
        y += 16
    y += 6
    for dec in _decision_at(record, t):
        colour = GREEN if dec.get("parse_ok", True) else RED
        d.text((12, y), f"decision #{dec.get('k')} at t={dec.get('t')}", fill=MUTED, font=f_small)
        y += 16
        if dec.get("first_raw_text"):  # the agent's unparsable first answer, before it asked again
            for line in textwrap.wrap(f'"{dec["first_raw_text"]}" (unparsable, asked again)', chars)[:3]:
                d.text((12, y), line, fill=RED, font=f_text)
                y += 18
        raw = dec.get("raw_text")
        for line in textwrap.wrap(f'"{raw}"' if raw is not None else "(no model text)", chars)[:4]:
            d.text((12, y), line, fill=INK if dec.get("parse_ok", True) else RED, font=f_text)
            y += 18
        d.text((12, y), "-> " + _action_text(dec), fill=colour, font=f_text)
        y += 20
        if isinstance(dec.get("progress"), (int, float)):  # the progress monitor's estimate (vlm.progress_head)
            stopped = MONITOR_STOP_MARK in (dec.get("reason") or "")
            d.text((12, y), f"progress {dec['progress']:.2f}" + (" - monitor stop" if stopped else ""), fill=MUTED, font=f_small)
            y += 16
        y += 6
        if y > size[1] - 40:
            break
    return img


def compose_frame(
    record: dict[str, Any], ep_dir: Path, t: int, base_map: Image.Image | None, config: VideoConfig
) -> np.ndarray:
    """One video frame for step t as an RGB array [H, W, 3] uint8: frame | map | text."""
    h = config.height
    step = record["steps"][t]
    frame = _load_image(ep_dir / step["frame"]) if step.get("frame") else None
    if frame is None:
        ego = _placeholder((h, h), f"frame missing (t={t})")
    else:
        ego = frame.resize((_even(frame.width * h / frame.height), h), Image.BILINEAR)
    panels = [ego]
    if record.get("map"):
        panels.append(_map_panel(record, base_map, t, h))
    panels.append(_text_panel(record, t, (config.text_width, h)))
    canvas = Image.new("RGB", (sum(p.width for p in panels), h), BG)
    x = 0
    for p in panels:
        canvas.paste(p, (x, 0))
        x += p.width
    return np.asarray(canvas)  # [H, W, 3]


def write_episode_video(
    record_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    fps: float = 4.0,
    config: VideoConfig | None = None,
) -> Path:
    """Write an MP4 of one recorded episode (one video frame per step) and return its path.

    `record_dir` is a rollouts/<EP_DIR>/ folder (record.json, frames/, topdown.png). Missing frames or a missing
    map become placeholders, so a partly written record still exports.
    """
    import cv2  # imported here: the viewer server itself never needs OpenCV

    config = config or VideoConfig(fps=fps)
    if config.fps != fps:
        config = VideoConfig(
            fps=fps, height=config.height, text_width=config.text_width, fourcc=config.fourcc
        )
    ep_dir = Path(record_dir)
    record = load_record(ep_dir)
    base_map = _load_image(ep_dir / record["map"]["image"]) if record.get("map") else None
    out = Path(out_path)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"video output must end in .mp4, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    first = compose_frame(record, ep_dir, 0, base_map, config)
    size = (first.shape[1], first.shape[0])
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*config.fourcc), float(config.fps), size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV could not open a {config.fourcc!r} video writer for {out}")
    try:
        for t in range(len(record["steps"])):
            rgb = first if t == 0 else compose_frame(record, ep_dir, t, base_map, config)
            if (rgb.shape[1], rgb.shape[0]) != size:  # a later frame of another size: fit it to the first
                rgb = np.asarray(Image.fromarray(rgb).resize(size))
            writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))  # OpenCV wants BGR
    finally:
        writer.release()
    return out


def export_episode(
    run_dir: str | os.PathLike[str],
    uid: str,
    out_path: str | os.PathLike[str] | None = None,
    fps: float = 4.0,
) -> Path:
    """Export the video of episode `uid` of a run folder; default output RUN_DIR/videos/<EP_DIR>.mp4."""
    run = load_run(run_dir)
    ep_dir = record_dir(run, uid)
    if not (ep_dir / "record.json").is_file():
        raise RunFolderError(
            f"episode {uid!r} has no rollout record in {run.root / 'rollouts'} (was the run made with --record?)"
        )
    out = Path(out_path) if out_path else run.root / "videos" / f"{episode_dir_name(uid)}.mp4"
    return write_episode_video(ep_dir, out, fps=fps)
