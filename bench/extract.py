"""Throughput of `codec_bridge.extract` against the loop a user would write with encodec.

Same files, codec weights and bandwidth for every side: the naive loop reads a file, calls
``convert_audio`` and ``EncodecModel.encode`` one file at a time (the encodec README's way,
torch's default threads); the bridge runs a whole extraction into a fresh store (reading,
triage, batching, writing and checksums included), once with its default of one
single-threaded encoder per core and once with one encoder on all cores (``--threads 1``).
Each measurement runs in its own process after a short warm-up, so peak memory is its own;
sides alternate for ``--rounds`` rounds and the best round of each is reported, since other
processes on a shared machine slow single rounds down at random. Prints one JSON object;
x real time = seconds of audio encoded per wall-clock second.

    python bench/extract.py            # all 186 LJ Speech clips of the shared subset
    python bench/extract.py --limit 40
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
from encodec.utils import convert_audio

from codec_bridge.codec import MODELS, hub_file, load_codec
from codec_bridge.extraction import extract
from codec_bridge.readers import read_corpus

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ljspeech_lj001"
SIDES = {"naive": None, "bridge": None, "bridge_one_encoder": 1}  # side -> extract(threads=)


def _naive(args) -> float:
    codec = load_codec("24khz", args.weights, device=args.device)
    codec.set_bandwidth(args.bandwidth)
    model = codec.model
    paths = [it.path for it in read_corpus("ljspeech", args.data)[: args.limit]]

    def run(files) -> float:
        seconds = 0.0
        for p in files:
            data, sr = sf.read(str(p), dtype="float32", always_2d=True)
            wav = convert_audio(torch.from_numpy(data.T), sr, model.sample_rate, model.channels)
            with torch.no_grad():
                model.encode(wav[None].to(codec.device))
            seconds += data.shape[0] / sr
        return seconds

    run(paths[:2])
    t = time.perf_counter()
    return run(paths) / (time.perf_counter() - t)


def _bridge(args) -> float:
    kw = dict(
        format="ljspeech",
        weights=args.weights,
        device=args.device,
        progress=False,
        bandwidth=args.bandwidth,
        threads=SIDES[args.child],
    )
    with tempfile.TemporaryDirectory() as tmp:
        extract(args.data, Path(tmp) / "warm", limit=2, **kw)
        t = time.perf_counter()
        summary = extract(args.data, Path(tmp) / "store", limit=args.limit, **kw)
        return summary.seconds / (time.perf_counter() - t)


def _measure(args) -> None:
    xrt = _naive(args) if args.child == "naive" else _bridge(args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"xrt": xrt, "peak_rss_mb": peak / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="an LJ Speech folder")
    ap.add_argument("--limit", type=int, default=None, help="first N utterances by id")
    ap.add_argument("--bandwidth", type=float, default=6.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", choices=list(SIDES), help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _measure(args)
    if not (args.data / "metadata.csv").exists():
        sys.exit(f"bench/extract.py: {args.data} is not an LJ Speech folder")
    items = read_corpus("ljspeech", args.data)[: args.limit]
    cached = hub_file(MODELS["24khz"]).exists()
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        weights = "pretrained"
        if not cached:  # one untrained checkpoint, loaded as a FILE by every side
            weights = str(Path(tmp) / "untrained.pt")
            torch.save(load_codec("24khz", "untrained").model.state_dict(), weights)
        cmd = [
            sys.executable,
            __file__,
            "--data",
            str(args.data),
            "--weights",
            weights,
            "--bandwidth",
            str(args.bandwidth),
            "--device",
            args.device,
        ]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        for _ in range(args.rounds):
            for side in SIDES:
                out = subprocess.run(
                    cmd + ["--child", side], capture_output=True, text=True, check=True
                )
                runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {side: max(r["xrt"] for r in rs) for side, rs in runs.items()}
    print(
        json.dumps(
            {
                "benchmark": "codec_bridge extract vs naive encodec loop",
                "data": str(args.data),
                "utterances": len(items),
                "audio_seconds": round(sum(sf.info(str(it.path)).duration for it in items), 1),
                "weights": "pretrained"
                if cached
                else "untrained (seeded; same file for every side)",
                "model": "encodec_24khz",
                "bandwidth_kbps": args.bandwidth,
                "device": args.device,
                "cpus": len(os.sched_getaffinity(0)),
                "naive_xrt": round(best["naive"], 1),
                "bridge_xrt": round(best["bridge"], 1),
                "speedup": round(best["bridge"] / best["naive"], 2),
                "bridge_one_encoder_xrt": round(best["bridge_one_encoder"], 1),
                "speedup_one_encoder": round(best["bridge_one_encoder"] / best["naive"], 2),
                "peak_rss_mb": {
                    side: round(max(r["peak_rss_mb"] for r in rs)) for side, rs in runs.items()
                },
                "rounds_xrt": {side: [round(r["xrt"], 1) for r in rs] for side, rs in runs.items()},
                "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
