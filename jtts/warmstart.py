"""A new run that starts from another model's weights (`train.init_from`): Piper trains a
multi-speaker voice from a single-speaker checkpoint, ESPnet fine-tunes with `--init_param`.

Each parameter the source model (a training run or a shipped folder) has at the same path and
shape starts from the source's value, in the training weights and their moving average alike;
parameters it lacks (a speaker table the source never had) keep their fresh initialization, and
the optimizer starts afresh at step 0. A category table (the speaker table) is carried over
row by row, by name: a voice both models know keeps its row, a new voice starts fresh (Piper
adds speakers to a multi-speaker checkpoint). Any other parameter of another shape is an error
that names it: a different model, not a warm start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

from jtts import conditioning
from jtts.model import params_by_path, path_name
from jtts.trained_run import UsageError, load_run


class WarmStartError(ValueError):
    """The source cannot start this run: missing, unreadable or of another shape."""


class Source(NamedTuple):
    params: dict[str, np.ndarray]  # the inference weights by path
    step: int
    rows: dict[str, tuple[str, ...]]  # each category table's path -> the name of each row


def source_params(source: str | Path) -> Source:
    """The source's inference weights, step and table rows (read as the sampler reads them)."""
    if not Path(source).is_dir():
        raise WarmStartError(
            f"train.init_from {source}: no such directory (name a training run or a shipped model)"
        )
    try:
        run = load_run(source)
    except UsageError as e:
        raise WarmStartError(f"train.init_from {source}: {e}") from None
    flat = params_by_path(nnx.to_pure_dict(nnx.state(run.model, nnx.Param)))
    params = {k: np.asarray(v) for k, v in flat.items()}
    return Source(params, run.step, conditioning.table_rows(run.cfg.model))


class _Rows(NamedTuple):
    index: np.ndarray  # this model's rows whose name the source's table has
    values: np.ndarray  # the source's rows of those names


def _by_name(
    source: Source, rows: dict[str, tuple[str, ...]], fresh: dict[str, Any]
) -> tuple[dict[str, _Rows], list[str], list[str]]:
    """For each table both models have with other names or another order (rows of one width;
    another width is left to `warm`'s shape check): which of this model's rows take which of
    the source's; also the rows that start fresh and those of the source this model lacks,
    named for the log."""
    out, new, gone = {}, [], []
    for path, names in rows.items():
        old, value = source.rows.get(path), source.params.get(path)
        if value is None or old is None or tuple(old) == tuple(names):
            continue
        if value.shape[1:] != tuple(fresh[path].shape[1:]):
            continue
        shared = [i for i, name in enumerate(names) if name in old]
        out[path] = _Rows(
            np.asarray(shared, np.int32), value[[old.index(names[i]) for i in shared]]
        )
        if added := [n for n in names if n not in old]:
            new.append(f"{path} rows {', '.join(added)}")
        if dropped := [n for n in old if n not in names]:
            gone.append(f"{path} rows {', '.join(dropped)}")
    return out, new, gone


def warm(
    state: dict[str, Any],
    shardings: dict[str, Any],
    src: Source,
    rows: dict[str, tuple[str, ...]],
    where: str,
) -> tuple[dict[str, Any], list[str], list[str]]:
    """`state` with its params (and moving average) taken from the source where the path is
    shared (a table's rows where the name is: `rows`, this model's); also what is kept fresh
    and what of the source this model has no place for."""
    fresh, source = params_by_path(state["params"]), src.params
    by_row, new_rows, gone_rows = _by_name(src, rows, fresh)
    for path, x in fresh.items():
        if path in source and path not in by_row and source[path].shape != x.shape:
            raise WarmStartError(
                f"train.init_from {where}: parameter {path} has shape "
                f"{tuple(source[path].shape)} there and {tuple(x.shape)} here"
            )
    if not set(fresh) & set(source):
        raise WarmStartError(f"train.init_from {where}: no parameter in common with this model")

    def take(path: tuple, x: jax.Array, sharding: jax.sharding.Sharding) -> jax.Array:
        name = path_name(path)
        if name in by_row:  # set on the devices: the table may span processes
            index, values = by_row[name]
            if not len(index):
                return x
            return jax.jit(
                lambda t: t.at[index].set(values.astype(t.dtype)), out_shardings=sharding
            )(x)
        if name not in source:
            return x
        value = np.asarray(source[name], x.dtype)
        return jax.make_array_from_callback(x.shape, sharding, lambda i: value[i])

    state = dict(state)
    for key in ("params", "ema"):
        if key in state:
            state[key] = jax.tree_util.tree_map_with_path(take, state[key], shardings[key])
    kept = sorted(set(fresh) - set(source)) + new_rows
    unused = sorted(set(source) - set(fresh)) + gone_rows
    return state, kept, unused
