"""Sampling speed: the compiled `while_loop` decoder against its two baselines.

For `tiny` and `small` (random weights) at batch 1 and 16, each row decodes 10 s of audio
(750 frames, 758 delay-pattern steps; EOS is disabled with min_frames so every run does the
same work), greedy, no guidance:
- compiled: `jtts.decode.generate`, the whole loop in one XLA program;
- python_loop: `jtts.decode_reference.generate_stepwise`, the same step jitted alone and
  called per token;
- no_cache: the full teacher-forced forward (`model.__call__`) re-run per step over the
  prefix (rounded up to a power of two), timed once per prefix length and summed over the
  758 steps (extrapolated: a full run would take minutes to hours).
Also: the compiled loop with the configs' default sampling (top-k 50, guidance 3), and the
memory-bandwidth bound at batch 1 (parameter bytes read per step x steps / the read bandwidth
of the JAX device, measured here with a jitted sum over 256 MiB).

`small` also gets `batch16_bound`: what batch 16 could reach here if attention read only the
filled prefix of the K/V cache, at this machine's measured read bandwidth, on top of the
measured cost of everything else in a step (batch 16 decoding with a 64-step cache). And
`small_kv_heads`: the compiled loop of `small` with grouped-query attention (2 and 1 K/V
heads, random weights), whose cache is 2x and 4x smaller. Prints one JSON object.

`--workdir RUN` (repeatable) times trained runs instead, under "runs" keyed by RUN, on a few
everyday sentences read through the run's own text front end, sampled with its `sample`
settings (seed 0, EOS on):
- decode: the compiled loop at batch 1, one sentence at a time (best of REPEATS after a
  compiling call); rtf = decode seconds / seconds of the frames it generated;
- first_call / repeat_call: `python -m jtts.sample --workdir RUN --text-file F --out-dir D` as
  a user runs it, timed wall-clock in a subprocess, first with an empty XLA cache, then again
  with the cache the first left; its phases are the call's own `--timings-json`, and
  `startup_s` is the rest (interpreter and imports).
"""

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax import numpy as jnp

from jtts import conditioning, decode, sampler, trained_run
from jtts.conditioning import Cond
from jtts.config import load_config
from jtts.decode_io import Generation, prefix_bucket, step_bucket
from jtts.decode_reference import forward_logits, generate_stepwise
from jtts.model import build_model, count_params
from jtts.sampling import Sampling, Spec

FRAMES = 750
FRAME_RATE = 75.0
TEXT = list(range(1000, 1024))  # 24 text tokens
REPEATS = 5  # batch 1; batch 16: 3
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SENTENCES = (
    "The train to the city leaves at half past seven.",
    "Please close the window before you go to bed.",
    "She bought three apples and a loaf of bread at the market.",
    "We will meet again next week to talk about the plan.",
)
PHASES = ("load_s", "compile_s", "decode_s", "host_s", "write_s", "codec_s")  # run in order


def read_bandwidth() -> float:
    """GB/s of a jitted sum over 256 MiB: how fast XLA streams an array from device memory
    (host RAM on CPU, HBM on a GPU)."""
    x = jnp.ones(64 * 2**20, jnp.float32)
    total = jax.jit(jnp.sum)
    total(x).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        total(x).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return x.nbytes / best / 1e9


def step_bytes(model) -> int:
    """Parameter bytes one decoder step reads: decoder layers (less the cross-attention K/V
    projection, used once per text), output heads and K embedding rows."""
    params = nnx.state(model.decoder, nnx.Param)
    per_layer = sum(
        x.nbytes
        for path, x in jax.tree_util.tree_leaves_with_path(params)
        if "kv" not in jax.tree_util.keystr(path)
    )
    k, _, d = model.code_embed[...].shape
    rows = k * d * model.code_embed[...].dtype.itemsize
    return per_layer + model.heads[...].nbytes + model.dec_norm.scale[...].nbytes + rows


def rates(seconds: float, batch: int, frames: int = FRAMES, frame_rate: float = FRAME_RATE) -> dict:
    audio = batch * frames / frame_rate
    return {
        "s": round(seconds, 3),
        "rtf": round(seconds / audio, 4),
        "frames_per_s": round(batch * frames / seconds, 1),
        "audio_s_per_s": round(audio / seconds, 2),
    }


def timed(
    fns, model, texts, sampling, runs: int, frames: int = FRAMES
) -> tuple[list[float], list[Generation]]:
    """Best decode time of each function over `runs` interleaved calls (so that load from
    other processes hits all alike), after a first (compiling) call of each."""
    firsts = [fn(model, texts, sampling, frames) for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(runs):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], fn(model, texts, sampling, frames).decode_s)
    return best, firsts


def no_cache_seconds(model, batch: int, cache_steps: int, steps: int) -> float:
    """Sum over steps of the timed full forward at that step's prefix length."""
    graphdef, state = nnx.split(model)
    k = model.cfg.n_codebooks
    text = np.tile(np.asarray(TEXT, np.int32), (batch, 1))
    cond = Cond.of_text(text, np.ones_like(text, bool))
    seq = np.random.default_rng(0).integers(0, model.cfg.codebook_size, (batch, k, cache_steps))
    seq = seq.astype(np.int32)
    counts: dict[int, int] = {}
    for s in range(steps):
        p = prefix_bucket(s + 1, cache_steps)
        counts[p] = counts.get(p, 0) + 1
    total = 0.0
    spec = Spec.of(model, Sampling(greedy=True))
    loop = decode.init_loop(spec, np.ones(batch, bool), cache_steps)._replace(seq_BxKxS=seq)
    for prefix, count in counts.items():
        args = (graphdef, prefix, spec, state, cond, loop._replace(step=np.int32(prefix - 1)))
        forward_logits(*args)[0].block_until_ready()
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            forward_logits(*args)[0].block_until_ready()
            best = min(best, time.perf_counter() - t0)
        total += count * best
    return total


def runs_for(batch: int) -> int:
    return REPEATS if batch == 1 else REPEATS // 2 + 1


def audio_ratio(b1: dict, b16: dict) -> float:
    """Audio per second of batch 16 over batch 1, from two `rates` rows."""
    return round(b16["audio_s_per_s"] / b1["audio_s_per_s"], 2)


def build(name: str, overrides: tuple[str, ...] = ()):
    return build_model(
        load_config(os.path.join(ROOT, "configs", f"{name}.yaml"), overrides).model, nnx.Rngs(0)
    )


def batch16_bound(model, b1_s: float, b16_s: float, read_GBps: float) -> dict:
    """Ceiling of batch 16 / batch 1 (audio per second) with prefix-only attention reads."""
    short_frames = 56  # 64 steps, the smallest cache bucket
    greedy = Sampling(greedy=True, min_frames=short_frames)
    texts = [TEXT] * 16
    (short_s,), (short,) = timed([decode.generate], model, texts, greedy, 3, short_frames)
    short_step_s = short_s / short.steps
    cfg, steps = model.cfg, FRAMES + model.cfg.n_codebooks
    kv_bytes_per_position = 16 * cfg.resolved_kv_heads * cfg.resolved_head_dim * 2 * cfg.dec_layers
    kv_bytes_per_position *= jnp.dtype(cfg.dtype).itemsize
    prefix_s = kv_bytes_per_position * (steps + 1) / 2 / (read_GBps * 1e9)  # mean filled prefix
    floor_s = short_step_s + prefix_s
    return {
        "b16_ms_per_step_64_step_cache": round(short_step_s * 1e3, 3),
        "prefix_kv_read_ms_per_step": round(prefix_s * 1e3, 3),
        "b16_floor_ms_per_step": round(floor_s * 1e3, 3),
        "b16_measured_ms_per_step": round(b16_s / steps * 1e3, 3),
        "b1_measured_ms_per_step": round(b1_s / steps * 1e3, 3),
        "ceiling_b16_over_b1_audio_per_s": round(16 * b1_s / steps / floor_s, 2),
    }


def compiled_only(name: str, overrides: tuple[str, ...]) -> dict:
    """Batch 1 and 16 through the compiled loop only."""
    model = build(name, overrides)
    greedy = Sampling(greedy=True, min_frames=FRAMES)
    out = {}
    for batch in (1, 16):
        (seconds,), _ = timed([decode.generate], model, [TEXT] * batch, greedy, runs_for(batch))
        out[f"batch{batch}"] = rates(seconds, batch)
    out["batch16_over_batch1_audio_per_s"] = audio_ratio(out["batch1"], out["batch16"])
    return out


def bench_config(name: str, read_GBps: float) -> dict:
    model = build(name)
    cfg = model.cfg
    greedy = Sampling(greedy=True, min_frames=FRAMES)
    default = Sampling(top_k=50, cfg_scale=3.0, min_frames=FRAMES)
    nbytes = step_bytes(model)
    out = {"params": count_params(model), "param_bytes_per_step": nbytes}
    for batch in (1, 16):
        texts = [TEXT] * batch
        runs = runs_for(batch)
        fns = [decode.generate, generate_stepwise]
        (compiled_s, loop_s), (first, _) = timed(fns, model, texts, greedy, runs)
        steps = first.steps
        assert steps == FRAMES + cfg.n_codebooks and not first.finished.any()
        naive_s = no_cache_seconds(model, batch, step_bucket(steps), steps)
        (sampled_s,), (sampled,) = timed([decode.generate], model, texts, default, runs)
        row = {
            "compiled": {**rates(compiled_s, batch), "compile_s": round(first.compile_s, 2)},
            "python_loop": rates(loop_s, batch),
            "no_cache": {**rates(naive_s, batch), "extrapolated": True},
            "compiled_top_k50_cfg3": {
                **rates(sampled_s, batch),
                "compile_s": round(sampled.compile_s, 2),
            },
            "speedup_vs_python_loop": round(loop_s / compiled_s, 2),
            "speedup_vs_no_cache": round(naive_s / compiled_s, 1),
            "ms_per_step": round(compiled_s / steps * 1e3, 3),
        }
        if batch == 1:
            bound = nbytes * steps / (read_GBps * 1e9)
            row["bandwidth_bound_s"] = round(bound, 3)
            row["compiled_over_bound"] = round(compiled_s / bound, 2)
        out[f"batch{batch}"] = row
    b1, b16 = out["batch1"]["compiled"], out["batch16"]["compiled"]
    out["batch16_over_batch1_audio_per_s"] = audio_ratio(b1, b16)
    if name == "small":
        out["batch16_bound"] = batch16_bound(model, b1["s"], b16["s"], read_GBps)
    return out


def run_decode(run: trained_run.Run, runs: int = REPEATS) -> dict:
    """The compiled loop at batch 1 on each of SENTENCES, as `jtts.sample` would decode it."""
    sampling = Sampling.of(run.cfg.sample)
    max_frames = sampler._max_frames(run, None)
    # A run that reads other attributes (a speaker) speaks as the first value of each.
    names = {a.name: c.values[0] for a, c in conditioning.attributes(run.cfg.model)}
    categories = trained_run.choose_categories(run.cfg, names, run.run_dir)
    fn = functools.partial(decode.generate, categories={k: [v] for k, v in categories.items()})
    rows, compile_s, decode_s = [], 0.0, 0.0
    for text in SENTENCES:
        (ids,), _ = trained_run.encode(run, text, text)
        (seconds,), (first,) = timed([fn], run.model, [ids], sampling, runs, max_frames)
        frames = first.codes[0].shape[1]
        compile_s, decode_s = compile_s + first.compile_s, decode_s + seconds
        row = rates(seconds, 1, frames, run.frame_rate)
        rows.append({"text": text, "text_tokens": len(ids), "frames": frames, **row})
    audio_s = sum(r["frames"] for r in rows) / run.frame_rate
    return {
        "sentences": rows,
        "compile_s": round(compile_s, 2),
        "audio_s": round(audio_s, 2),
        "s": round(decode_s, 4),
        "rtf": round(decode_s / audio_s, 4),
    }


def run_call(workdir: str, text_file: Path, out_dir: Path, xla_cache: Path) -> dict:
    """One `python -m jtts.sample` call in a subprocess: wall-clock seconds and its phases."""
    timings = out_dir / "timings.json"
    cmd = [sys.executable, "-m", "jtts.sample", "--workdir", workdir, "--text-file", text_file]
    cmd += ["--out-dir", out_dir, "--timings-json", timings]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(xla_cache)}
    t0 = time.perf_counter()
    proc = subprocess.run(list(map(str, cmd)), cwd=ROOT, env=env, capture_output=True, text=True)
    total_s = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        raise RuntimeError(f"python -m jtts.sample --workdir {workdir}: {lines[-1]}")
    t = json.loads(timings.read_text(encoding="utf-8"))
    return {
        "total_s": round(total_s, 3),
        "startup_s": round(total_s - t["wall_s"], 3),
        **{name: round(t[name], 4) for name in PHASES},
        "audio_s": round(t["audio_s"], 2),
        "rtf": round(total_s / t["audio_s"], 4),
        "decode_rtf": round(t["decode_s"] / t["audio_s"], 4),
    }


def bench_run(workdir: str, runs: int = REPEATS) -> dict:
    """A trained run: its compiled batch-1 decode, then two whole `jtts.sample` calls."""
    out = {"decode": run_decode(trained_run.load_run(workdir), runs)}
    with tempfile.TemporaryDirectory(prefix="bench-sample-") as tmp:
        text_file = Path(tmp) / "sentences.txt"
        text_file.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
        for name in ("first_call", "repeat_call"):
            out[name] = run_call(workdir, text_file, Path(tmp) / name, Path(tmp) / "xla")
    out["targets"] = {
        "decode_b1_rtf_le_0.2": out["decode"]["rtf"],
        "repeat_call_rtf_le_0.2": out["repeat_call"]["rtf"],
    }
    return out


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
    }


def bench_runs(workdirs: list[str]) -> dict:
    load_start = os.getloadavg()
    result = {
        "benchmark": "sample",
        "machine": machine(),
        "setup": {
            "sentences": list(SENTENCES),
            "sampling": "each run's sample config, seed 0, EOS on",
            "decode": f"batch 1, one sentence at a time, best of {REPEATS} runs after a "
            "compiling run; rtf = decode seconds / seconds of the frames generated",
            "calls": "python -m jtts.sample --text-file (the sentences) --out-dir, wall-clock "
            "in a subprocess: first with an empty XLA cache, then with the cache it left; "
            "rtf = total seconds / audio seconds",
        },
        "runs": {workdir: bench_run(workdir) for workdir in workdirs},
    }
    result["machine"]["loadavg_start_end"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    return result


def bench_models() -> dict:
    load_start = os.getloadavg()
    read_GBps = read_bandwidth()
    result = {
        "benchmark": "sample",
        "machine": {**machine(), "read_bandwidth_GBps": round(read_GBps, 1)},
        "setup": {
            "frames_per_row": FRAMES,
            "audio_s_per_row": FRAMES / FRAME_RATE,
            "sampling": "greedy, no guidance, EOS disabled (min_frames=750)",
            "timing": f"best of {runs_for(1)} (batch 16: {runs_for(16)}) runs after a compiling "
            "run, compiled and python_loop interleaved; rtf = decode seconds / seconds of "
            "audio produced (all rows)",
            "no_cache": "forward per prefix bucket timed (best of 2), x steps in that bucket",
            "bandwidth_bound": "param bytes per step x steps / read bandwidth",
        },
    }
    for name in ("tiny", "small"):
        result[name] = bench_config(name, read_GBps)
    result["small_kv_heads"] = {
        str(g): compiled_only("small", (f"model.n_kv_heads={g}",)) for g in (2, 1)
    }
    small = result["small"]
    result["targets"] = {
        "small_b1_vs_no_cache_ge_10x": small["batch1"]["speedup_vs_no_cache"],
        "tiny_b1_vs_python_loop_ge_1.3x": result["tiny"]["batch1"]["speedup_vs_python_loop"],
        "small_b1_vs_python_loop_ge_1.3x": small["batch1"]["speedup_vs_python_loop"],
        "tiny_b16_over_b1_audio_ge_5x": result["tiny"]["batch16_over_batch1_audio_per_s"],
        "small_b16_over_b1_audio_ge_5x": small["batch16_over_batch1_audio_per_s"],
        "small_b1_rtf_le_0.5": small["batch1"]["compiled"]["rtf"],
        "small_b1_over_bound_le_2": small["batch1"]["compiled_over_bound"],
    }
    result["machine"]["loadavg_start_end"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--workdir",
        action="append",
        metavar="RUN",
        help="time this trained run instead of the random-weight models (repeatable)",
    )
    a = p.parse_args(argv)
    try:
        result = bench_runs(a.workdir) if a.workdir else bench_models()
    except trained_run.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
