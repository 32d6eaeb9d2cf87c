"""``info`` and ``verify`` on a small store."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from codec_bridge.extraction import extract
from codec_bridge.format import CodeStore, split_of
from codec_bridge.info import format_info, info, verify


@pytest.fixture(scope="module")
def store(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("store") / "codes"
    corpus = tmp_path_factory.mktemp("corpus")
    (corpus / "list.csv").write_text(
        "path,text,speaker\n"
        + "".join(
            f"{p},{p.stem.split('_')[0]},{p.stem.split('_')[1]}\n"
            for p in sorted((shared_data / "fsdd_test/recordings").glob("[34]_*_1.wav"))
        )
        + "missing.wav,gone,x\n"
    )
    extract(
        corpus / "list.csv",
        out,
        format="manifest",
        weights="untrained",
        device="cpu",
        part_utterances=4,
        progress=False,
    )
    return out


def test_counts_speakers_splits_and_usage(store):
    d = info(store, val_fraction=0.3)
    cs = CodeStore.open(store)
    assert d["utterances"] == len(cs) == 12 and d["shards"] == 3
    assert d["speakers"] == 6 and sum(d["top_speakers"].values()) == 12
    assert d["hours"] == pytest.approx(float(cs.durations.sum()) / 3600)
    assert d["frames"] == int(cs.lengths.sum())
    n_val = sum(split_of(u, 0.3) == "val" for u in cs.ids)
    assert d["splits"] == {"train": 12 - n_val, "val": n_val}
    assert d["skipped"] == 1 and d["skipped_reasons"] == {"transcript without audio": 1}
    codes = np.concatenate([cs[i].codes for i in range(len(cs))], axis=1)
    assert d["codes_used"] == [len(np.unique(row)) for row in codes]
    assert (d["codec"], d["n_codebooks"], d["weights"]["kind"]) == ("encodec_24khz", 8, "untrained")
    json.dumps(d)


def test_human_readable(store):
    text = format_info(info(store))
    assert "encodec_24khz @ 6 kbps, 8 codebooks" in text and "untrained" in text
    assert "skipped: 1; transcript without audio: 1" in text


def test_verify_ok_then_corrupted_then_missing_weights(store, tmp_path):
    assert verify(store) == []
    broken = tmp_path / "broken"
    shutil.copytree(store, broken)
    codes = sorted((broken / "shards").glob("*/codes.npy"))[0]
    raw = bytearray(codes.read_bytes())
    raw[-1] ^= 0xFF
    codes.write_bytes(bytes(raw))
    (broken / "codec_weights.pt").unlink()
    problems = verify(broken)
    assert any("checksum mismatch" in p and str(codes) in p for p in problems)
    assert any("untrained codec weights are missing" in p for p in problems)
    assert verify(tmp_path / "nowhere") == [
        f"{tmp_path / 'nowhere'}: code store directory does not exist"
    ]
