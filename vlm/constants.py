"""Key numbers and strings of the VILA/LLaVA multimodal format, in one place.

`IMAGE_TOKEN_INDEX` marks where a frame's projected features are spliced into the token sequence; it is a
negative id so it can never collide with a real vocabulary entry. `IGNORE_INDEX` is PyTorch's
`cross_entropy(ignore_index=...)` default, used for labels over prompt and image positions.
"""

from __future__ import annotations

IMAGE_TOKEN_INDEX = -200  # placeholder id for one image in `input_ids` (VILA / LLaVA convention)
IGNORE_INDEX = -100  # label value that the loss skips

DEFAULT_IMAGE_TOKEN = "<image>"  # the text marker replaced by IMAGE_TOKEN_INDEX
DEFAULT_IM_START_TOKEN = "<im_start>"  # only used when `mm_use_im_start_end` is true (not in NaVILA)
DEFAULT_IM_END_TOKEN = "<im_end>"
DEFAULT_IMAGE_PATCH_TOKEN = "<im_patch>"

# Sentinels in the llama_3 chat format (also the special tokens of this project's small tokenizer).
BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"  # end of a turn: greedy decoding stops here
PAD = "<|pad|>"  # padding token of the small tokenizer (never produced by the model)

# Number of frames per model call in NaVILA (7 history + the current observation).
NUM_VIDEO_FRAMES = 8

# Folder names of the VILA checkpoint layout.
LLM_FOLDER = "llm"
VISION_TOWER_FOLDER = "vision_tower"
MM_PROJECTOR_FOLDER = "mm_projector"

MODEL_TYPE = "llava_llama"  # `model_type` of the top-level config.json
PROJECTOR_MODEL_TYPE = "v2l_projector"  # `model_type` of mm_projector/config.json
ARCHITECTURE = "LlavaLlamaModel"
