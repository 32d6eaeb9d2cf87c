"""One prepared accelerator check: extraction, training and decoding speed in one JSON.

A lent accelerator comes for minutes, so one command measures everything, each part in its
own process under its own time limit (a part past its limit is reported as such and the next
one still runs), and the whole run ends in under 8 minutes:
- `extract`: seconds of audio encoded per wall-clock second by `codec_bridge.extraction.extract`
  on the device, over a synthetic LJ Speech-layout corpus (22.05 kHz noise bursts: speed does
  not depend on the content) with untrained codec weights, at several `batch_seconds` (the
  batch that fills the device is the best one);
- `train_base`, `train_small`: full optimizer steps of `base` and `small`, both in bf16, on a
  random batch at the config's `data.batch_frames` budget: step time, codec tokens/s, model
  FLOPs per step (`jtts.model.flops_per_step`, MaxText's count) and MFU against the device's
  dense bf16 peak (`jtts.metrics.PEAK_FLOPS`);
- `decode`: the compiled loop (`jtts.decode.generate`, greedy, 10 s of audio per row, EOS
  disabled) of `base` at batch 1, 16 and 64: audio seconds per second and RTF.
`--profile DIR` also writes a `jax.profiler` trace of three train steps of `base` and of one
batch-1 decode, each as one .tar.gz (what explains a missed target). `--dry-run` runs the same
code on the CPU with tiny sizes in seconds; the tests run it so the script cannot rot.

    bash bench/accelerator.sh OUT_DIR          # a GPU machine: install, then this script
    python bench/accelerator.py --dry-run --out /tmp/acc.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"base_mfu": 0.40, "decode_b64_over_b1_audio_per_s": 20.0, "extract_xrt": 1000.0}


@dataclass(frozen=True)
class Plan:
    """Sizes and time limits of one run: the accelerator's, or the CPU dry run's."""

    clips: int  # synthetic corpus for extraction
    clip_s: float
    batch_seconds: tuple[float, ...]
    train: dict[str, tuple[str, ...]]  # part -> (config, *overrides)
    train_frames: int  # frames per row; rows fill the config's data.batch_frames
    train_text: int
    train_steps: int  # per timed block; 3 blocks
    decode: tuple[str, ...]  # config, *overrides
    decode_batches: tuple[int, ...]
    decode_frames: int
    limits_s: dict[str, int] = field(default_factory=dict)


BF16 = ("model.dtype=bfloat16",)
FULL = Plan(
    clips=600,
    clip_s=6.0,
    batch_seconds=(80.0, 320.0, 1280.0),
    train={"train_base": ("base", *BF16), "train_small": ("small", *BF16)},
    train_frames=1024,
    train_text=128,
    train_steps=5,
    decode=("base", *BF16),
    decode_batches=(1, 16, 64),
    decode_frames=750,
    limits_s={"extract": 100, "train_base": 130, "train_small": 70, "decode": 140},
)
DRY = Plan(
    clips=4,
    clip_s=1.0,
    batch_seconds=(2.0, 4.0),
    train={"train_base": ("tiny", *BF16), "train_small": ("tiny",)},
    train_frames=64,
    train_text=16,
    train_steps=1,
    decode=("tiny",),
    decode_batches=(1, 2),
    decode_frames=24,
    limits_s={"extract": 240, "train_base": 240, "train_small": 240, "decode": 240},
)


def write_corpus(folder: Path, clips: int, clip_s: float, sr: int = 22050) -> float:
    """An LJ Speech-layout folder of seeded noise bursts; returns its seconds of audio."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    (folder / "wavs").mkdir(parents=True)
    n = int(clip_s * sr)
    envelope = 0.5 + 0.5 * np.sin(np.linspace(0, 12 * np.pi, n))  # syllable-like bursts
    with open(folder / "metadata.csv", "w") as meta:
        for i in range(clips):
            wav = 0.1 * envelope * rng.standard_normal(n)
            sf.write(folder / "wavs" / f"B{i:05d}.wav", wav.astype("float32"), sr)
            meta.write(f"B{i:05d}|clip {i}|clip {i}\n")
    return clips * n / sr


def part_extract(plan: Plan) -> dict:
    import torch

    from codec_bridge.extraction import extract

    device = "cuda" if torch.cuda.is_available() else "cpu"
    workers = os.cpu_count() or 2
    out = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    kw = dict(format="ljspeech", weights="untrained", device=device, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        audio_s = write_corpus(Path(tmp) / "corpus", plan.clips, plan.clip_s)
        extract(Path(tmp) / "corpus", Path(tmp) / "warm", limit=2, **kw)  # CUDA init, autotune
        runs = {}
        for i, b in enumerate(plan.batch_seconds):
            t0 = time.perf_counter()
            s = extract(
                Path(tmp) / "corpus", Path(tmp) / f"s{i}", batch_seconds=b, workers=workers, **kw
            )
            runs[str(b)] = round(s.seconds / (time.perf_counter() - t0), 1)
    best = max(runs, key=runs.get)
    out |= {"audio_s": round(audio_s), "reader_workers": workers, "xrt_by_batch_seconds": runs}
    return out | {"best_batch_seconds": float(best), "xrt": runs[best]}


def _config(spec: tuple[str, ...]):
    from jtts.config import load_config

    return load_config(ROOT / "configs" / f"{spec[0]}.yaml", spec[1:])


def _trace(profile: Path, name: str, fn) -> None:
    """Runs `fn` under `jax.profiler.trace` and packs the trace as PROFILE/NAME.tar.gz."""
    import jax

    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            fn()
        with tarfile.open(profile / f"{name}.tar.gz", "w:gz") as tar:
            tar.add(tmp, arcname=name)


def part_train(plan: Plan, name: str, profile: Path | None) -> dict:
    import jax

    from bench.train import jax_steps, random_batch, timed_blocks
    from jtts.metrics import mfu
    from jtts.model import flops_per_step

    cfg = _config(plan.train[name])
    k = cfg.model.n_codebooks
    rows = max(1, cfg.data.batch_frames // plan.train_frames)
    batch = random_batch(rows, plan.train_frames, plan.train_text, k)
    run_steps, compile_s = jax_steps(cfg, batch)
    timing = timed_blocks(run_steps, plan.train_steps, 3)
    step_s = timing["step_s"]
    flops = flops_per_step(cfg.model, rows, plan.train_text, plan.train_frames + k)
    device = jax.devices()[0]
    if profile is not None and name == "train_base":
        _trace(profile, "profile_train_base", lambda: run_steps(3))
    return {
        "config": " ".join(plan.train[name]),
        "device": device.device_kind,
        "batch": {"rows": rows, "frames": plan.train_frames, "text_tokens": plan.train_text},
        "step_s": round(step_s, 4),
        "median_step_s": round(timing["median_step_s"], 4),
        "compile_s": round(compile_s, 1),
        "tokens_per_s": round(rows * plan.train_frames * k / step_s),
        "tflops_per_step": round(flops / 1e12, 3),
        "mfu": mfu(flops, step_s, [device]),
    }


def part_decode(plan: Plan, profile: Path | None) -> dict:
    import jax

    from bench.sample import TEXT, build, rates, runs_for, timed
    from jtts import decode
    from jtts.sampling import Sampling

    model = build(plan.decode[0], plan.decode[1:])
    greedy = Sampling(greedy=True, min_frames=plan.decode_frames)
    out = {"config": " ".join(plan.decode), "device": jax.devices()[0].device_kind}
    for b in plan.decode_batches:
        texts = [TEXT] * b
        (seconds,), (first,) = timed(
            [decode.generate], model, texts, greedy, runs_for(b), plan.decode_frames
        )
        row = rates(seconds, b, plan.decode_frames)
        out[f"batch{b}"] = {**row, "compile_s": round(first.compile_s, 1), "steps": first.steps}
    hi = plan.decode_batches[-1]
    ratio = out[f"batch{hi}"]["audio_s_per_s"] / out["batch1"]["audio_s_per_s"]
    out["largest_batch"] = hi
    out["largest_over_batch1_audio_per_s"] = round(ratio, 2)
    if profile is not None:
        _trace(
            profile,
            "profile_decode",
            lambda: decode.generate(model, [TEXT], greedy, plan.decode_frames),
        )
    return out


def run_part(name: str, plan_name: str, profile: Path | None, limit_s: int) -> dict:
    """One part in its own process (its own device memory and thread pools), under its limit."""
    cmd = [sys.executable, __file__, "--part", name, "--plan", plan_name]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if plan_name == "dry":
        env["JAX_PLATFORMS"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
    t0 = time.perf_counter()
    try:
        out = subprocess.run(
            cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=limit_s, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over its {limit_s} s limit"}
    wall = round(time.perf_counter() - t0, 1)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-12:], "wall_s": wall}
    return json.loads(out.stdout.strip().splitlines()[-1]) | {"wall_s": wall}


def targets(r: dict) -> dict:
    """Each target's measured value and whether it is met (None: the part failed)."""

    def check(value, goal):
        return {"value": value, "target": goal, "met": None if value is None else value >= goal}

    dec = r.get("decode", {})
    return {
        "base_mfu_ge_0.40": check(r.get("train_base", {}).get("mfu"), TARGETS["base_mfu"]),
        "decode_b64_over_b1_ge_20x": check(
            dec.get("largest_over_batch1_audio_per_s"), TARGETS["decode_b64_over_b1_audio_per_s"]
        ),
        "extract_ge_1000x_real_time": check(
            r.get("extract", {}).get("xrt"), TARGETS["extract_xrt"]
        ),
    }


def git_commit() -> str | None:
    """HEAD of the checkout, or None where it is a copy without git (a device machine's)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def run_all(plan_name: str, out: Path | None, profile: Path | None) -> dict:
    plan = DRY if plan_name == "dry" else FULL
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "accelerator",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "plan": plan_name,
        "commit": git_commit(),
        "host": {"cpu_cores": os.cpu_count(), "python": platform.python_version()},
        "gpu": gpu_name(),
    }
    t0 = time.perf_counter()
    for name in ("extract", *plan.train, "decode"):
        print(f"accelerator: {name} (limit {plan.limits_s[name]} s)", file=sys.stderr, flush=True)
        result[name] = run_part(name, plan_name, profile, plan.limits_s[name])
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    result["targets"] = targets(result)
    text = json.dumps(result, indent=1)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (seconds)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--profile", type=Path, help="write jax.profiler traces (.tar.gz) here")
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--plan", choices=["full", "dry"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.part:
        plan = DRY if a.plan == "dry" else FULL
        if a.part == "extract":
            r = part_extract(plan)
        elif a.part == "decode":
            r = part_decode(plan, a.profile)
        else:
            r = part_train(plan, a.part, a.profile)
        print(json.dumps(r))
        return
    run_all("dry" if a.dry_run else "full", a.out, a.profile)


if __name__ == "__main__":
    main()
