"""A small byte-level BPE tokenizer for this project's embedded model, trained locally (no hub download).

It speaks the llama_3 chat format: the special tokens `<|begin_of_text|>`, `<|end_of_text|>`,
`<|start_header_id|>`, `<|end_header_id|>`, `<|eot_id|>` (plus `<|pad|>`) are single tokens, and the chat template
renders messages exactly like `vlm.conversation`'s llama_3 template. Byte-level BPE never produces an unknown
token, so instructions with words outside the training corpus still tokenise.

    tok = build_tokenizer(texts, vocab_size=2048)
    tok = build_tokenizer(texts, vocab_size=2048, phrases=agent.prompt.prompt_phrases())  # the embedded model's
    tok.save_pretrained("checkpoint/llm")

`phrases` become whole tokens, matched before the BPE: the fixed parts of a prompt template that every sample
repeats. The words of NaVILA's ~130-word navigation prompt carry no information (they are identical in every
call), yet cost ~90 of its ~135 text tokens with a word-level BPE; as phrases they cost 5, which makes a small
model's training and prefill ~1.6× cheaper while the prompt text stays byte-exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from transformers import PreTrainedTokenizerFast

from vlm.constants import BEGIN_OF_TEXT, END_HEADER, END_OF_TEXT, EOT, PAD, START_HEADER
from vlm.conversation import LLAMA_3_SYSTEM

SPECIAL_TOKENS = [BEGIN_OF_TEXT, END_OF_TEXT, START_HEADER, END_HEADER, EOT, PAD]

# Jinja chat template equal to vlm.conversation's llama_3 format (a system message first, if given).
LLAMA_3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def build_tokenizer(
    texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 1, phrases: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and wrap it for transformers.

    `vocab_size` includes the 256 byte symbols and the special tokens; it must be at least 256 + 6. BOS is not added
    automatically: the llama_3 prompt text already starts with `<|begin_of_text|>`. `phrases` (non-empty strings)
    are added as single tokens on top of the BPE vocabulary: wherever one occurs in a text it is one token.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    minimum = 256 + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be >= {minimum} (256 bytes + special tokens), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    for i, phrase in enumerate(phrases):
        if not isinstance(phrase, str) or not phrase:
            raise ValueError(f"build_tokenizer: phrases[{i}] must be a non-empty string, got {phrase!r}")
    # The template's fixed system message is in every prompt, so it always joins the corpus (few tokens per call).
    corpus: Iterable[str] = [*texts, *[LLAMA_3_SYSTEM] * 16]
    # Longest first: both the split below and the added-token matcher must prefer a phrase over a shorter one in it.
    ordered = sorted(dict.fromkeys(phrases), key=len, reverse=True)
    if ordered:
        # The BPE learns what is left between the phrases: that is all it will ever see of these texts.
        pattern = re.compile("|".join(re.escape(p) for p in ordered))
        corpus = [piece for text in corpus for piece in pattern.split(text) if piece]
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    if ordered:
        tokenizer.add_tokens([AddedToken(p, normalized=False, special=False) for p in ordered])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BEGIN_OF_TEXT,
        eos_token=EOT,  # generation stops at the end of the assistant turn
        pad_token=PAD,
        additional_special_tokens=[END_OF_TEXT, START_HEADER, END_HEADER],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = LLAMA_3_CHAT_TEMPLATE
    fast.padding_side = "left"  # batched generation pads on the left
    return fast
