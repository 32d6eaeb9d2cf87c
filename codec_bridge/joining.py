"""Several corpora -> one manifest with a speaker column: the input of a multi-voice store.

A multi-speaker model trains on one store, so its voices (each an LJ Speech folder that
``speechcorpus build`` made, LJ Speech itself, a VCTK tree, ...) are joined into one
``manifest.csv`` (``path,text,speaker,id``) that ``extract --format manifest`` reads. Each
source is ``[NAME=]PATH[@START:STOP]``: NAME replaces the speaker the reader found (eSpeak and
LJ Speech folders name theirs), and ``@START:STOP`` keeps a slice of the utterances sorted by id,
as Python slices do, so ``lj=LJ001@:150`` trains on the first 150 clips and ``lj=LJ001@150:``
holds the rest out. Ids are prefixed with the speaker, because synthetic corpora repeat them.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from codec_bridge.errors import BridgeError
from codec_bridge.readers import Item, read_corpus

SLICE = re.compile(r"^(-?\d*):(-?\d*)$")


def parse_source(source: str) -> tuple[str | None, Path, slice]:
    """``[NAME=]PATH[@START:STOP]`` as (speaker name or None, path, slice)."""
    head, _, part = source.rpartition("@") if "@" in source else (source, "", ":")
    name, _, path = head.partition("=") if "=" in head else (None, "", head)
    m = SLICE.match(part)
    if not m or not path.strip() or name == "":
        raise BridgeError(f"{source!r}: a source is [NAME=]PATH[@START:STOP], e.g. lj=LJ001@:150")
    return name, Path(path), slice(*(int(v) if v else None for v in m.groups()))


def speaker_slug(speaker: str) -> str:
    """A speaker's name as a file-name and id part: "flite:slt" -> "flite_slt"."""
    return re.sub(r"[^A-Za-z0-9]+", "_", speaker).strip("_") or "speaker"


def join(sources: Sequence[str], out: str | Path, format: str = "ljspeech") -> dict[str, int]:
    """Writes ``out`` (a .csv manifest, paths absolute) and returns utterances per speaker.

    Items without a transcript or audio file stay in: ``extract`` reports and skips them."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise BridgeError(f"{out}: the joined manifest is a .csv file")
    rows: list[tuple[str, str, str, str]] = []
    counts: dict[str, int] = {}
    seen: set[str] = set()
    for source in sources:
        name, path, part = parse_source(source)
        if not path.exists():
            raise BridgeError(f"{source}: {path} does not exist")
        items: list[Item] = read_corpus(format, path)[part]
        if not items:
            raise BridgeError(f"{source}: the slice keeps no utterances")
        for it in items:
            speaker = name or it.speaker or speaker_slug(path.name)
            uid = f"{speaker_slug(speaker)}-{it.id}"
            if uid in seen:
                raise BridgeError(f"{source}: id {uid} is already in an earlier source")
            seen.add(uid)
            rows.append((str(it.path.resolve()), it.text or "", speaker, uid))
            counts[speaker] = counts.get(speaker, 0) + 1
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("path", "text", "speaker", "id"), *rows])
    tmp.replace(out)
    return counts
