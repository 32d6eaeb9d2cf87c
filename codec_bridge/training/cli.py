"""Arguments of ``codec_bridge train`` and ``export``, which `codec_bridge.cli` adds to its
parser. Torch loads only when a command runs."""

from __future__ import annotations

import argparse

from codec_bridge.readers import READERS


def add_train(sub) -> None:
    tr = sub.add_parser("train", help="train an EnCodec-architecture codec (resumable)")
    tr.add_argument("--format", required=True, choices=sorted(READERS), help="corpus layout")
    tr.add_argument("--input", required=True, help="corpus folder (or manifest file)")
    tr.add_argument("--out", required=True, help="run directory (created or resumed)")
    tr.add_argument(
        "--config", help="codec_bridge/training/configs name (tiny, small) or YAML path"
    )
    tr.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. train.lr=1e-3")
    lim = tr.add_mutually_exclusive_group()
    lim.add_argument("--steps", type=int, help="stop at this step")
    lim.add_argument("--minutes", type=float, help="stop after this many minutes of training")
    tr.add_argument("--limit", type=int, help="only the first N utterances by id")
    tr.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    tr.add_argument("--device", default="cpu", help="cpu | cuda")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")


def add_export(sub) -> None:
    ex = sub.add_parser("export", help="a trained codec as a small release file (float16)")
    ex.add_argument("weights", help="weights file written by `codec_bridge train`")
    ex.add_argument("out", help="release file to write")


def run_train(a: argparse.Namespace) -> int:
    from codec_bridge.training.train import train

    return train(
        a.format,
        a.input,
        a.out,
        config=a.config,
        overrides=a.set,
        steps=a.steps,
        minutes=a.minutes,
        limit=a.limit,
        threads=a.threads,
        device=a.device,
        progress=not a.quiet,
    )


def run_export(a: argparse.Namespace) -> int:
    from codec_bridge.codec_config import export_release
    from codec_bridge.format import size_text

    size = export_release(a.weights, a.out)
    print(f"{a.out}: {size_text(size)} (float16, no quantizer EMA sums)")
    return 0
