"""One audio file -> codes with the codec a store records (the sampler's voice prompt)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from encodec import EncodecModel
from encodec.utils import convert_audio

from codec_bridge.cli import main
from codec_bridge.codec import UNTRAINED_FILE, load_codec
from codec_bridge.decoding import decode
from codec_bridge.encoding import encode_file
from codec_bridge.errors import BridgeError
from codec_bridge.format import init_store, load_codes, make_meta

SR = 24000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An empty store of the untrained 24 kHz codec at 6 kbps (its weights saved inside)."""
    root = tmp_path_factory.mktemp("enc") / "store"
    codec = load_codec("24khz", "untrained", seed=3, device="cpu", store=root)
    codec.set_bandwidth(6.0)
    init_store(root, make_meta(**codec.meta()))
    return root


@pytest.fixture(scope="module")
def reference(store):
    """The encodec package itself with the store's weights: what the codes must equal."""
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.load_state_dict(torch.load(store / UNTRAINED_FILE, weights_only=True))
    model.set_target_bandwidth(6.0)

    def encode(wav_CxN: np.ndarray, sr: int) -> np.ndarray:
        wav = convert_audio(torch.from_numpy(wav_CxN).float(), sr, SR, 1)
        with torch.no_grad():
            return torch.cat([c for c, _ in model.encode(wav[None])], dim=-1)[0].numpy()

    return encode


def noise(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return 0.3 * np.random.default_rng(seed).standard_normal((channels, round(seconds * sr)))


def write(path, wav_CxN: np.ndarray, sr: int):
    sf.write(str(path), wav_CxN.T, sr, subtype="FLOAT")
    return path


def test_codes_equal_the_encodec_package(store, reference, tmp_path):
    wav = noise(1.2, SR)
    codes, meta = encode_file(write(tmp_path / "a.wav", wav, SR), store=store, device="cpu")
    np.testing.assert_array_equal(codes, reference(wav, SR))
    assert codes.shape == (8, 90) and meta["store_dir"] == str(store.resolve())


def test_other_rates_are_resampled_and_stereo_is_mixed_down(store, reference, tmp_path):
    """8 kHz stereo: the codes of what encodec's own convert_audio makes of it (the mean of
    the channels, resampled to 24 kHz)."""
    wav = noise(1.0, 8000, channels=2, seed=1)
    codes, _ = encode_file(write(tmp_path / "s.wav", wav, 8000), store=store, device="cpu")
    np.testing.assert_array_equal(codes, reference(wav, 8000))
    assert codes.shape == (8, 75)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.write_text("not audio at all"), p)[1], "unreadable audio"),
        (lambda p: write(p, np.zeros((1, SR)), SR), "silent (peak below -80 dBFS)"),
        (lambda p: write(p, noise(0.5, SR), SR), "too short (0.50 s < --min-seconds 1)"),
        (lambda p: write(p, noise(3.0, SR), SR), "too long (3.0 s > --max-seconds 2)"),
    ],
    ids=["missing", "not-audio", "silent", "short", "long"],
)
def test_unusable_audio_is_one_line_naming_the_file(store, tmp_path, make, message):
    path = make(tmp_path / "x.wav")
    with pytest.raises(BridgeError) as e:
        encode_file(path, store=store, device="cpu", min_seconds=1.0, max_seconds=2.0)
    assert str(e.value).startswith(f"{tmp_path / 'x.wav'}: {message}")
    assert "\n" not in str(e.value)


def test_cli_writes_codes_that_decode_with_their_sidecar(store, tmp_path, capsys):
    wav = write(tmp_path / "a.wav", noise(1.0, SR), SR)
    out = tmp_path / "c" / "a.npy"
    out.parent.mkdir()
    assert (
        main(["encode", str(wav), "--store", str(store), "--out", str(out), "--device", "cpu"]) == 0
    )
    codes, meta = load_codes(out)
    assert codes.shape == (8, 75) and meta["bandwidth"] == 6.0
    audio, sr = decode(out, device="cpu")  # the sidecar alone finds the untrained weights
    assert sr == SR and audio.shape == (1, 75 * 320)
    capsys.readouterr()
    rc = main(
        ["encode", str(wav), "--store", str(store), "--out", str(out), "--max-seconds", "0.5"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"codec_bridge encode: error: {wav}: too long (1.0 s > --max-seconds")
