"""Corpus readers on tiny fake layouts (readers only look at names and text, not audio)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codec_bridge.cli import main
from codec_bridge.errors import BridgeError
from codec_bridge.readers import READERS, read_corpus
from speechcorpus.builder import write_corpus


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def by_id(items):
    return {it.id: it for it in items}


def test_ljspeech_columns_and_orphans(tmp_path):
    touch(tmp_path / "metadata.csv", "LJ1|Dr. Smith|Doctor Smith\nLJ2|No audio here|\nLJ4||\n")
    for uid in ("LJ1", "LJ3", "LJ4"):
        touch(tmp_path / "wavs" / f"{uid}.wav")
    items = by_id(read_corpus("ljspeech", tmp_path))
    assert items["LJ1"].text == "Dr. Smith" and items["LJ1"].normalized == "Doctor Smith"
    assert items["LJ1"].speaker == "LJ" and items["LJ1"].path == tmp_path / "wavs" / "LJ1.wav"
    assert not items["LJ2"].path.exists()  # transcript without audio
    assert items["LJ2"].normalized == "No audio here"  # falls back to the raw text
    assert items["LJ3"].text is None  # audio without transcript
    assert items["LJ4"].text == ""  # empty transcript
    assert list(items) == sorted(items)


class Silence:
    """A stand-in speechcorpus voice: a tenth of a second of silence per text."""

    spec = "espeak:en-us@140"

    def speak(self, text):
        return np.zeros(1600, np.float32), 16000


def test_ljspeech_speaker_is_the_voice_speechcorpus_recorded(tmp_path):
    out = write_corpus(tmp_path / "c", {"A-0": "One text.", "A-1": "Two texts."}, Silence())
    touch(out / "wavs" / "A-9.wav")  # audio without transcript: the same voice
    items = by_id(read_corpus("ljspeech", out))
    assert {it.speaker for it in items.values()} == {"espeak:en-us@140"} and len(items) == 3
    (out / "corpus.json").write_text('{"voice": ')
    with pytest.raises(BridgeError, match="corpus.json: not a JSON object"):
        read_corpus("ljspeech", out)
    (out / "corpus.json").unlink()  # no record of the voice: LJ Speech's own
    assert {it.speaker for it in read_corpus("ljspeech", out)} == {"LJ"}


def test_ljspeech_on_the_shared_subset(shared_data):
    items = read_corpus("ljspeech", shared_data / "ljspeech_lj001")
    assert len(items) == 186 and all(it.path.exists() and it.text for it in items)


def test_arctic_single_voice_and_folder_of_voices(tmp_path):
    for spk in ("bdl", "slt"):
        voice = tmp_path / f"cmu_us_{spk}_arctic"
        touch(
            voice / "etc" / "txt.done.data",
            '( arctic_a0001 "Author of the danger trail, Philip Steels, etc." )\n'
            '( arctic_a0002 "Not at this particular case, Tom." )\n',
        )
        touch(voice / "wav" / "arctic_a0001.wav")
        touch(voice / "wav" / "arctic_b0999.wav")
    one = by_id(read_corpus("arctic", tmp_path / "cmu_us_bdl_arctic"))
    assert set(one) == {"bdl_arctic_a0001", "bdl_arctic_a0002", "bdl_arctic_b0999"}
    assert one["bdl_arctic_a0001"].text.startswith("Author of the danger trail")
    assert one["bdl_arctic_a0001"].speaker == "bdl"
    assert one["bdl_arctic_b0999"].text is None
    both = by_id(read_corpus("arctic", tmp_path))
    assert len(both) == 6 and both["slt_arctic_a0002"].speaker == "slt"


def test_libritts_normalized_original_and_speaker_from_path(tmp_path):
    d = tmp_path / "train-clean-100" / "103" / "1241"
    touch(d / "103_1241_000000_000001.wav")
    touch(d / "103_1241_000000_000001.normalized.txt", "Mister Smith said so.")
    touch(d / "103_1241_000000_000001.original.txt", "Mr. Smith said so.")
    touch(d / "103_1241_000000_000002.wav")
    touch(d / "103_1241_000000_000003.normalized.txt", "No audio.")
    items = by_id(read_corpus("libritts", tmp_path))
    first = items["103_1241_000000_000001"]
    assert (first.text, first.normalized, first.speaker) == (
        "Mr. Smith said so.",
        "Mister Smith said so.",
        "103",
    )
    assert items["103_1241_000000_000002"].text is None
    assert not items["103_1241_000000_000003"].path.exists()


@pytest.mark.parametrize("layout", ["0.80", "0.92"])
def test_vctk_both_releases(tmp_path, layout):
    touch(tmp_path / "txt" / "p225" / "p225_001.txt", "Please call Stella.\n")
    touch(tmp_path / "txt" / "p225" / "p225_002.txt", "Ask her.\n")
    if layout == "0.80":
        touch(tmp_path / "wav48" / "p225" / "p225_001.wav")
        touch(tmp_path / "wav48" / "p315" / "p315_001.wav")
    else:
        root = tmp_path / "wav48_silence_trimmed"
        for mic in ("mic1", "mic2"):
            touch(root / "p225" / f"p225_001_{mic}.flac")
            touch(root / "p315" / f"p315_001_{mic}.flac")
    items = by_id(read_corpus("vctk", tmp_path))
    assert set(items) == {"p225_001", "p225_002", "p315_001"}
    assert items["p225_001"].text == "Please call Stella." and items["p225_001"].speaker == "p225"
    assert items["p225_001"].path.exists() and "mic2" not in items["p225_001"].path.name
    assert not items["p225_002"].path.exists()
    assert items["p315_001"].text is None and items["p315_001"].speaker == "p315"


def test_fsdd_digit_words(tmp_path):
    for name in ("7_jackson_3.wav", "0_george_0.wav", "x_bad_1.wav"):
        touch(tmp_path / "recordings" / name)
    items = by_id(read_corpus("fsdd", tmp_path))
    assert (items["7_jackson_3"].text, items["7_jackson_3"].speaker) == ("seven", "jackson")
    assert items["0_george_0"].text == "zero" and items["x_bad_1"].text is None


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_manifest_relative_paths_and_optional_fields(tmp_path, suffix):
    rows = [
        {"path": "a/one.wav", "text": "One.", "speaker": "s1"},
        {"path": str(tmp_path / "abs.flac"), "text": "Two.", "id": "two", "normalized": "two"},
    ]
    if suffix == ".jsonl":
        body = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        sep = "\t" if suffix == ".tsv" else ","
        cols = ["path", "text", "speaker", "id", "normalized"]
        body = (
            sep.join(cols)
            + "\n"
            + "".join(sep.join(r.get(c, "") for c in cols) + "\n" for r in rows)
        )
    manifest = touch(tmp_path / "sub" / f"list{suffix}", body)
    items = by_id(read_corpus("manifest", manifest))
    assert items["a/one"].path == tmp_path / "sub" / "a" / "one.wav"
    assert items["a/one"].speaker == "s1" and items["a/one"].normalized is None
    assert items["two"].path == tmp_path / "abs.flac" and items["two"].normalized == "two"


def test_manifest_without_required_columns(tmp_path):
    manifest = touch(tmp_path / "m.csv", "file,sentence\nx.wav,hi\n")
    with pytest.raises(BridgeError, match=r"m\.csv:2: .*'path' and 'text'"):
        read_corpus("manifest", manifest)


@pytest.mark.parametrize("fmt", sorted(set(READERS) - {"manifest"}))
def test_wrong_layout_is_one_line_error(tmp_path, fmt):
    touch(tmp_path / "readme.txt", "not a corpus")
    with pytest.raises(BridgeError) as e:
        read_corpus(fmt, tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)


def test_missing_input_and_unknown_format(tmp_path):
    with pytest.raises(BridgeError, match="does not exist"):
        read_corpus("ljspeech", tmp_path / "nope")
    with pytest.raises(BridgeError, match="unknown corpus format 'timit'"):
        read_corpus("timit", tmp_path)


LATIN1 = "caf\xe9".encode("latin-1")


@pytest.mark.parametrize(
    ("fmt", "layout", "bad"),
    [
        ("ljspeech", {"metadata.csv": b"LJ1|fine|fine\nLJ2|" + LATIN1 + b"|\n"}, "metadata.csv:2"),
        ("arctic", {"etc/txt.done.data": b'( a0001 "' + LATIN1 + b'" )\n'}, "txt.done.data:1"),
        ("libritts", {"1/2/1_2_3.normalized.txt": b"ok\n" + LATIN1}, "1_2_3.normalized.txt:2"),
        ("vctk", {"txt/p225/p225_001.txt": LATIN1}, "p225_001.txt:1"),
        ("manifest", {"list.jsonl": b'{"path": "a.wav", "text": "' + LATIN1 + b'"}\n'}, "jsonl:1"),
    ],
)
def test_non_utf8_transcripts_name_file_and_line(tmp_path, capsys, fmt, layout, bad):
    for name, data in layout.items():
        touch(tmp_path / name).write_bytes(data)
    where = tmp_path / "list.jsonl" if fmt == "manifest" else tmp_path
    rc = main(["extract", "--format", fmt, "--input", str(where), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"{bad}: not UTF-8 (byte 0xe9); re-encode the file as UTF-8" in err
    assert not (tmp_path / "o").exists()


def test_latin1_csv_manifest_from_the_issue(tmp_path, capsys):
    (tmp_path / "latin1.csv").write_bytes(b"path,text\ngood.wav," + LATIN1 + b"\n")
    rc = main(
        ["extract", "--format", "manifest", "--input", str(tmp_path / "latin1.csv")]
        + ["--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == (
        f"codec_bridge extract: error: {tmp_path / 'latin1.csv'}:2: not UTF-8 (byte 0xe9); "
        "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_manifest_with_a_utf8_byte_order_mark(tmp_path, suffix):
    if suffix == ".jsonl":
        body = '{"path": "a.wav", "text": "café"}\n'
    else:
        sep = "\t" if suffix == ".tsv" else ","
        body = f"path{sep}text\na.wav{sep}café\n"
    manifest = tmp_path / f"bom{suffix}"
    manifest.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    (item,) = read_corpus("manifest", manifest)
    assert (item.id, item.text) == ("a", "café")
