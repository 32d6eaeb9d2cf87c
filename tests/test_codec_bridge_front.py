"""The copy-free front computes what encodec's own modules compute."""

from __future__ import annotations

import pytest
import torch
from encodec import EncodecModel
from encodec.modules.conv import SConv1d

from codec_bridge.front import Front, supported, walk

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm:FutureWarning")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EncodecModel.encodec_model_24khz(pretrained=False)


def front_of(model):
    return model.encoder.model[:13]


@pytest.mark.parametrize("lengths", [[24000], [9601, 24000, 3333], [1921, 2000]])
def test_matches_the_modules_on_every_row(model, lengths):
    layers = front_of(model)
    gen = torch.Generator().manual_seed(1)
    wavs = [0.1 * torch.randn(1, 1, n, generator=gen) for n in lengths]
    x = torch.zeros(len(wavs), 1, max(lengths))
    for i, w in enumerate(wavs):
        x[i, :, : w.shape[-1]] = w[0]
    valid = list(lengths)
    with torch.inference_mode():
        got = Front(layers)(x, valid)
        convs = [m for m in layers.modules() if isinstance(m, SConv1d)]
        for i, w in enumerate(wavs):
            want = layers(w)[0]  # encodec, the utterance alone
            assert valid[i] == want.shape[-1] == walk(convs, lengths[i])[0]
            torch.testing.assert_close(got[i, :, : valid[i]], want, rtol=1e-4, atol=1e-5)


def test_the_input_batch_is_left_intact(model):
    x = torch.randn(2, 1, 4000)
    kept = x.clone()
    with torch.inference_mode():
        Front(front_of(model))(x, [4000, 4000])
    assert torch.equal(x, kept)  # the first layer is a conv: its input is only read


def test_only_the_causal_weight_normed_front_is_supported(model):
    assert supported(front_of(model))
    assert not supported(EncodecModel.encodec_model_48khz(pretrained=False).encoder.model[:13])
    assert not supported(model.encoder.model)  # the LSTM is not part of the front
