"""Conversation templates (VILA/LLaVA style): how a multi-turn chat becomes one prompt string.

The `llama_3` template is the one NaVILA 8B was trained with; its prompt is reproduced byte for byte:

    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{system}<|eot_id|>
    <|start_header_id|>user<|end_header_id|>\\n\\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n

(one line in reality). Usage:

    conv = conv_templates["llama_3"].copy()
    conv.append_message(conv.roles[0], question)
    conv.append_message(conv.roles[1], None)
    prompt = conv.get_prompt()
"""

from __future__ import annotations

import dataclasses
from enum import Enum, auto

from vlm.constants import BEGIN_OF_TEXT, END_HEADER, END_OF_TEXT, EOT, START_HEADER


class SeparatorStyle(Enum):
    """How turns are joined (the names of VILA's styles)."""

    SINGLE = auto()  # "{system}{sep}{role}: {msg}{sep}..."
    TWO = auto()  # vicuna: alternate sep / sep2 after user / assistant turns
    PLAIN = auto()  # messages only, no roles (projector pre-training)
    LLAMA_2 = auto()  # "[INST] <<SYS>>...<</SYS>> msg [/INST] answer </s>" (also Mistral-instruct)
    LLAMA_3 = auto()  # header ids and <|eot_id|>


@dataclasses.dataclass
class Conversation:
    """A chat in progress: a system message, two role names and the turns so far.

    A message of `None` marks the turn the model must write next; `get_prompt()` then ends with that role's
    header so generation continues from there.
    """

    system: str  # system message (may be empty)
    roles: tuple[str, str]  # (user role, assistant role) as they appear in the prompt
    messages: list[list[str | None]]  # [[role, message or None], ...]
    sep_style: SeparatorStyle  # how turns are joined
    sep: str = "###"  # separator after a turn (after user turns for TWO)
    sep2: str | None = None  # second separator (after assistant turns for TWO / the last turn for LLAMA_3)
    version: str = "unknown"  # free-form tag kept for VILA compatibility

    def __post_init__(self) -> None:
        if len(self.roles) != 2:
            raise ValueError(f"Conversation.roles must be (user, assistant), got {self.roles!r}")

    def copy(self) -> Conversation:
        """A deep-enough copy: the template stays untouched when messages are appended to the copy."""
        return dataclasses.replace(self, messages=[list(m) for m in self.messages])

    def append_message(self, role: str, message: str | None) -> None:
        """Add one turn; `message=None` leaves the turn open for the model to complete."""
        if role not in self.roles:
            raise ValueError(f"unknown role {role!r}; this conversation has roles {self.roles!r}")
        self.messages.append([role, message])

    def get_prompt(self) -> str:
        """The whole conversation as one string, in this template's format."""
        style = self.sep_style
        if style is SeparatorStyle.SINGLE:
            out = self.system + self.sep
            for role, message in self.messages:
                out += f"{role}: {message}{self.sep}" if message else f"{role}:"
            return out
        if style is SeparatorStyle.TWO:
            seps = (self.sep, self.sep2 or "")
            out = self.system + seps[0]
            for i, (role, message) in enumerate(self.messages):
                out += f"{role}: {message}{seps[i % 2]}" if message else f"{role}:"
            return out
        if style is SeparatorStyle.PLAIN:
            seps = (self.sep, self.sep2 if self.sep2 is not None else self.sep)
            out = self.system
            for i, (_, message) in enumerate(self.messages):
                out += f"{message}{seps[i % 2]}" if message else ""
            return out
        if style is SeparatorStyle.LLAMA_2:
            return self._llama_2_prompt()
        if style is SeparatorStyle.LLAMA_3:
            # The system block always opens the prompt; every finished turn ends with sep, the last with sep2
            # when it is finished too (VILA's rule), and an open turn ends with its header only.
            out = f"{BEGIN_OF_TEXT}{START_HEADER}system{END_HEADER}\n\n{self.system}{self.sep}"
            for i, (role, message) in enumerate(self.messages):
                if message:
                    sep = self.sep if i < len(self.messages) - 1 else (self.sep2 or self.sep)
                    out += role + message + sep
                else:
                    out += role
            return out
        raise ValueError(f"unknown separator style {style!r}")

    def _llama_2_prompt(self) -> str:
        """LLaMA-2 / Mistral-instruct format: the system message is folded into the first user turn."""
        out = ""
        for i, (role, message) in enumerate(self.messages):
            if i == 0 and (not message or role != self.roles[0]):
                raise ValueError("the first message of a LLAMA_2-style conversation must be a user message")
            if not message:
                continue
            if i == 0 and self.system:
                message = f"<<SYS>>\n{self.system}\n<</SYS>>\n\n{message}"
            if i % 2 == 0:
                out += f"{self.sep}[INST] {message} [/INST]"
            else:
                out += f" {message} {self.sep2 or ''}"
        return out.removeprefix(self.sep) if self.sep else out


LLAMA_3_SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language."
)
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

conv_llama_3 = Conversation(
    system=LLAMA_3_SYSTEM,
    roles=(f"{START_HEADER}user{END_HEADER}\n\n", f"{START_HEADER}assistant{END_HEADER}\n\n"),
    messages=[],
    sep_style=SeparatorStyle.LLAMA_3,
    sep=EOT,
    sep2=END_OF_TEXT,
    version="llama_v3",
)
conv_vicuna_v1 = Conversation(
    system=VICUNA_SYSTEM,
    roles=("USER", "ASSISTANT"),
    messages=[],
    sep_style=SeparatorStyle.TWO,
    sep=" ",
    sep2="</s>",
    version="v1",
)
conv_mistral = Conversation(
    system="",
    roles=("USER", "ASSISTANT"),
    messages=[],
    sep_style=SeparatorStyle.LLAMA_2,
    sep="",
    sep2="</s>",
    version="mistral",
)
conv_plain = Conversation(
    system="",
    roles=("", ""),
    messages=[],
    sep_style=SeparatorStyle.PLAIN,
    sep="\n",
    version="plain",
)

# The one mapping from template name to template; `.copy()` before appending messages.
conv_templates: dict[str, Conversation] = {
    "llama_3": conv_llama_3,
    "vicuna_v1": conv_vicuna_v1,
    "mistral": conv_mistral,
    "plain": conv_plain,
}

# Substrings of a model name or path -> template; first match wins (VILA's mapping plus NaVILA names).
CONVERSATION_MODE_MAPPING: tuple[tuple[str, str], ...] = (
    ("navila", "llama_3"),
    ("vila1.5-3b", "vicuna_v1"),
    ("vila1.5-8b", "llama_3"),
    ("vila1.5-13b", "vicuna_v1"),
    ("llama-3", "llama_3"),
    ("llama3", "llama_3"),
    ("mistral", "mistral"),
    ("vicuna", "vicuna_v1"),
)


def get_conv_template(name: str) -> Conversation:
    """A fresh copy of template `name`; unknown names raise a ValueError listing the available ones."""
    if name not in conv_templates:
        raise ValueError(f"unknown conversation template '{name}'; available: {', '.join(sorted(conv_templates))}")
    return conv_templates[name].copy()


def auto_set_conversation_mode(model_name_or_path: str, default: str = "llama_3") -> str:
    """Pick the conversation template from a model name or path (e.g. 'a8cheng/navila-llama3-8b-8f' -> 'llama_3').

    Unlike VILA this returns the name instead of mutating a global default; `default` is returned when no
    pattern matches (this project's small models use the llama_3 format).
    """
    lowered = str(model_name_or_path).lower()
    for pattern, mode in CONVERSATION_MODE_MAPPING:
        if pattern in lowered:
            return mode
    if default not in conv_templates:
        raise ValueError(f"unknown conversation template '{default}'; available: {', '.join(sorted(conv_templates))}")
    return default
