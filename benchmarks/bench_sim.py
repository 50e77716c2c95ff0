"""Embedded simulator throughput: env steps per second (rendering included) and scene/grid build times.

Generates one house, then drives the agent with the shortest-path follower (or random actions) at each
resolution, timing the simulator step (kinematics), the RGB-D render + read-back, the follower, and the full
`VLNCEEnv.step` (which adds the geodesic distance in `info` and the observation conversion).

    OMP_NUM_THREADS=1 LP_NUM_THREADS=0 python -m benchmarks.bench_sim --steps 1000 --resolutions 224,512

LP_NUM_THREADS=0 makes Mesa's llvmpipe rasterise in the calling thread (the "one CPU core" figure, and the fastest
setting measured at 224x224); set it to N for N rasteriser threads, or run on a GPU machine where EGL is the NVIDIA
driver.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import typer


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def _episode_in(grid, scene_id: str, rng: np.random.Generator, min_distance: float = 5.0):
    """A start/goal pair on the largest navigable island, at least min_distance apart (geodesic)."""
    from envs.datasets.episode import Episode, Goal, Instruction
    from envs.geometry import heading_to_quaternion

    labels = grid.components()
    cells = np.argwhere(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    for _ in range(200):
        a, b = (grid.cell_to_world(*cells[rng.integers(len(cells))]) for _ in range(2))
        if grid.geodesic_distance(a, b) >= min_distance:
            break
    return Episode(
        episode_id="0", trajectory_id=0, scene_id=scene_id, start_position=a.tolist(),
        start_rotation=heading_to_quaternion(float(rng.uniform(-np.pi, np.pi))).tolist(),
        goals=[Goal(position=b.tolist(), radius=3.0)], instruction=Instruction("Walk to the goal and stop."),
        reference_path=[a.tolist(), b.tolist()], dataset="bench", split="bench",
    )


def _best_batch_ms(per_step_s: np.ndarray, batch: int = 100) -> float:
    """Mean ms per step of the fastest `batch`-step window: robust to other processes on a shared machine."""
    n = len(per_step_s) // batch
    if n == 0:
        return 1e3 * float(per_step_s.mean())
    return 1e3 * float(per_step_s[: n * batch].reshape(n, batch).mean(1).min())


def bench_resolution(size: int, data_root: Path, episodes: list, steps: int, policy: str, seed: int) -> dict:
    """Time `steps` actions at size x size in one process: raw simulator, then through VLNCEEnv.

    Returns mean milliseconds per step of each part, and the steps/s of the whole (mean and best window).
    """
    from envs.constants import STOP
    from envs.embedded import EmbeddedSimConfig, EmbeddedSimulator
    from envs.env import VLNCEEnv
    from envs.follower import ShortestPathFollower

    rng = np.random.default_rng(seed)
    sim = EmbeddedSimulator(EmbeddedSimConfig(width=size, height=size), data_root / "scene_datasets")
    follower = ShortestPathFollower(sim, goal_radius=0.5)
    t_step, t_obs, t_pol = [], [], []
    ep_i = 0
    sim.reset(episodes[0])
    sim.observe()  # warm-up: the first frame compiles shaders and faults in buffers
    pending_pol = 0.0  # policy time of STOP decisions, charged to the next step
    while len(t_step) < steps:
        t0 = time.perf_counter()
        pos, rot = sim.agent_state()
        goal = np.array(episodes[ep_i].goal_position)
        a = follower.next_action(pos, rot, goal) if policy == "follower" else int(rng.integers(1, 4))
        t1 = time.perf_counter()
        if a == STOP:
            ep_i = (ep_i + 1) % len(episodes)
            sim.reset(episodes[ep_i])
            pending_pol += t1 - t0
            continue
        sim.step(a)
        t2 = time.perf_counter()
        sim.observe()
        t3 = time.perf_counter()
        t_pol.append(pending_pol + t1 - t0)
        t_step.append(t2 - t1)
        t_obs.append(t3 - t2)
        pending_pol = 0.0
    sim.close()

    env = VLNCEEnv(episodes=episodes, data_root=str(data_root), width=size, height=size, max_steps=10_000)
    env.reset()
    t_env = []
    while len(t_env) < steps:
        a = int(rng.integers(1, 4))  # random moves: the env cost without the follower's
        t0 = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        t_env.append(time.perf_counter() - t0)
        if term or trunc:
            env.reset()
    env.close()
    ts, to, tp, te = (np.array(x) for x in (t_step, t_obs, t_pol, t_env))
    return {
        "size": size, "steps": len(ts),
        "sim_sps": 1.0 / (ts + to).mean(), "sim_sps_best": 1e3 / _best_batch_ms(ts + to),
        "env_sps": 1.0 / te.mean(), "env_sps_best": 1e3 / _best_batch_ms(te),
        "follower_sps": 1.0 / (ts + to + tp).mean(),
        "step_ms": 1e3 * ts.mean(), "render_ms": 1e3 * to.mean(), "policy_ms": 1e3 * tp.mean(),
    }


def main(
    steps: int = typer.Option(500, help="actions timed per resolution (and again through VLNCEEnv)"),
    resolutions: str = typer.Option("224,512", help="comma-separated square image sizes"),
    policy: str = typer.Option("follower", help="'follower' (shortest-path expert) or 'random'"),
    seed: int = typer.Option(0, help="house and episode seed"),
) -> None:
    """Print simulator throughput and build times as rich tables."""
    os.environ.setdefault("LP_NUM_THREADS", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rich.console import Console
    from rich.table import Table

    from envs.navigation import NavGrid, NavGridConfig
    from envs.scenes.generator import build_house
    from envs.scenes.mesh import load_scene_mesh

    if policy not in ("follower", "random"):
        raise typer.BadParameter(f"unknown policy '{policy}'; available: follower, random")
    sizes = [int(s) for s in resolutions.split(",") if s.strip()]
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        data_root = Path(tmp)
        os.environ.setdefault("NAVILA_AGENT_CACHE", str(data_root / "cache"))  # a cold grid cache
        glb, t_house = _timed(build_house, seed, "bench", data_root / "scene_datasets" / "gen")
        mesh, t_load = _timed(load_scene_mesh, glb)
        grid, t_grid = _timed(NavGrid.from_mesh, mesh, 0.0, NavGridConfig())
        rng = np.random.default_rng(seed)
        episodes = [_episode_in(grid, "gen/bench/bench.glb", rng) for _ in range(10)]
        for k, e in enumerate(episodes):
            e.episode_id = str(k)
        ep = episodes[0]
        grid2 = NavGrid(grid.navigable, grid.origin, grid.resolution, grid.floor_y)
        _, t_field = _timed(grid2.distance_field, np.array(ep.goal_position))
        _, t_dijk = _timed(grid2.distance_field, np.array(ep.goal_position), "dijkstra")

        build = Table(title=f"Scene build (house seed {seed}: {len(mesh.faces)} triangles, grid {grid.shape[0]}x"
                            f"{grid.shape[1]} at {grid.resolution} m)")
        build.add_column("stage")
        build.add_column("seconds", justify="right")
        for name, t in (("generate house + write .glb", t_house), ("load .glb", t_load),
                        ("navigation grid", t_grid), ("first distance field (FMM)", t_field),
                        ("distance field (Dijkstra fallback)", t_dijk)):
            build.add_row(name, f"{t:.3f}")
        console.print(build)

        table = Table(title=f"Steps per second, one process ({policy} actions, {steps} steps, "
                            f"LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS')}; mean, and the fastest "
                            "100-step window in brackets)")
        for col in ("RGB-D", "sim steps/s (best 100)", "VLNCEEnv steps/s (best 100)", "+ follower steps/s",
                    "kinematics ms", "render+readback ms", "follower ms"):
            table.add_column(col, justify="right")
        for size in sizes:
            r = bench_resolution(size, data_root, episodes, steps, policy, seed)
            table.add_row(f"{size}x{size}", f"{r['sim_sps']:.0f} ({r['sim_sps_best']:.0f})",
                          f"{r['env_sps']:.0f} ({r['env_sps_best']:.0f})", f"{r['follower_sps']:.0f}",
                          f"{r['step_ms']:.3f}", f"{r['render_ms']:.3f}", f"{r['policy_ms']:.3f}")
        console.print(table)
        try:
            from envs.render import gl_context

            info = gl_context().info
            console.print(f"GL renderer: {info.get('GL_RENDERER')} ({info.get('GL_VERSION')})")
        except Exception as e:  # informational only
            console.print(f"GL renderer: unknown ({type(e).__name__})")


if __name__ == "__main__":
    typer.run(main)
