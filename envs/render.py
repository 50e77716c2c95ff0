"""Headless RGB-D renderer of a triangle mesh (OpenGL 3.3 through EGL, one context per process).

The embedded simulator's eyes: `Renderer.render(eye, rotation)` returns what a habitat pinhole camera at that
pose sees, as `rgb [H, W, 3] uint8` and `depth [H, W] float32` (metres along the optical axis, habitat's
z-depth, 0 where no surface was hit). On a CPU-only machine EGL is Mesa's llvmpipe; on a GPU machine it is the
NVIDIA driver. Nothing here knows about houses or episodes.

    from envs.render import RenderConfig, Renderer
    r = Renderer(RenderConfig(width=224, height=224))
    r.load_mesh(mesh)                                 # trimesh.Trimesh with vertex colours
    rgb, depth = r.render(np.array([1.0, 1.25, 2.0]), np.array([0.0, 0.0, 0.0, 1.0]))

Camera convention (habitat): y up, the camera looks along its local -z, rotations are quaternions [x, y, z, w]
that map camera axes to world axes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

try:  # moderngl is imported lazily by gl_context(); the names below are only for type hints
    import moderngl
except ImportError:  # pragma: no cover - reported by gl_context()
    moderngl = None  # type: ignore[assignment]


@dataclass
class RenderConfig:
    width: int = 224  # image width in pixels
    height: int = 224  # image height in pixels
    hfov_deg: float = 90.0  # horizontal field of view in degrees (habitat's `hfov`)
    near: float = 0.05  # near clipping plane in metres; closer surfaces are cut away
    far: float = 50.0  # far clipping plane in metres; nothing beyond it is drawn (depth 0 there)
    shading: bool = True  # darken faces by a fixed directional light, so walls and corners stand apart
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rgb in [0, 1] where nothing is hit

    def __post_init__(self) -> None:
        if not (1 <= self.width <= 8192 and 1 <= self.height <= 8192):
            raise ValueError(
                f"RenderConfig.width/height must be in [1, 8192], got {self.width}x{self.height}"
            )
        if not 1.0 <= self.hfov_deg < 180.0:
            raise ValueError(f"RenderConfig.hfov_deg must be in [1, 180), got {self.hfov_deg}")
        if not 0.0 < self.near < self.far:
            raise ValueError(
                f"RenderConfig.near/far must satisfy 0 < near < far, got {self.near}, {self.far}"
            )
        if len(self.background) != 3 or not all(0.0 <= c <= 1.0 for c in self.background):
            raise ValueError(f"RenderConfig.background must be 3 values in [0, 1], got {self.background}")


_CONTEXT: moderngl.Context | None = None
_CONTEXT_PID: int | None = None  # the process that created _CONTEXT; a forked child must make its own

# Light direction (world, pointing towards the light) and the ambient share. Baked into vertex colours once per
# mesh: the light is fixed in the world, so per-vertex Lambert terms never change between frames.
_LIGHT_DIR = np.array([0.35, 0.8, 0.5], dtype=np.float32)
_AMBIENT = 0.55

_VERTEX_SHADER = """
#version 330
uniform mat4 mvp;          // projection * view
uniform mat4 view;
in vec3 in_position;
in vec3 in_color;
out vec3 v_color;
out float v_depth;
void main() {
    gl_Position = mvp * vec4(in_position, 1.0);
    v_color = in_color;
    v_depth = -(view * vec4(in_position, 1.0)).z;  // z-depth: distance along the optical axis (-z)
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec3 v_color;
in float v_depth;
layout(location = 0) out vec3 out_color;
layout(location = 1) out float out_depth;
void main() {
    out_color = v_color;
    out_depth = v_depth;
}
"""


def gl_context() -> moderngl.Context:
    """The process-wide headless OpenGL context, created on first use.

    One context per process: EGL contexts are expensive and a worker process renders many scenes in turn.
    Every `Renderer` of the process shares it. A process forked from one that rendered gets its own (GL
    contexts do not survive fork). `NAVILA_AGENT_EGL_DEVICE=N` picks the N-th EGL device (EGL
    ignores CUDA_VISIBLE_DEVICES, so multi-GPU workers set it to spread rendering over the GPUs).
    """
    global _CONTEXT, _CONTEXT_PID
    if _CONTEXT is not None and os.getpid() == _CONTEXT_PID:
        return _CONTEXT
    if moderngl is None:
        raise RuntimeError("the embedded renderer needs the 'moderngl' package: pip install moderngl")
    # Mesa's llvmpipe: rasterise in the calling thread unless told otherwise. One core per worker is how the
    # benchmark runner scales, it measured as fast as threaded rasterisation at 224x224 on a loaded machine, and
    # llvmpipe's worker threads make a forked child that creates its own context hang.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    device = os.environ.get("NAVILA_AGENT_EGL_DEVICE", "0")
    if not device.isdigit():
        raise ValueError(f"NAVILA_AGENT_EGL_DEVICE must be a device index (0, 1, ...), got '{device}'")
    try:
        _CONTEXT = moderngl.create_standalone_context(backend="egl", require=330, device_index=int(device))
        _CONTEXT_PID = os.getpid()
    except Exception as e:  # moderngl/glcontext raise plain Exception subclasses with terse messages
        raise RuntimeError(
            "could not create a headless OpenGL 3.3 context through EGL "
            f"({type(e).__name__}: {e}). On a CPU-only Linux machine install Mesa's EGL and software "
            "rasteriser (Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri); on a GPU machine make sure "
            "the NVIDIA driver's libEGL_nvidia is installed."
        ) from e
    return _CONTEXT


def quaternion_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of a quaternion [x, y, z, w] (normalised first); maps camera axes to world axes."""
    x, y, z, w = (float(v) for v in np.asarray(q_xyzw, dtype=np.float64).reshape(4))
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if n < 1e-12:
        raise ValueError(f"rotation quaternion [x, y, z, w] must be non-zero, got {[x, y, z, w]}")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def view_matrix(eye: np.ndarray, rotation_xyzw: np.ndarray) -> np.ndarray:
    """4x4 world-to-camera matrix of a camera at `eye` whose orientation is `rotation_xyzw` (camera-to-world)."""
    r = quaternion_to_matrix(rotation_xyzw)
    m = np.eye(4)
    m[:3, :3] = r.T
    m[:3, 3] = -r.T @ np.asarray(eye, dtype=np.float64).reshape(3)
    return m


def projection_matrix(config: RenderConfig) -> np.ndarray:
    """4x4 OpenGL perspective matrix for the config's horizontal fov, with image rows flipped.

    The y flip makes OpenGL's bottom-up framebuffer come out top-down, so a read-back is already in image
    order (no copy to flip it); the flip reverses the winding, which `Renderer` accounts for.
    """
    tan_x = math.tan(math.radians(config.hfov_deg) / 2.0)
    tan_y = tan_x * config.height / config.width  # square pixels: vertical extent follows the aspect ratio
    n, f = config.near, config.far
    return np.array(
        [
            [1.0 / tan_x, 0.0, 0.0, 0.0],
            [0.0, -1.0 / tan_y, 0.0, 0.0],
            [0.0, 0.0, -(f + n) / (f - n), -2.0 * f * n / (f - n)],
            [0.0, 0.0, -1.0, 0.0],
        ]
    )


def shaded_vertex_colors(colors: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Per-vertex colours lit by the fixed directional light plus ambient (both sides of a face are lit alike).

    colors [N, 3] in [0, 1], normals [N, 3] -> [N, 3] float32 in [0, 1].
    """
    light = _LIGHT_DIR / np.linalg.norm(_LIGHT_DIR)
    lambert = np.abs(
        normals @ light
    )  # [N]; abs so a face seen from behind (e.g. flipped normals) is not black
    return (colors * (_AMBIENT + (1.0 - _AMBIENT) * lambert)[:, None]).clip(0.0, 1.0).astype(np.float32)


def mesh_vertex_colors(mesh) -> np.ndarray:
    """The mesh's per-vertex RGB in [0, 1] as [N, 3] float32; mid grey where the mesh has none."""
    n = len(mesh.vertices)
    visual = getattr(mesh, "visual", None)
    if visual is not None and getattr(visual, "kind", None) == "vertex":
        vc = np.asarray(visual.vertex_colors)
        if vc.shape[0] == n:
            return (vc[:, :3].astype(np.float32) / 255.0).astype(np.float32)
    if visual is not None and getattr(visual, "kind", None) == "face":
        vc = np.asarray(visual.vertex_colors)  # trimesh averages face colours onto vertices
        if vc.shape[0] == n:
            return (vc[:, :3].astype(np.float32) / 255.0).astype(np.float32)
    return np.full((n, 3), 0.6, dtype=np.float32)


class Renderer:
    """Renders one loaded mesh from arbitrary camera poses into preallocated off-screen buffers."""

    def __init__(self, config: RenderConfig | None = None) -> None:
        self.config = config if config is not None else RenderConfig()
        self._ctx = gl_context()
        ctx = self._ctx
        self._program = ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        w, h = self.config.width, self.config.height
        self._color_rb = ctx.renderbuffer((w, h), components=3)
        self._depth_rb = ctx.renderbuffer((w, h), components=1, dtype="f4")  # z-depth in metres
        self._zbuffer = ctx.depth_renderbuffer((w, h))
        self._fbo = ctx.framebuffer(
            color_attachments=[self._color_rb, self._depth_rb], depth_attachment=self._zbuffer
        )
        self._projection = projection_matrix(self.config)
        self._vao: moderngl.VertexArray | None = None
        self._buffers: list[moderngl.Buffer] = []
        self._closed = False

    def load_mesh(self, mesh) -> None:
        """Upload a trimesh.Trimesh (vertices, per-vertex RGB, faces) as the scene; replaces any previous one.

        Lighting is baked into the uploaded colours (see `shaded_vertex_colors`), so a frame is one draw call
        with a pass-through shader.
        """
        self._check_open()
        vertices = np.asarray(mesh.vertices, dtype=np.float32)  # [N, 3]
        faces = np.asarray(mesh.faces, dtype=np.uint32)  # [F, 3]
        if len(vertices) == 0 or len(faces) == 0:
            raise ValueError("Renderer.load_mesh: the mesh has no vertices or no faces")
        colors = mesh_vertex_colors(mesh)  # [N, 3]
        if self.config.shading:
            colors = shaded_vertex_colors(colors, np.asarray(mesh.vertex_normals, dtype=np.float32))
        interleaved = np.hstack([vertices, colors]).astype(np.float32)  # [N, 6]
        self._release_mesh()
        vbo = self._ctx.buffer(interleaved.tobytes())
        ibo = self._ctx.buffer(faces.tobytes())
        self._buffers = [vbo, ibo]
        self._vao = self._ctx.vertex_array(
            self._program, [(vbo, "3f 3f", "in_position", "in_color")], index_buffer=ibo, index_element_size=4
        )

    def render(self, eye: np.ndarray, rotation_xyzw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One RGB-D frame from a camera at `eye` (world xyz) with orientation `rotation_xyzw` ([x, y, z, w]).

        Returns rgb [H, W, 3] uint8 and depth [H, W] float32 (metres along the optical axis; 0 where no surface
        lies within `far`). The arrays are fresh each call, so callers may keep them (frame histories do).
        """
        self._check_open()
        if self._vao is None:
            raise RuntimeError("Renderer.render called before load_mesh(mesh)")
        view = view_matrix(eye, rotation_xyzw)
        mvp = self._projection @ view
        # OpenGL wants column-major matrices: a row-major numpy array's transpose, as bytes.
        self._program["mvp"].write(mvp.T.astype(np.float32).tobytes())
        self._program["view"].write(view.T.astype(np.float32).tobytes())
        ctx, fbo = self._ctx, self._fbo
        fbo.use()
        bg = self.config.background
        fbo.clear(bg[0], bg[1], bg[2], 1.0, depth=1.0)
        # clear() set every attachment to the background colour; depth must read 0 where nothing is hit.
        fbo.color_mask = [(False, False, False, False), (True, False, False, False)]
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        fbo.color_mask = [(True, True, True, True), (True, True, True, True)]
        ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        ctx.front_face = "cw"  # the projection's y flip turns counter-clockwise front faces clockwise
        self._vao.render(moderngl.TRIANGLES)
        h, w = self.config.height, self.config.width
        rgb = np.empty((h, w, 3), dtype=np.uint8)
        depth = np.empty((h, w), dtype=np.float32)
        fbo.read_into(rgb, components=3, attachment=0, alignment=1)
        fbo.read_into(depth, components=1, attachment=1, alignment=1, dtype="f4")
        return rgb, depth

    def close(self) -> None:
        """Free the GPU objects of this renderer (the shared context stays for other renderers)."""
        if self._closed:
            return
        self._release_mesh()
        for obj in (self._fbo, self._color_rb, self._depth_rb, self._zbuffer, self._program):
            obj.release()
        self._closed = True

    def _release_mesh(self) -> None:
        if self._vao is not None:
            self._vao.release()
            self._vao = None
        for b in self._buffers:
            b.release()
        self._buffers = []

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("Renderer is closed")

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
