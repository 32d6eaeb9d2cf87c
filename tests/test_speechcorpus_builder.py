"""The LJ Speech builder: resumable after a kill, never a partial file, and its CLI."""

import json

import numpy as np
import pytest
import soundfile as sf

from speechcorpus import builder, sentences
from speechcorpus.__main__ import main

SR = 16000


class Tone:
    """A stand-in voice: a tone as long as the text, so each wav's content is known."""

    spec = "tone:test"

    def __init__(self, fail_after=None):
        self.spoken, self.fail_after = [], fail_after

    def speak(self, text):
        if self.fail_after is not None and len(self.spoken) == self.fail_after:
            raise KeyboardInterrupt  # the build is killed here
        self.spoken.append(text)
        return expected(text), SR


def expected(text):
    t = np.arange(len(text) * 160) / SR
    return (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


TEXTS = {
    f"ID-{i}": f"Sentence number {['one', 'two', 'three', 'four', 'five'][i]} here."
    for i in range(5)
}


def _files(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.wav"))}


def test_layout_and_contents(tmp_path):
    out = builder.write_corpus(tmp_path / "c", TEXTS, Tone())
    rows = (out / "metadata.csv").read_text().splitlines()
    assert rows == [f"{i}|{t}|{t}" for i, t in TEXTS.items()]
    assert json.loads((out / "corpus.json").read_text()) == {"voice": "tone:test"}
    for utt_id, text in TEXTS.items():
        wav, sr = sf.read(out / "wavs" / f"{utt_id}.wav", dtype="float32")
        assert sr == SR
        np.testing.assert_allclose(wav, expected(text), atol=1 / 32768)
    assert builder.audio_hours(out) == pytest.approx(
        sum(len(t) for t in TEXTS.values()) / 100 / 3600
    )


def test_a_killed_build_resumes_to_the_same_files(tmp_path):
    whole = builder.write_corpus(tmp_path / "whole", TEXTS, Tone())
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        builder.write_corpus(out, TEXTS, Tone(fail_after=3))
    assert not (out / "metadata.csv").exists()
    assert sorted(p.name for p in (out / "wavs").iterdir()) == ["ID-0.wav", "ID-1.wav", "ID-2.wav"]
    (out / "wavs" / "ID-3.wav.partial").write_bytes(b"RIFF half a file")  # killed mid-write
    again = Tone()
    builder.write_corpus(out, TEXTS, again)
    assert again.spoken == [TEXTS["ID-3"], TEXTS["ID-4"]]
    assert _files(out) == _files(whole)
    assert (out / "metadata.csv").read_bytes() == (whole / "metadata.csv").read_bytes()
    assert not list(out.rglob("*.partial"))
    finished = Tone()
    builder.write_corpus(out, TEXTS, finished)
    assert finished.spoken == []


def test_a_changed_text_is_spoken_again(tmp_path):
    out = builder.write_corpus(tmp_path / "c", TEXTS, Tone())
    changed = {**TEXTS, "ID-2": "Another sentence entirely now."}
    voice = Tone()
    builder.write_corpus(out, changed, voice)
    assert voice.spoken == ["Another sentence entirely now."]
    wav, _ = sf.read(out / "wavs" / "ID-2.wav", dtype="float32")
    assert len(wav) == len(expected("Another sentence entirely now."))


def test_resampling_and_bad_text(tmp_path):
    out = builder.write_corpus(tmp_path / "c", {"A": "Four words of text."}, Tone(), 8000)
    info = sf.info(out / "wavs" / "A.wav")
    assert info.samplerate == 8000 and info.frames == len(expected("Four words of text.")) // 2
    with pytest.raises(ValueError, match="cannot go into metadata.csv"):
        builder.write_corpus(tmp_path / "d", {"B": "A | B"}, Tone())


@pytest.fixture
def source(tmp_path):
    rng = np.random.default_rng(0)
    common = ["the", "a", "man", "dog", "saw", "red", "big", "house", "ran", "to", "old", "sea"]
    lines = {
        " ".join(rng.choice(common, 6)).capitalize()
        + (f" zq{'abcdefghij'[i % 10]}{i // 10 * 'k'}" if i % 3 == 0 else "")
        + "."
        for i in range(120)
    }
    path = tmp_path / "text.txt"
    path.write_text("\n".join(sorted(lines)) + "\n")
    return str(path)


def test_build_split_reports_and_guards_its_folder(tmp_path, source, monkeypatch):
    monkeypatch.setattr(builder, "load_voice", lambda spec: Tone())
    out = tmp_path / "heldout"
    report = builder.build_split(out, "tone:test", "unseen", 4, source, 0, 10, 5)
    parts = sentences.split(sentences.clean(open(source).read().splitlines()), 10, 5, 0)
    rows = (out / "metadata.csv").read_text().splitlines()
    assert [r.split("|")[1] for r in rows] == parts.unseen[:4]
    assert [r.split("|")[0] for r in rows] == [f"HO-{i:05d}" for i in range(4)]
    assert report["unseen_word_share"] == sentences.unseen_share(parts.unseen[:4], parts.train) > 0
    assert json.loads((out / "corpus.json").read_text()) == report
    assert builder.read_manifest(out)["voice"] == "tone:test"
    assert builder.build_split(out, "tone:test", "unseen", 4, source, 0, 10, 5)["spoken_now"] == 0
    with pytest.raises(ValueError, match="holds another corpus"):
        builder.build_split(out, "tone:test", "unseen", 4, source, 1, 10, 5)


def test_cli(tmp_path, source, capsys):
    assert main(["split", "--source", source, "--heldout", "10", "--unseen", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["heldout"] == 10 and report["unseen"] == 5
    assert report["unseen_word_share_unseen"] > report["unseen_word_share_heldout"] > 0
    args = ["build", "--voice", "nope:x", "--source", source, "--out", str(tmp_path / "o")]
    assert main([*args, "--heldout", "10", "--unseen", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: voice 'nope:x'") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_template_sentences_join_the_train_split(tmp_path, source, monkeypatch):
    """`grammar=N` adds the grammar's first N sentences (ids GR-…) to the train split's own,
    spoken by the same voice; an older corpus without the setting still resumes; any other
    split refuses them."""
    from speechcorpus import grammar

    monkeypatch.setattr(builder, "load_voice", lambda spec: Tone())
    out = tmp_path / "train"
    report = builder.build_split(out, "tone:test", "train", 3, source, 0, 10, 5, grammar=4)
    rows = dict(r.split("|")[:2] for r in (out / "metadata.csv").read_text().splitlines())
    assert [t for i, t in rows.items() if i.startswith("GR-")] == grammar.sentences(4, 0)
    assert sum(i.startswith("TR-") for i in rows) == 3 and report["sentences"] == 7
    older = {k: v for k, v in builder.read_manifest(out).items() if k != "grammar"}
    builder.write_manifest(out, older)
    assert builder.build_split(out, "tone:test", "train", 3, source, 0, 10, 5)["sentences"] == 3
    with pytest.raises(ValueError, match="train split only"):
        builder.build_split(tmp_path / "h", "tone:test", "heldout", 3, source, 0, 10, 5, grammar=4)


def test_text_writes_a_splits_sentences_one_a_line(tmp_path, source, capsys):
    """`text`: the train split past the sentences a corpus speaks, for a phoneme head; never
    a held-out split."""
    out = tmp_path / "more" / "text.txt"
    args = ["--source", source, "--heldout", "10", "--unseen", "5", "--out", str(out)]
    assert main(["text", *args, "--start", "3", "--n", "4"]) == 0
    parts = sentences.split(sentences.clean(open(source).read().splitlines()), 10, 5, 0)
    assert out.read_text().splitlines() == parts.train[3:7]
    assert json.loads(capsys.readouterr().out)["sentences"] == 4
    with pytest.raises(SystemExit):  # held-out sentences are the benchmarks' own
        main(["text", *args, "--split", "unseen"])
