"""Offline English text to draw sentences from.

``gcide``: the quotations in GCIDE (Debian ``dict-gcide``: Webster's 1913 dictionary, public
domain, in the GNU Collaborative International Dictionary of English, GPL-2+): ~28k sentences of
literary English (Milton, Shakespeare, Macaulay, ...), varied enough to hold out unseen words.
Any other name is a UTF-8 text file with one sentence a line. The repository ships no text: a
corpus is built from what is installed, and keeps the source's terms."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

GCIDE = Path("/usr/share/dictd/gcide.dict.dz")  # dictzip is gzip that dictd can seek into
_WEBSTER_TAG = re.compile(r"^\s*\[[^\]]*Webster[^\]]*\]\s*$")
_AUTHOR = re.compile(r"\s--\s*[A-Z][^-]*$")  # "... spirits. --Macaulay." closes a quotation


def read_source(name: str) -> Iterator[str]:
    """Candidate sentences (uncleaned) of the source ``name``: "gcide" or a text file."""
    if name == "gcide":
        if not GCIDE.exists():
            raise FileNotFoundError(f"{GCIDE} is missing: apt-get install dict-gcide")
        return gcide_quotations(GCIDE)
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such text file (or use the source 'gcide')")
    return iter(path.read_text(encoding="utf-8").splitlines())


def gcide_quotations(path: Path = GCIDE) -> Iterator[str]:
    """The dictionary's quotations: blocks indented 8+ spaces, each closed by a "[... Webster]"
    line, with the "--Author." attribution cut off."""
    block: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if _WEBSTER_TAG.match(line):
                if block:
                    yield _AUTHOR.sub("", " ".join(block)).strip()
                block = []
            elif line.startswith(" " * 8) and line.strip():
                block.append(line.strip())
            else:
                block = []
