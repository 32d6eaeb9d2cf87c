"""Corpus readers: each turns a corpus folder (or manifest) into `Item`s, nothing more.

A reader yields every utterance it can name, including broken ones: an item whose audio file
does not exist is a transcript without audio, an item with ``text=None`` is audio without a
transcript. Deciding what to skip is `extract`'s job, so every skip lands in one place
(``skipped.jsonl``). Adding a corpus is one function plus one line in `READERS`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from codec_bridge.errors import BridgeError
from codec_bridge.textfile import EncodingError, read_text

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Item:
    """One utterance as the corpus describes it, before any audio is read."""

    id: str
    path: Path
    text: str | None
    normalized: str | None = None
    speaker: str | None = None


def _text(path: Path) -> str:
    """A transcript or manifest file's text: UTF-8, with or without a byte-order mark."""
    try:
        return read_text(path)
    except EncodingError as e:
        raise BridgeError(str(e)) from None


def _require(path: Path, what: str) -> None:
    if not path.exists():
        raise BridgeError(f"{path}: not found (expected {what})")


def _audio_files(folder: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in AUDIO_SUFFIXES)


def _untranscribed(audio: Iterable[Path], known: set[str], speaker: str | None) -> Iterator[Item]:
    """Audio files whose id has no transcript line."""
    for p in audio:
        if p.stem not in known:
            yield Item(p.stem, p, None, speaker=speaker)


def read_ljspeech(root: Path) -> Iterator[Item]:
    """``metadata.csv`` (``id|text|normalized``) + ``wavs/``; one speaker: the voice that
    speechcorpus's ``corpus.json`` names for the corpora it builds in this layout, else ``LJ``."""
    meta, wavs = root / "metadata.csv", root / "wavs"
    _require(meta, "an LJ Speech folder with metadata.csv and wavs/")
    from speechcorpus.builder import read_manifest  # here: it imports scipy.signal

    try:
        speaker = str(read_manifest(root).get("voice") or "LJ")
    except ValueError as e:
        raise BridgeError(str(e)) from None
    known = set()
    for line in _text(meta).splitlines():
        if not line.strip():
            continue
        uid, _, rest = line.partition("|")
        text, _, normalized = rest.partition("|")
        known.add(uid)
        yield Item(uid, wavs / f"{uid}.wav", text, normalized or text, speaker)
    yield from _untranscribed(_audio_files(wavs), known, speaker)


_ARCTIC_LINE = re.compile(r'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$')


def read_arctic(root: Path) -> Iterator[Item]:
    """CMU ARCTIC voice folders (``etc/txt.done.data`` + ``wav/``): ``root`` is one voice, or
    a folder of voices. Ids are ``{speaker}_{utt}`` because utterance names repeat per voice."""
    voices = (
        [root]
        if (root / "etc" / "txt.done.data").exists()
        else sorted(p.parent.parent for p in root.glob("*/etc/txt.done.data"))
    )
    if not voices:
        raise BridgeError(f"{root}: not a CMU ARCTIC folder (no etc/txt.done.data found)")
    for voice in voices:
        m = re.fullmatch(r"cmu_us_(\w+?)_arctic", voice.name)
        speaker = m.group(1) if m else voice.name
        known = set()
        for line in _text(voice / "etc" / "txt.done.data").splitlines():
            m = _ARCTIC_LINE.match(line)
            if m:
                known.add(m.group(1))
                yield Item(
                    f"{speaker}_{m.group(1)}",
                    voice / "wav" / f"{m.group(1)}.wav",
                    m.group(2),
                    speaker=speaker,
                )
        for item in _untranscribed(_audio_files(voice / "wav"), known, speaker):
            yield Item(f"{speaker}_{item.id}", item.path, None, speaker=speaker)


def read_libritts(root: Path) -> Iterator[Item]:
    """LibriTTS: ``{speaker}/{chapter}/{id}.wav`` with ``{id}.normalized.txt`` (normalized)
    and ``{id}.original.txt`` (raw text) beside it; the speaker is the grandparent folder."""
    wavs = {p.stem: p for p in sorted(root.rglob("*.wav"))}
    texts = {p.name.removesuffix(".normalized.txt"): p for p in root.rglob("*.normalized.txt")}
    if not wavs and not texts:
        raise BridgeError(f"{root}: not a LibriTTS folder (no .wav or .normalized.txt files)")
    for uid in sorted(wavs.keys() | texts.keys()):
        wav = wavs.get(uid) or texts[uid].with_name(f"{uid}.wav")
        normalized = _text(texts[uid]).strip() if uid in texts else None
        original = wav.with_name(f"{uid}.original.txt")
        text = _text(original).strip() if original.exists() else normalized
        yield Item(uid, wav, text, normalized, wav.parent.parent.name)


def read_vctk(root: Path) -> Iterator[Item]:
    """VCTK: ``txt/{spk}/{id}.txt`` with audio in ``wav48/`` (0.80, ``.wav``) or
    ``wav48_silence_trimmed/`` (0.92, ``{id}_mic1.flac``; the second microphone is ignored)."""
    _require(root / "txt", "a VCTK folder with txt/ and wav48*/")
    audio = {}
    for folder in sorted(root.glob("wav48*")):
        for p in _audio_files(folder, "*/*"):
            if not p.stem.endswith("_mic2"):
                audio.setdefault(p.stem.removesuffix("_mic1"), p)
    texts = {p.stem: p for p in root.glob("txt/*/*.txt")}
    for uid in sorted(audio.keys() | texts.keys()):
        speaker = (audio.get(uid) or texts[uid]).parent.name
        path = audio.get(uid) or root / "wav48" / speaker / f"{uid}.wav"
        text = _text(texts[uid]).strip() if uid in texts else None
        yield Item(uid, path, text, speaker=speaker)


def read_fsdd(root: Path) -> Iterator[Item]:
    """Free Spoken Digit Dataset: ``{digit}_{speaker}_{n}.wav``; the text is the digit's word."""
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    files = _audio_files(folder)
    if not files:
        raise BridgeError(f"{root}: not an FSDD folder (no audio files in it or in recordings/)")
    for p in files:
        label, _, rest = p.stem.partition("_")
        text = DIGITS[int(label)] if label.isdigit() and int(label) < 10 else None
        yield Item(p.stem, p, text, speaker=rest.partition("_")[0] or None)


def _manifest_rows(path: Path) -> Iterator[tuple[int, dict]]:
    if path.suffix.lower() in (".jsonl", ".json"):
        for n, line in enumerate(_text(path).splitlines(), 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    raise BridgeError(f"{path}:{n}: not a JSON object ({e.msg})") from None
    else:
        rows = io.StringIO(_text(path), newline="")
        yield from enumerate(
            csv.DictReader(rows, delimiter="\t" if path.suffix == ".tsv" else ","), 2
        )


def read_manifest(path: Path) -> Iterator[Item]:
    """CSV/TSV (header ``path,text[,speaker][,normalized][,id]``) or JSONL with those keys.

    Relative paths are resolved against the manifest's folder; the id defaults to the path as
    written, without its suffix."""
    if not path.is_file():
        raise BridgeError(f"{path}: manifest must be a .csv, .tsv or .jsonl file")
    for n, row in _manifest_rows(path):
        if not isinstance(row, dict) or "path" not in row or "text" not in row:
            raise BridgeError(f"{path}:{n}: a manifest row needs 'path' and 'text' fields")
        rel = Path(str(row["path"]))
        text = row["text"]
        yield Item(
            str(row.get("id") or rel.with_suffix("").as_posix()),
            rel if rel.is_absolute() else path.parent / rel,
            None if text is None else str(text),
            row.get("normalized") or None,
            row.get("speaker") or None,
        )


READERS: dict[str, Callable[[Path], Iterable[Item]]] = {
    "ljspeech": read_ljspeech,
    "arctic": read_arctic,
    "libritts": read_libritts,
    "vctk": read_vctk,
    "manifest": read_manifest,
    "fsdd": read_fsdd,
}


def read_corpus(format: str, path: str | Path) -> list[Item]:
    """Every item of a corpus, sorted by id; raises `BridgeError` for a wrong path or format."""
    if format not in READERS:
        raise BridgeError(f"unknown corpus format {format!r} (choose from {', '.join(READERS)})")
    root = Path(path)
    if not root.exists():
        raise BridgeError(f"{root}: --input path does not exist")
    items = sorted(READERS[format](root), key=lambda it: it.id)
    if not items:
        raise BridgeError(f"{root}: no utterances found for format {format!r}")
    return items
