"""A new run that starts from another model's weights (`train.init_from`): Piper trains a
multi-speaker voice from a single-speaker checkpoint, ESPnet fine-tunes with `--init_param`.

Each parameter the source model (a training run or a shipped folder) has at the same path and
shape starts from the source's value, in the training weights and their moving average alike;
parameters it lacks (a speaker table the source never had) keep their fresh initialization, and
the optimizer starts afresh at step 0. A parameter of another shape is an error that names it:
a different model, not a warm start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from jtts.model import params_by_path, path_name
from jtts.trained_run import UsageError, load_run


class WarmStartError(ValueError):
    """The source cannot start this run: missing, unreadable or of another shape."""


def source_params(source: str | Path) -> tuple[dict[str, np.ndarray], int]:
    """The source's inference weights by path, and its step (read as the sampler reads it)."""
    if not Path(source).is_dir():
        raise WarmStartError(
            f"train.init_from {source}: no such directory (name a training run or a shipped model)"
        )
    try:
        run = load_run(source)
    except UsageError as e:
        raise WarmStartError(f"train.init_from {source}: {e}") from None
    flat = params_by_path(nnx.to_pure_dict(nnx.state(run.model, nnx.Param)))
    return {k: np.asarray(v) for k, v in flat.items()}, run.step


def warm(
    state: dict[str, Any], shardings: dict[str, Any], source: dict[str, np.ndarray], where: str
) -> tuple[dict[str, Any], list[str], list[str]]:
    """`state` with its params (and moving average) taken from `source` where the path is
    shared; also the paths kept fresh and the source's paths this model has no place for."""
    fresh = params_by_path(state["params"])
    for path, x in fresh.items():
        if path in source and source[path].shape != x.shape:
            raise WarmStartError(
                f"train.init_from {where}: parameter {path} has shape "
                f"{tuple(source[path].shape)} there and {tuple(x.shape)} here"
            )
    if not set(fresh) & set(source):
        raise WarmStartError(f"train.init_from {where}: no parameter in common with this model")

    def take(path: tuple, x: jax.Array, sharding: jax.sharding.Sharding) -> jax.Array:
        name = path_name(path)
        if name not in source:
            return x
        value = np.asarray(source[name], x.dtype)
        return jax.make_array_from_callback(x.shape, sharding, lambda i: value[i])

    state = dict(state)
    for key in ("params", "ema"):
        if key in state:
            state[key] = jax.tree_util.tree_map_with_path(take, state[key], shardings[key])
    kept = sorted(set(fresh) - set(source))
    unused = sorted(set(source) - set(fresh))
    return state, kept, unused
