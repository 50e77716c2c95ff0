"""Render one RGB + depth view of a generated house, side by side, for the README.

    python scripts/render_example.py --seed 1 --out docs/images/example_rgbd.png

The camera stands in a corner of the room with the most furniture, at habitat's camera height, looking across
the room; depth is colour-mapped (near = dark blue, far = red, black = nothing hit).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e .`


def best_corner_view(semantics, margin: float = 0.5) -> tuple[np.ndarray, float]:
    """Eye (x, y, z) and yaw of the room corner that sees the most objects of its room within a 90° view."""
    from envs.constants import CAMERA_HEIGHT_M

    best, best_score = None, -1
    for room in semantics.rooms:
        (x0, z0), _, (x1, z1), _ = room.polygon
        objects = [o for o in semantics.objects if o.room_id == room.id]
        for cx, cz in (
            (x0 + margin, z0 + margin),
            (x1 - margin, z0 + margin),
            (x1 - margin, z1 - margin),
            (x0 + margin, z1 - margin),
        ):
            tx, tz = (x0 + x1) - cx, (z0 + z1) - cz  # opposite corner
            yaw = math.atan2(-(tx - cx), -(tz - cz))  # a camera with yaw 0 looks along -z
            score = 0
            for o in objects:
                ang = math.atan2(-(o.position[0] - cx), -(o.position[2] - cz)) - yaw
                ang = (ang + math.pi) % (2 * math.pi) - math.pi
                score += abs(ang) < math.radians(40)
            if score > best_score:
                best, best_score = (np.array([cx, CAMERA_HEIGHT_M, cz]), yaw), score
    return best


def colorize_depth(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """[H, W] metres -> [H, W, 3] uint8 with OpenCV's turbo colour map; pixels with no hit are black."""
    import cv2

    scaled = (np.clip(depth / max_depth, 0.0, 1.0) * 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[depth <= 0] = 0
    return rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="house generator seed")
    parser.add_argument("--size", type=int, default=384, help="image width and height in pixels")
    parser.add_argument("--out", type=Path, default=Path("docs/images/example_rgbd.png"), help="output PNG")
    args = parser.parse_args()

    from PIL import Image

    from envs.render import RenderConfig, Renderer
    from envs.scenes.generator import generate_house

    mesh, semantics = generate_house(args.seed, f"example_{args.seed}")
    eye, yaw = best_corner_view(semantics)
    with Renderer(RenderConfig(width=args.size, height=args.size)) as renderer:
        renderer.load_mesh(mesh)
        rgb, depth = renderer.render(eye, np.array([0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2)]))
    gap = np.full((args.size, 8, 3), 255, dtype=np.uint8)
    image = np.hstack([rgb, gap, colorize_depth(depth, max_depth=10.0)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(args.out)
    print(
        f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}), depth {depth[depth > 0].min():.2f}-{depth.max():.2f} m"
    )


if __name__ == "__main__":
    main()
