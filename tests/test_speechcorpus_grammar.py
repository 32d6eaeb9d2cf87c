"""The demo corpus: a deterministic grammar spoken by eSpeak NG in LJ Speech layout."""

import csv

import soundfile as sf

from speechcorpus import grammar
from speechcorpus.espeak import Espeak


def test_sentences_are_distinct_and_deterministic():
    a = grammar.sentences(300, seed=0)
    assert len(set(a)) == 300
    assert a == grammar.sentences(300, seed=0)
    assert a != grammar.sentences(300, seed=1)
    assert all(s[0].isupper() and s.endswith(".") for s in a)


def test_held_out_sentences_are_unseen():
    held = grammar.held_out(3, seed=0, corpus_size=300)
    assert len(held) == 3
    assert not set(held) & set(grammar.sentences(300, seed=0))


def test_build_corpus_in_ljspeech_layout(tmp_path):
    out = grammar.build_corpus(tmp_path / "c", n=4)
    rows = list(csv.reader(open(out / "metadata.csv"), delimiter="|"))
    assert [r[0] for r in rows] == [f"DEMO-{i:04d}" for i in range(4)]
    assert [r[1] for r in rows] == grammar.sentences(4)
    for r in rows:
        audio, sr = sf.read(out / "wavs" / f"{r[0]}.wav")
        assert sr == 22050 and audio.ndim == 1 and len(audio) > sr // 2
    mtime = (out / "metadata.csv").stat().st_mtime_ns
    grammar.build_corpus(out, n=4)
    assert (out / "metadata.csv").stat().st_mtime_ns == mtime


def test_the_grammar_loads_in_pocketsphinx_and_judges_a_recording(tmp_path):
    from codec_bridge.judge.asr import Sphinx

    jsgf = tmp_path / "demo.gram"
    jsgf.write_text(grammar.jsgf())
    engine = Espeak()
    text = "The baker wanted the red lamp at the market."  # lost without dither
    asr = Sphinx(jsgf=jsgf)
    assert (
        asr.transcribe(engine.synth(text), engine.sample_rate) == text.lower().replace(",", "")[:-1]
    )
