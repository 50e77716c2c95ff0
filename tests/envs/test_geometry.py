"""Quaternion / heading conventions (habitat: -z forward at identity, positive yaw turns left)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.geometry import (
    angle_difference,
    heading_to_forward,
    heading_to_quaternion,
    heading_towards,
    normalize_quaternion,
    quaternion_multiply,
    quaternion_to_heading,
    rotate_vector,
    wrap_angle,
)

angles = st.floats(min_value=-3.1, max_value=3.1, allow_nan=False)


def test_identity_faces_minus_z():
    assert np.allclose(rotate_vector(np.array([0, 0, 0, 1.0]), [0, 0, -1]), [0, 0, -1])
    assert quaternion_to_heading(np.array([0, 0, 0, 1.0])) == 0.0
    assert np.allclose(heading_to_forward(0.0), [0, 0, -1])


def test_positive_yaw_turns_left():
    # From facing -z, a quarter turn to the left faces -x (x is to the agent's right at identity).
    q = heading_to_quaternion(math.pi / 2)
    assert np.allclose(rotate_vector(q, [0, 0, -1]), [-1, 0, 0], atol=1e-12)
    assert np.allclose(heading_to_forward(math.pi / 2), [-1, 0, 0], atol=1e-12)


def test_r2r_style_quaternion():
    # R2R-CE start rotations are pure yaw quaternions like [0, sin(h/2), 0, cos(h/2)].
    q = np.array([0.0, 0.7071067811865476, 0.0, 0.7071067811865476])
    assert math.isclose(quaternion_to_heading(q), math.pi / 2, abs_tol=1e-9)


@given(angles)
def test_heading_round_trip(h):
    assert math.isclose(quaternion_to_heading(heading_to_quaternion(h)), h, abs_tol=1e-9)


@given(angles, angles)
def test_composition_adds_headings(a, b):
    q = quaternion_multiply(heading_to_quaternion(a), heading_to_quaternion(b))
    assert math.isclose(angle_difference(quaternion_to_heading(q), a + b), 0.0, abs_tol=1e-9)


@given(angles, angles)
def test_angle_difference_is_smallest_signed(a, b):
    d = angle_difference(a, b)
    assert -math.pi < d <= math.pi
    assert math.isclose(wrap_angle(b + d - a), 0.0, abs_tol=1e-9)


def test_angle_difference_wraps():
    assert math.isclose(angle_difference(math.radians(170), math.radians(-170)), math.radians(-20))
    assert math.isclose(wrap_angle(3 * math.pi), math.pi)


def test_heading_towards_matches_forward():
    for h in np.linspace(-3, 3, 13):
        assert math.isclose(heading_towards(np.zeros(3), heading_to_forward(h)), h, abs_tol=1e-9)


def test_zero_quaternion_rejected():
    with pytest.raises(ValueError, match="non-zero"):
        normalize_quaternion(np.zeros(4))


def test_heading_of_tilted_rotation_uses_projected_forward():
    pitch = np.array([math.sin(0.2), 0, 0, math.cos(0.2)])  # look slightly up/down
    q = quaternion_multiply(heading_to_quaternion(1.0), pitch)
    assert math.isclose(quaternion_to_heading(q), 1.0, abs_tol=1e-9)
