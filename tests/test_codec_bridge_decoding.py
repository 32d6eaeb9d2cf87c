"""Codes -> audio with the codec the store records, from a store, a codes file or a folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from encodec import EncodecModel

from codec_bridge.codec import load_codec
from codec_bridge.decoding import decode, decode_dir, decode_to_wav
from codec_bridge.errors import BridgeError
from codec_bridge.extraction import extract
from codec_bridge.format import CodeStore, save_codes

FAST = dict(device="cpu", progress=False)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "codec.pt"
    torch.save(load_codec("24khz", "untrained", seed=13, device="cpu").model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, shared_data, weights_file):
    out = tmp_path_factory.mktemp("store") / "codes"
    extract(shared_data / "fsdd_test", out, format="fsdd", weights=weights_file, limit=3, **FAST)
    return out


@pytest.fixture(scope="module")
def untrained_store(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("untrained") / "codes"
    extract(shared_data / "fsdd_test", out, format="fsdd", weights="untrained", limit=2, **FAST)
    return out


@pytest.mark.filterwarnings("ignore:.*weight_norm:FutureWarning")
def test_equals_the_encodec_package_decode(store, weights_file):
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    cs = CodeStore.open(store)
    for i in range(len(cs)):
        codes = cs[i].codes
        wav, sr = decode(codes, store=store, device="cpu")
        with torch.no_grad():
            want = model.decode([(torch.from_numpy(codes.astype(np.int64))[None], None)])[0].numpy()
        assert sr == 24000 and wav.shape == want.shape == (1, codes.shape[1] * 320)
        assert np.abs(wav - want).max() < 1e-5


def test_store_id_to_16_bit_wav(store, tmp_path):
    out = decode_to_wav(tmp_path / "a" / "x.wav", store=store, utt_id="0_george_1", device="cpu")
    info = sf.info(out)
    frames = CodeStore.open(store).get("0_george_1").n_frames
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    assert info.frames == frames * 320


def test_codes_file_with_sidecar_and_batch_folder(store, tmp_path):
    cs = CodeStore.open(store)
    (tmp_path / "in").mkdir()
    for i in range(len(cs)):
        save_codes(tmp_path / "in" / f"s{i}.npy", cs[i].codes, cs.meta)
    wav, _ = decode(tmp_path / "in" / "s0.npy", device="cpu")
    direct, _ = decode(cs[0].codes, store=store, device="cpu")
    assert np.array_equal(wav, direct)
    written = decode_dir(tmp_path / "in", tmp_path / "out", device="cpu")
    assert [p.name for p in written] == ["s0.wav", "s1.wav", "s2.wav"]
    meta_only = tmp_path / "meta.json"
    meta_only.write_text(json.dumps(cs.meta))
    (tmp_path / "in" / "s1.json").unlink()
    with pytest.raises(BridgeError, match="no codec metadata"):
        decode(tmp_path / "in" / "s1.npy", device="cpu")
    assert decode_to_wav(
        tmp_path / "s1.wav", codes=tmp_path / "in" / "s1.npy", meta=meta_only, device="cpu"
    )


def test_untrained_codes_find_their_weights_and_warn(untrained_store, tmp_path, capfd):
    cs = CodeStore.open(untrained_store)
    capfd.readouterr()
    sidecar_meta = {**cs.meta, "store_dir": str(untrained_store)}
    save_codes(tmp_path / "u.npy", cs[0].codes, sidecar_meta)
    wav, sr = decode(tmp_path / "u.npy", device="cpu")
    assert "UNTRAINED" in capfd.readouterr().err
    assert wav.shape == (1, cs[0].n_frames * 320) and np.isfinite(wav).all()
    save_codes(tmp_path / "v.npy", cs[0].codes, cs.meta)  # no store_dir: pass --store instead
    with pytest.raises(BridgeError, match="no store is known"):
        decode(tmp_path / "v.npy", device="cpu")
    assert np.array_equal(decode(tmp_path / "v.npy", store=untrained_store, device="cpu")[0], wav)


@pytest.mark.parametrize(
    "codes, message",
    [
        (np.zeros((4, 5), np.uint16), "4 codebooks, but the codec at 6 kbps uses 8"),
        (np.full((8, 5), 2000, np.uint16), "codes out of range"),
    ],
)
def test_bad_codes(store, tmp_path, codes, message):
    save_codes(tmp_path / "bad.npy", codes, CodeStore.open(store).meta)
    with pytest.raises(BridgeError) as e:
        decode(tmp_path / "bad.npy", device="cpu")
    assert message in str(e.value) and "bad.npy" in str(e.value)


def test_unknown_id_and_unreadable_codes(store, tmp_path):
    with pytest.raises(BridgeError, match="no utterance with id 'nope'"):
        decode_to_wav(tmp_path / "x.wav", store=store, utt_id="nope", device="cpu")
    (tmp_path / "junk.npy").write_text("junk")
    with pytest.raises(BridgeError, match="junk.npy: cannot read codes"):
        decode(tmp_path / "junk.npy", store=store, device="cpu")
