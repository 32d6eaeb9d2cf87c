"""A decode's inputs: the shape buckets, and bad texts, lengths and prompts refused."""

import numpy as np
import pytest
from test_decode import GREEDY, C, K, counter_model

from jtts import decode
from jtts.decode_io import batch_bucket, prompt_bucket, step_bucket, text_bucket


def test_buckets():
    assert [batch_bucket(n) for n in (1, 2, 3, 5, 16, 17)] == [1, 2, 4, 8, 16, 32]
    assert [text_bucket(n, 256) for n in (1, 16, 17, 200)] == [16, 16, 32, 256]
    assert text_bucket(70, 100) == 100
    assert [step_bucket(n) for n in (10, 64, 65, 97, 758, 1508)] == [
        64,
        64,
        96,
        128,
        768,
        1536,
    ]
    assert [prompt_bucket(m, 768) for m in (8, 64, 65, 100, 700)] == [64, 64, 96, 128, 768]
    assert prompt_bucket(100, 96) == 96  # never past the cache


def test_bad_input():
    m = counter_model({})
    with pytest.raises(ValueError, match="text lengths"):
        decode.generate(m, [[1], []], GREEDY, max_frames=5)
    with pytest.raises(ValueError, match="max_frames"):
        decode.generate(m, [[1]], GREEDY, max_frames=0)
    for bad in (np.zeros((K + 1, 3), int), np.zeros((K, 0), int), np.zeros((K,), int)):
        with pytest.raises(ValueError, match=r"a prompt is codes of shape \(2, frames >= 1\)"):
            decode.generate(m, [[1]], GREEDY, max_frames=5, prompt=bad)
    with pytest.raises(ValueError, match=r"prompt codes must be integers in \[0, 16\)"):
        decode.generate(m, [[1]], GREEDY, max_frames=5, prompt=np.full((K, 3), C))
