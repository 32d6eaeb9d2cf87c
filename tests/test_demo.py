"""The demo's report: loss curves and two spectrograms from a run directory."""

import json

import numpy as np
import pytest
import soundfile as sf
from synthetic import make_store

from codec_bridge.format import CodeStore, save_codes
from jtts import demo
from jtts.rundir import RunDir
from speechcorpus import grammar


def test_report_has_curves_and_spectrograms(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "train/loss": 7.0 - s / 10} for s in range(1, 30)]
    gains = {"eval/text_gain": 0.4, "eval/text_gain_cb0": 1.2, "eval/null_gain": 0.5}
    gains |= {"eval/attn_focus": 0.7, "eval/attn_monotonicity": 0.9}
    rows += [{"step": 30, "eval/loss": 4.0, "eval/unigram": 5.0, **gains}]
    RunDir(run).metrics.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for step in (10, 30):
        path = RunDir(run).attention(step)
        path.parent.mkdir(exist_ok=True)
        np.save(path, np.eye(8, 40, dtype=np.float16) * step)
    image, step = demo.latest_attention(run)
    assert step == 30 and image.max() == 30
    assert demo.reading_summary(run) == {"step": 30, **{k[5:]: v for k, v in gains.items()}}
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 22050)
    sf.write(tmp_path / "b.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), 24000)
    wavs = [
        ("eSpeak", tmp_path / "a.wav"),
        ("codec", tmp_path / "a.wav"),
        ("jtts", tmp_path / "b.wav"),
    ]
    demo.write_report(run, wavs, tmp_path / "report.png", "set  wer\noriginal 0.5")
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    room = 2 * 7 * 1.3 / 72 + 0.45  # the table's 2 lines and an x-axis label, in inches
    height = int.from_bytes(png[20:24], "big")  # 3 panels + 3 spectrograms + the table
    assert height == pytest.approx(100 * (6 + 3 * 3 + room), abs=1)
    shipped = tmp_path / "shipped"  # a shipped model keeps no metrics: the spectrograms alone
    shipped.mkdir()
    demo.write_report(shipped, wavs, tmp_path / "alone.png")
    assert int.from_bytes((tmp_path / "alone.png").read_bytes()[20:24], "big") == 100 * 3 * 3


def test_speaking_summary_counts_capped_rows_and_durations_off_by_more_than_20pct():
    def utt(seconds, ratio):
        return {"seconds": seconds, "synthesis": {"duration_ratio": ratio}}

    report = {"utterances": [utt(3.0, 1.0), utt(2.0, 4.0), utt(3.0, 0.7), utt(2.5, 1.19)]}
    summary = demo.speaking_summary(report, cap_s=8.0)  # the second row hit the 8 s cap
    assert summary == {"utterances": 4, "ended": 0.75, "duration_within_20pct": 0.5}


def test_spectrogram_peaks_at_the_tone(tmp_path):
    t = np.arange(24000) / 24000
    sf.write(tmp_path / "tone.wav", np.sin(2 * np.pi * 3000 * t), 24000)
    spec_FxT, sr = demo._spectrogram(tmp_path / "tone.wav")
    peak_hz = spec_FxT.mean(axis=1).argmax() * sr / 1024
    assert sr == 24000 and abs(peak_hz - 3000) < 30


def test_code_match_reads_the_sampler_codes_against_the_store_by_id(tmp_path):
    store = make_store(tmp_path / "heldout_store", 4, n_codebooks=2, shards=1)
    ids = CodeStore.open(store).ids
    synth = tmp_path / "synth_codes"
    synth.mkdir()
    for i, uid in enumerate(ids):  # row 1 says row 2's sentence; the others their own
        said = CodeStore.open(store).get(ids[2] if i == 1 else uid).codes
        save_codes(synth / f"{uid}.npy", np.repeat(said, 2, axis=1), {})
    table = demo.code_match(synth, store, ids)
    own = [r["own"] for r in table["rows"]]
    assert own[0] == own[2] == own[3] == 1.0 and own[1] < 0.1
    assert table["rows"][1]["mismatched"] == 1.0  # row 1 is paired with row 2's recording
    assert table["closer_to_own"] == 0.75


def test_unseen_sentences_are_spoken_under_the_names_the_sampler_gives(tmp_path):
    ids, heldout, texts = demo.unseen_sentences(tmp_path, 3, corpus_size=40)
    lines = texts.read_text().splitlines()
    assert ids == ["0001", "0002", "0003"] and len(lines) == 3
    assert not set(lines) & set(grammar.sentences(40, 0))
    rows = (heldout / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert [r.split("|")[:2] for r in rows] == [[i, t] for i, t in zip(ids, lines, strict=True)]
    assert all((heldout / "wavs" / f"{i}.wav").exists() for i in ids)
