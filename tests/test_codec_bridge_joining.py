"""`codec_bridge join`: corpora -> one manifest with a speaker column, read back by the reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codec_bridge.cli import main
from codec_bridge.errors import BridgeError
from codec_bridge.joining import join, parse_source
from codec_bridge.readers import read_corpus


def ljspeech(root: Path, ids: list[str], voice: str | None = None) -> Path:
    """An LJ Speech folder of empty wavs (readers look at names and text, not audio)."""
    (root / "wavs").mkdir(parents=True)
    lines = [f"{uid}|Text of {uid}.|" for uid in ids]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for uid in ids:
        (root / "wavs" / f"{uid}.wav").write_bytes(b"")
    if voice:
        (root / "corpus.json").write_text(json.dumps({"voice": voice}), encoding="utf-8")
    return root


@pytest.fixture
def corpora(tmp_path):
    slt = ljspeech(tmp_path / "slt", ["TR-0", "TR-1", "TR-2"], "flite:slt")
    awb = ljspeech(tmp_path / "awb", ["TR-0", "TR-1"], "flite:awb")
    lj = ljspeech(tmp_path / "LJ001", [f"LJ001-{i:04d}" for i in range(1, 8)])
    return slt, awb, lj


def test_sources_name_speakers_and_slices_keep_python_semantics(corpora, tmp_path):
    slt, awb, lj = corpora
    out = tmp_path / "m" / "train.csv"
    counts = join([str(slt), str(awb), f"ljspeech={lj}@:5"], out)
    assert counts == {"flite:slt": 3, "flite:awb": 2, "ljspeech": 5}
    items = read_corpus("manifest", out)
    by_id = {it.id: it for it in items}
    assert set(by_id) == {
        *(f"flite_slt-TR-{i}" for i in range(3)),
        *(f"flite_awb-TR-{i}" for i in range(2)),
        *(f"ljspeech-LJ001-{i:04d}" for i in range(1, 6)),
    }
    it = by_id["flite_awb-TR-1"]
    assert (it.path, it.text, it.speaker) == (
        awb / "wavs" / "TR-1.wav",
        "Text of TR-1.",
        "flite:awb",
    )
    held = tmp_path / "heldout.csv"
    assert join([f"ljspeech={lj}@5:"], held) == {"ljspeech": 2}
    rest = {it.id for it in read_corpus("manifest", held)}
    assert rest == {"ljspeech-LJ001-0006", "ljspeech-LJ001-0007"}
    assert join([str(lj)], held) == {"LJ": 7}  # the reader's own name for LJ Speech


def test_parse_source():
    assert parse_source("lj=a/b@:150") == ("lj", Path("a/b"), slice(None, 150))
    assert parse_source("a/b@150:") == (None, Path("a/b"), slice(150, None))
    assert parse_source("x=a/b") == ("x", Path("a/b"), slice(None))
    for bad in ("lj=@:3", "=a/b", "a/b@1", "a/b@x:2", ""):
        with pytest.raises(BridgeError, match="a source is"):
            parse_source(bad)


def test_bad_sources_are_one_line_errors_and_write_nothing(corpora, tmp_path, capsys):
    slt, _, lj = corpora
    out = tmp_path / "m.csv"
    cases = [
        ([str(slt), str(slt)], "id flite_slt-TR-0 is already in an earlier source"),
        ([f"{lj}@9:"], "the slice keeps no utterances"),
        ([str(tmp_path / "nope")], "nope does not exist"),
    ]
    for sources, message in cases:
        assert main(["join", *sources, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not out.exists()
    assert main(["join", str(slt), "--out", str(tmp_path / "m.txt")]) == 2
    assert "is a .csv file" in capsys.readouterr().err
