"""Tiny-config model behaviour: shapes, loss masking, KV-cache / feature-cache / batching equivalence."""

from __future__ import annotations

import pytest
import torch

from tests.vlm.conftest import make_frames, make_prompt
from vlm.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from vlm.generation import greedy_generate
from vlm.media import Image
from vlm.mm_utils import tokenizer_image_token


def test_encode_shapes(tiny_model) -> None:
    # tiny SigLIP: 32 px, patch 8 -> 16 tokens of 32 -> mlp_downsample -> 4 embeddings of 64
    assert tiny_model.vision_tower.num_tokens == 16 and tiny_model.tokens_per_image == 4
    feats = tiny_model.encode_media(make_frames(3), use_cache=False)
    assert [tuple(f.shape) for f in feats] == [(4, 64)] * 3


def test_forward_loss_masks_prompt_and_images(tiny_model, tokenizer) -> None:
    prompt = make_prompt(2)
    answer = tokenizer("The next action is stop.<|eot_id|>", add_special_tokens=False).input_ids
    ids = tokenizer_image_token(prompt, tokenizer) + answer
    labels = [IGNORE_INDEX] * (len(ids) - len(answer)) + answer
    input_ids, label_t = torch.tensor([ids, [*ids[:-1], 0]]), torch.tensor([labels, [*labels[:-1], IGNORE_INDEX]])
    mask = torch.ones_like(input_ids)
    mask[1, -1] = 0  # second row one token shorter (right padding)
    frames = make_frames(4)
    out = tiny_model(input_ids=input_ids, attention_mask=mask, images=frames, labels=label_t)
    n_img = tiny_model.tokens_per_image
    assert out.logits.shape == (2, len(ids) - 2 + 2 * n_img, len(tokenizer))
    assert torch.isfinite(out.loss)
    spliced = tiny_model.prepare_inputs(input_ids, mask, frames, label_t, padding_side="right")
    assert int((spliced.labels != IGNORE_INDEX).sum()) == 2 * len(answer) - 1  # only answer tokens count
    # the loss changes when an answer token changes, not when a prompt token's label would
    pixels_out = tiny_model(input_ids=input_ids, attention_mask=mask, images=torch.cat([tiny_model.image_processor.preprocess([f.pixels]) for f in frames]), labels=label_t)
    assert torch.allclose(out.loss, pixels_out.loss, atol=1e-5)


def test_image_count_mismatch_is_reported(tiny_model) -> None:
    with pytest.raises(ValueError, match="2 <image> markers but 3 frames"):
        tiny_model.generate_text([(make_frames(3), make_prompt(2))])


def test_kv_cache_equivalence(tiny_model) -> None:
    inputs = tiny_model.prepare_samples([(make_frames(3), make_prompt(3))], use_cache=False)
    stops, pad = tiny_model.stop_token_ids(), tiny_model.tokenizer.pad_token_id
    with_cache = greedy_generate(tiny_model.llm, inputs, 12, stops, pad, use_cache=True)
    without = greedy_generate(tiny_model.llm, inputs, 12, stops, pad, use_cache=False)
    assert with_cache == without and len(with_cache[0]) > 0


def test_feature_cache_equivalence_and_reuse(tiny_model) -> None:
    tiny_model.feature_cache.clear()
    frames = make_frames(5, episode="cache-test")
    prompt = make_prompt(4)
    reference = tiny_model.generate_text([(frames[:4], prompt)], 10, use_feature_cache=False)
    assert len(tiny_model.feature_cache) == 0
    first = tiny_model.generate_text([(frames[:4], prompt)], 10)
    assert first == reference and len(tiny_model.feature_cache) == 4
    calls = []
    hook = tiny_model.vision_tower.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        second = tiny_model.generate_text([(frames[1:5], prompt)], 10)  # one new frame
    finally:
        hook.remove()
    assert calls == [1]  # only the unseen frame went through the tower
    assert second == tiny_model.generate_text([(frames[1:5], prompt)], 10, use_feature_cache=False)
    assert tiny_model.feature_cache.drop("cache-test") == 5 and len(tiny_model.feature_cache) == 0


def test_cached_features_equal_fresh_encoding(tiny_model) -> None:
    tiny_model.feature_cache.clear()
    frames = make_frames(2, episode="eq")
    cached = tiny_model.encode_media(frames)
    again = tiny_model.encode_media(frames)
    fresh = tiny_model.encode_media(frames, use_cache=False)
    for a, b, c in zip(cached, again, fresh, strict=True):
        assert a is b and torch.equal(a, c)


def test_batched_equals_unbatched(tiny_model) -> None:
    samples = [
        (make_frames(2, "a", seed=1), make_prompt(2, "go left")),
        (make_frames(4, "b", seed=2), make_prompt(4, "Walk past the table and stop at the door, then turn right.")),
        (make_frames(1, "c", seed=3), make_prompt(1)),
    ]
    tiny_model.feature_cache.clear()
    batched = tiny_model.generate_text(samples, 12)
    tiny_model.feature_cache.clear()
    single = [tiny_model.generate_text([s], 12)[0] for s in samples]
    assert batched == single
    # and the first-step logits agree numerically, row by row
    inputs = tiny_model.prepare_samples(samples)
    logits = tiny_model.llm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask, position_ids=inputs.position_ids).logits[:, -1]
    for b, sample in enumerate(samples):
        one = tiny_model.prepare_samples([sample])
        ref = tiny_model.llm(inputs_embeds=one.inputs_embeds, attention_mask=one.attention_mask, position_ids=one.position_ids).logits[0, -1]
        assert torch.allclose(logits[b], ref, atol=1e-4)


def test_per_sample_stopping(tiny_model, tokenizer) -> None:
    # Force the eot logit high for row 0 only by giving it a bias through a wrapper LM call: instead check that a
    # finished row stops growing while the other continues, via a stop set containing row 0's first token.
    samples = [(make_frames(1, "s0", seed=5), make_prompt(1)), (make_frames(1, "s1", seed=6), make_prompt(1, "x y z"))]
    inputs = tiny_model.prepare_samples(samples, use_cache=False)
    pad = tokenizer.pad_token_id
    free = greedy_generate(tiny_model.llm, inputs, 6, [pad], pad)
    stop_first = free[0][0]
    stopped = greedy_generate(tiny_model.llm, inputs, 6, [pad, stop_first], pad)
    assert stopped[0] == []
    second = free[1]
    cut = second.index(stop_first) if stop_first in second else len(second)
    assert stopped[1] == second[:cut]


def test_wrong_media_type(tiny_model) -> None:
    with pytest.raises(ValueError, match=r"must be vlm\.media\.Image"):
        tiny_model.encode_media([torch.zeros(3, 4, 4)])
    assert IMAGE_TOKEN_INDEX == -200 and isinstance(make_frames(1)[0], Image)


def test_vision_batches_are_bounded(tiny_model) -> None:
    sizes = []
    hook = tiny_model.vision_tower.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    old = tiny_model.max_vision_batch
    tiny_model.max_vision_batch = 3
    try:
        chunked = tiny_model.encode_media(make_frames(7, "chunk"), use_cache=False)
    finally:
        tiny_model.max_vision_batch = old
        hook.remove()
    assert sizes == [3, 3, 1]
    assert tiny_model.vision_batch_size() == 2  # CPU default: small batches stay in cache
    whole = tiny_model.encode_media(make_frames(7, "chunk"), use_cache=False)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(chunked, whole, strict=True))


def test_training_mode_clears_and_bypasses_the_feature_cache(tokenizer) -> None:
    import vlm

    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer)), tokenizer).eval()
    model.encode_media(make_frames(2, "stale"))
    assert len(model.feature_cache) == 2
    model.train()
    assert len(model.feature_cache) == 0
    model.encode_media(make_frames(2, "stale"))
    assert len(model.feature_cache) == 0  # no caching while weights change
    model.eval()
