"""Two slower decoders that pick tokens exactly as `jtts.decode.generate` does: the references
of its tests and the baselines of bench/sample.py.

`generate_stepwise` jits the same KV-cached step alone and drives it from Python (what the one
compiled `while_loop` saves); `generate_naive` keeps no cache and re-runs the full
teacher-forced forward at every step (what the cache saves, and an independent check of it).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax import numpy as jnp

from jtts.decode import (
    Loop,
    advance,
    choose,
    follow,
    init_loop,
    merge,
    prepare,
    reached,
)
from jtts.decode_io import Generation, Request, generation, prefix_bucket, request
from jtts.sampling import Sampling, cond_rows, rows


def _finish(r: Request, loop: Loop, n: int, t0: float) -> Generation:
    """A baseline's result: its loop state fetched, timed from `t0`."""
    seq, steps, done = jax.device_get((loop.seq_BxKxS, loop.step, loop.done_B))
    return generation(r, seq, steps, done, n, 0.0, time.perf_counter() - t0)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _prepare_jit(graphdef, spec, cache_steps, state, cond, valid_B, prefix_KxM):
    return prepare(merge(graphdef, state), spec, cache_steps, cond, valid_B, prefix_KxM)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(5, 6))
def _advance_jit(graphdef, spec, knobs, state, ctx, loop, cache, prefix_KxM):
    return advance(merge(graphdef, state), spec, knobs, ctx, loop, cache, prefix_KxM)


def generate_stepwise(
    model: nnx.Module,
    text_ids: Sequence[Sequence[int]],
    sampling: Sampling,
    max_frames: int,
    categories: Mapping[str, Sequence[int]] | None = None,
    *,
    prompt: np.ndarray | None = None,
) -> Generation:
    """Baseline: the same KV-cached step, jitted alone and driven by a Python loop."""
    r = request(model, text_ids, sampling, max_frames, categories, prompt)
    t0 = time.perf_counter()
    prep = (r.graphdef, r.spec, r.cache_steps, r.state, *r.batch, r.prefix_KxM)
    ctx, cache, loop = _prepare_jit(*prep)
    for _ in range(int(loop.step), r.max_steps):
        args = (r.state, ctx, loop, cache, r.prefix_KxM)
        loop, cache = _advance_jit(r.graphdef, r.spec, r.knobs, *args)
        if bool(loop.done_B.all()):
            break
    return _finish(r, loop, len(text_ids), t0)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def forward_logits(graphdef, prefix, spec, state, cond, loop):
    """One naive step: logits_BxKxV of `loop.step` from the teacher-forced forward over the
    first `prefix` decoder steps (recomputing the text encoder and every earlier step), and
    the loop after `follow` has read that step's attention."""
    model = merge(graphdef, state)
    step, seq_BxKxS = loop.step, loop.seq_BxKxS
    b, k = seq_BxKxS.shape[:2]
    bos_BxKx1 = jnp.full((b, k, 1), spec.pattern.bos, jnp.int32)
    inputs_BxKxT = jnp.concatenate([bos_BxKx1, seq_BxKxS[:, :, : prefix - 1]], axis=2)
    rows_cond = cond_rows(spec, cond)
    steps_T, prior = jnp.arange(prefix), model.prior(rows_cond, length_scale=spec.length_scale)
    bias = model.prior_bias(prior, steps_T, cond.text_BxS.shape[1], reached(spec, loop, steps_T))
    logits_BxTxKxV, attn_LxBxHxTxS = model(
        rows_cond, rows(spec.cfg, inputs_BxKxT), attn_bias_BxTxS=bias, with_attention=spec.follow
    )
    if spec.follow:
        attn_LxBxHxS = jax.lax.dynamic_index_in_dim(attn_LxBxHxTxS, step, 3, keepdims=False)
        loop = follow(model, spec, prior, loop, attn_LxBxHxS, rows_cond.text_lengths_B)
    return jax.lax.dynamic_index_in_dim(logits_BxTxKxV, step, axis=1, keepdims=False), loop


_choose_jit = jax.jit(choose, static_argnums=(0,))


def generate_naive(
    model: nnx.Module,
    text_ids: Sequence[Sequence[int]],
    sampling: Sampling,
    max_frames: int,
    categories: Mapping[str, Sequence[int]] | None = None,
    *,
    prompt: np.ndarray | None = None,
) -> Generation:
    """Reference: no cache; every step re-runs `model.__call__` over the whole prefix (a
    prompt's steps are just its first steps: nothing is prefilled)."""
    r = request(model, text_ids, sampling, max_frames, categories, prompt)
    cond, valid_B = r.batch
    t0 = time.perf_counter()
    loop = init_loop(r.spec, jnp.asarray(valid_B), r.cache_steps, r.prefix_KxM)
    for step in range(int(loop.step), r.max_steps):
        prefix = prefix_bucket(step + 1, r.cache_steps)
        logits, loop = forward_logits(r.graphdef, prefix, r.spec, r.state, cond, loop)
        loop = _choose_jit(r.spec, r.knobs, logits, loop, r.prefix_KxM)
        if bool(loop.done_B.all()):
            break
    return _finish(r, loop, len(text_ids), t0)
