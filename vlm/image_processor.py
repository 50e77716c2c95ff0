"""Pixel preprocessing for the vision towers: resize to the tower's square input, rescale, normalise.

Reads and writes the Hugging Face `preprocessor_config.json` format (SigLIP / CLIP / our EfficientNet tower), so a
released checkpoint's `vision_tower/` folder works as is. Resizing uses PIL bicubic like VILA's `process_images`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PREPROCESSOR_FILE = "preprocessor_config.json"
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL's integer codes used in HF configs


@dataclass
class ImageProcessor:
    """Resize to `size` x `size`, scale to [0, 1], normalise by `image_mean` / `image_std` (per RGB channel)."""

    size: int = 384  # square input resolution of the tower (SigLIP so400m: 384)
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # SigLIP: 0.5; CLIP/ImageNet values differ
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: str = "bicubic"  # PIL filter: nearest | bilinear | bicubic
    processor_type: str = "SiglipImageProcessor"  # written back to preprocessor_config.json

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"ImageProcessor.size must be >= 1, got {self.size}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("ImageProcessor.image_mean and image_std must have 3 values (R, G, B)")
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"ImageProcessor.image_std must be positive, got {self.image_std}")
        if self.resample not in _RESAMPLE.values():
            raise ValueError(f"unknown ImageProcessor.resample '{self.resample}'; available: {', '.join(_RESAMPLE.values())}")
        self.image_mean = tuple(float(m) for m in self.image_mean)
        self.image_std = tuple(float(s) for s in self.image_std)

    def resize(self, pixels: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 -> [size, size, 3] uint8 (a no-op when already that size)."""
        if pixels.shape[0] == self.size and pixels.shape[1] == self.size:
            return pixels
        import PIL.Image

        resample = {"nearest": PIL.Image.NEAREST, "bilinear": PIL.Image.BILINEAR, "bicubic": PIL.Image.BICUBIC}
        image = PIL.Image.fromarray(pixels).resize((self.size, self.size), resample=resample[self.resample])
        return np.asarray(image)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 arrays [H, W, 3] -> float32 tensor [N, 3, size, size], normalised."""
        batch = np.stack([self.resize(np.asarray(p)) for p in images])  # [N, S, S, 3] uint8
        pixels = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)  # [N, 3, S, S]
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        return (pixels - mean) / std

    def to_dict(self) -> dict:
        """The Hugging Face preprocessor_config.json content."""
        code = {v: k for k, v in _RESAMPLE.items()}[self.resample]
        return {
            "image_processor_type": self.processor_type,
            "do_resize": True,
            "do_rescale": True,
            "do_normalize": True,
            "rescale_factor": 1 / 255,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "resample": code,
            "size": {"height": self.size, "width": self.size},
        }

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PREPROCESSOR_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict, source: str = "preprocessor config") -> ImageProcessor:
        """Read SigLIP-style (`size: {height, width}`) or CLIP-style (`crop_size`, `shortest_edge`) configs."""
        size_field = data.get("crop_size") or data.get("size")
        if isinstance(size_field, dict):
            size = size_field.get("height") or size_field.get("shortest_edge") or size_field.get("width")
        else:
            size = size_field
        if not size:
            raise ValueError(f"{source}: no image size ('size' or 'crop_size')")
        return cls(
            size=int(size),
            image_mean=tuple(data.get("image_mean", (0.5, 0.5, 0.5))),
            image_std=tuple(data.get("image_std", (0.5, 0.5, 0.5))),
            resample=_RESAMPLE.get(int(data.get("resample", 3)), "bicubic"),
            processor_type=data.get("image_processor_type", "SiglipImageProcessor"),
        )

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ImageProcessor:
        path = Path(folder) / PREPROCESSOR_FILE
        if not path.is_file():
            raise FileNotFoundError(f"missing {PREPROCESSOR_FILE} in {Path(folder)} (the vision tower's image preprocessing)")
        return cls.from_dict(json.loads(path.read_text()), source=str(path))
