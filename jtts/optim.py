"""The optimizer, its learning-rate schedule, the weights' moving average and the train state.

The train state is a plain pytree (the model's parameters as a pure dict, split off its static
graph by `nnx.split`), so the step donates it and the mesh and checkpoints shard and store it
as is; `abstract_state` gives its shapes without allocating anything.
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import nnx
from jax import numpy as jnp

from jtts.config import Config, OptimConfig
from jtts.model import build_model

TrainState = dict[str, Any]  # {"params", "opt_state", "step", "rng", "skipped"[, "ema"]}
NO_DECAY = (
    "text_embed",
    "code_embed",
    "null_cond",
    "table",
    "scale",
    "byte_embed",
    "pos_embed",
)  # embeddings, norm scales


def lr_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` (or constant)."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    if cfg.decay == "constant":
        return optax.linear_schedule(0.0, cfg.lr, max(warmup, 1)) if warmup else lambda _: cfg.lr
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.lr,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=cfg.lr * cfg.min_lr_ratio,
    )


def decay_mask(params: Any) -> Any:
    """True where weight decay applies: matrices that are not embeddings or norm scales."""

    def decays(path: tuple, _: Any) -> bool:
        names = {getattr(k, "key", None) for k in path}
        return not names & set(NO_DECAY)

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """Clipping + AdamW at unit learning rate; the step scales updates by `lr_schedule(step)`.

    Taking the rate from the global step (not optax's update count) keeps the schedule on
    time when non-finite steps are skipped.
    """
    adamw = optax.adamw(
        learning_rate=1.0,
        b1=cfg.b1,
        b2=cfg.b2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        mask=decay_mask,
    )
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw) if cfg.clip_norm else adamw


def abstract_model(cfg: Config) -> tuple[nnx.GraphDef, Any]:
    """(graphdef, params as a pure dict of ShapeDtypeStruct) without allocating anything."""
    model = nnx.eval_shape(lambda: build_model(cfg.model, nnx.Rngs(cfg.train.seed)))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise TypeError(f"model has non-parameter state the trainer does not handle: {rest}")
    return graphdef, nnx.to_pure_dict(params)


def init_state(cfg: Config, tx: optax.GradientTransformation, shardings: Any) -> TrainState:
    """Fresh train state, created directly in its sharded layout (no full host copy)."""

    def init() -> TrainState:
        model = build_model(cfg.model, nnx.Rngs(cfg.train.seed))
        params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        state = {
            "params": params,
            "opt_state": tx.init(params),
            "step": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(jax.random.key(cfg.train.seed)),
            "skipped": jnp.zeros((), jnp.int32),
        }
        if cfg.optim.ema_decay is not None:
            state["ema"] = params
        return state

    return jax.jit(init, out_shardings=shardings)()


def abstract_state(cfg: Config, tx: optax.GradientTransformation) -> TrainState:
    """Shapes and dtypes of the train state (for shardings and checkpoint restore)."""
    _, params = abstract_model(cfg)
    state = {
        "params": params,
        "opt_state": jax.eval_shape(tx.init, params),
        "step": jax.ShapeDtypeStruct((), jnp.int32),
        "rng": jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))),
        "skipped": jax.ShapeDtypeStruct((), jnp.int32),
    }
    if cfg.optim.ema_decay is not None:
        state["ema"] = params
    return state


def inference_params(state: TrainState) -> Any:
    """The weights evaluation, samples and inference use: the moving average when kept."""
    return state.get("ema", state["params"])


def ema_update(ema: Any, params: Any, decay: float, step: jax.Array) -> Any:
    """One step of the weights' moving average; the decay warms up as
    min(decay, (1 + step) / (10 + step)) so the first weights do not linger (TF's
    ExponentialMovingAverage with num_updates)."""
    step = step.astype(jnp.float32)
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return optax.incremental_update(params, ema, 1.0 - d)
