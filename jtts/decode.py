"""Autoregressive sampling of codec tokens: the whole decode as one compiled `while_loop`.

`generate` runs the whole decode (text encoding, cross-attention K/V, KV-cached decoder steps
(`TTSModel.decode_step`), sampling (`jtts.sampling`) and the pattern's EOS/PAD bookkeeping) as
one XLA program, so the host waits once per batch instead of once per token. Executables are
cached per shape bucket (batch, text length, decoder steps: `jtts.decode_io`) and static
setting, and `enable_compilation_cache` lets later processes load them from disk. With
`Sampling.follow` the loop also carries the text position its attention has reached (`follow`,
`jtts.alignment.follow_position`): it weights the next step's cross-attention and holds EOS
back until the text's end. The steps it
is built from (`prepare`, `advance`, `choose`) are also driven from Python by the baselines of
`jtts.decode_reference`.

A voice prompt (`prompt`: codec codes that the speech continues, VALL-E style, with the
prompt's transcript leading the text) is laid into pattern steps by `Pattern.prefix`. Its whole
steps are fed once through the cache (`TTSModel.extend`, over a bucketed length so that nearby
prompt lengths share a program) and the loop starts after them; where the prompt still fixes
some codebooks of a step (under the delay pattern, codebook k of the K-1 steps after it, for
k > step - P) those ids are emitted instead of sampled. The output
holds only the continuation's frames. The prompt is the decoder's own past, not a condition
the model was trained with, so it lives here and not in `jtts.conditioning`; without one the
program is the same as before.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx
from jax import numpy as jnp

from jtts.alignment import FOLLOW_END_TOKENS, follow_position
from jtts.decode_io import Generation, generation, request
from jtts.model import Prior
from jtts.patterns import Pattern
from jtts.sampling import Knobs, Sampling, Spec, cond_rows, draw, guide, rows


class Loop(NamedTuple):
    """The decode's state between steps, besides the cache."""

    step: jax.Array  # int32: the step decoded next
    tokens_BxK: jax.Array  # decoder input of `step`: the tokens emitted at step - 1 (BOS at 0)
    seq_BxKxS: jax.Array  # emitted tokens, PAD where not decoded yet
    lengths_B: jax.Array  # frames, set when codebook 0 emits EOS; -1 while open
    eos_BxK: jax.Array  # EOS has been placed on codebook k
    done_B: jax.Array  # EOS is on every codebook, or the row is batch padding
    # With `Sampling.follow`: the text position each step's attention is weighted around
    # (-1: none, before it is known and without `follow`), the steps spent on the latest, and
    # whether it has reached the text's end (EOS may be sampled).
    path_BxS: jax.Array
    dwell_B: jax.Array
    at_end_B: jax.Array


def _whole_steps(prefix_KxM: jax.Array) -> jax.Array:
    """How many leading steps of a prompt's prefix it fixes on every codebook."""
    return jnp.cumprod((prefix_KxM >= 0).all(axis=0).astype(jnp.int32)).sum()


def init_loop(spec: Spec, valid_B: jax.Array, steps: int, prefix_KxM=None) -> Loop:
    """The state before the first sampled step: step 0, or the step after a prompt's whole
    steps, which the emitted sequence then starts with (the one place that counts them)."""
    pattern, n = spec.pattern, 0
    b, k = valid_B.shape[0], pattern.n_codebooks
    tokens_BxK = jnp.full((b, k), pattern.bos, jnp.int32)
    seq_BxKxS = jnp.full((b, k, steps), pattern.pad, jnp.int32)
    if prefix_KxM is not None:
        prefix_KxM = jnp.asarray(prefix_KxM)
        n = _whole_steps(prefix_KxM)
        whole_KxM = jnp.where(jnp.arange(prefix_KxM.shape[1]) < n, prefix_KxM, pattern.pad)
        seq_BxKxS = seq_BxKxS.at[:, :, : whole_KxM.shape[1]].set(whole_KxM[None])
        tokens_BxK = jax.lax.dynamic_index_in_dim(seq_BxKxS, n - 1, 2, keepdims=False)
    return Loop(
        step=jnp.asarray(n, jnp.int32),
        tokens_BxK=tokens_BxK,
        seq_BxKxS=seq_BxKxS,
        lengths_B=jnp.full((b,), -1, jnp.int32),
        eos_BxK=jnp.zeros((b, k), bool),
        done_B=~valid_B.astype(bool),
        path_BxS=jnp.full((b, steps), -1, jnp.int32),
        dwell_B=jnp.zeros((b,), jnp.int32),
        at_end_B=jnp.zeros((b,), bool),
    )


def reached(spec: Spec, loop: Loop, steps_T: jax.Array) -> jax.Array | None:
    """The text positions decoder `steps_T` are weighted around, BxT (guidance's null rows,
    which have no text, after the conditional ones with none), or None without `follow`."""
    if not spec.follow:
        return None
    path_BxT = loop.path_BxS[:, steps_T]
    return jnp.concatenate([path_BxT, jnp.full_like(path_BxT, -1)]) if spec.cfg else path_BxT


def follow(
    model, spec: Spec, prior: Prior | None, loop: Loop, attn_LxBxHxS: jax.Array, lengths_B
) -> Loop:
    """The position the next step is weighted around, from this step's cross-attention logits
    before any bias (the conditional rows' first) with the model's own `prior` added; the loop
    unchanged without `follow`."""
    if not spec.follow:
        return loop
    b, step = loop.tokens_BxK.shape[0], loop.step
    own_Bx1xS = model.prior_bias(prior, step[None], attn_LxBxHxS.shape[-1])
    if own_Bx1xS is not None:
        attn_LxBxHxS = attn_LxBxHxS + own_Bx1xS[None, :, None, 0]
    pos_B = jax.lax.dynamic_index_in_dim(loop.path_BxS, step, 1, keepdims=False)
    new_B, dwell_B = follow_position(attn_LxBxHxS[:, :b], pos_B, loop.dwell_B, lengths_B[:b])
    path = jax.lax.dynamic_update_slice(loop.path_BxS, new_B[:, None], (0, step + 1))
    at_end_B = new_B >= lengths_B[:b] - FOLLOW_END_TOKENS
    return loop._replace(path_BxS=path, dwell_B=dwell_B, at_end_B=at_end_B)


def _force(pattern: Pattern, step: jax.Array, lengths_B: jax.Array, tok_BxK: jax.Array):
    forced_BxK = pattern.forced_tokens(step, lengths_B)
    return jnp.where(forced_BxK >= 0, forced_BxK, tok_BxK)


def _keep_prompt(prefix_KxM: jax.Array, step: jax.Array, tok_BxK: jax.Array) -> jax.Array:
    """The prompt's ids where its prefix fixes them at `step`; none past the prefix."""
    m = prefix_KxM.shape[1]
    col_K = jax.lax.dynamic_index_in_dim(prefix_KxM, jnp.minimum(step, m - 1), 1, keepdims=False)
    fixed_K = (step < m) & (col_K >= 0)
    return jnp.where(fixed_K[None, :], col_K[None, :], tok_BxK)


def choose(spec: Spec, knobs: Knobs, logits: jax.Array, loop: Loop, prefix_KxM=None) -> Loop:
    """Picks the tokens of `loop.step` from its logits (the prompt's where `prefix_KxM` fixes
    them) and advances the EOS bookkeeping."""
    pattern, step, b = spec.pattern, loop.step, loop.tokens_BxK.shape[0]
    if spec.cfg:
        logits = guide(knobs, logits, b)
    # EOS is sampled on codebook 0 only (the pattern places it on the others), not before
    # min_frames frames exist and, following the attention, not before the text's end;
    # masking after guidance keeps -inf out of the mix.
    eos_ok = (jnp.arange(pattern.n_codebooks) == 0) & (
        pattern.length_at_eos(step) >= knobs.min_frames
    )
    eos_ok_BxK = eos_ok[None, :] & (loop.at_end_B[:, None] if spec.follow else True)
    logits = logits.at[:, :, pattern.eos].set(
        jnp.where(eos_ok_BxK, logits[:, :, pattern.eos], -jnp.inf)
    )
    key = jax.random.fold_in(jax.random.key(knobs.seed), step)
    tok = _force(pattern, step, loop.lengths_B, draw(spec, knobs, key, logits))
    if prefix_KxM is not None:
        tok = _keep_prompt(prefix_KxM, step, tok)
    ended = (loop.lengths_B < 0) & (tok[:, 0] == pattern.eos)
    lengths = jnp.where(ended, pattern.length_at_eos(step), loop.lengths_B).astype(jnp.int32)
    tok = _force(pattern, step, lengths, tok)
    eos = loop.eos_BxK | (tok == pattern.eos)
    return loop._replace(
        step=step + 1,
        tokens_BxK=tok,
        seq_BxKxS=jax.lax.dynamic_update_slice(loop.seq_BxKxS, tok[:, :, None], (0, 0, step)),
        lengths_B=lengths,
        eos_BxK=eos,
        done_B=loop.done_B | eos.all(axis=1),
    )


def prepare(model, spec, cache_steps, cond, valid_B, prefix_KxM=None):
    """Everything computed once per batch: decode context (cross-attention K/V and the
    alignment prior's lengths), the cache (empty, or holding a prompt's whole steps) and loop
    state.

    A prompt prefills all M steps of its bucketed prefix (PAD past its whole steps): the
    slots past them hold K/V no step reads, as a step sees only the slots up to its own,
    which it has just overwritten. So one program serves every prompt length in a bucket."""
    cond = cond_rows(spec, cond)
    ctx = model.decode_context(cond, length_scale=spec.length_scale)
    cache = model.init_cache(cond.drop_B.shape[0], cache_steps)
    loop = init_loop(spec, valid_B, cache_steps, prefix_KxM)
    if prefix_KxM is not None:  # inputs of steps 0 .. M-1: BOS, then the steps 0 .. M-2
        bos_BxKx1 = jnp.full(loop.tokens_BxK.shape + (1,), spec.pattern.bos, jnp.int32)
        inputs = jnp.concatenate([bos_BxKx1, loop.seq_BxKxS[:, :, : prefix_KxM.shape[1] - 1]], 2)
        _, cache, _ = model.extend(rows(spec.cfg, inputs), jnp.int32(0), cache, ctx)
    return ctx, cache, loop


def advance(model, spec, knobs, ctx, loop, cache, prefix_KxM=None):
    """One KV-cached decoder step and its tokens chosen: (loop, cache) after it."""
    tokens = rows(spec.cfg, loop.tokens_BxK)
    follow_BxT = reached(spec, loop, loop.step[None])
    follow_B = None if follow_BxT is None else follow_BxT[:, 0]
    logits, cache, attn_LxBxHxS = model.decode_step(tokens, loop.step, cache, ctx, follow_B)
    lengths_B = ctx.kv[0].mask_BxS.sum(axis=1)
    loop = follow(model, spec, ctx.prior, loop, attn_LxBxHxS, lengths_B)
    return choose(spec, knobs, logits, loop, prefix_KxM), cache


def merge(graphdef: nnx.GraphDef, state: Any) -> nnx.Module:
    """The model with its float parameters cast to the compute dtype once, not at every step."""
    dtype = nnx.merge(graphdef, state).dtype

    def cast(x: jax.Array) -> jax.Array:
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return nnx.merge(graphdef, jax.tree.map(cast, state))


def _program(graphdef, spec, cache_steps, state, cond, valid_B, max_steps, knobs, prefix_KxM):
    """The compiled decode: returns (seq_BxKxS, steps run, done_B)."""
    model = merge(graphdef, state)
    ctx, cache, loop = prepare(model, spec, cache_steps, cond, valid_B, prefix_KxM)

    def body(carry):
        return advance(model, spec, knobs, ctx, *carry, prefix_KxM)

    def cond(carry):
        loop = carry[0]
        return (loop.step < max_steps) & ~loop.done_B.all()

    loop, _ = jax.lax.while_loop(cond, body, (loop, cache))
    return loop.seq_BxKxS, loop.step, loop.done_B


_program_jit = jax.jit(_program, static_argnums=(0, 1, 2))
_EXECUTABLES: dict[tuple, Any] = {}


def _executable(graphdef, spec: Spec, cache_steps: int, args: tuple) -> tuple[Any, float]:
    """The compiled program for these static settings and shapes, and seconds spent compiling."""
    leaves, treedef = jax.tree.flatten(args)
    key = (graphdef, spec, cache_steps, treedef, tuple((x.shape, x.dtype) for x in leaves))
    if key in _EXECUTABLES:
        return _EXECUTABLES[key], 0.0
    t0 = time.perf_counter()
    exe = _program_jit.lower(graphdef, spec, cache_steps, *args).compile()
    _EXECUTABLES[key] = exe
    return exe, time.perf_counter() - t0


def enable_compilation_cache(path: str | Path) -> None:
    """Persist compiled programs under `path` (unless a cache is already configured), so a
    second process loads them instead of compiling."""
    if jax.config.jax_compilation_cache_dir is None:
        Path(path).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


def generate(
    model: nnx.Module,
    text_ids: Sequence[Sequence[int]],
    sampling: Sampling,
    max_frames: int,
    categories: Mapping[str, Sequence[int]] | None = None,
    *,
    prompt: np.ndarray | None = None,
) -> Generation:
    """Decodes every row (at most `max_frames` frames each) in one compiled program.
    `categories`: each other attribute of the model's condition (a speaker), its id per row
    (`conditioning.NULL`: the attribute's learned null, as for a voice prompt).
    `prompt`: codes_KxP every row continues (its transcript should lead each row's text); the
    rows' codes then hold only the frames after it."""
    r = request(model, text_ids, sampling, max_frames, categories, prompt)
    args = (r.state, *r.batch, np.int32(r.max_steps), r.knobs, r.prefix_KxM)
    exe, compile_s = _executable(r.graphdef, r.spec, r.cache_steps, args)
    t0 = time.perf_counter()
    seq, steps, done = jax.device_get(exe(*args))
    decode_s = time.perf_counter() - t0
    return generation(r, seq, steps, done, len(text_ids), compile_s, decode_s)
