"""Speech corpora on disk in LJ Speech layout (``metadata.csv`` rows ``id|text|text`` +
``wavs/<id>.wav``, 16-bit PCM), written so that a killed build resumes where it stopped.

A wav is written to ``<id>.wav.partial`` and renamed into place, so a finished name is always a
whole file, then its text is appended to ``spoken.log``; a re-run speaks only the ids that have
no wav of the same text, and writes ``metadata.csv`` (also by rename) once every wav is there.
``corpus.json`` (`MANIFEST`) names the one voice of the folder, so readers of the layout know
the speaker, and for a `build_split` folder its settings, so a re-run with other settings
stops instead of mixing two corpora."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from speechcorpus import sentences as sentences_lib
from speechcorpus.sources import read_source
from speechcorpus.voices import Voice, load_voice

ID_PREFIX = {"train": "TR", "heldout": "HO", "unseen": "HO"}
JOURNAL = "spoken.log"  # id|text of each wav once it is whole, for resuming
MANIFEST = "corpus.json"  # what the folder holds; its "voice" is the engine:name that spoke it
LATER_SETTINGS = {"grammar": 0}  # build_split settings added later: what older corpora had


def read_manifest(out: str | Path) -> dict:
    """``out``'s `MANIFEST` ({} without one); a ValueError names the file if it is no JSON object."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return {}
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a JSON object ({e})") from None
    if not isinstance(recorded, dict):
        raise ValueError(f"{path}: not a JSON object")
    return recorded


def write_manifest(out: Path, record: dict) -> None:
    """``out``'s `MANIFEST`, the one writer of what `read_manifest` reads."""
    (out / MANIFEST).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def write_wavs(
    out: Path, texts: dict[str, str], voice: str | Voice, sample_rate: int | None = None
) -> int:
    """Speak the ``texts`` (id -> sentence) not yet spoken into ``out`` with ``voice`` (a name is
    loaded only if one is missing), resampled to ``sample_rate`` if given; returns how many were
    spoken. A wav counts as spoken when the journal or the metadata gives it the same text."""
    wavs = Path(out) / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    for stale in wavs.glob("*.partial"):
        stale.unlink()
    bad = [t for t in texts.values() if "|" in t or "\n" in t]
    if bad:
        raise ValueError(f"a text with '|' or a line break cannot go into metadata.csv: {bad[0]!r}")
    done = _spoken(Path(out))
    todo = [
        (i, t) for i, t in texts.items() if done.get(i) != t or not (wavs / f"{i}.wav").exists()
    ]
    engine = load_voice(voice) if todo and isinstance(voice, str) else voice
    with open(Path(out) / JOURNAL, "a", encoding="utf-8") as journal:
        for utt_id, text in todo:
            wav, sr = engine.speak(text)
            if sample_rate is not None and sample_rate != sr:
                g = np.gcd(sample_rate, sr)
                wav = resample_poly(wav, sample_rate // g, sr // g).astype(np.float32)
            part = wavs / f"{utt_id}.wav.partial"
            sf.write(part, wav, sample_rate or sr, subtype="PCM_16", format="WAV")
            os.replace(part, wavs / f"{utt_id}.wav")
            journal.write(f"{utt_id}|{text}\n")
            journal.flush()
    return len(todo)


def _spoken(out: Path) -> dict[str, str]:
    """id -> text of the wavs already in ``out``: the metadata's, then the journal's."""
    done: dict[str, str] = {}
    for name in ("metadata.csv", JOURNAL):
        if (out / name).exists():
            for row in (out / name).read_text(encoding="utf-8").splitlines():
                utt_id, _, rest = row.partition("|")
                done[utt_id] = rest.split("|")[0]
    return done


def write_metadata(out: Path, texts: dict[str, str]) -> None:
    """``metadata.csv`` listing ``texts`` in order; an identical file is left untouched."""
    meta = Path(out) / "metadata.csv"
    body = "".join(f"{utt_id}|{text}|{text}\n" for utt_id, text in texts.items())
    if meta.exists() and meta.read_text(encoding="utf-8") == body:
        return
    part = meta.with_name("metadata.csv.partial")
    part.write_text(body, encoding="utf-8")
    os.replace(part, meta)


def write_corpus(
    out: str | Path, texts: dict[str, str], voice: str | Voice, sample_rate: int | None = None
) -> Path:
    """``texts`` spoken by ``voice`` into ``out`` in LJ Speech layout, the voice recorded in
    `MANIFEST`; returns ``out``."""
    out = Path(out)
    write_wavs(out, texts, voice, sample_rate)
    write_metadata(out, texts)
    write_manifest(out, {"voice": voice if isinstance(voice, str) else voice.spec})
    return out


def audio_hours(out: str | Path) -> float:
    """Hours of audio in the wavs that ``out``'s metadata lists."""
    out = Path(out)
    rows = (out / "metadata.csv").read_text(encoding="utf-8").splitlines()
    return sum(sf.info(out / "wavs" / f"{r.split('|')[0]}.wav").duration for r in rows) / 3600


def _sentences(
    split: str, source: str, n_heldout: int, n_unseen: int, seed: int
) -> tuple[sentences_lib.Split, list[str]]:
    """The source's split and the sentences of `split` in it."""
    parts = sentences_lib.split(sentences_lib.clean(read_source(source)), n_heldout, n_unseen, seed)
    return parts, {"train": parts.train, "heldout": parts.heldout, "unseen": parts.unseen}[split]


def write_text(
    out: str | Path,
    start: int = 0,
    n: int | None = None,
    source: str = "gcide",
    seed: int = 0,
    n_heldout: int = 500,
    n_unseen: int = 250,
) -> dict:
    """Sentences ``start`` to ``start + n`` of the train split as a text file, one a line,
    spoken by no voice: text-only rows for a model's phoneme head (jtts's ``data.pron_text``),
    e.g. past the sentences a corpus speaks (``--start`` its ``--n``). Never a held-out split:
    the benchmarks judge reading on those."""
    _, chosen = _sentences("train", source, n_heldout, n_unseen, seed)
    lines = chosen[start : None if n is None else start + n]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{t}\n" for t in lines), encoding="utf-8")
    return {"out": str(out), "split": "train", "start": start, "sentences": len(lines)}


def build_split(
    out: str | Path,
    voice: str,
    split: str = "train",
    n: int | None = None,
    source: str = "gcide",
    seed: int = 0,
    n_heldout: int = 500,
    n_unseen: int = 250,
    sample_rate: int | None = None,
    grammar: int = 0,
) -> dict:
    """The first ``n`` sentences (all if None) of ``split`` ("train", "heldout" or its "unseen"
    subset) of ``source``, spoken by ``voice`` into ``out``; returns the report also written to
    ``out/corpus.json``: the settings, hours of audio, seconds spent and the share of words
    absent from the whole train split.

    ``grammar`` template sentences (`speechcorpus.grammar`, ids ``GR-…``) join a train split:
    seventy-odd words said thousands of times are where a model first learns to align text and
    speech, and from there it reads the open-vocabulary sentences (the front-end bench's
    measurement: without them the text gain stays 0 for 1600 steps)."""
    if split not in ID_PREFIX:
        raise ValueError(f"split {split!r} is not one of {', '.join(ID_PREFIX)}")
    if grammar and split != "train":
        raise ValueError(f"template sentences join the train split only, not {split!r}")
    settings = {
        "voice": voice,
        "split": split,
        "n": n,
        "source": source,
        "seed": seed,
        "n_heldout": n_heldout,
        "n_unseen": n_unseen,
        "sample_rate": sample_rate,
        "grammar": grammar,
    }
    out = Path(out)
    manifest = out / MANIFEST
    if manifest.exists():
        recorded = read_manifest(out)
        before = {k: recorded.get(k, LATER_SETTINGS.get(k)) for k in settings}
        if before != settings:
            raise ValueError(f"{out} holds another corpus ({before}); choose another --out")
    start = time.perf_counter()
    parts, chosen = _sentences(split, source, n_heldout, n_unseen, seed)
    texts = {f"{ID_PREFIX[split]}-{i:05d}": t for i, t in enumerate(chosen[:n])}
    if grammar:
        from speechcorpus.grammar import sentences as template_sentences  # it imports this module

        texts |= {f"GR-{i:05d}": t for i, t in enumerate(template_sentences(grammar, seed))}
    engine = load_voice(voice)  # before the manifest: a voice missing here leaves no trace
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, settings)
    spoken = write_wavs(out, texts, engine, sample_rate)
    write_metadata(out, texts)
    report = {
        **settings,
        "sentences": len(texts),
        "spoken_now": spoken,
        "hours": audio_hours(out),
        "seconds": time.perf_counter() - start,
        "unseen_word_share": sentences_lib.unseen_share(texts.values(), parts.train),
    }
    write_manifest(out, report)
    return report
