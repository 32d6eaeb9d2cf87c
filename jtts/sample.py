"""`python -m jtts.sample --workdir RUN (--text T | --text-file F) (--out X.wav | --out-dir D)`.

Synthesizes speech with a trained run's best (or latest, or --step) checkpoint. Sampling
options default to the run's `sample` config. Each attribute a run can read besides the text
(`jtts.conditioning.ATTRIBUTES`) has an option `--NAME VALUE`, and `--list-NAMEs` prints a
run's values and exits. `--prompt-wav REF.wav [--prompt-text "what REF says"]` continues a
1-10 s clip's voice (VALL-E style; other sample rates are resampled, stereo is mixed down;
the output holds only the new speech). Exit code 2 for bad arguments or input and for
codes that cannot be written (a full disk), 1 when the codec cannot decode.
"""

import argparse
import sys

from jtts import conditioning, sampler
from jtts.config import CFG_NULLS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jtts.sample", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="training run directory")
    p.add_argument("--step", type=int, help="checkpoint step (default: best, else latest)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", help="one text to speak")
    src.add_argument("--text-file", help="one text per line; output NNNN.wav per line number")
    p.add_argument("--out", help="wav file (with --text)")
    p.add_argument("--out-dir", help="wav directory (with --text-file)")
    p.add_argument(
        "--codes-out",
        help="also (or, without --out/--out-dir, only) write codes: CODES.npy with --text, "
        "a directory with --text-file",
    )
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int, help="0 disables")
    p.add_argument("--top-p", type=float, help="1 disables")
    p.add_argument("--cfg-scale", type=float, help="classifier-free guidance; 1 disables")
    p.add_argument(
        "--cfg-null",
        choices=CFG_NULLS,
        help="what guidance's null condition drops: every attribute, or the text alone "
        "(the null rows keep the speaker)",
    )
    p.add_argument(
        "--length-scale",
        type=float,
        help="speaking time relative to the predicted length (models with an attention prior)",
    )
    p.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        help="weight each step's attention around the text position reached so far "
        "(MagpieTTS's inference prior): no going back, no skipping ahead",
    )
    p.add_argument("--greedy", action="store_true", help="argmax instead of sampling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, help="audio cap per text (or sentence)")
    p.add_argument("--batch-size", type=int, default=16, help="texts decoded together")
    p.add_argument(
        "--split-sentences",
        action="store_true",
        help="speak each sentence separately and join the codes (for texts longer than the "
        "model reads)",
    )
    p.add_argument(
        "--print-normalized",
        action="store_true",
        help="print each text as the model reads it (numbers, dates, abbreviations spoken "
        "with the spoken_english normalizer), one line per text; the .json beside the codes "
        'records it as "normalized"',
    )
    p.add_argument(
        "--prompt-wav",
        metavar="REF.wav",
        help="voice prompt: a 1-10 s clip whose voice the speech continues (encoded with the "
        "run's codec; other rates are resampled, stereo is mixed down)",
    )
    p.add_argument(
        "--prompt-text",
        metavar="TEXT",
        help="what --prompt-wav says; read before each text so the model continues after it",
    )
    p.add_argument(
        "--timings-json",
        metavar="FILE",
        help="also write the seconds of each phase (load, compile, decode, codec, ...) and of "
        "the audio made as JSON",
    )
    for name, attr in conditioning.ATTRIBUTES.items():
        p.add_argument(f"--{name}", metavar="NAME", help=f"{attr.help} (runs trained with one)")
        p.add_argument(
            f"--list-{name}s", action="store_true", help=f"print the run's {name}s and exit"
        )
    return sampler.cli(**vars(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
