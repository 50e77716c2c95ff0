"""Generated VLN-CE splits: episodes in procedurally generated houses, written in the real R2R-CE / RxR-CE format.

For each house of a split (built once into `scene_datasets/gen/<house>/`), episodes are sampled on the same
navigation grid and with the same kinematics as the embedded simulator (`EmbeddedSimConfig` defaults):
- start: a random navigable cell of the house's largest navigable island, random yaw;
- goal: a navigable point next to a piece of furniture or at a room centre, at a geodesic distance drawn around
  `target_geodesic` within [min_geodesic, max_geodesic] (R2R-CE val_unseen averages ~9.6 m);
- reference path: the shortest path through 0-`max_via` meaningful waypoints (doorways, room centres) that
  cost at most `max_detour` times the direct geodesic; stored sparse (a point every <= `ref_spacing` metres);
- ground truth: the shortest-path follower driven through those waypoints with the simulator's kinematics,
  recorded like VLN-CE (`locations` = the start plus the position after every MOVE_FORWARD, `actions` ending
  with STOP), so replaying `actions` in the simulator reproduces `locations`;
- instruction: `envs.datasets.instructions` over the reference path and the house semantics (R2R or RxR style);
  R2R-style splits also get `instruction_tokens` and an `instruction_vocab` built from the split's own text.

Everything is deterministic from the config's seed (each house has its own RNG stream, so a house's episodes do
not depend on the others). Splits are cached: `build_split` rebuilds only when the split is missing, `force` is
set, or the recorded config (`manifest.json`) differs from the requested one.

    navila-agent data build --split r2r_val_unseen
    python -c "from envs.datasets.generate import build_split; build_split('r2r_val_unseen')"
"""

from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from envs.constants import MAX_EPISODE_STEPS, MOVE_FORWARD, STOP, SUCCESS_DISTANCE_M
from envs.datasets.episode import Episode, Goal, GroundTruth, Instruction
from envs.datasets.instructions import STYLES, build_vocab, encode, generate_instruction
from envs.datasets.io import write_split
from envs.datasets.splits import (
    GENERATED_SPLITS,
    episode_file,
    generated_dataset_dir,
    parse_split,
    scene_root,
)
from envs.follower import EXPERT_LATERAL_TOLERANCE_M, EXPERT_TURN_HYSTERESIS_DEG, expert_follower
from envs.scenes.semantics import HouseSemantics

if TYPE_CHECKING:  # navigation pulls in scipy; imported where used
    from envs.navigation import NavGrid

# Environment overrides of every preset's size, for tests and quick looks (a rebuilt split records them).
ENV_HOUSES = "NAVILA_AGENT_GEN_HOUSES"
ENV_EPISODES = "NAVILA_AGENT_GEN_EPISODES"


@dataclass
class SplitGenConfig:
    num_houses: int  # houses in the split
    episodes_per_house: int  # episodes sampled in each house
    seed: int  # seed of the episode sampler (houses have their own fixed seeds)
    min_geodesic: float = 5.0  # metres; shorter start-goal geodesics are rejected
    max_geodesic: float = 20.0  # metres; longer ones are rejected
    target_geodesic: float = 9.6  # metres; goals are drawn around this distance (R2R-CE's mean)
    geodesic_spread: float = 3.0  # metres; standard deviation of the drawn distance
    first_house: int = 0  # index of the first house: held-out (unseen) splits use their own house range
    style: str = "r2r"  # instruction style: "r2r" (1-4 sentences) or "rxr" (a long narration)
    instructions_per_path: int = 1  # episodes sharing one path (R2R annotates each path 3 times)
    max_via: int = 2  # intermediate waypoints (doors, room centres) the reference path may go through
    max_detour: float = 1.3  # the path through the waypoints is at most this times the direct geodesic
    ref_spacing: float = 2.5  # metres between points of the sparse reference_path, at most
    goal_radius: float = SUCCESS_DISTANCE_M  # the episode's goal radius (success distance)
    expert_stop_distance: float = 0.3  # metres; the expert stops this close (geodesic) to the goal
    expert_lateral_tolerance: float = EXPERT_LATERAL_TOLERANCE_M  # metres; see envs.follower (no 15° zig-zag)
    expert_turn_hysteresis: float = EXPERT_TURN_HYSTERESIS_DEG  # degrees; see envs.follower (no 15° zig-zag)
    max_attempts: int = 40  # sampling attempts per episode before the house is declared exhausted

    def __post_init__(self) -> None:
        for name in ("num_houses", "episodes_per_house", "instructions_per_path", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"SplitGenConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_geodesic < self.max_geodesic:
            raise ValueError(
                f"SplitGenConfig needs 0 < min_geodesic < max_geodesic, got {self.min_geodesic}, {self.max_geodesic}"
            )
        if self.style not in STYLES:
            raise ValueError(
                f"SplitGenConfig.style: unknown style '{self.style}'; available: {', '.join(STYLES)}"
            )
        if self.max_via < 0 or self.max_detour < 1.0:
            raise ValueError("SplitGenConfig needs max_via >= 0 and max_detour >= 1")
        if self.first_house < 0:
            raise ValueError(f"SplitGenConfig.first_house must be >= 0, got {self.first_house}")


# Sizes: seen splits reuse the training houses (new episodes), unseen splits use houses 1000+ that no training
# split contains, like R2R's held-out scans. Counts keep a laptop build to minutes (see `data build` output).
UNSEEN_FIRST_HOUSE = 1000
PRESETS: dict[str, SplitGenConfig] = {
    "r2r_train": SplitGenConfig(num_houses=40, episodes_per_house=50, seed=101, instructions_per_path=2),
    "r2r_val_seen": SplitGenConfig(num_houses=10, episodes_per_house=15, seed=102),
    "r2r_val_unseen": SplitGenConfig(
        num_houses=10, episodes_per_house=20, seed=103, first_house=UNSEEN_FIRST_HOUSE
    ),
    "rxr_train": SplitGenConfig(
        num_houses=40, episodes_per_house=25, seed=201, style="rxr",
        min_geodesic=10.0, max_geodesic=30.0, target_geodesic=14.0, max_via=3,
    ),
    "rxr_val_seen": SplitGenConfig(
        num_houses=10, episodes_per_house=10, seed=202, style="rxr",
        min_geodesic=10.0, max_geodesic=30.0, target_geodesic=14.0, max_via=3,
    ),
    "rxr_val_unseen": SplitGenConfig(
        num_houses=10, episodes_per_house=20, seed=203, style="rxr", first_house=UNSEEN_FIRST_HOUSE,
        min_geodesic=10.0, max_geodesic=30.0, target_geodesic=14.0, max_via=3,
    ),
}  # fmt: skip


def preset_config(name: str) -> SplitGenConfig:
    """The preset of a generated split, with the size overrides from $NAVILA_AGENT_GEN_HOUSES / _EPISODES."""
    parse_split(name)
    if name not in PRESETS:
        raise ValueError(
            f"split '{name}' cannot be generated; generated splits: {', '.join(GENERATED_SPLITS)}"
        )
    cfg = PRESETS[name]
    for var, field_name in ((ENV_HOUSES, "num_houses"), (ENV_EPISODES, "episodes_per_house")):
        value = os.environ.get(var)
        if value:
            try:
                cfg = replace(cfg, **{field_name: int(value)})
            except ValueError:
                raise ValueError(f"${var} must be a positive integer, got '{value}'") from None
    return cfg


def house_id(index: int) -> str:
    return f"house_{index:04d}"


# ---------------------------------------------------------------------------------------------------- houses


@dataclass
class House:
    """A generated house ready for sampling: its scene id, semantics and navigation grid."""

    house_id: str
    scene_id: str  # relative to the scenes root: "gen/<house>/<house>.glb"
    semantics: HouseSemantics
    grid: NavGrid  # built like the embedded simulator's


def ensure_house(index: int) -> House:
    """Build house `index` into the generated scenes folder if missing; load its semantics and grid.

    The grid is built from the written .glb exactly as the embedded simulator builds it (same loader, same
    `EmbeddedSimConfig` grid settings), so expert trajectories replay identically in the simulator.
    """
    from envs.embedded import EmbeddedSimConfig
    from envs.navigation import NavGrid
    from envs.scenes.generator import build_house
    from envs.scenes.mesh import load_scene_mesh

    hid = house_id(index)
    root = scene_root(None)
    glb = root / "gen" / hid / f"{hid}.glb"
    sem_path = glb.with_name(f"{hid}.semantics.json")
    if not (glb.is_file() and sem_path.is_file()):
        glb.parent.mkdir(parents=True, exist_ok=True)
        with open(glb.parent / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # splits sharing a house, built in parallel, build it once
            if not (glb.is_file() and sem_path.is_file()):
                glb = build_house(seed=index, house_id=hid, out_dir=root / "gen")
    semantics = HouseSemantics.load(sem_path)
    mesh = load_scene_mesh(glb, up="y")
    grid = NavGrid.from_mesh(mesh, semantics.floor_height, EmbeddedSimConfig().nav_grid_config())
    return House(hid, glb.relative_to(root).as_posix(), semantics, grid)


# -------------------------------------------------------------------------------------------------- sampling


@dataclass
class SampledPath:
    """One expert path: everything an episode needs except its id and instruction."""

    start: list[float]
    yaw: float  # radians, habitat heading (0 faces -z, positive turns left)
    goal: list[float]
    geodesic: float  # start -> goal, metres
    polyline: list[list[float]]  # the reference path, dense enough to describe (corners of shortest paths)
    reference_path: list[list[float]]  # sparse waypoints as stored in the file
    locations: list[list[float]]
    actions: list[int]
    collisions: int = 0  # forward steps of the expert that hit (and slid along) an obstacle


def _points_of_interest(house: House) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(goal candidates, via candidates), snapped to the largest navigable island.

    Goals are next to furniture (the navigable point nearest each object) or at room centres; vias are doorways
    and room centres.
    """
    grid, sem = house.grid, house.semantics
    labels = grid.components()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    main = int(np.argmax(sizes))

    def on_main(p) -> np.ndarray | None:
        q = grid.snap(np.array([p[0], sem.floor_height, p[2]], dtype=np.float64))
        r, c = grid.world_to_cell(q)
        return q if labels[r, c] == main else None

    centres = []
    for room in sem.rooms:
        poly = np.asarray(room.polygon, dtype=np.float64)
        centres.append(on_main([poly[:, 0].mean(), 0.0, poly[:, 1].mean()]))
    objects = [on_main(o.position) for o in sem.objects]
    doors = [on_main(d.position) for d in sem.doors]
    goals = [p for p in objects + centres if p is not None]
    vias = [p for p in doors + centres if p is not None]
    return goals, vias


def _sparse(polyline: list[np.ndarray], spacing: float) -> list[list[float]]:
    """Corners of the polyline plus evenly spaced points so no gap exceeds `spacing`."""
    out = [polyline[0]]
    for a, b in itertools.pairwise(polyline):
        n = max(1, math.ceil(float(np.linalg.norm((b - a)[[0, 2]])) / spacing))
        out += [a + (b - a) * k / n for k in range(1, n + 1)]
    return [[float(v) for v in p] for p in out]


def sample_path(
    house: House,
    cfg: SplitGenConfig,
    rng: np.random.Generator,
    candidates: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
) -> SampledPath | None:
    """One random expert path in the house, or None when this attempt failed (caller retries)."""
    from envs.embedded import EmbeddedSimConfig
    from envs.geometry import heading_to_quaternion
    from envs.kinematics import AgentState, apply_action

    grid = house.grid
    goals, vias = candidates if candidates is not None else _points_of_interest(house)
    if not goals:
        return None
    labels = grid.components()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    cells = np.argwhere(labels == int(np.argmax(sizes)))  # [N, 2] (row, col)
    r, c = cells[rng.integers(len(cells))]
    start = grid.cell_to_world(int(r), int(c))

    # Goal: the candidate whose geodesic is closest to a distance drawn around the target.
    field = grid.distance_field(start)
    geo = np.array([grid.lookup(field, g) for g in goals])
    ok = np.isfinite(geo) & (geo >= cfg.min_geodesic) & (geo <= cfg.max_geodesic)
    if not ok.any():
        return None
    want = float(
        np.clip(rng.normal(cfg.target_geodesic, cfg.geodesic_spread), cfg.min_geodesic, cfg.max_geodesic)
    )
    idx = np.flatnonzero(ok)
    best = idx[np.argsort(np.abs(geo[idx] - want))[:3]]  # a little randomness among the closest few
    gi = int(best[rng.integers(len(best))])
    goal, geodesic = goals[gi], float(geo[gi])

    # Vias: doorways / room centres "on the way" (small detour), visited in order of distance from the start.
    chosen: list[np.ndarray] = []
    n_via = int(rng.integers(0, cfg.max_via + 1))
    if n_via and vias:
        goal_field = grid.distance_field(goal)
        scored = []
        for v in vias:
            d1, d2 = grid.lookup(field, v), grid.lookup(goal_field, v)
            if d1 > 1.5 and d2 > 1.5 and d1 + d2 <= cfg.max_detour * geodesic:
                scored.append((d1, v))
        order = rng.permutation(len(scored))[:n_via]
        chosen = [v for _, v in sorted((scored[i] for i in order), key=lambda t: t[0])]
    targets = [*chosen, goal]

    polyline = [start]
    for a, b in zip([start, *chosen], targets, strict=True):
        seg = grid.shortest_path(a, b)
        if not seg:
            return None
        polyline += seg[1:]
    length = sum(float(np.linalg.norm((q - p)[[0, 2]])) for p, q in itertools.pairwise(polyline))
    if length > cfg.max_detour * geodesic + 0.5:
        return None

    # Expert: the follower through every target with the simulator's kinematics.
    sim_cfg = EmbeddedSimConfig()
    kin = sim_cfg.kinematics_config()
    expert = {
        "turn_angle": kin.turn_angle,
        "lateral_tolerance": cfg.expert_lateral_tolerance,
        "turn_hysteresis": cfg.expert_turn_hysteresis,
    }
    via_follower = expert_follower(grid, goal_radius=0.75, **expert)
    goal_follower = expert_follower(grid, goal_radius=cfg.expert_stop_distance, **expert)
    yaw = float(rng.uniform(-math.pi, math.pi))
    state = AgentState(start.copy(), heading_to_quaternion(yaw))
    locations = [state.position.tolist()]
    actions: list[int] = []
    collisions = 0
    for k, target in enumerate(targets):
        follower = goal_follower if k == len(targets) - 1 else via_follower
        while True:
            a = follower.next_action(state.position, state.rotation, target)
            if a == STOP:
                break
            state, collided = apply_action(state, a, grid, kin)
            collisions += collided
            actions.append(a)
            if a == MOVE_FORWARD:
                locations.append(state.position.tolist())
            if len(actions) >= MAX_EPISODE_STEPS - 1:
                return None  # the expert must finish within the episode step limit
    actions.append(STOP)
    if grid.geodesic_distance(state.position, goal) > max(cfg.expert_stop_distance, 0.5):
        return None
    return SampledPath(
        start=start.tolist(),
        yaw=yaw,
        goal=goal.tolist(),
        geodesic=geodesic,
        polyline=[p.tolist() for p in polyline],
        reference_path=_sparse(polyline, cfg.ref_spacing),
        locations=locations,
        actions=actions,
        collisions=collisions,
    )


def house_episodes(
    house: House,
    index: int,
    cfg: SplitGenConfig,
    dataset: str,
    split: str,
    first_id: int,
    trajectory_base: int,
) -> list[Episode]:
    """`cfg.episodes_per_house` episodes in one house (fewer only if sampling keeps failing there).

    Ids are assigned from `first_id`; the RNG depends only on (seed, house index), so houses are independent.
    """
    from envs.geometry import heading_to_forward, heading_to_quaternion

    rng = np.random.default_rng([cfg.seed, index])
    candidates = _points_of_interest(house)
    episodes: list[Episode] = []
    n_paths = math.ceil(cfg.episodes_per_house / cfg.instructions_per_path)
    failures = 0
    for p in range(n_paths):
        path = None
        while path is None and failures < cfg.max_attempts * n_paths:
            path = sample_path(house, cfg, rng, candidates)
            failures += path is None
        if path is None:
            break
        forward = heading_to_forward(path.yaw)
        for _ in range(cfg.instructions_per_path):
            if len(episodes) == cfg.episodes_per_house:
                break
            eid = first_id + len(episodes)
            text = generate_instruction(
                path.polyline,
                house.semantics,
                seed=int(rng.integers(2**31)),
                style=cfg.style,
                start_heading=(float(forward[0]), float(forward[2])),
            )
            episodes.append(
                Episode(
                    episode_id=str(eid),
                    trajectory_id=trajectory_base + p if dataset == "r2r" else str(trajectory_base + p),
                    scene_id=house.scene_id,
                    start_position=path.start,
                    start_rotation=[float(v) for v in heading_to_quaternion(path.yaw)],
                    goals=[Goal(position=path.goal, radius=cfg.goal_radius)],
                    instruction=Instruction(
                        text,
                        None,
                        {"instruction_id": str(eid), "language": "en-US"} if dataset == "rxr" else {},
                    ),
                    reference_path=path.reference_path,
                    geodesic_distance=path.geodesic,
                    gt=GroundTruth(
                        locations=path.locations,
                        actions=path.actions,
                        forward_steps=sum(1 for a in path.actions if a == MOVE_FORWARD),
                    ),
                    dataset=dataset,
                    split=split,
                    episode_id_is_int=dataset == "r2r",  # R2R-CE ids are ints, RxR-CE ids strings
                    info={"role": "guide"} if dataset == "rxr" else {},
                )
            )
    return episodes


# ---------------------------------------------------------------------------------------------------- splits


def manifest_path(name: str) -> Path:
    _, split = parse_split(name)
    return generated_dataset_dir(name) / split / "manifest.json"


def is_built(name: str, config: SplitGenConfig | None = None) -> bool:
    """Whether split `name` is on disk (complete: episode file and manifest), built with `config` if one is given.

    Without `config`: a build made with an explicit config (`data build --houses ...`, tests) is kept whatever
    its size; a build of the preset counts only while it is still the preset (`preset_config`, which includes
    $NAVILA_AGENT_GEN_HOUSES / _EPISODES), so asking for another size through the environment rebuilds it.
    Manifests written before this rule (no `from_preset`) count as explicit builds and are kept."""
    mpath = manifest_path(name)
    if not (episode_file(name, generated_dataset_dir(name)).is_file() and mpath.is_file()):
        return False
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if config is not None:
        return manifest.get("config") == asdict(config)
    if manifest.get("from_preset") is True:
        return manifest.get("config") == asdict(preset_config(name))
    return True


def build_split(
    name: str,
    force: bool = False,
    config: SplitGenConfig | None = None,
    progress: bool = True,
    on_house: Callable[[int, int], None] | None = None,
    workers: int = 0,
) -> Path:
    """Build generated split `name` (houses too, where missing) unless it is already built; returns the episode file.

    Without `config`, the preset is built (with the env overrides) unless a build is kept (`is_built`: an
    explicit-config build always is, a preset build while the preset is unchanged); with `config`, a build made
    with another config is replaced. `force` always rebuilds.
    `progress` shows a rich progress bar on stderr; `on_house(done, total)` is called after each house;
    `workers` processes build houses in parallel (0 = `default_workers()`; the output does not depend on it). A
    file lock makes concurrent callers (parallel eval workers) wait for one build instead of racing.
    """
    dataset, split = parse_split(name)
    cfg = config if config is not None else preset_config(name)
    out_dir = generated_dataset_dir(name)
    target = episode_file(name, out_dir)
    if not force and is_built(name, config):
        return target
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    with open(out_dir / split / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not force and is_built(name, config):  # another process built it while we waited
            return target
        t0 = time.perf_counter()
        episodes = _build_episodes(cfg, dataset, split, progress, on_house, workers or default_workers())
        if not episodes:
            raise RuntimeError(
                f"split '{name}': no episode could be sampled; check SplitGenConfig {asdict(cfg)}"
            )
        vocab = None
        if dataset == "r2r":
            vocab = build_vocab([ep.instruction.instruction_text for ep in episodes])
            for ep in episodes:
                ep.instruction.instruction_tokens = encode(ep.instruction.instruction_text, vocab)
        manifest_path(name).unlink(missing_ok=True)  # the split is invalid until the new manifest lands
        write_split(out_dir, split, episodes, vocab=vocab, role="guide" if dataset == "rxr" else None)
        stats = split_stats(episodes)
        stats["build_seconds"] = round(time.perf_counter() - t0, 2)
        tmp = manifest_path(name).with_suffix(".tmp")
        manifest = {"split": name, "config": asdict(cfg), "from_preset": config is None, "stats": stats}
        tmp.write_text(json.dumps(manifest, indent=1))
        tmp.replace(manifest_path(name))
    return target


def _house_job(args: tuple[SplitGenConfig, str, str, int]) -> list[Episode]:
    """One house's episodes (ids from 1; renumbered by the caller). Top level so worker processes can run it."""
    cfg, dataset, split, k = args
    index = cfg.first_house + k
    paths_per_house = math.ceil(cfg.episodes_per_house / cfg.instructions_per_path)
    house = ensure_house(index)
    return house_episodes(
        house, index, cfg, dataset, split, first_id=1, trajectory_base=k * paths_per_house + 1
    )


def default_workers() -> int:
    """Worker processes for a build: the CPU count, at most 8 (each holds one house's grid)."""
    return max(1, min(8, os.cpu_count() or 1))


def _build_episodes(
    cfg: SplitGenConfig,
    dataset: str,
    split: str,
    progress: bool,
    on_house: Callable[[int, int], None] | None,
    workers: int,
) -> list[Episode]:
    """All houses' episodes in house order, numbered 1..N; houses run in `workers` processes when > 1.

    Each house has its own RNG stream, so the result is the same for any number of workers.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    jobs = [(cfg, dataset, split, k) for k in range(cfg.num_houses)]
    per_house: list[list[Episode]] = []
    with Progress(
        TextColumn(f"[bold]{dataset}_{split}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task("houses", total=cfg.num_houses)

        def done(result: list[Episode]) -> None:
            per_house.append(result)
            bar.advance(task)
            if on_house is not None:
                on_house(len(per_house), cfg.num_houses)

        if workers > 1 and cfg.num_houses > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the parent may hold threads (the progress bar) that a fork would copy mid-lock.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, cfg.num_houses), mp_context=ctx) as pool:
                bar.update(task, description=f"({min(workers, cfg.num_houses)} workers)")
                for result in pool.map(_house_job, jobs):  # in house order
                    done(result)
        else:
            for job in jobs:
                bar.update(task, description=house_id(cfg.first_house + job[3]))
                done(_house_job(job))

    episodes = [ep for house in per_house for ep in house]
    for i, ep in enumerate(episodes, start=1):  # ids run across houses, as in R2R-CE files
        ep.episode_id = str(i)
        if "instruction_id" in ep.instruction.extra:
            ep.instruction.extra["instruction_id"] = ep.episode_id
    return episodes


def split_stats(episodes: list[Episode]) -> dict:
    """Summary numbers of a split: counts, mean geodesic distance, instruction length, expert steps."""
    if not episodes:
        return {"episodes": 0}
    geo = [ep.geodesic_distance for ep in episodes if ep.geodesic_distance is not None]
    words = [len(ep.instruction.instruction_text.split()) for ep in episodes]
    steps = [len(ep.gt.actions) for ep in episodes if ep.gt is not None]
    return {
        "episodes": len(episodes),
        "scenes": len({ep.scene_id for ep in episodes}),
        "mean_geodesic_m": round(float(np.mean(geo)), 3) if geo else None,
        "mean_instruction_words": round(float(np.mean(words)), 1),
        "mean_gt_actions": round(float(np.mean(steps)), 1) if steps else None,
    }
