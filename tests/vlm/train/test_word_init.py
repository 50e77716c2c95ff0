"""`--word-init`: a fresh model's word embeddings from a pretrained text encoder's (vlm/train/word_init.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vlm.train.word_init import init_word_embeddings, project, token_vectors

# A WordPiece vocabulary as BERT's: "left" and "right" are pieces of their own, "bathroom" is two pieces.
SOURCE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "walk", "left", "right", "the", "kitchen", "door", "stop",
                "bath", "##room", "at", "past", "table", "and", "."]  # fmt: skip


def write_text_encoder(folder: Path, dim: int = 12, seed: int = 0) -> np.ndarray:
    """A BERT-style text encoder folder (tokenizer.json, model.safetensors with its word embeddings); returns the
    embedding matrix. "left" and "right" get one vector, as a pretrained model puts them close."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    wordpiece = Tokenizer(models.WordPiece({t: i for i, t in enumerate(SOURCE_VOCAB)}, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(
        folder
    )
    matrix = np.random.default_rng(seed).normal(size=(len(SOURCE_VOCAB), dim)).astype(np.float32)
    matrix[SOURCE_VOCAB.index("right")] = matrix[SOURCE_VOCAB.index("left")]
    save_file({"embeddings.word_embeddings.weight": matrix, "pooler.dense.weight": np.eye(dim, dtype=np.float32)},
              str(folder / "model.safetensors"))  # fmt: skip
    return matrix


def single_token(tokenizer, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, (text, ids)
    return ids[0]


@pytest.fixture(scope="module")
def tokenizer():
    """A fresh model's BPE tokenizer in which " left", " right" and " door" are whole tokens."""
    from vlm.tokenizer import build_tokenizer

    corpus = [
        "Walk left past the table and stop at the door.",
        "Turn right at the kitchen door and stop.",
    ] * 20
    return build_tokenizer(corpus, vocab_size=400)


@pytest.fixture
def fresh_model(tokenizer):
    import vlm

    torch.manual_seed(0)
    return vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer)), tokenizer)


def test_each_token_gets_the_mean_of_its_pieces(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    matrix = write_text_encoder(tmp_path / "enc")
    source = AutoTokenizer.from_pretrained(str(tmp_path / "enc"), local_files_only=True)
    ids, vectors = token_vectors(tokenizer, source, matrix)
    rows = dict(zip(ids, vectors, strict=True))
    assert not set(ids) & set(tokenizer.all_special_ids)
    np.testing.assert_allclose(rows[single_token(tokenizer, " left")], matrix[SOURCE_VOCAB.index("left")])
    door = tokenizer(" door", add_special_tokens=False)["input_ids"]
    assert len(door) == 1 and np.allclose(rows[door[0]], matrix[SOURCE_VOCAB.index("door")])
    # A token the encoder only knows as unknown pieces (a lone "x") gets no vector: it keeps its random init.
    x = tokenizer.convert_tokens_to_ids("x")
    assert x not in rows


def test_project_keeps_the_geometry_up_to_one_scale():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(20, 6))
    reduced, kept = project(vectors, width=8, std=0.02)  # wider than the source: zero columns added, all kept
    assert reduced.shape == (20, 8) and np.allclose(reduced[:, 6:], 0) and kept == pytest.approx(1.0)
    assert reduced.std() == pytest.approx(0.02, rel=1e-4)
    centred = vectors - vectors.mean(axis=0)
    gram, gram_reduced = centred @ centred.T, reduced.astype(np.float64) @ reduced.T
    np.testing.assert_allclose(gram_reduced / gram_reduced[0, 0], gram / gram[0, 0], rtol=1e-3, atol=1e-3)
    narrow, kept_narrow = project(vectors, width=3, std=0.02)  # narrower: the top 3 principal directions
    assert narrow.shape == (20, 3) and 0.3 < kept_narrow < 1.0


def test_init_word_embeddings_sets_spelled_tokens_and_nothing_else(fresh_model, tmp_path):
    write_text_encoder(tmp_path / "enc")
    embedding = fresh_model.llm.get_input_embeddings().weight
    before = embedding.detach().clone()
    head_before = fresh_model.llm.get_output_embeddings().weight.detach().clone()
    report = init_word_embeddings(fresh_model, tmp_path / "enc")
    tok = fresh_model.tokenizer
    changed = (embedding != before).any(dim=1)
    assert report.initialised == int(changed.sum()) and report.tokens == len(tok) and report.source_dim == 12
    assert not changed[tok.all_special_ids].any()
    assert torch.equal(
        fresh_model.llm.get_output_embeddings().weight, head_before
    )  # the answer head stays random
    left, right, door = (single_token(tok, w) for w in (" left", " right", " door"))
    assert torch.equal(embedding[left], embedding[right])  # one source vector, one row
    assert not torch.equal(embedding[left], embedding[door])
    assert embedding[changed].std().item() == pytest.approx(before.std().item(), rel=0.05)


def test_bad_sources_are_refused_naming_the_file(fresh_model, tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        init_word_embeddings(fresh_model, tmp_path / "missing")
    write_text_encoder(tmp_path / "enc")
    (tmp_path / "enc" / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=r"no tokenizer\.json"):
        init_word_embeddings(fresh_model, tmp_path / "enc")
    from safetensors.numpy import save_file

    write_text_encoder(tmp_path / "enc2")
    save_file({"encoder.weight": np.zeros((2, 2), np.float32)}, str(tmp_path / "enc2" / "model.safetensors"))
    with pytest.raises(
        ValueError, match=r"model.safetensors: expected one tensor named '\*embeddings.word_embeddings"
    ):
        init_word_embeddings(fresh_model, tmp_path / "enc2")
