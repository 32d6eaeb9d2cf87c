"""The sampling rules: top-k and top-p against the argmax, the seed, and the settings."""

import dataclasses

import numpy as np
import pytest
from test_decode import TEXTS, assert_same_codes, fixed, model  # noqa: F401 (model: a fixture)

from jtts import decode
from jtts.config import ConfigError, SampleConfig
from jtts.sampling import CONFIG_KNOBS, Sampling


def test_top_k_1_and_tiny_top_p_equal_greedy(model):  # noqa: F811
    greedy = decode.generate(model, TEXTS, fixed(12, greedy=True), max_frames=12)
    top_k = decode.generate(model, TEXTS, fixed(12, top_k=1, seed=3), max_frames=12)
    top_p = decode.generate(model, TEXTS, fixed(12, top_p=1e-6, seed=4), max_frames=12)
    assert_same_codes(greedy, top_k)
    assert_same_codes(greedy, top_p)


def test_seed_fixes_the_sample(model):  # noqa: F811
    def sample(seed):
        return decode.generate(model, TEXTS, fixed(12, top_k=50, seed=seed), max_frames=12)

    a, b, c = sample(0), sample(0), sample(1)
    assert_same_codes(a, b)
    assert not all(np.array_equal(x, y) for x, y in zip(a.codes, c.codes, strict=True))


def test_sampling_of_config_and_bad_settings():
    """Every `sample` setting but the length cap and the default speaker (a condition, chosen
    by `trained_run.choose_categories`) reaches the sampling, and given fields win; settings
    out of range are refused."""
    sample = SampleConfig(
        temperature=0.7,
        top_k=5,
        top_p=0.9,
        cfg_scale=2.0,
        cfg_null="text",
        length_scale=1.2,
        follow=True,
    )
    names = {f.name for f in dataclasses.fields(SampleConfig)} - {"max_seconds", "speaker"}
    assert set(CONFIG_KNOBS) == names
    s = Sampling.of(sample, seed=3, top_k=7)
    assert (s.temperature, s.top_k, s.top_p, s.cfg_scale, s.length_scale) == (0.7, 7, 0.9, 2.0, 1.2)
    assert (s.seed, s.greedy, s.cfg_null, s.follow) == (3, False, "text", True)
    with pytest.raises(
        ConfigError, match="sample.cfg_null must be one of all, text, got 'speaker'"
    ):
        SampleConfig(cfg_null="speaker")
    with pytest.raises(ValueError, match="cfg null"):
        Sampling(cfg_null="none")
    with pytest.raises(ValueError, match="top-p"):
        Sampling(top_p=0.0)
    with pytest.raises(ValueError, match="length scale"):
        Sampling(length_scale=0.0)
