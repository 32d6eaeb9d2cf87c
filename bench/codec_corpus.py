"""eSpeak NG corpora for training and judging a codec offline, in LJ Speech layout.

``train``: the demo's template sentences, half in the demo's voice (en-us, rate 165) and half
in other English voices, variants and rates, so the codec does not learn one voice only.
``heldout``: sentences the training corpus does not have, in voices, rates and sample rates
it never heard (the issue's "voices it was not trained on"). Both are deterministic.

    python bench/codec_corpus.py train /tmp/codec_corpus --n 600
    python bench/codec_corpus.py heldout /tmp/codec_heldout --n 40
"""

from __future__ import annotations

import argparse
from itertools import groupby
from pathlib import Path

from jtts.demo_corpus import sentences
from speechcorpus.builder import write_metadata, write_wavs

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["train", "heldout"])
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=None)
    a = ap.parse_args()
    if a.kind == "train":
        print(train_corpus(a.out, a.n or 600))
    else:
        print(heldout_corpus(a.out, a.n or 40))


if __name__ == "__main__":
    main()
