"""Codec training on this machine: quality against training minutes, as JSON.

Each point is one weights file of a `codec_bridge train` run (its ``snapshots/`` every
``snapshot_minutes`` of training, then ``codec.pt``), judged by `codec_bridge.judge.evaluate` on
held-out eSpeak sentences in voices, rates and sample rates the run never heard: resynthesis
WER and CER beside the recordings' own (closed-vocabulary pocketsphinx), log-mel distance,
SI-SNR and distinct codes per codebook. The baseline, measured in the same run, is the
untrained codec (seeded random weights): the ratio of each point's resynthesis WER to the
recordings' WER, and of its log-mel distance to the untrained one's.

    python bench/codec_train.py                     # train 6 minutes here, 3 points
    python bench/codec_train.py --minutes 30 --points 5
    python bench/codec_train.py --run codecs/runs/espeak_f16   # judge an existing run
    python bench/codec_train.py --run codecs/runs/espeak_f16 --bandwidth 1.5 --grammar
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec_corpus import heldout_corpus, train_corpus  # noqa: E402

from codec_bridge.codec import load_codec  # noqa: E402
from codec_bridge.judge.evaluate import evaluate_corpus  # noqa: E402
from codec_bridge.training.rundir import CodecRunDir  # noqa: E402
from codec_bridge.training.train import train  # noqa: E402
from speechcorpus.grammar import jsgf as jsgf_text  # noqa: E402


def _judge(weights: str, heldout: Path, bandwidth: float | None, jsgf: Path | None) -> dict:
    rep = evaluate_corpus(  # pocketsphinx: the judge of the README's figures from this bench
        "ljspeech",
        heldout,
        weights=weights,
        bandwidth=bandwidth,
        jsgf=jsgf,
        asr="pocketsphinx",
        device="cpu",
    )
    o, r = rep["sets"]["original"], rep["sets"]["resynthesis"]
    return {
        "original_wer": o["wer"],
        "resynthesis_wer": r["wer"],
        "resynthesis_cer": r["cer"],
        "wer_over_original": rep["ratios"]["resynthesis_over_original"],
        "log_mel_distance": r["log_mel_distance"],
        "si_snr": r["si_snr"],
        "codes_used": r["codes_used"],
        "codes_used_fraction": min(r["codes_used"]) / r["codebook_size"],
    }


def _snapshots(run: CodecRunDir) -> list[tuple[float, Path]]:
    """(training minutes, weights file) of a run, oldest first; its final weights at the end."""
    points = [(float(m), p) for m, p in run.snapshots()]
    rows = [json.loads(x) for x in run.metrics.read_text().splitlines()]
    last = max((r["minutes"] for r in rows if r["kind"] == "train"), default=0.0)
    if run.weights.exists() and (not points or last > points[-1][0] + 0.5):
        points.append((round(last, 1), run.weights))
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="judge this run directory's snapshots instead of training")
    ap.add_argument("--minutes", type=float, default=6.0, help="training minutes (no --run)")
    ap.add_argument("--points", type=int, default=3, help="snapshots to judge (no --run)")
    ap.add_argument("--utterances", type=int, default=120, help="training corpus size")
    ap.add_argument("--heldout", type=int, default=14, help="held-out sentences judged")
    ap.add_argument("--config", default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bandwidth", type=float, help="kbps judged (default: the codec's largest)")
    ap.add_argument(
        "--grammar", action="store_true", help="ASR restricted to the demo's template grammar"
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="codec_bench_"))
    heldout = heldout_corpus(work / "heldout", a.heldout)
    jsgf = None
    if a.grammar:
        jsgf = work / "demo.gram"
        jsgf.write_text(jsgf_text(), encoding="utf-8")
    t0 = time.perf_counter()
    run = CodecRunDir(a.run or work / "run")
    if not a.run:
        corpus = train_corpus(work / "corpus", a.utterances)
        sets = [f"train.snapshot_minutes={a.minutes / a.points}"]
        train("ljspeech", corpus, run.root, config=a.config, overrides=sets, minutes=a.minutes,
              threads=a.threads, progress=False)  # fmt: skip
    train_wall = time.perf_counter() - t0
    baseline = _judge("untrained", heldout, a.bandwidth, jsgf)
    curve = [
        {"minutes": m, **_judge(str(p), heldout, a.bandwidth, jsgf)} for m, p in _snapshots(run)
    ]
    for point in curve:
        point["log_mel_over_untrained"] = point["log_mel_distance"] / baseline["log_mel_distance"]
    codec = load_codec("24khz", str(_snapshots(run)[-1][1]), device="cpu")
    print(
        json.dumps(
            {
                "bench": "codec_train",
                "cores": len(os.sched_getaffinity(0)),
                "threads": a.threads,
                "run": str(run.root),
                "config": json.loads(run.config.read_text()),
                "codec": codec.name,
                "train_wall_s": None if a.run else round(train_wall, 1),
                "heldout_utterances": a.heldout,
                "bandwidth": a.bandwidth,
                "asr": "pocketsphinx, demo grammar" if a.grammar else "pocketsphinx, word loop",
                "untrained": baseline,
                "curve": curve,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
