"""Arguments of ``codec_bridge evaluate``, which `codec_bridge.cli` adds to its parser. The
judges load only when the command runs."""

from __future__ import annotations

import argparse
import json
import sys

from codec_bridge.readers import READERS


def add_evaluate(sub) -> None:
    ev = sub.add_parser("evaluate", help="offline-ASR intelligibility (WER/CER) and codec fidelity")
    ev.add_argument("--format", required=True, choices=sorted(READERS), help="corpus layout")
    ev.add_argument("--input", required=True, help="corpus with the reference recordings")
    ev.add_argument("--limit", type=int, help="only the first N utterances by id")
    ev.add_argument(
        "--weights", help="codec to judge by resynthesis: pretrained | untrained | FILE"
    )
    ev.add_argument("--model", default="24khz", choices=["24khz", "48khz"])
    ev.add_argument("--bandwidth", type=float, help="kbps (default: the codec's largest)")
    ev.add_argument("--synth", help="folder of {id}.wav to judge against the same texts (TTS)")
    ev.add_argument("--resynthesis-out", help="also write the codec's resynthesis as DIR/{id}.wav")
    ev.add_argument(
        "--vocabulary",
        default="corpus",
        help="closed vocabulary: corpus (the texts' words) | none (open LM) | FILE (words)",
    )
    ev.add_argument("--jsgf", help="JSGF grammar FILE for the ASR (overrides --vocabulary)")
    ev.add_argument(
        "--asr",
        default="auto",
        choices=["auto", "whisper", "pocketsphinx", "openai-whisper"],
        help="whisper: Whisper base (eval extra) | pocketsphinx | openai-whisper (cached"
        " checkpoint) | auto: whisper when installed and no --jsgf, else pocketsphinx",
    )
    ev.add_argument(
        "--speaker-refs", help="reference clips of each voice: a corpus apart from --input"
    )
    ev.add_argument(
        "--speaker-refs-format",
        default="manifest",
        choices=sorted(READERS),
        help="layout of --speaker-refs (default: manifest)",
    )
    ev.add_argument(
        "--references-per-voice",
        type=int,
        default=3,
        help="without --speaker-refs: the first K utterances of each voice are its references",
    )
    ev.add_argument("--no-speaker", action="store_true", help="no speaker judge")
    ev.add_argument("--out", help="write the JSON report here (default: stdout)")
    ev.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ev.add_argument("--quiet", action="store_true", help="no progress bar or table")


def run_evaluate(a: argparse.Namespace) -> int:
    from codec_bridge.judge.evaluate import evaluate_corpus, format_table

    report = evaluate_corpus(
        a.format,
        a.input,
        limit=a.limit,
        weights=a.weights,
        model=a.model,
        bandwidth=a.bandwidth,
        synth_dir=a.synth,
        resynthesis_dir=a.resynthesis_out,
        vocabulary=a.vocabulary,
        jsgf=a.jsgf,
        asr=a.asr,
        device=a.device,
        progress=not a.quiet,
        speaker=not a.no_speaker,
        speaker_refs=a.speaker_refs,
        speaker_refs_format=a.speaker_refs_format,
        references_per_voice=a.references_per_voice,
    )
    text = json.dumps(report, indent=2)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    else:
        print(text)
    if not a.quiet:
        print(format_table(report), file=sys.stderr if not a.out else sys.stdout)
    return 0
