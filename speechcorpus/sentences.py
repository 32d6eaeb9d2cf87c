"""Sentences for a corpus: cleaned, deduplicated, shuffled by a seed, and split into train and
held-out so that held-out text is never trained on.

The held-out set starts with an "unseen-word" subset: each of its sentences has a word that no
train sentence has (chosen as a word found in that sentence only, in the whole source), so a model
trained on ``train`` must say a word it never heard. `unseen_share` reports how many of a text's
words are new to the training text."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
# Letters, spaces and plain punctuation only: no digits, brackets, symbols or elisions (". . .").
_CLEAN = re.compile(r"[A-Z][A-Za-z ,;:'!?-]*[a-z][.!?]")
MIN_WORDS, MAX_WORDS = 4, 30


def words(text: str) -> list[str]:
    """Lower-case word tokens: what "a word of the training text" means here."""
    return _WORD.findall(text.lower())


def clean(lines: Iterable[str]) -> list[str]:
    """Sentences of 4-30 words in plain ASCII English, first occurrence kept per case- and
    punctuation-insensitive text, in input order."""
    out, seen = [], set()
    for line in lines:
        text = " ".join(line.replace("\u2019", "'").split())
        if not _CLEAN.fullmatch(text) or " -" in text or "- " in text or "--" in text:
            continue
        key = " ".join(words(text))
        if MIN_WORDS <= len(key.split()) <= MAX_WORDS and key not in seen:
            seen.add(key)
            out.append(text)
    return out


@dataclass(frozen=True)
class Split:
    """``heldout`` = ``unseen`` (first ``len(unseen)``) + sentences that may share every word
    with ``train``. No sentence is in both train and held-out."""

    train: list[str]
    heldout: list[str]
    n_unseen: int

    @property
    def unseen(self) -> list[str]:
        return self.heldout[: self.n_unseen]


def split(sentences: list[str], n_heldout: int, n_unseen: int, seed: int = 0) -> Split:
    """Shuffle ``sentences`` (cleaned: distinct) with ``seed`` and hold out ``n_heldout`` of them,
    ``n_unseen`` of which each have a word found in no other sentence."""
    if not 0 <= n_unseen <= n_heldout < len(sentences):
        raise ValueError(
            f"cannot hold out {n_heldout} sentences ({n_unseen} with unseen words) "
            f"of {len(sentences)}"
        )
    order = sentences[:]
    random.Random(seed).shuffle(order)
    counts = Counter(w for s in order for w in set(words(s)))
    unseen = [s for s in order if any(counts[w] == 1 for w in words(s))][:n_unseen]
    if len(unseen) < n_unseen:
        raise ValueError(f"only {len(unseen)} sentences have a word of their own; asked {n_unseen}")
    taken = set(unseen)
    rest = [s for s in order if s not in taken]
    seen_part = rest[: n_heldout - n_unseen]
    return Split(train=rest[len(seen_part) :], heldout=unseen + seen_part, n_unseen=n_unseen)


def unseen_share(texts: Iterable[str], train: Iterable[str]) -> float:
    """The share of word tokens in ``texts`` that no sentence of ``train`` has."""
    vocab = {w for s in train for w in words(s)}
    tokens = [w for s in texts for w in words(s)]
    return sum(w not in vocab for w in tokens) / max(len(tokens), 1)
