"""Media types passed to the model: `Image` (one RGB frame), `Video` and `File` (paths to decode later).

An `Image` carries an optional hashable `key` that identifies the frame (for example
`(episode_uid, step_index)`): the model's feature cache encodes a keyed frame only once, so an agent that
re-sends the same history frames at every call pays the vision cost of the new frame only.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def check_rgb(array: np.ndarray, what: str = "image") -> np.ndarray:
    """Return `array` if it is an RGB uint8 array of shape [H, W, 3]; otherwise raise a ValueError that says why."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{what} must be a numpy array of shape [H, W, 3] and dtype uint8, got {type(array).__name__}")
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{what} must have shape [H, W, 3] (RGB), got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        raise ValueError(f"{what} must have dtype uint8 (values 0..255), got dtype {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{what} must not be empty, got shape {tuple(array.shape)}")
    return array


PERTURBATIONS = ("pixel_noise", "jpeg")  # camera-side changes a person cannot see (perturb_frames)
JPEG_QUALITY = 90  # the `jpeg` perturbation's quality: the recorder's (benchmarks.callbacks; a test keeps them equal)


def check_perturbation(kind: str, flag: str = "") -> str:
    """`kind` if it names one of PERTURBATIONS; else a ValueError naming it, the flag it came from and the choices."""
    if kind not in PERTURBATIONS:
        where = f" ({flag})" if flag else ""
        raise ValueError(f"unknown perturbation '{kind}'{where}; available: {', '.join(PERTURBATIONS)}")
    return kind


def perturb_frames(frames: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """A copy of `frames` ([N, H, W, 3] uint8 RGB) with every frame that is not all black perturbed: `pixel_noise`
    (each value moved by -1, 0 or +1 from a generator seeded with `seed`, clipped to 0..255) or `jpeg` (encoded and
    decoded at quality JPEG_QUALITY with OpenCV, as the recorder writes frames).

    Why: neither change is visible, yet session 33 measured the shipped model answering differently on 10-18 % of
    its decisions under them. Training can augment with them (`train-tower --augment`), evaluation can apply them
    to every observation (`eval --perturb`) and `benchmarks.ablate_inputs` measures them. All-black frames (the
    padding of a short history) stay black."""
    import cv2

    check_perturbation(kind)
    out = np.array(frames, dtype=np.uint8, copy=True)
    seen = out.reshape(len(out), -1).any(axis=1)
    if kind == "pixel_noise":
        noise = np.random.default_rng(seed).integers(-1, 2, size=out.shape)
        out[seen] = np.clip(out[seen].astype(np.int16) + noise[seen], 0, 255).astype(np.uint8)
    elif kind == "jpeg":
        for i in np.flatnonzero(seen):
            ok, buf = cv2.imencode(
                ".jpg", np.ascontiguousarray(out[i][:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            if not ok:
                raise RuntimeError(f"OpenCV could not encode frame {i} as JPEG")
            out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return out


@dataclass(frozen=True, eq=False)
class Image:
    """One RGB frame: `pixels` is a uint8 array [H, W, 3]; `key` (optional, hashable) identifies it for caching.

    Two images with the same key are assumed to hold the same pixels; images without a key are never cached.
    """

    pixels: np.ndarray  # [H, W, 3] uint8
    key: Hashable | None = None  # frame identity for the feature cache, e.g. (episode_uid, step_index)

    def __post_init__(self) -> None:
        check_rgb(self.pixels, "Image.pixels")
        if self.key is not None:
            try:
                hash(self.key)
            except TypeError as error:
                raise ValueError(f"Image.key must be hashable (e.g. a tuple), got {self.key!r}") from error

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @classmethod
    def black(cls, height: int, width: int) -> Image:
        """A black frame (zeros) with the shared key ("black", H, W), so padding frames are encoded once."""
        return cls(np.zeros((height, width, 3), dtype=np.uint8), key=("black", height, width))


@dataclass(frozen=True)
class File:
    """A file on disk (image, video or text) to be read by the caller."""

    path: Path = field(default_factory=Path)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


@dataclass(frozen=True)
class Video(File):
    """A video file; `vlm.mm_utils.opencv_extract_frames` samples frames from it."""
