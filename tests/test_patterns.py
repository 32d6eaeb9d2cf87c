"""Codebook patterns: exact delay layout, round trips, teacher-forcing targets, forced tokens."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import numpy as jnp

from jtts.patterns import get_pattern

C = 10  # codebook size of the hand-written examples: EOS=10, BOS=11, PAD=12
E, B_, P = 10, 11, 12


def test_delay_layout_by_hand():
    pattern = get_pattern("delay", n_codebooks=3, codebook_size=C)
    codes = np.array([[[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]], [[3] * 4, [4] * 4, [5] * 4]])
    expected = np.array(
        [
            [[1, 2, 3, E, P, P, P], [B_, 5, 6, 7, E, P, P], [B_, B_, 9, 0, 1, E, P]],
            [[3, 3, 3, 3, E, P, P], [B_, 4, 4, 4, 4, E, P], [B_, B_, 5, 5, 5, 5, E]],
        ]
    )
    seq = pattern.apply(codes, np.array([3, 4]))
    np.testing.assert_array_equal(seq, expected)
    assert pattern.num_steps(4) == seq.shape[2] == 7
    codes_back, lengths = pattern.revert(seq)
    np.testing.assert_array_equal(lengths, [3, 4])
    np.testing.assert_array_equal(codes_back[0], codes[0] * (np.arange(4) < 3))
    np.testing.assert_array_equal(codes_back[1], codes[1])


def test_prefix_by_hand():
    """A prompt of 2 frames, 3 codebooks: steps 0-1 whole, then codebooks 1 and 2 (step 2) and
    codebook 2 (step 3) still hold prompt frames; -1 where the continuation is sampled."""
    pattern = get_pattern("delay", n_codebooks=3, codebook_size=C)
    prompt = np.array([[1, 2], [5, 6], [9, 0]])
    expected = [[1, 2, -1, -1], [B_, 5, 6, -1], [B_, B_, 9, 0]]
    np.testing.assert_array_equal(pattern.prefix(prompt), expected)
    np.testing.assert_array_equal(pattern.prefix(jnp.asarray(prompt)), expected)
    # The known ids are the full utterance's steps, whatever follows the prompt.
    full = pattern.apply(np.concatenate([prompt, [[7], [7], [7]]], axis=1)[None], np.array([3]))
    fixed = pattern.prefix(prompt) >= 0
    np.testing.assert_array_equal(full[0, :, :4][fixed], pattern.prefix(prompt)[fixed])


def test_decoder_io_targets_and_mask():
    pattern = get_pattern("delay", n_codebooks=2, codebook_size=C)
    seq = pattern.apply(np.array([[[1, 2], [3, 4]]]), np.array([1]))
    np.testing.assert_array_equal(seq[0], [[1, E, P, P], [B_, 3, E, P]])
    inputs, targets, mask = pattern.decoder_io(seq)
    np.testing.assert_array_equal(inputs[0], [[B_, 1, E, P], [B_, B_, 3, E]])
    np.testing.assert_array_equal(mask[0], [[1, 1, 0, 0], [0, 1, 1, 0]])
    np.testing.assert_array_equal(targets[0], [[1, E, 0, 0], [0, 3, E, 0]])
    assert targets.max() <= C  # always a valid index into the C+1 output logits


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 32),
    t=st.integers(1, 12),
    data=st.data(),
)
def test_delay_round_trip(k, t, data):
    pattern = get_pattern("delay", n_codebooks=k, codebook_size=1024)
    b = data.draw(st.integers(1, 3))
    lengths = np.array(data.draw(st.lists(st.integers(0, t), min_size=b, max_size=b)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    codes = rng.integers(0, 1024, (b, k, t))
    seq = pattern.apply(codes, lengths)
    assert seq.shape == (b, k, pattern.num_steps(t))
    codes_back, lengths_back = pattern.revert(seq)
    np.testing.assert_array_equal(lengths_back, lengths)
    valid = np.arange(t)[None, None, :] < lengths[:, None, None]
    np.testing.assert_array_equal(codes_back, np.where(valid, codes, 0))
    inputs, targets, mask = pattern.decoder_io(seq)
    assert mask.sum() == k * (lengths.sum() + b)  # every code plus one EOS per codebook
    np.testing.assert_array_equal(inputs[:, :, 1:], seq[:, :, :-1])


def test_jit_matches_numpy():
    pattern = get_pattern("delay", n_codebooks=4, codebook_size=C)
    rng = np.random.default_rng(0)
    codes, lengths = rng.integers(0, C, (3, 4, 6)), np.array([0, 3, 6])
    seq = pattern.apply(codes, lengths)
    seq_jax = jax.jit(pattern.apply)(jnp.asarray(codes), jnp.asarray(lengths))
    np.testing.assert_array_equal(seq_jax, seq)
    for got, want in zip(jax.jit(pattern.revert)(seq_jax), pattern.revert(seq), strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(
        jax.jit(pattern.decoder_io)(seq_jax), pattern.decoder_io(seq), strict=True
    ):
        np.testing.assert_array_equal(got, want)


def test_forced_tokens_reproduce_sequence():
    """A sampler that follows forced tokens and samples the rest rebuilds `apply`'s output."""
    pattern = get_pattern("delay", n_codebooks=4, codebook_size=C)
    rng = np.random.default_rng(1)
    codes, lengths = rng.integers(0, C, (3, 4, 5)), np.array([0, 2, 5])
    seq = pattern.apply(codes, lengths)
    out = np.zeros_like(seq)
    found = np.full(3, -1)
    for step in range(seq.shape[2]):
        forced = pattern.forced_tokens(step, found)
        out[:, :, step] = np.where(forced >= 0, forced, seq[:, :, step])  # "model" = truth
        ended = (out[:, 0, step] == pattern.eos) & (found < 0)
        found = np.where(ended, pattern.length_at_eos(step), found)
    np.testing.assert_array_equal(out, seq)
    np.testing.assert_array_equal(found, lengths)
    assert pattern.num_steps(lengths).tolist() == [4, 6, 9]


def test_unknown_pattern():
    with pytest.raises(ValueError, match="delay"):
        get_pattern("nope", 4, 1024)
