"""eSpeak NG corpora for training and judging a codec offline, in LJ Speech layout.

``train``: the demo's template sentences, half in the demo's voice (en-us, rate 165) and half
in other English voices, variants and rates, so the codec does not learn one voice only.
``heldout``: sentences the training corpus does not have, in voices, rates and sample rates
it never heard (the issue's "voices it was not trained on"). Both are deterministic.
``voices`` / ``voices-heldout``: the corpus of the one codec for every voice jtts speaks (issue
25): GCIDE sentences (speechcorpus's train split; held out: its held-out sentences that share
their words with train) in natural (hibari, piper), formant (flite, eSpeak) voices, and LJ
Speech's human voice (LJ001-0001 to -0150 train it; -0151 to -0186 are held out), listed in
``manifest.csv`` (path, text, speaker, id); the held-out set adds voices the codec never heard.

    python bench/codec_corpus.py train /tmp/codec_corpus --n 600
    python bench/codec_corpus.py heldout /tmp/codec_heldout --n 40
    python bench/codec_corpus.py voices codecs/corpora/voices --lj ../shared/data/ljspeech_lj001
"""

from __future__ import annotations

import argparse
import csv
from itertools import groupby
from pathlib import Path

from codec_bridge.readers import read_corpus
from speechcorpus import sentences as gcide
from speechcorpus.builder import write_corpus, write_metadata, write_wavs
from speechcorpus.grammar import sentences
from speechcorpus.sources import read_source

# (voice, words per minute, sample rate the file is written at; None: eSpeak's 22050)
TRAIN_VOICES = [
    ("en-us", 165, None),
    ("en-us", 165, None),
    ("en-us", 165, None),
    ("en-us", 140, None),
    ("en-us+f3", 180, None),
    ("en", 165, None),
]
HELDOUT_VOICES = [
    ("en-gb-scotland", 130, None),
    ("en-029", 200, None),
    ("en-us+m3", 165, None),
    ("en-us", 120, None),
    ("en-us", 220, None),
    ("en-us", 165, 16000),
    ("en-us", 165, 44100),
]
TRAIN_SEED, HELDOUT_SEED = 0, 101


def _write(out: Path, rows: list[tuple[str, str, tuple]]) -> Path:
    """Speak ``(id, text, voice)`` rows into ``out`` (metadata.csv + wavs/), one voice at a time:
    eSpeak holds one voice per process."""
    for voice, group in groupby(rows, key=lambda row: row[2]):
        name, rate, sr = voice
        write_wavs(out, {utt_id: text for utt_id, text, _ in group}, f"espeak:{name}@{rate}", sr)
    write_metadata(out, {utt_id: text for utt_id, text, _ in rows})
    return out


def _by_voice(row: tuple) -> tuple:
    """Rows of one voice together: `_write` then loads each voice once."""
    (name, rate, sr), utt_id = row[2], row[0]
    return name, rate, sr or 0, utt_id


def _voice_id(voice: tuple) -> str:
    name, rate, sr = voice
    return f"{name.replace('+', '_')}-r{rate}" + (f"-{sr // 1000}k" if sr else "")


def train_corpus(out: str | Path, n: int = 600) -> Path:
    """``n`` template sentences, voices cycling through `TRAIN_VOICES`."""
    texts = sentences(n, TRAIN_SEED)
    rows = [
        (f"TR-{i:04d}-{_voice_id(v)}", t, v)
        for i, t in enumerate(texts)
        for v in [TRAIN_VOICES[i % len(TRAIN_VOICES)]]
    ]
    return _write(Path(out), sorted(rows, key=_by_voice))


def heldout_corpus(out: str | Path, n: int = 40, exclude: int = 600) -> Path:
    """``n`` sentences not among the first ``exclude`` training ones, voices cycling through
    `HELDOUT_VOICES`."""
    seen = set(sentences(exclude, TRAIN_SEED))
    texts = [t for t in sentences(n + exclude, HELDOUT_SEED) if t not in seen][:n]
    rows = [
        (f"HO-{i:04d}-{_voice_id(v)}", t, v)
        for i, t in enumerate(texts)
        for v in [HELDOUT_VOICES[i % len(HELDOUT_VOICES)]]
    ]
    return _write(Path(out), sorted(rows, key=_by_voice))


# (voice, training sentences); the held-out set has VOICE_HELDOUT sentences of each.
CODEC_VOICES = [
    ("hibari:heart", 300),
    ("piper:joe", 150),
    ("flite:kal16", 100),
    ("flite:awb", 100),
    ("flite:rms", 100),
    ("flite:slt", 100),
    ("espeak:en-us", 100),
    ("espeak:en-us+f3@140", 100),
]
UNHEARD_VOICES = ["flite:kal", "espeak:en-gb-scotland@130", "espeak:en-029@200"]
VOICE_HELDOUT = 10
LJ_TRAIN = 150  # LJ001-0001 .. LJ001-0150; the rest of LJ001 is held out


def voices_corpus(out: str | Path, lj: str | Path, heldout: bool = False) -> Path:
    """``out``/manifest.csv over one folder per voice and the LJ001 clips of one side."""
    out = Path(out)
    parts = gcide.split(gcide.clean(read_source("gcide")), 500, 250, 0)
    pool = parts.heldout[parts.n_unseen :] if heldout else parts.train
    plan = [(v, VOICE_HELDOUT if heldout else n) for v, n in CODEC_VOICES]
    plan += [(v, VOICE_HELDOUT) for v in UNHEARD_VOICES] if heldout else []
    rows, start = [], 0
    for voice, n in plan:
        slug = voice.replace(":", "_").replace("+", "_").replace("@", "_r")
        texts = {f"{slug}-{i:04d}": t for i, t in enumerate(pool[start : start + n])}
        start += n
        write_corpus(out / slug, texts, voice)
        rows += [(f"{slug}/wavs/{i}.wav", t, voice, i) for i, t in texts.items()]
    for item in read_corpus("ljspeech", lj):
        if (int(item.id.split("-")[1]) > LJ_TRAIN) == heldout:
            rows.append((str(Path(item.path).resolve()), item.text, "ljspeech", item.id))
    with open(out / "manifest.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("path", "text", "speaker", "id"), *rows])
    return out / "manifest.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["train", "heldout", "voices", "voices-heldout"])
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--lj", default="../shared/data/ljspeech_lj001", help="an LJ Speech folder")
    a = ap.parse_args()
    if a.kind == "train":
        print(train_corpus(a.out, a.n or 600))
    elif a.kind == "heldout":
        print(heldout_corpus(a.out, a.n or 40))
    else:
        print(voices_corpus(a.out, a.lj, heldout=a.kind == "voices-heldout"))


if __name__ == "__main__":
    main()
