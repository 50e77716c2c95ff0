"""The NaVILA navigation prompt: the user text (reference wording, byte for byte) and its chat-templated form.

    build_prompt("Walk past the sofa and stop at the door.")  # llama_3-templated, 8 <image> markers

The wording, including its odd punctuation (", and current observation <image>\\n."), is what the released
NaVILA checkpoints were trained on; changing a character moves the model off its training distribution.
"""

from __future__ import annotations

from vlm.constants import DEFAULT_IMAGE_TOKEN

DEFAULT_CONV_MODE = "llama_3"  # the template NaVILA 8B and this project's small models use
DEFAULT_NUM_FRAMES = 8  # 7 history frames + the current one


def build_user_prompt(
    instruction: str, num_frames: int = DEFAULT_NUM_FRAMES, progress_cue: str = "none", steps: int = 0
) -> str:
    """NaVILA's user turn: `num_frames - 1` history `<image>\\n` markers, the current `<image>\\n`, the instruction.

    The instruction is inserted as given (NaVILA does not strip or escape it). `progress_cue` "steps" (beyond
    NaVILA, `vlm.mm_utils.add_progress_cue`) adds the number of low-level `steps` taken so far; "none" is NaVILA's.
    """
    from vlm.mm_utils import add_progress_cue

    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    history = f"{DEFAULT_IMAGE_TOKEN}\n" * (num_frames - 1)
    return add_progress_cue(
        "Imagine you are a robot programmed for navigation tasks. You have been given a video of historical "
        f"observations {history}, and current observation {DEFAULT_IMAGE_TOKEN}\n. "
        f'Your assigned task is: "{instruction}" '
        "Analyze this series of images to decide your next action, which could be turning left or right by a "
        "specific degree, moving forward a certain distance, or stop if the task is completed.",
        progress_cue,
        steps,
    )


# NaVILA's answers: "The next action is move forward 75 cm." (no trailing space: " move" stays a BPE word)
ANSWER_PREFIX = "The next action is"


def prompt_phrases(conv_mode: str = DEFAULT_CONV_MODE) -> list[str]:
    """The fixed pieces of every prompt and answer (template words between the `<image>` markers and the
    instruction, the system message, the answer prefix): what a small model's tokenizer makes single tokens
    (`vlm.build_tokenizer(..., phrases=...)`). Derived from `build_user_prompt`, so they always match it."""
    from vlm.conversation import get_conv_template

    marker = "\x00INSTRUCTION\x00"
    pieces = build_user_prompt(marker).replace(marker, DEFAULT_IMAGE_TOKEN).split(DEFAULT_IMAGE_TOKEN)
    phrases = [p for p in pieces if p.strip()]
    conv = get_conv_template(conv_mode)
    if conv.system:
        phrases.append(conv.system)
    if conv_mode == "llama_3":  # role names inside the header tokens, spelled out byte by byte otherwise
        phrases += ["system", *conv.roles]
    phrases.append(ANSWER_PREFIX)
    return phrases


def build_prompt(
    instruction: str,
    conv_mode: str = DEFAULT_CONV_MODE,
    num_frames: int = DEFAULT_NUM_FRAMES,
    suffix: str = "",
    progress_cue: str = "none",
    steps: int = 0,
) -> str:
    """The full model input text: the user turn wrapped in conversation template `conv_mode`, left open for the
    assistant's answer. `suffix` is appended to the user turn (used only by the agent's parse-failure retry);
    `progress_cue` and `steps` as in `build_user_prompt`."""
    from vlm.conversation import get_conv_template  # raises ValueError listing templates for an unknown name

    conv = get_conv_template(conv_mode)
    conv.append_message(conv.roles[0], build_user_prompt(instruction, num_frames, progress_cue, steps) + suffix)
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()
