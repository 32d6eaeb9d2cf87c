"""Throughput of `codec_bridge.extract` against the loop a user would write with encodec.

Same files, codec weights and bandwidth for both: the naive loop reads a file, calls
``convert_audio`` and ``EncodecModel.encode`` one file at a time (the encodec README's way);
the bridge runs a whole extraction into a fresh store (reading, batching, writing included).
Each measurement runs in its own process after a short warm-up (so peak memory is its own),
alternating naive and bridge for ``--rounds`` rounds; the best round of each is reported.
Prints one JSON object; x real time = seconds of audio encoded per wall-clock second.

    python bench/extract.py --limit 60
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


def _naive(args, weights: str) -> float:
    codec = load_codec("24khz", weights, device=args.device)
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


def _bridge(args, weights: str) -> float:
    kw = dict(
        format="ljspeech",
        weights=weights,
        device=args.device,
        bandwidth=args.bandwidth,
        progress=False,
    )
    if args.batch_seconds:
        kw["batch_seconds"] = args.batch_seconds
    with tempfile.TemporaryDirectory() as tmp:
        extract(args.data, Path(tmp) / "warm", limit=2, **kw)
        t = time.perf_counter()
        summary = extract(args.data, Path(tmp) / "store", limit=args.limit, **kw)
        return summary.seconds / (time.perf_counter() - t)


def _child(args) -> None:
    xrt = (_naive if args.child == "naive" else _bridge)(args, args.weights)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"xrt": xrt, "peak_rss_mb": peak / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="an LJ Speech folder")
    ap.add_argument("--limit", type=int, default=60, help="first N utterances by id")
    ap.add_argument("--bandwidth", type=float, default=6.0)
    ap.add_argument("--batch-seconds", type=float, default=None, help="default: extract's")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", choices=["naive", "bridge"], help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _child(args)
    if not (args.data / "metadata.csv").exists():
        sys.exit(f"bench/extract.py: {args.data} is not an LJ Speech folder")
    cached = hub_file(MODELS["24khz"]).exists()
    with tempfile.TemporaryDirectory() as tmp:
        if cached:
            weights = "pretrained"
        else:  # one untrained checkpoint for both sides
            weights = str(Path(tmp) / "untrained.pt")
            torch.save(load_codec("24khz", "untrained").model.state_dict(), weights)
        cmd = [
            sys.executable,
            __file__,
            "--data",
            str(args.data),
            "--limit",
            str(args.limit),
            "--bandwidth",
            str(args.bandwidth),
            "--device",
            args.device,
            "--weights",
            weights,
        ]
        if args.batch_seconds:
            cmd += ["--batch-seconds", str(args.batch_seconds)]
        runs = {"naive": [], "bridge": []}
        for _ in range(args.rounds):
            for side in runs:
                res = subprocess.run(
                    cmd + ["--child", side], capture_output=True, text=True, check=True
                )
                runs[side].append(json.loads(res.stdout.strip().splitlines()[-1]))
    items = read_corpus("ljspeech", args.data)[: args.limit]
    audio = sum(sf.info(str(it.path)).duration for it in items)
    best = {k: max(v, key=lambda r: r["xrt"]) for k, v in runs.items()}
    print(
        json.dumps(
            {
                "benchmark": "codec_bridge extract vs naive encodec loop",
                "data": str(args.data),
                "utterances": len(items),
                "audio_seconds": round(audio, 1),
                "weights": "pretrained" if cached else "untrained (seeded, same file for both)",
                "model": "encodec_24khz",
                "bandwidth_kbps": args.bandwidth,
                "device": args.device,
                "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "naive_xrt": round(best["naive"]["xrt"], 1),
                "bridge_xrt": round(best["bridge"]["xrt"], 1),
                "speedup": round(best["bridge"]["xrt"] / best["naive"]["xrt"], 2),
                "naive_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["naive"])),
                "bridge_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["bridge"])),
                "rounds_xrt": {k: [round(r["xrt"], 1) for r in v] for k, v in runs.items()},
                "load_avg_1min_after": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
