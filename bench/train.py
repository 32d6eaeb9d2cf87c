"""Training throughput: jtts (JAX, jitted) vs the same model in PyTorch eager, on this machine.

Prints one JSON object. For each config: codec tokens/s (padded frames x codebooks) of full
optimizer steps on one fixed random batch, for both frameworks at the same shapes, batch and
optimizer; their ratio (JAX / PyTorch); peak resident memory of each worker process; and the
JAX compile time (excluded from throughput). Each measurement runs in its own process, so
peak memory is that framework's alone and the JAX worker never imports torch.

Timing is taken over several blocks of steps. Throughput uses the best block (the one least
disturbed by other processes on a shared machine); the median is reported beside it, and
the load average at the start says how busy the machine was. PyTorch runs with flush-to-zero
for denormals, as XLA's CPU backend always does.

    python bench/train.py                        # tiny and small at their default shapes
    python bench/train.py --cores 1              # both frameworks pinned to one core
    python bench/train.py --configs tiny --steps 10 --blocks 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# rows x frames x text tokens per config. tiny: its data.batch_frames budget at 200 frames;
# small: 4 rows of 400 frames (a fifth of its budget) to keep a CPU run to minutes.
SHAPES = {"tiny": (10, 200, 48), "small": (4, 400, 64)}


def random_batch(rows: int, frames: int, text: int, k: int, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "text": rng.integers(0, 50000, (rows, text)).astype(np.int32),
        "text_mask": np.ones((rows, text), bool),
        "codes": rng.integers(0, 1024, (rows, k, frames)).astype(np.int32),
        "lengths": np.full(rows, frames, np.int32),
        "has_eos": np.ones(rows, bool),
        "valid": np.ones(rows, bool),
    }


def timed_blocks(run_steps: Callable[[int], None], steps: int, blocks: int) -> dict:
    """Best and median seconds per step over `blocks` blocks of `steps` steps."""
    times = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        run_steps(steps)
        times.append((time.perf_counter() - t0) / steps)
    times.sort()
    return {"step_s": times[0], "median_step_s": times[len(times) // 2]}


def jax_steps(cfg, batch: dict) -> tuple[Callable[[int], None], float]:
    """A function running n jitted train steps on `batch` (one device), compiled and warmed
    up, and the seconds its first step took (the compile)."""
    import jax
    import numpy as np

    from jtts.conditioning import Cond
    from jtts.mesh import batch_sharding, make_mesh, state_shardings
    from jtts.optim import abstract_model, abstract_state, init_state, make_optimizer
    from jtts.pronounce import N_SYMBOLS
    from jtts.train_step import TrainStep

    mesh = make_mesh(cfg.train.mesh, jax.devices()[:1])
    tx = make_optimizer(cfg.optim)
    graphdef, _ = abstract_model(cfg)
    shardings = state_shardings(abstract_state(cfg, tx), mesh)
    step = TrainStep(cfg, graphdef, tx, mesh, shardings)
    if cfg.model.pron_head:  # phoneme targets half each text's length: their values cost nothing
        rows, s = batch["text"].shape
        phones_S = np.where(np.arange(s) < s // 2, 1 + np.arange(s) % (N_SYMBOLS - 1), 0)
        batch = batch | {
            "phones": np.tile(phones_S.astype(np.int32), (rows, 1)),
            "phones_ok": np.ones(rows, bool),
        }
    cond = Cond.of_text(batch["text"], batch["text_mask"])
    batch = {k: v for k, v in batch.items() if k not in ("text", "text_mask")} | {"cond": cond}
    batch = jax.tree.map(lambda v: jax.device_put(v, batch_sharding(mesh)), batch)
    box = {"state": init_state(cfg, tx, shardings)}

    def run_steps(n: int) -> None:
        for _ in range(n):
            box["state"], box["metrics"] = step(box["state"], batch)
        jax.block_until_ready((box["state"], box["metrics"]))

    t0 = time.perf_counter()
    run_steps(1)
    compile_s = time.perf_counter() - t0
    run_steps(1)
    return run_steps, compile_s


def measure_jax(cfg, batch: dict, steps: int, blocks: int) -> dict:
    run_steps, compile_s = jax_steps(cfg, batch)
    return {**timed_blocks(run_steps, steps, blocks), "compile_s": compile_s}


def measure_torch(cfg, batch: dict, steps: int, blocks: int) -> dict:
    import torch

    from bench.torch_reference import TorchTrainer

    torch.set_flush_denormal(True)
    trainer = TorchTrainer(cfg)
    tb = {
        k: torch.from_numpy(v if v.dtype == bool else v.astype("int64")) for k, v in batch.items()
    }

    def run_steps(n: int) -> None:
        for _ in range(n):
            trainer.step(tb)

    run_steps(2)  # warm-up: allocator, kernels
    return {**timed_blocks(run_steps, steps, blocks), "threads": torch.get_num_threads()}


def worker(framework: str, config: str, steps: int, blocks: int, cores: int) -> None:
    # Pinned before either framework starts its thread pools; torch's threads follow.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
    if framework == "torch":
        import torch

        torch.set_num_threads(cores)
    from jtts.config import load_config

    # The PyTorch reference has no phoneme head (a training aid, a linear layer): both sides
    # time the same model without it.
    cfg = load_config(ROOT / "configs" / f"{config}.yaml", ["model.pron_head=false"])
    rows, frames, text = SHAPES[config]
    batch = random_batch(rows, frames, text, cfg.model.n_codebooks)
    out = (measure_jax if framework == "jax" else measure_torch)(cfg, batch, steps, blocks)
    out["tokens_per_s"] = rows * frames * cfg.model.n_codebooks / out["step_s"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_worker(framework: str, config: str, steps: int, blocks: int, cores: int) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, __file__, "--worker", framework, "--configs", config]
    cmd += ["--steps", str(steps), "--blocks", str(blocks), "--cores", str(cores)]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{framework} worker for {config} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=["tiny", "small"], choices=sorted(SHAPES))
    p.add_argument("--steps", type=int, help="steps per timed block (default: 5 tiny, 2 small)")
    p.add_argument("--blocks", type=int, default=3, help="timed blocks per framework")
    p.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="CPU cores")
    p.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker, a.configs[0], a.steps, a.blocks, a.cores)
        return
    results = {
        "device": "cpu",
        "cores_used": a.cores,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "unit": "codec tokens/s (padded frames x K), best timed block",
    }
    for config in a.configs:
        steps = a.steps or (5 if config == "tiny" else 2)
        rows, frames, text = SHAPES[config]
        jx = run_worker("jax", config, steps, a.blocks, a.cores)
        pt = run_worker("torch", config, steps, a.blocks, a.cores)
        results[config] = {
            "batch": {"rows": rows, "frames": frames, "text_tokens": text},
            "timing": {"steps_per_block": steps, "blocks": a.blocks},
            "jax_tokens_per_s": round(jx["tokens_per_s"]),
            "torch_tokens_per_s": round(pt["tokens_per_s"]),
            "ratio_jax_over_torch": round(jx["tokens_per_s"] / pt["tokens_per_s"], 3),
            "jax_step_s": round(jx["step_s"], 4),
            "torch_step_s": round(pt["step_s"], 4),
            "jax_median_step_s": round(jx["median_step_s"], 4),
            "torch_median_step_s": round(pt["median_step_s"], 4),
            "jax_compile_s": round(jx["compile_s"], 2),
            "jax_peak_rss_mb": round(jx["peak_rss_mb"]),
            "torch_peak_rss_mb": round(pt["peak_rss_mb"]),
            "torch_threads": pt["threads"],
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
