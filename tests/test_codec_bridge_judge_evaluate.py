"""`codec_bridge evaluate`: error rates that match hand counts, an ASR that understands clean
eSpeak speech and not noise, and a report that sets every figure beside its references."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from codec_bridge.cli import main
from codec_bridge.judge.asr import Sphinx, words_of
from codec_bridge.judge.evaluate import error_rates, evaluate, format_table, nearest_own_text
from speechcorpus.espeak import Espeak

SENTENCES = [
    "The old man found the red box near the river.",
    "A young girl painted the wooden boat in the morning.",
]


def test_error_rates_match_hand_counts():
    # one substitution (found -> round) and one deletion (red): 2 of 7 words
    r = error_rates(["The old man found the red box."], ["the old man round the box"])
    assert r["wer"] == pytest.approx(2 / 7) and r["words"] == 7
    # corpus level: errors over all reference words, not a mean of rates
    r = error_rates(["a b c d", "e f"], ["a b c d", ""])
    assert r["wer"] == pytest.approx(2 / 6)
    assert error_rates(["abc"], ["abd"])["cer"] == pytest.approx(1 / 3)
    assert error_rates(["Near the river, a boat."], ["near the river a boat"])["wer"] == 0


def test_nearest_own_text_needs_a_strictly_nearest_match():
    refs = ["the red box", "the old man", "a wooden boat"]
    assert nearest_own_text(refs, ["the red fox", "the old man", "wooden boat"]) == 1
    assert nearest_own_text(refs, ["the old man", "the old man", ""]) == pytest.approx(1 / 3)


class ScriptedASR:
    """A stand-in judge whose transcript is set by the clip's length in samples."""

    engine, normalizer, vocabulary, unknown = "scripted", "basic", "none", []

    def __init__(self, hyps: dict[int, str]):
        self.hyps = hyps

    def transcribe(self, wav, sample_rate):
        return self.hyps[wav.shape[-1]]

    def judge(self):
        return {}


def test_wer_per_voice_sums_each_voices_errors(tmp_path, monkeypatch):
    # (text, voice, original transcript, synthesis transcript)
    plan = [
        ("The red box.", "a", "the red fox", "the red box"),  # 1 of 3 words wrong
        ("A b c d.", "a", "a b c d", "a b c d"),
        ("The old man.", "b", "old man", "the old men"),  # 1 deletion; 1 substitution
        ("Near the river.", "b", "", "near the river"),  # 3 deletions
        ("One two.", None, "one two", "one too"),  # no voice: only in the totals
    ]
    (tmp_path / "synth").mkdir()
    items, hyps = [], {}
    for i, (text, _, original, synthesis) in enumerate(plan):
        sf.write(tmp_path / f"u{i}.wav", np.zeros(100 + i, np.float32), 16000)
        sf.write(tmp_path / "synth" / f"u{i}.wav", np.zeros(200 + i, np.float32), 16000)
        items.append((f"u{i}", text, tmp_path / f"u{i}.wav"))
        hyps |= {100 + i: original, 200 + i: synthesis}
    monkeypatch.setattr("codec_bridge.judge.evaluate.recognizer", lambda *a, **k: ScriptedASR(hyps))
    speakers = [voice for _, voice, _, _ in plan]
    report = evaluate(items, synth_dir=tmp_path / "synth", speakers=speakers, speaker_judge=False)
    original, synthesis = report["sets"]["original"], report["sets"]["synthesis"]
    assert original["wer"] == pytest.approx(5 / 15) and synthesis["wer"] == pytest.approx(2 / 15)
    assert set(original["voices"]) == {"a", "b"}
    a, b = original["voices"]["a"], original["voices"]["b"]
    assert a["wer"] == pytest.approx(1 / 7) and a["words"] == 7 and a["utterances"] == 2
    assert a["cer"] == pytest.approx(1 / 18)  # "the red box" / "a b c d": 11 + 7 characters
    assert b["wer"] == pytest.approx(4 / 6)  # not the mean of 1/3 and 3/3
    assert synthesis["voices"]["a"]["wer"] == 0
    assert synthesis["voices"]["b"]["wer"] == pytest.approx(1 / 6)
    assert [u["speaker"] for u in report["utterances"]] == speakers
    lines = format_table(report).splitlines()
    at = lines.index("ASR per voice: WER / CER")
    assert lines[at + 1].split() == ["voice", "original", "synthesis"]
    cer = {name: f"{s['cer']:.3f}" for name, s in report["sets"].items()}
    assert " ".join(lines[at + 2].split()) == (
        f"all 0.333 / {cer['original']} 0.133 / {cer['synthesis']}"
    )
    # synthesis of b: man -> men, 1 of 11 + 14 characters
    assert " ".join(lines[at + 4].split()) == f"b 0.667 / {b['cer']:.3f} 0.167 / 0.040"
    one_voice = evaluate(items, speakers=["a"] * 5, speaker_judge=False)
    assert "voices" not in one_voice["sets"]["original"]
    assert "per voice" not in format_table(one_voice)


@pytest.fixture(scope="module")
def espeak_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "corpus"
    (root / "wavs").mkdir(parents=True)
    engine = Espeak()
    lines = []
    for i, text in enumerate(SENTENCES):
        sf.write(root / "wavs" / f"S{i}.wav", engine.synth(text), engine.sample_rate)
        lines.append(f"S{i}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_asr_understands_espeak_and_not_noise(espeak_corpus):
    asr = Sphinx(words_of(SENTENCES))
    refs, hyps = [], []
    for i, text in enumerate(SENTENCES):
        wav, sr = sf.read(espeak_corpus / "wavs" / f"S{i}.wav", dtype="float32")
        refs.append(text)
        hyps.append(asr.transcribe(wav, sr))
    assert error_rates(refs, hyps)["wer"] <= 0.5, hyps
    noise = 0.1 * np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32)
    assert error_rates(SENTENCES[:1], [asr.transcribe(noise, 16000)])["wer"] >= 0.8


def test_cli_report_sets_resynthesis_and_synthesis_beside_originals(
    espeak_corpus, tmp_path, capsys
):
    synth = tmp_path / "synth"
    shutil.copytree(espeak_corpus / "wavs", synth)  # a "TTS" that returns the recordings
    out = tmp_path / "report.json"
    args = ["evaluate", "--format", "ljspeech", "--input", str(espeak_corpus), "--quiet"]
    args += ["--asr", "pocketsphinx"]
    resynth = tmp_path / "resynth"
    rc = main(
        [*args, "--weights", "untrained", "--synth", str(synth), "--out", str(out)]
        + ["--resynthesis-out", str(resynth)]
    )
    assert rc == 0
    for uid in ("S0", "S1"):  # the resynthesis written is the one judged: same length
        audio, rate = sf.read(resynth / f"{uid}.wav")
        ref, ref_rate = sf.read(espeak_corpus / "wavs" / f"{uid}.wav")
        assert rate == 24000 and len(audio) / rate == pytest.approx(len(ref) / ref_rate, abs=0.01)
    report = json.loads(out.read_text())
    sets = report["sets"]
    assert set(sets) == {"original", "resynthesis", "synthesis"}
    assert sets["synthesis"]["wer"] == sets["original"]["wer"]
    assert sets["synthesis"]["duration_ratio"] == pytest.approx(1.0)
    assert sets["resynthesis"]["duration_ratio"] == pytest.approx(1.0, abs=0.02)
    assert sets["resynthesis"]["log_mel_distance"] > 0.5  # untrained codec: far from speech
    assert sets["resynthesis"]["si_snr"] < 5
    assert report["asr"]["engine"] == "pocketsphinx" and "closed" in report["asr"]["vocabulary"]
    assert "pocketsphinx" in report["asr"]["model"] and report["asr"]["normalizer"] == "basic"
    assert [u["id"] for u in report["utterances"]] == ["S0", "S1"]
    assert set(report["ratios"]) == {
        "resynthesis_over_original",
        "synthesis_over_original",
        "synthesis_over_resynthesis",
    }
    (synth / "S1.wav").unlink()
    capsys.readouterr()
    assert main([*args, "--synth", str(synth)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "S1.wav" in err
