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
from codec_bridge.judge.evaluate import error_rates, nearest_own_text
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
