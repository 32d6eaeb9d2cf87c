"""The speaker judge: references and probes never overlap, figures that match hand counts,
silence has no voice, and on real speech (FSDD, the speaker in each file name) the encoder
tells the six speakers apart."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from codec_bridge.cli import main
from codec_bridge.errors import BridgeError
from codec_bridge.judge import speaker
from codec_bridge.judge.evaluate import evaluate, format_table
from codec_bridge.judge.speaker import centroids, identify, split_references, voice_figures
from codec_bridge.readers import DIGITS, read_corpus

needs_extra = pytest.mark.skipif(
    not speaker.installed(), reason=f"resemblyzer is not installed ({speaker.INSTALL})"
)


def test_first_k_of_each_voice_are_references_and_the_rest_probes():
    voices = ["a", "b", "a", None, "a", "b", "c", "a"]
    assert split_references(voices, 2) == [True, True, True, False, False, True, True, False]
    assert split_references(voices, 1) == [True, True, False, False, False, False, True, False]
    with pytest.raises(BridgeError, match="at least 1"):
        split_references(voices, 0)


def test_figures_match_hand_counts():
    e = np.eye(3, dtype=np.float32)
    cents = centroids([("a", e[0]), ("a", e[0]), ("b", e[1]), ("c", e[2]), ("c", None)])
    assert set(cents) == {"a", "b", "c"}
    probe = np.array([0.6, 0.8, 0.0], dtype=np.float32)  # nearer b than a
    got = identify(probe, cents)
    assert got["taken_for"] == "b" and got["sims"]["a"] == pytest.approx(0.6)
    assert identify(None, cents) == {"sims": {}, "taken_for": None}
    rows = [
        {"speaker": "a", "sim": 0.6, "taken_for": "b"},
        {"speaker": "a", "sim": 1.0, "taken_for": "a"},
        {"speaker": "a", "sim": None, "taken_for": None},  # no voice: a miss, not in the SIM
        {"speaker": "b", "sim": 0.8, "taken_for": "b"},
    ]
    f = voice_figures(rows)
    assert f["nearest_voice"] == pytest.approx(2 / 4) and f["no_voice"] == 1
    assert f["sim"] == pytest.approx((0.6 + 1.0 + 0.8) / 3)
    a = f["voices"]["a"]
    assert a["nearest_voice"] == pytest.approx(1 / 3) and a["taken_for"] == {"b": 1, "a": 1}
    assert a["sim"] == pytest.approx(0.8) and f["voices"]["b"]["nearest_voice"] == 1


@needs_extra
def test_silence_and_too_short_clips_have_no_voice():
    judge = speaker.speaker_judge()
    assert judge.embed(np.zeros(16000, dtype=np.float32), 16000) is None
    assert judge.embed(np.zeros((2, 8000), dtype=np.float32), 8000) is None
    rng = np.random.default_rng(0)
    assert judge.embed(0.1 * rng.standard_normal(400).astype(np.float32), 8000) is None
    assert judge.judge()["sha256"] == speaker.SHA256


@pytest.fixture(scope="module")
def fsdd(shared_data):
    root = shared_data / "fsdd_test"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return root


@needs_extra
def test_fsdd_speakers_are_told_apart(fsdd):
    """Index 0 of every digit: 10 clips per speaker; the speaker label in each file name is
    the reference. Measured: 41 of 42 probes identified (chance 1/6); same-speaker pairs'
    mean cosine 0.827, different-speaker 0.707."""
    import soundfile as sf

    items = [it for it in read_corpus("fsdd", fsdd) if it.id.endswith("_0")]
    voices = [it.speaker for it in items]
    assert len(set(voices)) == 6 and len(items) == 60
    judge = speaker.speaker_judge()
    embs = [judge.embed(*sf.read(it.path, dtype="float32")) for it in items]
    is_ref = split_references(voices, 3)
    cents = centroids([(v, e) for v, e, r in zip(voices, embs, is_ref, strict=True) if r])
    rows = [
        {"speaker": v, "sim": (got := identify(e, cents))["sims"].get(v), **got}
        for v, e, r in zip(voices, embs, is_ref, strict=True)
        if not r
    ]
    assert len(rows) == 42
    assert voice_figures(rows)["nearest_voice"] >= 0.8  # chance: 1/6
    same, other = [], []
    for (va, ea), (vb, eb) in combinations(zip(voices, embs, strict=True), 2):
        if ea is not None and eb is not None:
            (same if va == vb else other).append(float(np.dot(ea, eb)))
    assert np.mean(same) > np.mean(other) + 0.05


@pytest.fixture
def two_voices(fsdd, tmp_path):
    """A manifest of 2 clips each of two FSDD speakers, and one of 2 other clips of each."""

    def manifest(name, indices):
        lines = ["path,text,speaker,id"]
        for who in ("george", "jackson"):
            for i in indices:
                lines.append(f"{fsdd}/recordings/{i}_{who}_0.wav,{DIGITS[i]},{who},{i}_{who}")
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    return manifest("probes.csv", (0, 1)), manifest("refs.csv", (7, 8))


@needs_extra
def test_evaluate_reports_speakers_per_set_and_voice(two_voices, tmp_path):
    probes, refs = two_voices
    synth = tmp_path / "synth"  # a "TTS" that returns the recordings: the same figures
    synth.mkdir()
    for it in read_corpus("manifest", probes):
        (synth / f"{it.id}.wav").write_bytes(it.path.read_bytes())
    out = tmp_path / "report.json"
    args = ["evaluate", "--format", "manifest", "--input", str(probes), "--quiet"]
    args += ["--asr", "pocketsphinx", "--out", str(out)]
    assert main([*args, "--synth", str(synth), "--references-per-voice", "1"]) == 0
    report = json.loads(out.read_text())
    section = report["speaker"]
    assert section["engine"] == "resemblyzer" and section["sha256"] == speaker.SHA256
    assert section["voices"] == ["george", "jackson"]
    assert section["reference_clips"] == {"george": 1, "jackson": 1}
    for name in ("original", "synthesis"):
        assert set(section["sets"][name]["voices"]) == {"george", "jackson"}
        assert section["sets"][name]["utterances"] == 2  # 2 - 1 reference, per voice
    assert section["sets"]["synthesis"]["sim"] == pytest.approx(section["sets"]["original"]["sim"])
    by_id = {u["id"]: u for u in report["utterances"]}
    assert "sim" not in by_id["0_george"]["original"]  # a reference is never judged
    judged = by_id["1_george"]["original"]
    assert judged["taken_for"] == max(judged["sims"], key=judged["sims"].get)
    assert judged["sim"] == judged["sims"]["george"] and set(judged["sims"]) == {
        "george",
        "jackson",
    }
    table = format_table(report).splitlines()
    at = next(i for i, line in enumerate(table) if line.startswith("Speaker: resemblyzer 0.1.4"))
    assert "original SIM" in table[at + 1] and "synthesis SIM" in table[at + 1]
    assert [line.split()[0] for line in table[at + 2 :]] == ["all", "george", "jackson"]

    assert main([*args, "--speaker-refs", str(refs)]) == 0
    section = json.loads(out.read_text())["speaker"]
    assert section["reference_clips"] == {"george": 2, "jackson": 2}
    assert section["sets"]["original"]["utterances"] == 4
    assert "synthesis" not in section["sets"]


@needs_extra
def test_overlapping_references_are_refused(two_voices, capsys):
    probes, _ = two_voices
    args = ["evaluate", "--format", "manifest", "--input", str(probes), "--quiet"]
    assert main([*args, "--asr", "pocketsphinx", "--speaker-refs", str(probes)]) == 2
    assert "must not overlap" in capsys.readouterr().err


def test_no_speaker_still_splits_the_error_rates_by_voice(two_voices, tmp_path):
    probes, _ = two_voices
    out = tmp_path / "report.json"
    args = ["evaluate", "--format", "manifest", "--input", str(probes), "--quiet"]
    assert main([*args, "--asr", "pocketsphinx", "--no-speaker", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "speaker" not in report
    voices = report["sets"]["original"]["voices"]
    assert {v: f["words"] for v, f in voices.items()} == {"george": 2, "jackson": 2}
    assert "ASR per voice: WER / CER" in format_table(report)


def test_without_the_extra_the_report_says_why(two_voices, monkeypatch):
    probes, _ = two_voices
    monkeypatch.setattr("codec_bridge.judge.evaluate.speaker_installed", lambda: False)
    items = [(it.id, it.text, it.path) for it in read_corpus("manifest", probes)[:1]]
    report = evaluate(items, asr="pocketsphinx", speakers=["george"])
    assert "resemblyzer is not installed" in report["speaker"]["skipped"]
    assert format_table(report).splitlines()[-1].startswith("Speaker: skipped")
