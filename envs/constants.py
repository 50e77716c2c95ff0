"""Key strings and numbers of the VLN-CE task, in one place.

Action ids are habitat's (VLN-CE v0.1.7), so real R2R-CE / RxR-CE ground-truth action lists replay unchanged.
"""

from __future__ import annotations

# Low-level actions (habitat ids).
STOP = 0
MOVE_FORWARD = 1
TURN_LEFT = 2
TURN_RIGHT = 3
ACTION_NAMES: dict[int, str] = {STOP: "STOP", MOVE_FORWARD: "MOVE_FORWARD", TURN_LEFT: "TURN_LEFT", TURN_RIGHT: "TURN_RIGHT"}
NUM_ACTIONS = 4

# Task settings used by NaVILA on R2R-CE (see NAVILA_REFERENCE.md).
FORWARD_STEP_M = 0.25
TURN_ANGLE_DEG = 15.0
SUCCESS_DISTANCE_M = 3.0
MAX_EPISODE_STEPS = 500
AGENT_RADIUS_M = 0.1
AGENT_HEIGHT_M = 1.5
CAMERA_HEIGHT_M = 1.25
HFOV_DEG = 90.0
DEFAULT_RESOLUTION = 224

# Observation keys.
OBS_RGB = "rgb"
OBS_DEPTH = "depth"
OBS_INSTRUCTION = "instruction"

# Maximum instruction length (characters) the observation space admits; RxR guide instructions run long.
MAX_INSTRUCTION_CHARS = 4096
