"""The training loop behind `python -m jtts.train`.

One run directory holds everything (config, store reference, checkpoints, metrics, attention,
samples; its layout is `jtts.rundir`'s). Starting the same command again resumes from the
latest checkpoint, exactly: the state, the data position and the random keys all continue
where they stopped.

Host/device overlap: step N is dispatched before step N-1's metrics are fetched, so the host
never waits for the device except for that one-step lag; batches are prepared by the data
loader's thread.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from codec_bridge.format import CodeStore
from jtts import conditioning, warmstart
from jtts.checkpoint import Checkpointer
from jtts.config import Config, ModelConfig, load_config, save_config
from jtts.data import Batch, Corpus, Loader
from jtts.evaluation import eval_metrics, eval_sums
from jtts.mesh import batch_sharding, make_mesh, state_shardings
from jtts.metrics import MetricsLogger, plot_losses, unigram_entropy
from jtts.model import flops_per_step
from jtts.optim import abstract_model, abstract_state, inference_params, init_state, make_optimizer
from jtts.pron_text import PronText
from jtts.reporting import (
    eval_lines,
    save_attention,
    startup_lines,
    store_info,
    train_values,
    write_samples,
)
from jtts.rundir import RunDir
from jtts.text import cache_dir
from jtts.train_step import EvalStep, TrainStep
from jtts.workdir import lock_run_dir

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: stopped by SIGTERM after saving; rerun to resume
VERIFY_BYTES = 4e9  # stores up to this size are checksummed at start (~10 s at 400 MB/s)


class NonFiniteLossError(FloatingPointError):
    """A step produced a NaN/Inf loss or gradient and `train.nonfinite` is 'stop'."""


class SetupError(ValueError):
    """The store, the config and the devices do not fit together; the message says how."""


def check_store(meta: dict[str, Any], model: ModelConfig) -> None:
    """The store's codebooks must be what the model predicts; says how to fix it if not."""
    for key in ("n_codebooks", "codebook_size"):
        if int(meta[key]) != getattr(model, key):
            raise SetupError(
                f"code store has {key}={meta[key]} but the config has model.{key}="
                f"{getattr(model, key)}; pass --set model.{key}={meta[key]} (or use a store "
                "extracted with matching codec settings)"
            )


def init_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None):
    """jax.distributed.initialize; with no arguments it auto-detects TPU pods, SLURM, etc.

    Cross-process collectives of CPU devices (tests, CPU clusters) go through gloo.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )


def _enable_compile_cache() -> None:
    """Persistent XLA cache (~/.cache/jtts/xla or JTTS_CACHE) so restarts skip compiling."""
    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "xla"))


class _Preemption:
    """SIGTERM means: save a checkpoint at the next step and exit. On several processes JAX's
    preemption sync point makes all of them stop at the same step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if jax.process_count() == 1:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def reached(self, step: int) -> bool:
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        try:
            return multihost_utils.reached_preemption_sync_point(step)
        except RuntimeError:  # preemption service disabled
            return False

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@dataclasses.dataclass
class _Pending:
    """A dispatched step whose metrics have not been read yet."""

    step: int
    metrics: Any
    batch: Batch
    compiled: bool  # first step of its shape: timing includes compilation


class Trainer:
    def __init__(
        self,
        cfg: Config,
        data_dir: str | Path,
        run_dir: str | Path,
        *,
        devices: list[jax.Device] | None = None,
        progress: bool = True,
    ):
        self.rundir = RunDir(run_dir)
        self.rundir.layout()  # a run of a newer layout stops here, before anything is read
        self.lead = jax.process_index() == 0
        self.store = CodeStore.open(data_dir)
        check_store(self.store.meta, cfg.model)
        try:  # the attributes' tables of names, saved with the config
            model = conditioning.resolve(cfg.model, self.store.records())
        except ValueError as e:
            raise SetupError(f"{self.store.root}: {e}") from e
        self.cfg = cfg = dataclasses.replace(cfg, model=model)
        if not self.store.check(VERIFY_BYTES) and self.lead:  # raises on changed bytes
            root = self.store.root
            print(f"jtts: {root} too large to checksum at start; codec_bridge verify {root} does")
        try:
            self.mesh = make_mesh(cfg.train.mesh, devices)
            rows = self.mesh.devices.size * cfg.optim.grad_accum
            self.corpus = Corpus(self.store, cfg, row_multiple=rows)
            self.pron_text = (
                PronText(
                    cfg,
                    rows,
                    [b.text_len for b in self.corpus.buckets],
                    held_out=self.corpus.token_rows("val"),
                )
                if cfg.data.pron_text
                else None
            )
        except ValueError as e:
            raise SetupError(str(e)) from e
        self.has_val = len(self.corpus.splits.get("val", ())) > 0

        self.tx = make_optimizer(cfg.optim)
        self.graphdef, _ = abstract_model(cfg)
        target = abstract_state(cfg, self.tx)
        self.shardings = state_shardings(target, self.mesh)
        self.ckpt = Checkpointer(self.rundir.root, cfg)
        target = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            target,
            self.shardings,
        )
        try:  # the newest intact checkpoint; a damaged newer one is warned about, set aside
            restored = self.ckpt.restore_latest(target)
        except Exception:
            self.ckpt.close()
            raise
        if restored:
            self.start, self.state, self.data_state = restored
        else:
            self.start = 0
            self.state, self.data_state = init_state(cfg, self.tx, self.shardings), None
            if cfg.train.init_from:
                self._warm_start(cfg.train.init_from)
        if self.lead:
            self.rundir.root.mkdir(parents=True, exist_ok=True)
            self.rundir.write_layout()
            save_config(cfg, self.rundir.config)
            # The sampler decodes with the codec this store recorded (its meta).
            self.rundir.store.write_text(json.dumps(store_info(self.store), indent=2) + "\n")

        self.train_step = TrainStep(cfg, self.graphdef, self.tx, self.mesh, self.shardings)
        self.eval_step = EvalStep(cfg, self.graphdef, self.mesh, self.shardings["params"])
        self.weights_K = np.asarray(cfg.codebook_weights, np.float64)
        self.log = MetricsLogger(
            self.rundir.root,
            start_step=self.start,
            total_steps=cfg.train.steps,
            tensorboard=cfg.log.tensorboard,
            enabled=self.lead,
            progress=progress,
        )
        self._seen_shapes: set[tuple[int, int, int]] = set()
        self._interval = {"tokens": 0.0, "time": 0.0, "flops": 0.0, "steps": 0.0}
        self._last_loss: float | None = None
        self._last_done = self._started = time.perf_counter()

    def _finish(self, p: _Pending) -> None:
        """Reads a step's metrics (it has run by now), checks them, logs them."""
        m = jax.device_get(p.metrics)
        now = time.perf_counter()
        elapsed, self._last_done = now - self._last_done, now
        if not bool(m["finite"]):
            where = f"step {p.step}: loss={float(m['loss'])}, grad_norm={float(m['grad_norm'])}"
            ids = [i for i in p.batch.ids if i]
            if self.cfg.train.nonfinite == "stop":
                raise NonFiniteLossError(
                    f"non-finite {where} (update not applied); batch utterances on process "
                    f"{jax.process_index()}: {ids}; set train.nonfinite=skip to skip such steps"
                )
            self.log.say(f"jtts: skipped {where}; {int(m['skipped'])} skipped so far")
        b = p.batch.bucket
        if not p.compiled:
            frames = b.frames + self.cfg.model.n_codebooks
            self._interval["tokens"] += float(m["tokens"])
            self._interval["time"] += elapsed
            text_only = (self.pron_text.rows, b.text_len) if self.pron_text else (0, 0)
            flops = flops_per_step(self.cfg.model, b.rows, b.text_len, frames, text_only)
            self._interval["flops"] += flops
            self._interval["steps"] += 1
        if p.step % self.cfg.log.every == 0 or p.step == self.cfg.train.steps:
            elapsed_s = time.perf_counter() - self._started
            devices = list(self.mesh.devices.flat)
            values = train_values(m, self._interval, devices, elapsed_s)
            self.log.write(p.step, values)
            self._interval = dict.fromkeys(self._interval, 0.0)
        self._last_loss = float(m["loss"])
        self.log.progress(p.step, loss=self._last_loss)

    def _evaluate(self, step: int) -> dict[str, float]:
        """Evaluates the inference weights (`jtts.evaluation`): logs the metrics and, on the
        lead process, saves the best head's attention and the samples (`jtts.reporting`)."""
        params = inference_params(self.state)
        sums, row0 = eval_sums(
            self.eval_step, params, self.corpus, self.mesh, self.cfg.eval.batches
        )
        elapsed_s = time.perf_counter() - self._started
        values = eval_metrics(sums, self.weights_K, self.unigram_K, self.cfg.model, elapsed_s)
        self.log.write(step, values)
        if self.lead:
            best_TxS = row0[values["eval/attn_layer"], values["eval/attn_head"]]
            save_attention(self.rundir, self.log, step, best_TxS)
        for line in eval_lines(step, values, self.cfg.model.n_codebooks):
            self.log.say(line)
        if self.lead and self.cfg.eval.num_samples:
            model = nnx.merge(self.graphdef, params)
            write_samples(model, self.corpus, self.store, self.cfg, self.rundir, step)
        return values

    def run(self) -> int:
        cfg = self.cfg
        for line in startup_lines(
            cfg, self.mesh, self.corpus, self.store, self.start, self.data_state, self.pron_text
        ):
            self.log.say(line)
        if self.has_val:
            self.unigram_K = unigram_entropy(self.corpus.code_counts("train"))
        steps = cfg.train.steps
        step, pending, preempted = self.start, None, False
        watch = _Preemption()
        loader = Loader(
            self.corpus,
            "train",
            batch_sharding(self.mesh),
            prefetch=cfg.data.prefetch,
            state=self.data_state,
            pron_text=self.pron_text,
        )
        try:
            while step < steps:
                batch = next(loader)
                self.state, metrics = self.train_step(self.state, batch.arrays)
                step += 1
                shape = (batch.bucket.rows, batch.bucket.frames, batch.bucket.text_len)
                compiled = shape not in self._seen_shapes
                self._seen_shapes.add(shape)
                if pending is not None:
                    self._finish(pending)
                pending = _Pending(step, metrics, batch, compiled)
                preempted = watch.reached(step)
                evaluate = self.has_val and (step % cfg.eval.every == 0 or step == steps)
                save = step % cfg.checkpoint.every == 0 or step == steps or preempted
                save |= evaluate and cfg.checkpoint.keep_best
                if not (evaluate or save):
                    continue
                self._finish(pending)
                pending = None
                eval_metrics = self._evaluate(step) if evaluate else None
                if save:
                    self.ckpt.save(step, self.state, loader.state(), eval_metrics)
                self._last_done = time.perf_counter()
                if preempted:
                    self.log.say(f"jtts: SIGTERM: saved step {step}; rerun the command to resume")
                    break
            if pending is not None:
                self._finish(pending)
        finally:
            loader.close()
            watch.close()
            self.ckpt.wait()
            self.ckpt.close()
            self.log.close()
        if self.lead:
            plot_losses(self.rundir.root)
        # Every process prints this line: on several hosts it shows they agree.
        print(
            f"jtts: process {jax.process_index()}/{jax.process_count()} stopped at step {step}, "
            f"train/loss {self._last_loss}",
            flush=True,
        )
        return PREEMPTED_EXIT_CODE if preempted else 0

    def _warm_start(self, source: str) -> None:
        try:
            src = warmstart.source_params(source)
            rows = conditioning.table_rows(self.cfg.model)
            self.state, kept, unused = warmstart.warm(self.state, self.shardings, src, rows, source)
        except warmstart.WarmStartError as e:
            self.ckpt.close()
            raise SetupError(str(e)) from None
        if self.lead:
            fresh = f"; fresh: {', '.join(kept)}" if kept else ""
            gone = f"; not in this model: {', '.join(unused)}" if unused else ""
            print(f"jtts: weights from {source} (step {src.step}){fresh}{gone}")


def train(
    cfg: Config,
    data_dir: str | Path,
    workdir: str | Path,
    *,
    devices: list[jax.Device] | None = None,
    progress: bool = True,
) -> int:
    """Trains (or resumes) a run on `devices` (default: all); returns the exit code (0, or
    PREEMPTED_EXIT_CODE after SIGTERM)."""
    _enable_compile_cache()
    with lock_run_dir(workdir):  # a second trainer on `workdir` stops here
        return Trainer(cfg, data_dir, workdir, devices=devices, progress=progress).run()


def run(
    config: str | Path,
    data_dir: str | Path,
    workdir: str | Path,
    overrides: list[str] = (),
    *,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    distributed: bool = False,
) -> int:
    """CLI body: optional multi-process setup, config loading, training."""
    if distributed or coordinator is not None:
        init_distributed(coordinator, num_processes, process_id)
    return train(load_config(config, overrides), data_dir, workdir)
