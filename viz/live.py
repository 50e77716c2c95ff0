"""Live mode: one env + one agent held by the viewer server, stepped from the browser.

The page (static/live.html) asks the server to step the agent (step / run / reset) or, in manual mode, to
apply a low-level action chosen with the keyboard (W/↑ forward, A/← left, D/→ right, S stop) — for debugging
scenes and instructions without a model. The server answers with the new state; the current frame is
fetched as JPEG.

    navila-agent viz --live --episode r2r_val_unseen:17 --agent oracle

The session is built on public APIs only: a Gymnasium env with VLN-CE's `reset(options={"episode_id"})`, the
`info` dict of `envs.VLNCEEnv` (position, rotation, distance_to_goal, collided, is_success) and its
`current_episode`, and an agent with `reset(episode)` / `act(obs)` / `episode_stats()`. The CLI (composition
root) builds env and agent; this module never constructs either, so tests drive it with fakes.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
ACTION_IDS = {"stop": 0, "forward": 1, "left": 2, "right": 3}


@dataclass
class LiveConfig:
    """What the live session runs and how it answers."""

    episode_id: str  # the episode to (re)start, as in the split file (e.g. "17")
    jpeg_quality: int = 85  # quality of the frames sent to the page
    max_steps_per_request: int = 50  # upper bound on one /api/live/step call (the page loops for "run")

    def __post_init__(self) -> None:
        if not str(self.episode_id):
            raise ValueError("LiveConfig.episode_id must name an episode, e.g. '17'")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"LiveConfig.jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.max_steps_per_request < 1:
            raise ValueError(
                f"LiveConfig.max_steps_per_request must be >= 1, got {self.max_steps_per_request}"
            )


def _floats(v: Any) -> list[float | None]:
    """A JSON-safe list of floats (non-finite -> None) from an array-like pose."""
    out: list[float | None] = []
    for x in np.asarray(v, dtype=np.float64).reshape(-1).tolist():
        out.append(x if math.isfinite(x) else None)
    return out


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an RGB frame [H, W, 3] uint8 (PIL: no OpenCV needed by the server)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., :3]).astype(np.uint8)).save(
        buf, format="JPEG", quality=quality
    )
    return buf.getvalue()


_ENV_THREAD: ThreadPoolExecutor | None = None
_ENV_THREAD_LOCK = threading.Lock()


def env_thread() -> ThreadPoolExecutor:
    """The single worker thread that runs every env / agent call of live sessions in this process."""
    global _ENV_THREAD
    with _ENV_THREAD_LOCK:
        if _ENV_THREAD is None:
            _ENV_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-env")
        return _ENV_THREAD


@dataclass
class LiveSession:
    """One env and one agent, stepped on one dedicated thread (see `_on_env_thread`).

    `topdown` is an optional callable env -> (RGB image [H, W, 3], map dict with origin/resolution/width/height)
    or None; the CLI passes `env_topdown`. Without a map the page draws the path on a blank map framing the
    episode.
    """

    env: Any  # a VLN-CE gymnasium env (envs.VLNCEEnv or a test fake)
    agent: Any  # reset(episode) / act(obs) / episode_stats(); None for manual-only sessions
    config: LiveConfig
    agent_name: str = "agent"  # shown on the page
    topdown: Any = None  # callable(env) -> (image, map dict), or None
    _obs: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _steps: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)
    _done: bool = field(default=False, init=False)
    _outcome: str = field(default="", init=False)
    _frame_version: int = field(default=0, init=False)
    _map_png: bytes | None = field(default=None, init=False, repr=False)
    _map: dict[str, Any] | None = field(default=None, init=False)

    def _on_env_thread(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the process's one env thread and return its result (its exceptions are raised here).

        Why: the HTTP server answers each request on a new thread, but an OpenGL context (the embedded
        simulator's EGL renderer, one per process) is bound to the thread that created it; rendering from
        another thread gives garbage frames or "cannot create program". One worker thread for all sessions of
        the process also serialises requests, so the env never steps concurrently.
        """
        return env_thread().submit(fn).result()

    # ---------- actions ----------
    def reset(self) -> dict[str, Any]:
        """(Re)start the configured episode: env.reset(options={'episode_id'}), agent.reset(episode)."""

        def run() -> dict[str, Any]:
            obs, info = self.env.reset(options={"episode_id": self.config.episode_id})
            episode = getattr(self.env, "current_episode", None)
            if self.agent is not None:
                self.agent.reset(episode)
            self._obs = obs
            self._steps = [self._step_entry(None, info, source="reset")]
            self._done, self._outcome = False, ""
            self._frame_version += 1
            self._map_png, self._map = self._render_map(episode)
            return self._state()

        return self._on_env_thread(run)

    def step_agent(self, n: int = 1) -> dict[str, Any]:
        """Let the agent choose and apply up to n actions (fewer when the episode ends)."""
        if self.agent is None:
            raise LiveError(HTTPStatus.CONFLICT, "no agent in this session: use manual mode (W/A/D/S)")
        n = max(1, min(int(n), self.config.max_steps_per_request))

        def run() -> dict[str, Any]:
            self._require_started()
            for _ in range(n):
                if self._done:
                    break
                action = int(self.agent.act(self._obs))
                self._apply(action, source="agent")
            return self._state()

        return self._on_env_thread(run)

    def manual(self, action: int | str) -> dict[str, Any]:
        """Apply one low-level action chosen by the user (0-3 or stop/forward/left/right)."""
        if isinstance(action, str):
            if action not in ACTION_IDS:
                raise LiveError(
                    HTTPStatus.BAD_REQUEST, f"unknown action {action!r}; available: {', '.join(ACTION_IDS)}"
                )
            action = ACTION_IDS[action]
        if not (isinstance(action, int) and 0 <= action <= 3):
            raise LiveError(HTTPStatus.BAD_REQUEST, f"action must be 0-3 or a name, got {action!r}")

        def run() -> dict[str, Any]:
            self._require_started()
            if self._done:
                raise LiveError(HTTPStatus.CONFLICT, "the episode has ended: reset to start again")
            self._apply(int(action), source="manual")
            return self._state()

        return self._on_env_thread(run)

    def state(self) -> dict[str, Any]:
        """The current state (what every action returns), for a page that (re)loads."""
        return self._on_env_thread(self._state)

    def frame_jpeg(self) -> bytes | None:
        """The current RGB frame as JPEG, or None before the first reset."""

        def run() -> bytes | None:
            if self._obs is None or self._obs.get("rgb") is None:
                return None
            return encode_jpeg(np.asarray(self._obs["rgb"]), self.config.jpeg_quality)

        return self._on_env_thread(run)

    def map_png(self) -> bytes | None:
        """The scene's top-down map as PNG, or None when there is none."""
        return self._on_env_thread(lambda: self._map_png)

    def close(self) -> None:
        """Close the env on the env thread (the thread stays for the next session of this process)."""
        self._on_env_thread(self.env.close)

    # ---------- internals ----------
    def _require_started(self) -> None:
        if self._obs is None:
            raise LiveError(HTTPStatus.CONFLICT, "no episode started: reset first")

    def _apply(self, action: int, source: str) -> None:
        obs, _reward, terminated, truncated, info = self.env.step(action)
        self._obs = obs
        self._frame_version += 1
        self._steps.append(self._step_entry(action, info, source=source))
        if terminated or truncated:
            self._done = True
            ok = bool(info.get("is_success"))
            self._outcome = (
                ("success" if ok else "stopped, not at the goal") if terminated else "step limit reached"
            )

    def _step_entry(self, action: int | None, info: dict[str, Any], source: str) -> dict[str, Any]:
        return {
            "t": len(self._steps),
            "position": _floats(info.get("position", [math.nan] * 3)),
            "rotation": _floats(info.get("rotation", [math.nan] * 4)),
            "action": action,
            "collided": bool(info.get("collided", False)),
            "distance_to_goal": _finite(info.get("distance_to_goal")),
            "source": source,
        }

    def _render_map(self, episode: Any) -> tuple[bytes | None, dict[str, Any] | None]:
        """topdown.png bytes + map transform; without a renderer, a transform framing the episode (no image)."""
        if self.topdown is not None:
            from PIL import Image

            drawn = self.topdown(self.env)
            if drawn is None:  # no map for this scene (e.g. a mesh without semantics): frame the path instead
                return None, _framing_map(episode, self._steps[0]["position"] if self._steps else None)
            image, transform = drawn
            m = transform.to_dict() if hasattr(transform, "to_dict") else dict(transform)
            img = np.asarray(image)
            buf = io.BytesIO()
            Image.fromarray(img[..., :3].astype(np.uint8) if img.ndim == 3 else img.astype(np.uint8)).save(
                buf, "PNG"
            )
            m.setdefault("width", img.shape[1])
            m.setdefault("height", img.shape[0])
            return buf.getvalue(), m
        return None, _framing_map(episode, self._steps[0]["position"] if self._steps else None)

    def _decisions(self) -> list[dict[str, Any]]:
        if self.agent is None or not hasattr(self.agent, "episode_stats"):
            return []
        stats = self.agent.episode_stats() or {}
        log = stats.get("decision_log") or stats.get("decisions_log") or []
        return [dict(d) for d in log] if isinstance(log, list) else []

    def _state(self) -> dict[str, Any]:
        ep = getattr(self.env, "current_episode", None)
        decisions = self._decisions()
        stats = (
            (self.agent.episode_stats() or {})
            if self.agent is not None and hasattr(self.agent, "episode_stats")
            else {}
        )
        return {
            "started": self._obs is not None,
            "uid": getattr(ep, "uid", None) if ep is not None else None,
            "instruction": ep.instruction.instruction_text if ep is not None else "",
            "goal": list(ep.goal_position) if ep is not None and hasattr(ep, "goal_position") else None,
            "success_distance": _goal_radius(ep),
            "reference_path": [list(p) for p in (ep.reference_path or [])] if ep is not None else [],
            "agent": self.agent_name if self.agent is not None else None,
            "t": len(self._steps) - 1,
            "steps": self._steps,
            "done": self._done,
            "outcome": self._outcome,
            "decisions": decisions[-20:],  # the page shows the latest; the full log stays with the agent
            "n_decisions": len(decisions),
            "parse_failures": int(stats.get("parse_failures") or 0),
            "frame_version": self._frame_version,
            "map": self._map,
            "has_map_image": self._map_png is not None,
        }


def env_topdown(env: Any) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Top-down map of the env's current scene (`envs.topdown.env_topdown`), or None when there is none yet
    (before the first reset) or the backend has no navigation grid; the page then draws the path on a blank map."""
    from envs.topdown import env_topdown as scene_topdown

    try:
        return scene_topdown(env)
    except (ValueError, RuntimeError):
        return None


def _goal_radius(ep: Any) -> float:
    try:
        r = ep.goals[0].radius
    except (AttributeError, IndexError, TypeError):
        return 3.0
    return float(r) if r else 3.0


def _framing_map(
    episode: Any, start: list[float | None] | None, margin: float = 3.0, resolution: float = 0.05
) -> dict[str, Any] | None:
    """A map transform (no image) whose extent covers start, goal and reference path plus `margin` metres."""
    pts: list[list[float]] = []
    if episode is not None:
        pts += [list(p) for p in (episode.reference_path or [])]
        if getattr(episode, "goal_position", None) is not None:
            pts.append(list(episode.goal_position))
    if start and None not in start:
        pts.append([float(v) for v in start])  # type: ignore[arg-type]
    if not pts:
        return None
    xs = [p[0] for p in pts]
    zs = [p[2] for p in pts]
    x0, z0 = min(xs) - margin, min(zs) - margin
    w = math.ceil((max(xs) + margin - x0) / resolution)
    h = math.ceil((max(zs) + margin - z0) / resolution)
    return {"image": None, "origin": [x0, z0], "resolution": resolution, "width": w, "height": h}


class LiveError(Exception):
    """A request the live session refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)


def handle_get(handler: Any, session: LiveSession, route: str, query: dict[str, str]) -> None:
    """GET /api/live/state | frame.jpg | topdown.png."""
    if route == "state":
        handler.send_json(session.state())
    elif route == "frame.jpg":
        data = session.frame_jpeg()
        if data is None:
            handler.send_error_json(HTTPStatus.NOT_FOUND, "no frame yet: reset first")
        else:
            handler._send(200, data, "image/jpeg")
    elif route == "topdown.png":
        data = session.map_png()
        if data is None:
            handler.send_error_json(HTTPStatus.NOT_FOUND, "no top-down map for this scene")
        else:
            handler._send(200, data, "image/png")
    else:
        handler.send_error_json(HTTPStatus.NOT_FOUND, f"no live route {route}")


def handle_post(handler: Any, session: LiveSession, route: str, body: dict[str, Any]) -> None:
    """POST /api/live/reset | step {"n": k} | action {"action": 0-3 or name}."""
    try:
        if route == "reset":
            state = session.reset()
        elif route == "step":
            state = session.step_agent(int(body.get("n", 1)))
        elif route == "action":
            state = session.manual(body.get("action"))
        else:
            handler.send_error_json(HTTPStatus.NOT_FOUND, f"no live route {route}")
            return
    except LiveError as exc:
        handler.send_error_json(exc.status, str(exc))
        return
    except (TypeError, ValueError) as exc:
        handler.send_error_json(HTTPStatus.BAD_REQUEST, f"{type(exc).__name__}: {exc}")
        return
    handler.send_json(state)
