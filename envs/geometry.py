"""Quaternions and headings in habitat's convention.

Habitat (and so R2R-CE / RxR-CE episode files) uses metres, y up, quaternions stored [x, y, z, w], and an agent
that faces -z at the identity rotation. A heading (yaw) is the rotation angle about +y in radians; positive yaw
turns the agent to its left (counter-clockwise seen from above), so TURN_LEFT adds `turn_angle` to the heading.

    heading = quaternion_to_heading(q)          # radians in (-pi, pi]
    q = heading_to_quaternion(heading + math.radians(15))
    forward = heading_to_forward(heading)       # unit [x, 0, z] the agent faces
"""

from __future__ import annotations

import math

import numpy as np


def heading_to_quaternion(heading: float) -> np.ndarray:
    """Quaternion [x, y, z, w] of a pure rotation by `heading` radians about +y."""
    half = 0.5 * float(heading)
    return np.array([0.0, math.sin(half), 0.0, math.cos(half)], dtype=np.float64)


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of two [x, y, z, w] quaternions (apply b first, then a)."""
    ax, ay, az, aw = (float(v) for v in np.asarray(a, dtype=np.float64).reshape(4))
    bx, by, bz, bw = (float(v) for v in np.asarray(b, dtype=np.float64).reshape(4))
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        dtype=np.float64,
    )


def normalize_quaternion(q: np.ndarray) -> np.ndarray:
    """Unit-length copy of q; a zero quaternion is an error (it is no rotation at all)."""
    q = np.asarray(q, dtype=np.float64).reshape(4)
    n = float(np.linalg.norm(q))
    if n < 1e-12 or not math.isfinite(n):
        raise ValueError(f"rotation quaternion [x, y, z, w] must be finite and non-zero, got {q.tolist()}")
    return q / n


def rotate_vector(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate the 3-vector v by the quaternion q [x, y, z, w]."""
    x, y, z, w = (float(c) for c in normalize_quaternion(q))
    vx, vy, vz = (float(c) for c in np.asarray(v, dtype=np.float64).reshape(3))
    # v' = v + w t + u x t with t = 2 (u x v): the usual expansion of q v q*, in plain floats (this runs
    # every step; numpy's cross on 3-vectors costs more than the arithmetic).
    tx, ty, tz = 2.0 * (y * vz - z * vy), 2.0 * (z * vx - x * vz), 2.0 * (x * vy - y * vx)
    return np.array([vx + w * tx + (y * tz - z * ty), vy + w * ty + (z * tx - x * tz), vz + w * tz + (x * ty - y * tx)])


def quaternion_to_heading(q: np.ndarray) -> float:
    """Yaw about +y (radians, in (-pi, pi]) of the direction the agent faces under rotation q.

    Works for rotations with some tilt too: the heading is that of the rotated -z axis projected on the floor.
    """
    fx, _, fz = rotate_vector(q, np.array([0.0, 0.0, -1.0]))
    if abs(fx) < 1e-12 and abs(fz) < 1e-12:
        return 0.0  # looking straight up or down: the heading is undefined, pick 0
    # forward(h) = (-sin h, 0, -cos h), so h = atan2(-fx, -fz).
    return math.atan2(-fx, -fz)


def heading_to_forward(heading: float) -> np.ndarray:
    """Unit vector [x, 0, z] the agent faces at this heading (heading 0 faces -z)."""
    return np.array([-math.sin(heading), 0.0, -math.cos(heading)], dtype=np.float64)


def heading_towards(src: np.ndarray, dst: np.ndarray) -> float:
    """Heading (radians) that faces from src towards dst in the x-z plane."""
    d = np.asarray(dst, dtype=np.float64) - np.asarray(src, dtype=np.float64)
    return math.atan2(-d[0], -d[2])


def wrap_angle(a: float) -> float:
    """Angle a wrapped into (-pi, pi]."""
    a = math.fmod(float(a) + math.pi, 2.0 * math.pi)
    if a <= 0.0:
        a += 2.0 * math.pi
    return a - math.pi


def angle_difference(target: float, current: float) -> float:
    """Signed smallest rotation (radians, in (-pi, pi]) that takes heading `current` to `target`.

    Positive means turn left (counter-clockwise seen from above).
    """
    return wrap_angle(float(target) - float(current))
