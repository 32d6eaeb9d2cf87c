"""Where codec weights come from, and the codec's encode/decode contract."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch

from codec_bridge.codec import MODELS, UNTRAINED_FILE, codec_from_meta, load_codec
from codec_bridge.errors import BridgeError


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A state dict for the 24 kHz architecture, standing in for a real checkpoint."""
    path = tmp_path_factory.mktemp("weights") / "codec.pt"
    torch.save(load_codec("24khz", "untrained", seed=7, device="cpu").model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def codec(weights_file):
    return load_codec("24khz", weights_file, device="cpu")


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_untrained_is_seeded_loud_and_informative(capfd, codec):
    a = load_codec("24khz", "untrained", seed=7, device="cpu")
    err = capfd.readouterr().err
    assert "UNTRAINED" in err and "noise-like" in err and len(err.splitlines()) >= 5
    assert same_weights(a, codec)  # the fixture's checkpoint was seed 7 too
    assert not same_weights(a, load_codec("24khz", "untrained", seed=1, device="cpu"))
    a.set_bandwidth(6.0)
    gen = torch.Generator().manual_seed(0)
    wav = 0.1 * torch.randn(1, 48000, generator=gen) * torch.linspace(0, 1, 48000)
    codes = a.encode_one(wav)
    assert codes.shape == (8, 150)
    assert all(len(np.unique(row)) > 20 for row in codes)  # codes follow the audio


def test_untrained_weights_live_in_the_store(tmp_path):
    first = load_codec("24khz", "untrained", seed=5, device="cpu", store=tmp_path)
    path = tmp_path / UNTRAINED_FILE
    assert first.weights == {
        "kind": "untrained",
        "seed": 5,
        "file": UNTRAINED_FILE,
        "sha256": sha(path),
    }
    again = load_codec("24khz", "untrained", seed=5, device="cpu", store=tmp_path)
    assert again.weights == first.weights and same_weights(first, again)


def test_weights_file(weights_file, codec):
    assert codec.weights == {"kind": "file", "path": str(weights_file), "sha256": sha(weights_file)}
    assert torch.equal(
        codec.model.state_dict()["quantizer.vq.layers.0._codebook.embed"],
        torch.load(weights_file)["quantizer.vq.layers.0._codebook.embed"],
    )


def test_bad_weights_files(tmp_path, weights_file):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(BridgeError, match="junk.pt: cannot load weights"):
        load_codec("24khz", junk, device="cpu")
    with pytest.raises(BridgeError, match="not an EnCodec encodec_48khz state dict"):
        load_codec("48khz", weights_file, device="cpu")
    with pytest.raises(BridgeError, match="no such file"):
        load_codec("24khz", tmp_path / "missing.pt", device="cpu")


def test_pretrained_from_a_preplaced_hub_cache(tmp_path, monkeypatch, weights_file, codec):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / MODELS["24khz"].checkpoint
    cached.parent.mkdir(parents=True)
    shutil.copy(weights_file, cached)
    pretrained = load_codec("24khz", "pretrained", device="cpu")
    assert pretrained.weights == {
        "kind": "pretrained",
        "checkpoint": cached.name,
        "sha256": sha(cached),
    }
    assert same_weights(pretrained, codec)


def test_pretrained_unavailable_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY"):  # no network, even where there is one
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    with pytest.raises(BridgeError) as e:
        load_codec("24khz", "pretrained", device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "encodec_24khz-d7cc33bc.th" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg and "--weights FILE" in msg


def test_bandwidth_picks_codebooks(codec):
    for kbps, n_q in [(1.5, 2), (3, 4), (6, 8), (12, 16), (24, 32)]:
        codec.set_bandwidth(kbps)
        assert codec.n_codebooks == n_q
        assert codec.meta()["n_codebooks"] == n_q and codec.meta()["frame_rate"] == 75.0


def test_unsupported_bandwidth_and_model(codec):
    with pytest.raises(
        BridgeError, match="--bandwidth 5: the encodec_24khz model supports 1.5, 3, 6, 12, 24"
    ):
        codec.set_bandwidth(5)
    with pytest.raises(BridgeError, match="--model '16khz'"):
        load_codec("16khz", "untrained")


def test_48khz_encodes_alone_and_decodes_segments():
    codec = load_codec("48khz", "untrained", device="cpu")
    codec.set_bandwidth(6.0)
    wav = 0.1 * torch.randn(1, 57600).expand(2, -1)  # 1.2 s: a full 1 s segment and a partial one
    (codes,) = codec.encode([wav])
    assert codes.shape == (4, 150 + 32) and np.array_equal(codes, codec.encode_one(wav))
    audio = codec.decode(codes)
    assert audio.shape == (2, 47520 + 32 * 320) and torch.isfinite(audio).all()


@pytest.mark.parametrize(
    "codes, message",
    [
        (np.zeros(10, np.int64), "expected [codebooks, frames]"),
        (np.zeros((4, 10), np.int64), "4 codebooks, but the codec at 6 kbps uses 8"),
        (np.full((8, 10), 1024), "out of range [1024, 1024], expected [0, 1024)"),
        (np.zeros((8, 10), np.float32), "dtype float32"),
    ],
)
def test_bad_codes_are_one_line_errors(codec, codes, message):
    codec.set_bandwidth(6.0)
    with pytest.raises(BridgeError) as e:
        codec.check_codes(codes, "x.npy")
    assert message in str(e.value) and str(e.value).startswith("x.npy: ")


def test_codec_from_meta_checks_the_weights(tmp_path, weights_file, codec):
    codec.set_bandwidth(3.0)
    meta = codec.meta()
    assert codec_from_meta(meta, device="cpu").n_codebooks == 4
    other = tmp_path / "other.pt"
    torch.save({k: v + 1 for k, v in codec.model.state_dict().items()}, other)
    with pytest.raises(BridgeError, match="sha256 differs"):
        codec_from_meta(meta, weights=other, device="cpu")
    untrained = {**meta, "weights": {"kind": "untrained", "seed": 0, "file": UNTRAINED_FILE}}
    with pytest.raises(BridgeError, match="no store is known"):
        codec_from_meta(untrained, device="cpu")
    shutil.copy(weights_file, tmp_path / UNTRAINED_FILE)
    assert codec_from_meta({**untrained, "store_dir": str(tmp_path)}, device="cpu").n_codebooks == 4
