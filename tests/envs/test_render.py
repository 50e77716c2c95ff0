"""Renderer: camera convention (habitat), z-depth, image orientation, colours, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from envs.render import RenderConfig, Renderer, gl_context, projection_matrix, quaternion_to_matrix


def _yaw(deg: float) -> np.ndarray:
    """Quaternion [x, y, z, w] of a rotation by `deg` about +y (a left turn in habitat)."""
    a = math.radians(deg) / 2.0
    return np.array([0.0, math.sin(a), 0.0, math.cos(a)])


def _coloured(mesh: trimesh.Trimesh, rgb: tuple[int, int, int]) -> trimesh.Trimesh:
    mesh.visual.vertex_colors = np.tile([*rgb, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    return mesh


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(RenderConfig(width=64, height=48, shading=False))
    yield r
    r.close()


def _room(size=(4.0, 3.0, 6.0)) -> trimesh.Trimesh:
    """A closed box seen from the inside (faces flipped so the inner sides are front faces)."""
    box = trimesh.creation.box(extents=size)
    box.invert()
    return _coloured(box, (200, 100, 50))


def test_context_is_shared() -> None:
    assert gl_context() is gl_context()


def test_depth_is_z_depth_inside_room(renderer: Renderer) -> None:
    renderer.load_mesh(_room())
    rgb, depth = renderer.render(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert depth.shape == (48, 64) and depth.dtype == np.float32
    # Looking along -z at the wall z = -3: every pixel that sees that wall has z-depth 3, even off-axis.
    assert depth[24, 32] == pytest.approx(3.0, abs=0.02)
    assert depth[20, 20] == pytest.approx(3.0, abs=0.02)
    # Top-left corner ray (-1, 0.75, -1) hits the ceiling y = 1.5 at t = 2: z-depth 2.
    assert depth[0, 0] == pytest.approx(2.0, abs=0.1)
    assert (depth > 0).all()
    assert tuple(rgb[24, 32]) == (200, 100, 50)


def test_turning_left_sees_the_left_wall(renderer: Renderer) -> None:
    renderer.load_mesh(_room())
    _, depth = renderer.render(np.zeros(3), _yaw(90.0))  # now looking along -x at the wall x = -2
    assert depth[24, 32] == pytest.approx(2.0, abs=0.02)


def test_image_orientation_and_background(renderer: Renderer) -> None:
    box = _coloured(trimesh.creation.box(extents=[1.0, 1.0, 1.0]), (10, 200, 10))
    renderer.load_mesh(box)
    # Camera above and to the left of the box: it appears in the lower, right part of the image.
    rgb, depth = renderer.render(np.array([-1.2, 1.2, 3.0]), np.array([0.0, 0.0, 0.0, 1.0]))
    hit = depth > 0
    assert hit[:24].sum() == 0 and hit[24:].sum() > 0
    assert hit[:, :32].sum() == 0 and hit[:, 32:].sum() > 0
    assert (depth[~hit] == 0).all() and (rgb[~hit] == 0).all()  # black background, zero depth
    assert ((depth[hit] > 2.4) & (depth[hit] < 3.6)).all()


def test_back_faces_are_culled(renderer: Renderer) -> None:
    box = _coloured(trimesh.creation.box(extents=[1.0, 1.0, 1.0]), (10, 200, 10))
    renderer.load_mesh(box)
    _, depth = renderer.render(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))  # inside an outward-facing box
    assert (depth == 0).all()


def test_returned_frames_are_independent(renderer: Renderer) -> None:
    renderer.load_mesh(_room())
    rgb1, depth1 = renderer.render(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
    kept_rgb, kept_depth = rgb1.copy(), depth1.copy()
    renderer.render(np.zeros(3), _yaw(90.0))
    assert np.array_equal(depth1, kept_depth) and np.array_equal(rgb1, kept_rgb)


def test_non_square_and_large_resolution() -> None:
    with Renderer(RenderConfig(width=512, height=512)) as r:
        r.load_mesh(_room())
        rgb, depth = r.render(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
        assert rgb.shape == (512, 512, 3) and depth[256, 256] == pytest.approx(3.0, abs=0.02)
    with Renderer(RenderConfig(width=37, height=21)) as r:  # odd widths need byte-aligned read-back
        r.load_mesh(_room())
        rgb, depth = r.render(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
        assert rgb.shape == (21, 37, 3) and depth[10, 18] == pytest.approx(3.0, abs=0.02)


def test_shading_distinguishes_walls() -> None:
    with Renderer(RenderConfig(width=64, height=48, shading=True)) as r:
        r.load_mesh(_room())
        front, _ = r.render(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
        left, _ = r.render(np.zeros(3), _yaw(90.0))
        assert not np.array_equal(front[24, 32], left[24, 32])


def test_errors(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="hfov_deg"):
        RenderConfig(hfov_deg=200.0)
    with pytest.raises(ValueError, match="near/far"):
        RenderConfig(near=1.0, far=0.5)
    with pytest.raises(ValueError, match="non-zero"):
        quaternion_to_matrix(np.zeros(4))
    with pytest.raises(ValueError, match="no vertices"):
        renderer.load_mesh(trimesh.Trimesh())
    r = Renderer(RenderConfig(width=8, height=8))
    with pytest.raises(RuntimeError, match="before load_mesh"):
        r.render(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
    r.close()
    with pytest.raises(RuntimeError, match="closed"):
        r.load_mesh(_room())


def test_projection_matches_hfov() -> None:
    p = projection_matrix(RenderConfig(width=100, height=50, hfov_deg=90.0))
    # A point on the right edge of a 90° horizontal fov (x = -z) projects to ndc x = 1.
    clip = p @ np.array([2.0, 0.0, -2.0, 1.0])
    assert clip[0] / clip[3] == pytest.approx(1.0)


def test_egl_device_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    import envs.render

    monkeypatch.setattr(envs.render, "_CONTEXT", None)  # force a fresh context creation (restored afterwards)
    monkeypatch.setenv("NAVILA_AGENT_EGL_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="NAVILA_AGENT_EGL_DEVICE"):
        gl_context()


_FORK_SCRIPT = """
import multiprocessing, numpy as np, trimesh
from envs.render import Renderer, RenderConfig

def room():
    box = trimesh.creation.box(extents=[4.0, 3.0, 6.0])
    box.invert()
    return box

def child(queue):
    with Renderer(RenderConfig(width=16, height=16)) as r:
        r.load_mesh(room())
        queue.put(float(r.render(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))[1][8, 8]))

parent = Renderer(RenderConfig(width=16, height=16))
parent.load_mesh(room())
parent.render(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
ctx = multiprocessing.get_context("fork")
queue = ctx.Queue()
proc = ctx.Process(target=child, args=(queue,))
proc.start()
print(queue.get(timeout=20))
proc.join(timeout=5)
"""


def test_forked_worker_renders() -> None:
    """A worker forked after its parent rendered makes its own context and renders (with the default
    single-threaded llvmpipe; GL contexts do not survive fork). Runs in a fresh interpreter, because the test
    process's context was made with the threaded rasteriser that tests/conftest.py asks for."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LP_NUM_THREADS"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip()) == pytest.approx(3.0, abs=0.02)


def test_missing_egl_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import envs.render

    def no_egl(**kwargs):
        raise Exception("eglGetDisplay failed")  # what glcontext raises without libEGL

    monkeypatch.setattr(envs.render, "_CONTEXT", None)
    monkeypatch.setattr(envs.render.moderngl, "create_standalone_context", no_egl)
    with pytest.raises(RuntimeError, match=r"EGL.*libegl1 libgl1-mesa-dri"):
        gl_context()
