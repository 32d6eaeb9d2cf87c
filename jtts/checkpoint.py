"""Checkpoints with orbax: one directory per step (`RunDir.checkpoint`) with items
{params,opt,data,meta}.

Parameters and optimizer state are separate items so inference (`restore_params`) reads
only the parameters. `data` is the data iterator state and `meta` the resolved config and
step, both JSON. Orbax writes each step under a temporary name and renames it on commit, so a
run killed mid-save resumes from the last complete checkpoint; one damaged afterwards
(truncated, emptied, edited) is skipped with a warning naming its step, for the newest intact
one. Retention: the last `checkpoint.keep` steps, plus the one with the lowest validation
loss when `keep_best`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx
from jax.experimental import multihost_utils
from orbax.checkpoint._src.checkpoint_managers import preservation_policy as policy

from jtts.config import MODEL_RUNTIME_FIELDS, Config, config_diff, config_from_dict, config_to_dict
from jtts.model import build_model
from jtts.rundir import RunDir

BEST_METRIC = "eval/loss"
WEIGHTS = ("params", "ema")  # train-state entries saved as items of their own, for inference


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used with this config, or there is none to restore."""


class DamagedCheckpointWarning(UserWarning):
    """A checkpoint does not read back (truncated file, missing item, garbage JSON); an older
    intact one is used instead."""


def _why(e: Exception) -> str:
    """An exception as a short one-line reason (orbax and tensorstore errors run to pages)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:120]}" if text else type(e).__name__


def _damaged(directory: Path, failures: list[tuple[int, str]], fallback: int) -> None:
    steps = ", ".join(f"step {s} ({why})" for s, why in failures)
    warnings.warn(
        f"damaged checkpoint in {directory}: {steps}; using step {fallback}",
        DamagedCheckpointWarning,
        stacklevel=3,
    )


def _none_intact(directory: Path, failures: list[tuple[int, str]]) -> CheckpointError:
    steps = "; ".join(f"step {s}: {why}" for s, why in failures)
    return CheckpointError(
        f"no intact checkpoint in {directory} ({steps}); move the damaged steps aside to "
        "start over, or use another --workdir"
    )


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    """`e` and what caused it, outermost first (orbax and tensorstore wrap their errors)."""
    while e is not None:
        yield e
        e = e.__cause__ or e.__context__


def _disk_full(e: BaseException | None) -> bool:
    """Whether `e` or what caused it is a full disk."""
    return any(
        (isinstance(c, OSError) and c.errno in (errno.ENOSPC, errno.EDQUOT))
        or "No space left on device" in str(c)
        or "Disk quota exceeded" in str(c)
        for c in _chain(e)
    )


class _QuietOrbax(logging.Filter):
    """Drops orbax warnings that are expected here (saves without eval metrics, read-only),
    and the tracebacks orbax attaches to a failed read: `Checkpointer` reports a damaged
    step itself, in one line, and falls back."""

    EXPECTED = ("tracked_metric", "read only", "read_only")

    def filter(self, record: logging.LogRecord) -> bool:
        if "orbax" in record.pathname and record.exc_info:
            record.exc_info, record.exc_text = None, None
        return not any(s in record.getMessage() for s in self.EXPECTED)


logging.getLogger("absl").addFilter(_QuietOrbax())


def _raised_in_orbax(e: BaseException | None) -> bool:
    """Whether `e`, or what caused it, was raised through orbax's code."""
    return any(
        "orbax" in frame.f_code.co_filename
        for c in _chain(e)
        for frame, _ in traceback.walk_tb(c.__traceback__)
    )


class _QuietAbandonedReads(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for the other reads of a damaged
    step: orbax reads its arrays concurrently and raises the first failure, which
    `Checkpointer` reports in one line; the rest are logged when collected, with tracebacks,
    at a moment that depends on the garbage collector."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _raised_in_orbax(record.exc_info[1]))


logging.getLogger("asyncio").addFilter(_QuietAbandonedReads())


def _from_orbax(unraisable: Any) -> bool:
    """An exception Python could not raise that belongs to an orbax read given up on: its
    coroutine, collected after the event loop closed, or that loop's "is closed" error."""
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and "orbax" in code.co_filename:
        return True
    return isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(
        unraisable.exc_value
    )


def _quiet_unraisable(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    def quiet(unraisable: Any) -> None:
        if not _from_orbax(unraisable):
            hook(unraisable)

    return quiet


sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)  # a damaged step's abandoned reads


def _handlers() -> dict[str, ocp.CheckpointHandler]:
    return {
        "params": ocp.StandardCheckpointHandler(),
        "ema": ocp.StandardCheckpointHandler(),  # the weights' moving average (optim.ema_decay)
        "opt": ocp.StandardCheckpointHandler(),
        "data": ocp.JsonCheckpointHandler(),
        "meta": ocp.JsonCheckpointHandler(),
    }


def _best_metric(metrics: dict[str, float]) -> float:
    return metrics[BEST_METRIC]


def _manager(directory: Path, cfg: Config | None, read_only: bool) -> ocp.CheckpointManager:
    if read_only:
        options = ocp.CheckpointManagerOptions(read_only=True)
    else:
        keep = [policy.LatestN(n=cfg.checkpoint.keep)]
        if cfg.checkpoint.keep_best:
            keep.append(
                policy.BestN(
                    get_metric_fn=_best_metric,
                    reverse=True,  # lower loss is better; BestN keeps the end of the order
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy.AnyPreservationPolicy(keep),
            best_fn=_best_metric if cfg.checkpoint.keep_best else None,
            best_mode="min",
            enable_async_checkpointing=cfg.checkpoint.async_save,
            cleanup_tmp_directories=True,
        )
    return ocp.CheckpointManager(directory, options=options, item_handlers=_handlers())


def check_compatible(saved: Config, cfg: Config, where: str) -> None:
    """Raises a one-line CheckpointError naming model fields that change the parameters."""
    diff = config_diff(saved.model, cfg.model, ignore=MODEL_RUNTIME_FIELDS)
    if diff:
        fields = ", ".join(
            f"model.{f}={getattr(saved.model, f)!r} (checkpoint) vs {getattr(cfg.model, f)!r}"
            for f in diff
        )
        raise CheckpointError(
            f"{where} was trained with an incompatible model config: {fields}; use another "
            "--workdir or the checkpoint's settings"
        )
    if (saved.optim.ema_decay is None) != (cfg.optim.ema_decay is None):
        raise CheckpointError(
            f"{where} was trained with optim.ema_decay={saved.optim.ema_decay!r}, not "
            f"{cfg.optim.ema_decay!r}: a moving average cannot be started or dropped mid-run; "
            "use another --workdir or the checkpoint's setting"
        )


def check_shapes(manager: ocp.CheckpointManager, step: int, params: Any, where: str) -> None:
    """Raises a one-line CheckpointError when a saved parameter's shape differs from the
    model's (a checkpoint of another parameter layout, not a damaged one). Metadata that does
    not read is left to the restore, which reports the step as damaged."""
    try:
        saved = manager.item_metadata(step)["params"]
        shapes = {jax.tree_util.keystr(k): tuple(m.shape) for k, m in _leaves(saved.tree)}
    except Exception:  # orbax, tensorstore and json raise many types
        return
    for key, want in _leaves(params):
        got = shapes.get(jax.tree_util.keystr(key))
        if got is not None and got != tuple(want.shape):
            raise CheckpointError(
                f"{where}: parameter {jax.tree_util.keystr(key)} has shape {got}, this version "
                f"of jtts builds {tuple(want.shape)} (a checkpoint of another parameter layout); "
                "train it again, or sample it with the jtts version that wrote it"
            )


def _leaves(tree: Any) -> list:
    return jax.tree_util.tree_flatten_with_path(tree)[0]


class Checkpointer:
    """Saves and restores the train state, data iterator state and config of one run."""

    def __init__(self, run_dir: str | Path, cfg: Config):
        self.cfg = cfg
        self.run = RunDir(Path(run_dir).absolute())
        self.directory = self.run.checkpoints
        self.manager = _manager(self.directory, cfg, read_only=False)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore_latest(
        self, target: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, int]] | None:
        """(step, train state, data iterator state) of the newest checkpoint that reads back
        whole, or None when the run has no checkpoint yet.

        Newer damaged ones get a `DamagedCheckpointWarning` naming their steps and are moved
        aside (`RunDir.damaged_checkpoint`, by process 0), so this run can save those
        steps again. A config clash is still a `CheckpointError`, and so is a run whose
        checkpoints are all damaged (then nothing is moved)."""
        failures: list[tuple[int, str]] = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                state, data_state = self.restore(step, target)
            except CheckpointError:
                raise
            except Exception as e:  # orbax, tensorstore and json raise many types
                failures.append((step, _why(e)))
                continue
            if failures:
                _damaged(self.directory, failures, step)
                sync = jax.process_count() > 1
                if sync:  # a process still reading a damaged step would see it vanish
                    multihost_utils.sync_global_devices("jtts: damaged checkpoints read")
                if jax.process_index() == 0:
                    stamp = time.strftime("%Y%m%d%H%M%S")
                    for bad, _ in failures:
                        self.run.checkpoint(bad).rename(self.run.damaged_checkpoint(bad, stamp))
                if sync:  # a process that reloads before the move would still list the
                    # damaged steps, and refuse to save them again
                    multihost_utils.sync_global_devices("jtts: damaged checkpoints moved aside")
                self.manager.reload()
            return step, state, data_state
        if failures:
            raise _none_intact(self.directory, failures)
        return None

    def saved_config(self, step: int) -> Config:
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return config_from_dict(meta["meta"]["config"])

    def save(
        self,
        step: int,
        state: dict[str, Any],
        data_state: dict[str, int],
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Starts a save (async when configured); `metrics` with eval/loss rank it for best."""
        opt = {k: v for k, v in state.items() if k not in WEIGHTS}
        need = sum(x.nbytes for x in jax.tree.leaves(state))
        free = shutil.disk_usage(
            self.directory if self.directory.is_dir() else self.directory.parent
        ).free
        if need > free:  # refuse before orbax's writer threads fail one by one, each loudly
            raise CheckpointError(
                f"{self.directory}: no space left on device for the checkpoint of step {step} "
                f"(needs {need / 1e6:.1f} MB, {free / 1e6:.1f} MB free); free some space and "
                "rerun the command to resume from the last checkpoint"
            )
        with self._disk_full_is_one_line():
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    **{k: ocp.args.StandardSave(state[k]) for k in WEIGHTS if k in state},
                    opt=ocp.args.StandardSave(opt),
                    data=ocp.args.JsonSave(data_state),
                    meta=ocp.args.JsonSave({"step": step, "config": config_to_dict(self.cfg)}),
                ),
                metrics=metrics if metrics and BEST_METRIC in metrics else None,
                force=True,
            )

    @contextlib.contextmanager
    def _disk_full_is_one_line(self):
        """A full disk while saving becomes a one-line CheckpointError; the partial save is a
        temporary directory that orbax removes when the run is started again."""
        try:
            yield
        except Exception as e:
            if not _disk_full(e):
                raise
            raise CheckpointError(
                f"{self.directory}: no space left on device while saving a checkpoint; free "
                "some space and rerun the command to resume from the last checkpoint"
            ) from None

    def restore(self, step: int, target: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """(train state, data iterator state) of `step`, laid out like `target`.

        `target` holds jax.ShapeDtypeStruct leaves with shardings, so every array is read
        straight into its sharded layout. Fails with a one-line message on a config clash.
        """
        where = f"checkpoint {self.run.checkpoint(step)}"
        check_compatible(self.saved_config(step), self.cfg, where)
        check_shapes(self.manager, step, target["params"], where)
        opt_target = {k: v for k, v in target.items() if k not in WEIGHTS}
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                **{k: ocp.args.StandardRestore(target[k]) for k in WEIGHTS if k in target},
                opt=ocp.args.StandardRestore(opt_target),
                data=ocp.args.JsonRestore(),
            ),
        )
        weights = {k: out[k] for k in WEIGHTS if k in target}
        return {**weights, **out["opt"]}, dict(out["data"])

    def wait(self) -> None:
        with self._disk_full_is_one_line():  # an async save fails here
            self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _candidates(manager: ocp.CheckpointManager, step: int | str | None) -> list[int]:
    """Steps to try for `restore_params`, in order of preference."""
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        raise CheckpointError(f"no checkpoint in {manager.directory}")
    if step in (None, "best"):
        scored = sorted(
            (s for s in steps if manager.metrics(s)), key=lambda s: _best_metric(manager.metrics(s))
        )
        if step == "best" and not scored:
            raise CheckpointError(f"no checkpoint in {manager.directory} has {BEST_METRIC}")
        return scored if step == "best" else scored + [s for s in steps if s not in scored]
    if step == "latest":
        return steps
    if int(step) not in steps:
        raise CheckpointError(
            f"no checkpoint for step {step} in {manager.directory}; have {steps[::-1]}"
        )
    return [int(step)]


def _read_params(
    manager: ocp.CheckpointManager, run: RunDir, step: int, sharding: jax.sharding.Sharding
) -> tuple[Config, dict[str, Any]]:
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    cfg = config_from_dict(meta["meta"]["config"])
    abstract = nnx.eval_shape(lambda: build_model(cfg.model, nnx.Rngs(0)))
    params = nnx.to_pure_dict(nnx.state(abstract, nnx.Param))
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), params
    )
    check_shapes(manager, step, target, f"checkpoint {run.checkpoint(step)}")
    item = "params" if cfg.optim.ema_decay is None else "ema"
    out = manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(target)}))
    return cfg, out[item]


def restore_params(
    run_dir: str | Path,
    step: int | str | None = None,
    *,
    sharding: jax.sharding.Sharding | None = None,
) -> tuple[Config, dict[str, Any], int]:
    """(config, params, step) for inference; never reads the optimizer state. A run that kept
    a moving average of its weights (`optim.ema_decay`) gives the average.

    `step`: an int, 'latest', 'best' (lowest eval/loss), or None (best if any checkpoint was
    evaluated, else latest). A damaged checkpoint chosen by 'latest', 'best' or None gives a
    `DamagedCheckpointWarning` and the next choice is used; a damaged explicit step, or none
    intact, is a `CheckpointError`. `params` is the pure dict of `nnx.split(model,
    nnx.Param)`, i.e. `nnx.merge(graphdef, params)` rebuilds the model (see `load_model`).
    Arrays land on `sharding` (default: the first local device).
    """
    run = RunDir(Path(run_dir).absolute())
    directory = run.checkpoints
    manager = _manager(directory, None, read_only=True)
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    failures: list[tuple[int, str]] = []
    try:
        for candidate in _candidates(manager, step):
            try:
                cfg, params = _read_params(manager, run, candidate, sharding)
            except CheckpointError:
                raise
            except Exception as e:  # orbax, tensorstore and json raise many types
                failures.append((candidate, _why(e)))
                continue
            if failures:
                _damaged(directory, failures, candidate)
            return cfg, params, candidate
    finally:
        manager.close()
    if isinstance(step, int):
        raise CheckpointError(f"checkpoint {run.checkpoint(step)} is damaged ({failures[0][1]})")
    raise _none_intact(directory, failures)


def load_model(
    run_dir: str | Path, step: int | str | None = None
) -> tuple[Config, nnx.Module, int]:
    """(config, model with restored parameters, step): the sampler's entry point."""
    cfg, params, step = restore_params(run_dir, step)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: build_model(cfg.model, nnx.Rngs(0))), nnx.Param)
    return cfg, nnx.merge(graphdef, params), step
