"""Batched encoding gives the codes each utterance gets alone, frame count included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from encodec.utils import convert_audio

from codec_bridge.batching import BatchEncoder
from codec_bridge.codec import load_codec


@pytest.fixture(scope="module")
def codec():
    c = load_codec("24khz", "untrained", seed=3, device="cpu")
    c.set_bandwidth(6.0)
    return c


def alone(codec, wav: torch.Tensor) -> np.ndarray:
    """The encodec package's own call, one utterance at a time."""
    with torch.no_grad():
        frames = codec.model.encode(wav[None])
    return torch.cat([c for c, _ in frames], dim=-1)[0].numpy()


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert [g.shape for g in got] == [w.shape for w in want]  # exact frame counts
    differing = sum(int((g != w).sum()) for g, w in zip(got, want, strict=True))
    assert differing <= sum(w.size for w in want) / 1000  # float ties at most


def test_plan_matches_encodec_frame_count(codec):
    batcher = codec._batcher
    for n in [320, 321, 639, 640, 1919, 1920, 1921, 24000, 24001, 100_000]:
        frames, fits = batcher.plan(n)
        assert frames == math.ceil(n / 320) == alone(codec, torch.zeros(1, n)).shape[1]
        assert fits == (n > 1920)


def test_chunk_edges_and_right_edge_padding(codec):
    """Tiny chunks put many chunk boundaries and utterance ends at every stride phase."""
    gen = torch.Generator().manual_seed(0)
    lengths = [1921, 2000, 2561, 3200, 3201, 4799, 5123, 7000, 9600, 9601, 12345]
    wavs = [0.1 * torch.randn(1, n, generator=gen) for n in lengths]
    batcher = BatchEncoder(codec.model, chunk_frames=6, rows_per_pass=3)
    assert_same(batcher.encode(wavs, torch.device("cpu")), [alone(codec, w) for w in wavs])


def test_real_speech_at_22k_and_8k(codec, shared_data):
    paths = [
        shared_data / "ljspeech_lj001/wavs/LJ001-0002.wav",
        shared_data / "ljspeech_lj001/wavs/LJ001-0008.wav",
    ]
    paths += sorted((shared_data / "fsdd_test/recordings").glob("*_theo_*.wav"))[:6]
    wavs = []
    for p in paths:
        data, sr = sf.read(p, dtype="float32", always_2d=True)
        wavs.append(convert_audio(torch.from_numpy(data.T), sr, 24000, 1))
    assert_same(codec.encode(wavs), [alone(codec, w) for w in wavs])


def test_rows_too_short_to_batch_are_encoded_alone(codec):
    wavs = [0.1 * torch.randn(1, n) for n in (320, 700, 1920, 30000)]
    assert_same(codec.encode(wavs), [alone(codec, w) for w in wavs])


def test_only_the_causal_single_segment_model_is_batched():
    assert BatchEncoder.supports(load_codec("24khz", "untrained", device="cpu").model)
    assert not BatchEncoder.supports(load_codec("48khz", "untrained", device="cpu").model)
