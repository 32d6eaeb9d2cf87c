"""Seeded random weights behave like a codec: deterministic, signal-driven, informative codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from encodec import EncodecModel

from codec_bridge.untrained import randomize

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm:FutureWarning")


def build(seed: int) -> EncodecModel:
    torch.manual_seed(seed)
    model = randomize(EncodecModel.encodec_model_24khz(pretrained=False), seed)
    model.set_target_bandwidth(6.0)
    return model


def test_same_seed_same_weights():
    a, b = build(0).state_dict(), build(0).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_codes_follow_the_audio_not_a_constant_bias():
    model = build(0)
    gen = torch.Generator().manual_seed(0)
    loud = 0.3 * torch.randn(1, 1, 24000, generator=gen)
    with torch.no_grad():
        ((codes, _),) = model.encode(loud)
        ((quiet, _),) = model.encode(0.01 * loud)
        ((silence, _),) = model.encode(torch.zeros(1, 1, 24000))
    codes = codes[0].numpy()
    assert all(len(np.unique(row)) > 20 for row in codes)  # many entries in use
    assert (codes != quiet[0].numpy()).mean() > 0.5  # level matters, as for real audio
    assert len(np.unique(silence[0, 0].numpy())) == 1  # silence is one steady code


def test_decoded_audio_has_a_sane_level():
    model = build(0)
    with torch.no_grad():
        (frame,) = model.encode(0.1 * torch.randn(1, 1, 24000))
        audio = model.decode([frame])
    rms = audio.pow(2).mean().sqrt().item()
    assert 1e-3 < rms < 1.0 and torch.isfinite(audio).all()
