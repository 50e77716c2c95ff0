"""Multimodal input utilities: frame sampling, video decoding, image preprocessing, prompt tokenisation, stopping.

These follow NaVILA/VILA semantics (see `shared/NAVILA_REFERENCE.md`); the differences are deliberate and noted
where they occur (the caller's frame list is never mutated; BOS is never doubled).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlm.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from vlm.media import Image, check_rgb

Frame = Any  # an RGB uint8 array [H, W, 3] or a `vlm.media.Image`


FRAME_SAMPLING_RULES = ("uniform", "geometric")  # "uniform" is NaVILA's; "geometric" is beyond NaVILA


def check_frame_sampling(rule: str) -> str:
    """`rule` if it is one of FRAME_SAMPLING_RULES; ValueError naming the choices otherwise."""
    if rule not in FRAME_SAMPLING_RULES:
        raise ValueError(f"unknown frame sampling rule '{rule}'; available: {', '.join(FRAME_SAMPLING_RULES)}")
    return rule


def model_frame_sampling(model: Any) -> str:
    """The frame sampling rule a model was trained with: its config's `frame_sampling`, "uniform" (NaVILA's) when
    absent (released checkpoints, models trained before the option existed)."""
    rule = getattr(getattr(model, "config", None), "frame_sampling", None) or "uniform"
    return check_frame_sampling(rule)


PROGRESS_CUES = ("none", "steps")  # "none" is NaVILA's prompt; "steps" is beyond NaVILA
PROGRESS_ANCHOR = "Analyze this series of images"  # the cue goes right before this sentence of NaVILA's prompt


def check_progress_cue(cue: str) -> str:
    """`cue` if it is one of PROGRESS_CUES; ValueError naming the choices otherwise."""
    if cue not in PROGRESS_CUES:
        raise ValueError(f"unknown progress cue '{cue}'; available: {', '.join(PROGRESS_CUES)}")
    return cue


def model_progress_cue(model: Any) -> str:
    """The progress cue a model was trained with: its config's `progress_cue`, "none" (NaVILA's prompt) when absent."""
    cue = getattr(getattr(model, "config", None), "progress_cue", None) or "none"
    return check_progress_cue(cue)


def model_num_frames(model: Any) -> int:
    """The frames per call a model was trained with: its config's `num_video_frames`, NaVILA's 8 when absent."""
    return int(getattr(getattr(model, "config", None), "num_video_frames", None) or 8)


def progress_sentence(steps: int) -> str:
    """The "steps" cue's sentence for a decision after `steps` low-level actions (`add_progress_cue`)."""
    return f"You have taken {steps} steps so far."


def add_progress_cue(prompt: str, cue: str, steps: int) -> str:
    """`prompt` (NaVILA's user turn) with progress cue `cue` for a decision after `steps` low-level actions.

    "none" returns the prompt unchanged (NaVILA). "steps" (beyond NaVILA) puts "You have taken N steps so far. "
    right before "Analyze this series of images", after the instruction. N is the current frame's index, so the
    cue follows from the length of the frame history alone: the agent, collected samples (their step `t`) and
    training all derive the same number. Why: the sampled frames do not say how far along the route a decision
    is (8 frames over 10 steps or over 100 look alike), and held-out accuracy falls along the route
    (docs/training_log.md, sessions 27-28). ValueError when a cue is asked for and the prompt lacks the anchor.
    """
    check_progress_cue(cue)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if cue == "none":
        return prompt
    at = prompt.rfind(PROGRESS_ANCHOR)  # the last one: an instruction could hold the words too
    if at < 0:
        raise ValueError(f"progress cue '{cue}': the prompt has no '{PROGRESS_ANCHOR}' to put it before")
    return f"{prompt[:at]}{progress_sentence(steps)} {prompt[at:]}"


def with_image_count(prompt: str, num_frames: int) -> str:
    """NaVILA's user turn `prompt` with `num_frames` `<image>` markers: `num_frames - 1` history markers after
    "observations ", then the current one. What `agent.prompt.build_user_prompt(instruction, num_frames)` gives, so a
    sample collected with 8 frames can train a model that sees another count. ValueError when the prompt lacks
    NaVILA's markers."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    marker = f"{DEFAULT_IMAGE_TOKEN}\n"
    pattern = rf"(observations )(?:{re.escape(marker)})*(, and current observation {re.escape(marker)})"
    new, found = re.subn(pattern, lambda m: m.group(1) + marker * (num_frames - 1) + m.group(2), prompt, count=1)
    if not found:
        raise ValueError(
            "the prompt has no NaVILA frame markers ('observations <image>\\n..., and current observation "
            "<image>\\n') to set the frame count in"
        )
    return new


def history_indices(length: int, num_frames: int = 8, rule: str = "uniform") -> list[int]:
    """Indices of the `num_frames - 1` history frames chosen from a padded buffer of `length` frames.

    rule "uniform" (NaVILA): `linspace(0, L - 1, num_frames - 1, endpoint=False)` truncated to int: the oldest
    frame is always chosen and the current frame (index L - 1) never is, e.g. 20 -> [0, 2, 5, 8, 10, 13, 16].

    rule "geometric" (beyond NaVILA): the history frames sit at offsets from the current frame that grow
    geometrically from 1 step to the oldest frame, `floor(c ** (k / (h - 1)))` for k = 0 .. h - 1 (c = L - 1,
    h = num_frames - 1; each offset at least one more than the previous), so the last few steps are seen densely
    and the start still is: 61 -> [0, 30, 45, 53, 57, 58, 59]. At L = num_frames both rules take every frame.
    Why: with the uniform rule the gap between the newest history frame and the current one grows with the route
    (9 steps at step 60), and held-out accuracy falls along the route (docs/training_log.md, session 27).
    """
    check_frame_sampling(rule)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if length < num_frames:
        raise ValueError(f"the padded buffer must hold at least num_frames={num_frames} frames, got {length}")
    if rule == "uniform" or num_frames <= 2:
        return [int(i) for i in np.linspace(0, length - 1, num=num_frames - 1, endpoint=False, dtype=int)]
    current, count = length - 1, num_frames - 1
    offsets: list[int] = []
    for k in range(count):
        power = int(current ** (k / (count - 1)) + 1e-9)  # + 1e-9: 64 ** (2 / 6) is 3.9999999999999996
        offsets.append(max(offsets[-1] + 1 if offsets else 1, power))
    offsets[-1] = current  # the oldest frame, as in NaVILA's rule; the others stay below it (c >= h)
    return sorted(current - offset for offset in offsets)


def frame_indices(num_seen: int, num_frames: int = 8, rule: str = "uniform") -> list[int]:
    """Indices into frames 0..num_seen-1 of the frames one model call sees, -1 for black padding, current last.

    The index form of `vlnce_frame_sampling(frames, num_frames, rule=rule)`: pad with black at the front to
    `num_frames`, take `history_indices` of the padded buffer, then the current frame. Collected samples store
    these (uniform rule); training with another rule re-derives them from the sample's step.
    """
    if num_seen < 0:
        raise ValueError(f"num_seen must be >= 0, got {num_seen}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_seen == 0:
        return [-1] * num_frames
    buffer = [-1] * max(0, num_frames - num_seen) + list(range(num_seen))  # the padded buffer
    if num_frames == 1:
        return [buffer[-1]]
    return [buffer[i] for i in history_indices(len(buffer), num_frames, rule)] + [buffer[-1]]


def _black_like(frame: Frame) -> Frame:
    """A black frame with the same size and type as `frame` (an Image gets the shared key ("black", H, W))."""
    if isinstance(frame, Image):
        return Image.black(frame.height, frame.width)
    array = check_rgb(np.asarray(frame), "frame")
    return np.zeros_like(array)


def vlnce_frame_sampling(
    frames: Sequence[Frame], num_frames: int = 8, image_size: tuple[int, int] = (224, 224), rule: str = "uniform"
) -> list[Frame]:
    """Choose the frames of one model call from the whole observation history (NaVILA's rule by default).

    Returns exactly `num_frames` frames: `num_frames - 1` history frames then the current (last) frame. With fewer
    than `num_frames` frames, black frames (zeros shaped like the first frame) are put in front first. The caller's
    list is never modified. With no frames at all, `num_frames` black frames of `image_size` (H, W) are returned
    as numpy arrays. Works on lists of numpy arrays or of `Image`s. `rule` picks the history (`history_indices`):
    "uniform" is NaVILA's, "geometric" sees the last steps densely (a model records its rule in `frame_sampling`).
    """
    check_frame_sampling(rule)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    frames = list(frames)  # our own copy: padding must never leak into the caller's history
    if not frames:
        height, width = image_size
        return [np.zeros((height, width, 3), dtype=np.uint8) for _ in range(num_frames)]
    if len(frames) < num_frames:
        frames = [_black_like(frames[0]) for _ in range(num_frames - len(frames))] + frames
    if num_frames == 1:
        return [frames[-1]]
    history = [frames[i] for i in history_indices(len(frames), num_frames, rule)]
    return [*history, frames[-1]]


def opencv_extract_frames(path: str | Path, frames: int = 8, fps: float | None = None) -> list[np.ndarray]:
    """Decode `frames` RGB frames [H, W, 3] uint8 spread evenly over a video file.

    With `fps` set, frames are taken every 1/fps seconds from the start (at most `frames` of them) instead of evenly
    over the whole video. Raises FileNotFoundError / ValueError with the path when the file cannot be read.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    capture = cv2.VideoCapture(str(path))
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if not capture.isOpened() or total <= 0:
            raise ValueError(f"cannot decode video {path} (no frames)")
        if fps:
            video_fps = capture.get(cv2.CAP_PROP_FPS) or fps
            step = max(1, round(video_fps / fps))
            wanted = list(range(0, total, step))[:frames]
        else:
            wanted = [int(i) for i in np.linspace(0, total - 1, num=frames, dtype=int)]
        out: list[np.ndarray] = []
        wanted_set = set(wanted)
        index = 0
        while index <= max(wanted):
            ok, bgr = capture.read()
            if not ok:
                break
            if index in wanted_set:
                out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    if not out:
        raise ValueError(f"cannot decode any frame of video {path}")
    # Short reads (broken containers) repeat the last decoded frame so callers always get `frames` frames.
    while len(out) < len(wanted):
        out.append(out[-1].copy())
    return out


def to_rgb_array(image: Any) -> np.ndarray:
    """An RGB uint8 array [H, W, 3] from an `Image`, a PIL image or an array; raises ValueError on anything else."""
    if isinstance(image, Image):
        return image.pixels
    try:
        import PIL.Image

        if isinstance(image, PIL.Image.Image):
            return np.asarray(image.convert("RGB"))
    except ImportError:  # pragma: no cover - pillow is a dependency
        pass
    return check_rgb(image if isinstance(image, np.ndarray) else np.asarray(image), "image")


def expand2square(pixels: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Pad [H, W, 3] to a centred square with `background` colour (LLaVA's 'pad' aspect-ratio mode)."""
    height, width = pixels.shape[:2]
    if height == width:
        return pixels
    side = max(height, width)
    out = np.empty((side, side, 3), dtype=pixels.dtype)
    out[...] = np.asarray(background, dtype=pixels.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    out[top : top + height, left : left + width] = pixels
    return out


def process_images(images: Sequence[Any], image_processor: Any, config: Any = None):
    """Turn RGB frames into a pixel tensor [N, 3, S, S] for the vision tower.

    `config.image_aspect_ratio` (or a plain string) picks the mode: "resize" (NaVILA: squash to the tower's size),
    "pad" (pad to a square with the mean colour first, keeping the aspect ratio). `image_processor` is a
    `vlm.image_processor.ImageProcessor` (or any object with the same `preprocess`/`image_mean`).
    """
    import torch

    mode = config if isinstance(config, str) or config is None else getattr(config, "image_aspect_ratio", "resize")
    mode = mode or "resize"
    if mode not in ("resize", "pad"):
        raise ValueError(f"unknown image_aspect_ratio '{mode}'; available: pad, resize")
    arrays = [to_rgb_array(image) for image in images]
    if mode == "pad":
        background = tuple(round(m * 255) for m in image_processor.image_mean)
        arrays = [expand2square(a, background) for a in arrays]
    if not arrays:
        size = image_processor.size
        return torch.zeros((0, 3, size, size))
    return image_processor.preprocess(arrays)


def _adds_bos(tokenizer: Any) -> bool:
    """Whether `tokenizer(text)` puts a BOS token in front (Llama tokenizers do, ours does not)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a").input_ids
    return len(ids) > 0 and ids[0] == bos


def tokenizer_image_token(prompt: str, tokenizer: Any, image_token_index: int = IMAGE_TOKEN_INDEX, return_tensors: str | None = None):
    """Token ids of `prompt` with every `<image>` replaced by `image_token_index` (-200).

    Each text chunk is tokenised without special tokens so no BOS appears in the middle; one BOS is put in front
    when the tokenizer normally adds one and the prompt does not already start with it. (VILA tokenises each chunk
    with special tokens and strips one per chunk, which gives the same ids except that a llama-3 prompt starting
    with `<|begin_of_text|>` gets it twice; we keep one.) `return_tensors="pt"` returns a 1-D LongTensor.
    """
    chunks = [tokenizer(chunk, add_special_tokens=False).input_ids for chunk in prompt.split(DEFAULT_IMAGE_TOKEN)]
    input_ids: list[int] = []
    for i, chunk in enumerate(chunks):
        if i > 0:
            input_ids.append(image_token_index)
        input_ids.extend(chunk)
    bos = getattr(tokenizer, "bos_token_id", None)
    if _adds_bos(tokenizer) and (not input_ids or input_ids[0] != bos):
        input_ids.insert(0, bos)
    if return_tensors is None:
        return input_ids
    if return_tensors == "pt":
        import torch

        return torch.tensor(input_ids, dtype=torch.long)
    raise ValueError(f"unsupported return_tensors '{return_tensors}'; available: pt, None")


class KeywordsStoppingCriteria:
    """Stop a generation once its newly generated text ends with (contains, in the tail) one of `keywords`.

    Works per sample: `__call__(output_ids [B, T], scores)` returns a bool tensor [B] (transformers'
    `StoppingCriteria` protocol), so finished rows can be frozen while others continue.
    """

    def __init__(self, keywords: Sequence[str], tokenizer: Any, input_ids: Any) -> None:
        if not keywords:
            raise ValueError("KeywordsStoppingCriteria needs at least one keyword")
        self.keywords = list(keywords)
        self.tokenizer = tokenizer
        self.start_len = int(input_ids.shape[1])
        self.keyword_ids: list[list[int]] = []
        self.max_keyword_len = 0
        for keyword in self.keywords:
            ids = tokenizer(keyword, add_special_tokens=False).input_ids
            self.keyword_ids.append(list(ids))
            self.max_keyword_len = max(self.max_keyword_len, len(ids))

    def _row_done(self, row: Any) -> bool:
        generated = row[self.start_len :].tolist()
        if not generated:
            return False
        for ids in self.keyword_ids:
            if ids and generated[-len(ids) :] == ids:
                return True
        tail = self.tokenizer.decode(generated[-(self.max_keyword_len + 3) :], skip_special_tokens=False)
        return any(keyword in tail for keyword in self.keywords)

    def __call__(self, output_ids: Any, scores: Any = None, **kwargs: Any):
        import torch

        return torch.tensor([self._row_done(row) for row in output_ids], dtype=torch.bool, device=output_ids.device)
