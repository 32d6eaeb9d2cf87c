"""Audio loading: exactly encodec's conversion for good files, a precise reason for bad ones."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from encodec.utils import convert_audio

from codec_bridge.audio import Skip, load, probe_seconds

LOAD = dict(max_seconds=60.0, min_samples=320)


def noise(seconds: float, sr: int, channels: int = 1, level: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (level * rng.standard_normal((int(seconds * sr), channels))).astype(np.float32)


@pytest.mark.parametrize(
    "rel", ["ljspeech_lj001/wavs/LJ001-0002.wav", "fsdd_test/recordings/7_jackson_3.wav"]
)
@pytest.mark.parametrize("target", [(24000, 1), (48000, 2)])
def test_equals_convert_audio_of_the_file(shared_data, rel, target):
    path = shared_data / rel
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    want = convert_audio(torch.from_numpy(data.T), sr, *target)
    got = load(path, *target, **LOAD)
    assert got.shape == want.shape and torch.equal(got, want)


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_other_containers_and_stereo(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, noise(0.5, 16000, channels=2), 16000, format=fmt)
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    want = convert_audio(torch.from_numpy(data.T), sr, 24000, 1)
    assert torch.equal(load(path, 24000, 1, **LOAD), want)


def test_more_than_two_channels_are_downmixed(tmp_path):
    path = tmp_path / "surround.wav"
    sf.write(path, noise(0.3, 8000, channels=6), 8000)
    wav = load(path, 24000, 1, **LOAD)
    assert wav.shape == (1, int(0.3 * 24000))


def bad_file(tmp_path, kind: str, shared_data):
    path = tmp_path / f"{kind}.wav"
    if kind == "truncated":
        raw = (shared_data / "ljspeech_lj001/wavs/LJ001-0002.wav").read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "not_audio":
        path.write_text("this is a text file with a .wav name\n" * 20)
    elif kind == "tiny":
        sf.write(path, noise(0.01, 22050), 22050)
    elif kind == "silent":
        sf.write(path, np.zeros((22050, 1), np.float32), 22050, subtype="PCM_16")
    elif kind == "long":
        sf.write(path, noise(3.0, 8000), 8000)
    elif kind == "nan":
        data = noise(0.5, 8000)
        data[100] = np.nan
        sf.write(path, data, 8000, subtype="FLOAT")
    return path


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("truncated", "truncated audio file"),
        ("zero_bytes", "empty file (0 bytes)"),
        ("not_audio", "unreadable audio"),
        ("tiny", "too short (240 samples at 24000 Hz < one codec frame of 320)"),
        ("silent", "silent"),
        ("long", "too long (3.0 s > --max-seconds 2.5)"),
        ("nan", "NaN or infinite"),
    ],
)
def test_bad_files_say_why(tmp_path, shared_data, kind, reason):
    path = bad_file(tmp_path, kind, shared_data)
    with pytest.raises(Skip) as e:
        load(path, 24000, 1, max_seconds=2.5, min_samples=320)
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(Skip, match="transcript without audio"):
        probe_seconds(tmp_path / "gone.wav")


def test_probe_reads_only_the_header(shared_data):
    assert probe_seconds(shared_data / "ljspeech_lj001/wavs/LJ001-0002.wav") == pytest.approx(
        1.9, abs=0.01
    )
