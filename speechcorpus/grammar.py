"""A small speech corpus built on the spot: template sentences spoken by eSpeak NG.

The demo must run on a fresh machine with no network and no dataset, so it makes its own data:
a seeded template grammar writes a few hundred distinct sentences, and eSpeak NG (the library
that ``espeakng-loader`` ships, through `voices`) speaks them. The corpus is written in LJ Speech
layout (``metadata.csv`` + ``wavs/``) so the codec bridge reads it with ``--format ljspeech``; the
demo, the alignment bench and the codec benches share it.
"""

from __future__ import annotations

import random
from pathlib import Path

from .builder import write_corpus

SUBJECTS = [
    "the old man",
    "a young girl",
    "my neighbour",
    "the teacher",
    "our captain",
    "the tired farmer",
    "a quiet student",
    "the baker",
    "her brother",
    "the small dog",
    "the doctor",
    "a busy painter",
    "the pilot",
    "his mother",
    "the king",
]
VERBS = [
    "found",
    "painted",
    "carried",
    "opened",
    "watched",
    "cleaned",
    "sold",
    "borrowed",
    "lost",
    "repaired",
    "described",
    "wanted",
    "remembered",
    "admired",
    "moved",
]
ADJECTIVES = [
    "red",
    "heavy",
    "wooden",
    "broken",
    "shiny",
    "tiny",
    "golden",
    "ancient",
    "yellow",
    "empty",
    "warm",
    "strange",
    "green",
    "silver",
    "round",
]
OBJECTS = [
    "box",
    "window",
    "letter",
    "boat",
    "garden gate",
    "clock",
    "lamp",
    "basket",
    "bicycle",
    "bridge",
    "piano",
    "kettle",
    "map",
    "ladder",
    "blanket",
]
PLACES = [
    "near the river",
    "in the morning",
    "after dinner",
    "at the station",
    "by the sea",
    "before the storm",
    "in the village",
    "on a cold night",
    "under the trees",
    "at the market",
    "behind the house",
    "during the summer",
]
SAMPLE_RATE = 22050
VOICE = "espeak:en-us"  # the demo's voice (see speechcorpus.voices)


TEMPLATES = (
    "{S} {v} the {a} {o} {p}.",
    "{P}, {s} {v} a {a} {o}.",
    "{S} {v} the {o} and the {a2} {o2}.",
)


def jsgf() -> str:
    """The template grammar in JSGF, for an ASR judge that knows what the demo can say."""

    def rule(name: str, options: list[str]) -> str:
        return f"<{name}> = {' | '.join(options)} ;"

    public = " | ".join(
        [
            "<s> <v> the <a> <o> <p>",
            "<p> <s> <v> a <a> <o>",
            "<s> <v> the <o> and the <a> <o>",
        ]
    )
    return "\n".join(
        [
            "#JSGF V1.0;",
            "grammar demo;",
            rule("s", SUBJECTS),
            rule("v", VERBS),
            rule("a", ADJECTIVES),
            rule("o", OBJECTS),
            rule("p", PLACES),
            f"public <sentence> = {public} ;",
            "",
        ]
    )


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences from the template grammar, in a seeded random order.

    Three templates put the same words at different places and give sentences of different
    lengths, so a model must read the text (not count frames) to say it."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        s = rng.choice(SUBJECTS)
        (a, a2), (o, o2) = rng.sample(ADJECTIVES, 2), rng.sample(OBJECTS, 2)
        p = rng.choice(PLACES)
        text = rng.choice(TEMPLATES).format(
            S=s.capitalize(),
            s=s,
            v=rng.choice(VERBS),
            a=a,
            a2=a2,
            o=o,
            o2=o2,
            p=p,
            P=p.capitalize(),
        )
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def build_corpus(out: str | Path, n: int = 300, seed: int = 0) -> Path:
    """Write ``n`` spoken sentences to ``out`` in LJ Speech layout; returns ``out``.

    Already-built corpora of the same size are reused, so re-running the demo is quick."""
    texts = sentences(n, seed)
    return speak(out, {f"DEMO-{i:04d}": text for i, text in enumerate(texts)})


def speak(out: str | Path, texts: dict[str, str]) -> Path:
    """Write ``texts`` (id -> sentence) spoken by eSpeak NG (en-us, 165 words a minute) to
    ``out`` in LJ Speech layout; wavs already there are kept (see `speechcorpus.builder`)."""
    return write_corpus(out, texts, VOICE)


def held_out(n: int = 3, seed: int = 0, corpus_size: int = 300) -> list[str]:
    """Sentences of the same grammar that are not in the corpus (for the demo's synthesis)."""
    seen = set(sentences(corpus_size, seed))
    return [s for s in sentences(corpus_size + 50 * n, seed + 1) if s not in seen][:n]
