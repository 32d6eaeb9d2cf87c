"""Build speech corpora offline (see `speechcorpus.builder`).

python -m speechcorpus voices
python -m speechcorpus split --source gcide
python -m speechcorpus build --voice hibari:heart --split train --n 2000 --out corpora/hibari_train
python -m speechcorpus text --start 4000 --out corpora/gcide_text.txt
"""

from __future__ import annotations

import argparse
import json
import sys

from speechcorpus import builder, sentences
from speechcorpus.sources import read_source
from speechcorpus.voices import VoiceUnavailable, engines_here


def _split_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--source", default="gcide", help="'gcide' or a text file, a sentence a line")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heldout", type=int, default=500, help="held-out sentences")
    ap.add_argument("--unseen", type=int, default=250, help="of which with an unseen word")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m speechcorpus", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("voices", help="the engines and voices this machine has")
    sp = sub.add_parser("split", help="sentence counts and unseen-word shares of a split")
    _split_args(sp)
    b = sub.add_parser("build", help="speak a split into an LJ Speech folder (resumable)")
    _split_args(b)
    b.add_argument("--voice", required=True, help="engine:name, e.g. hibari:heart, flite:slt")
    b.add_argument("--split", choices=list(builder.ID_PREFIX), default="train")
    b.add_argument("--n", type=int, default=None, help="first N sentences of the split")
    b.add_argument("--out", required=True)
    b.add_argument("--sample-rate", type=int, default=None, help="resample to this rate")
    b.add_argument(
        "--grammar", type=int, default=0, help="add N template sentences (train split only)"
    )
    t = sub.add_parser("text", help="write train-split sentences to a text file, one a line")
    _split_args(t)
    t.add_argument("--start", type=int, default=0, help="skip the first START sentences")
    t.add_argument("--n", type=int, default=None, help="at most N sentences")
    t.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        if a.command == "voices":
            for engine, names in engines_here().items():
                print(f"{engine}: {names}")
        elif a.command == "split":
            parts = sentences.split(
                sentences.clean(read_source(a.source)), a.heldout, a.unseen, a.seed
            )
            report = {
                "train": len(parts.train),
                "heldout": len(parts.heldout),
                "unseen": parts.n_unseen,
                "unseen_word_share_unseen": sentences.unseen_share(parts.unseen, parts.train),
                "unseen_word_share_heldout": sentences.unseen_share(parts.heldout, parts.train),
            }
            print(json.dumps(report, indent=1))
        elif a.command == "text":
            report = builder.write_text(a.out, a.start, a.n, a.source, a.seed, a.heldout, a.unseen)
            print(json.dumps(report, indent=1))
        else:
            report = builder.build_split(
                a.out,
                a.voice,
                a.split,
                a.n,
                a.source,
                a.seed,
                a.heldout,
                a.unseen,
                a.sample_rate,
                a.grammar,
            )
            print(json.dumps(report, indent=1))
    except (VoiceUnavailable, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
