"""Autoregressive sampling of codec tokens: one compiled `while_loop`, plus two baselines.

`generate` runs the whole decode (text encoding, cross-attention K/V, KV-cached decoder steps
(`TTSModel.decode_step`), sampling and the pattern's EOS/PAD bookkeeping) as one XLA program,
so the host waits once per batch instead of once per token. Executables are cached per shape
bucket (batch, text length, decoder steps) and static setting, and `enable_compilation_cache`
lets later processes load them from disk. `generate_stepwise` (the same step jitted alone and
driven from Python) and `generate_naive` (the full teacher-forced forward re-run at every
step, no cache) share the sampling code; they are the references of the tests and the
baselines of bench/sample.py.

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

import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx
from jax import numpy as jnp

from jtts.conditioning import Cond, with_null_rows
from jtts.config import SampleConfig
from jtts.model import Prior
from jtts.patterns import Pattern

# The `Sampling` fields a config's `sample` section sets (and `jtts.sample` can override).
CONFIG_KNOBS = ("temperature", "top_k", "top_p", "cfg_scale", "length_scale")


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How each token is picked. Greedy (or temperature 0) takes the argmax; cfg_scale 1 is
    plain conditional sampling, any other value mixes null + s * (cond - null) logits.
    `length_scale` stretches the length the alignment prior is spread over (a model with
    `attention_prior` speaks at its predicted length: > 1 is slower, < 1 faster)."""

    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    cfg_scale: float = 1.0
    greedy: bool = False
    seed: int = 0
    min_frames: int = 1  # codebook 0 may not emit EOS before this many frames
    length_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top-k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be >= 1, got {self.min_frames}")
        if self.length_scale <= 0:
            raise ValueError(f"length scale must be > 0, got {self.length_scale}")

    @classmethod
    def of(cls, sample: SampleConfig, **given: Any) -> Sampling:
        """A config's `sample` settings, with the `given` fields (greedy, seed, or overrides
        of the config's) in their place: the one builder the trainer and the sampler share."""
        return cls(**{**{name: getattr(sample, name) for name in CONFIG_KNOBS}, **given})


@dataclasses.dataclass(frozen=True)
class _Spec:
    """The settings that change the program (static); `_Knobs` holds the ones that do not."""

    pattern: Pattern
    greedy: bool
    top_k: int
    top_p: bool
    cfg: bool
    length_scale: float


class _Knobs(NamedTuple):
    temperature: Any
    top_p: Any
    cfg_scale: Any
    seed: Any
    min_frames: Any


def _spec(model, s: Sampling) -> _Spec:
    greedy = s.greedy or s.temperature == 0
    return _Spec(
        pattern=model.pattern,
        greedy=greedy,
        top_k=0 if greedy else s.top_k,
        top_p=not greedy and s.top_p < 1.0,
        cfg=s.cfg_scale != 1.0,
        length_scale=s.length_scale,
    )


def _knobs(s: Sampling) -> _Knobs:
    return _Knobs(
        np.float32(s.temperature if s.temperature > 0 else 1.0),
        np.float32(s.top_p),
        np.float32(s.cfg_scale),
        np.uint32(s.seed % 2**32),
        np.int32(s.min_frames),
    )


class _Loop(NamedTuple):
    step: jax.Array  # int32: the step decoded next
    tokens_BxK: jax.Array  # decoder input of `step`: the tokens emitted at step - 1 (BOS at 0)
    seq_BxKxS: jax.Array  # emitted tokens, PAD where not decoded yet
    lengths_B: jax.Array  # frames, set when codebook 0 emits EOS; -1 while open
    eos_BxK: jax.Array  # EOS has been placed on codebook k
    done_B: jax.Array  # EOS is on every codebook, or the row is batch padding


def _whole_steps(prefix_KxM: Any) -> Any:
    """How many leading steps of a prompt's prefix it fixes on every codebook."""
    xp = jnp if isinstance(prefix_KxM, jax.Array) else np
    return xp.cumprod((prefix_KxM >= 0).all(axis=0).astype(xp.int32)).sum()


def _init_loop(spec: _Spec, valid_B: jax.Array, steps: int, prefix_KxM=None) -> _Loop:
    """The state before the first sampled step: step 0, or the step after a prompt's whole
    steps, which the emitted sequence then starts with."""
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
    return _Loop(
        step=jnp.asarray(n, jnp.int32),
        tokens_BxK=tokens_BxK,
        seq_BxKxS=seq_BxKxS,
        lengths_B=jnp.full((b,), -1, jnp.int32),
        eos_BxK=jnp.zeros((b, k), bool),
        done_B=~valid_B.astype(bool),
    )


def _rows(cfg: bool, x: jax.Array) -> jax.Array:
    """Guidance runs conditional rows then null rows in one batch of 2B."""
    return jnp.concatenate([x, x], axis=0) if cfg else x


def _cond_rows(cfg: bool, cond: Cond) -> Cond:
    return with_null_rows(cond) if cfg else cond


def _prior(model, spec: _Spec, cond: Cond) -> Prior | None:
    """The model's alignment prior over the length it predicts for each row (guidance rows
    included: the length of their text), or None."""
    prior = model.prior(cond, length_scale=spec.length_scale)
    return None if prior is None else Prior(*(_rows(spec.cfg, x) for x in prior))


def _argmax(x_BxKxV: jax.Array) -> jax.Array:
    """First index of the maximum: two plain reductions, which XLA:CPU vectorizes (its
    argmax is a slow variadic reduce)."""
    v = x_BxKxV.shape[-1]
    top = x_BxKxV.max(axis=-1, keepdims=True)
    first = jnp.where(x_BxKxV == top, jnp.arange(v, dtype=jnp.int32), v).min(axis=-1)
    return jnp.minimum(first, v - 1)


def _sample(spec: _Spec, knobs: _Knobs, key: jax.Array, logits_BxKxV: jax.Array) -> jax.Array:
    if spec.greedy:
        return _argmax(logits_BxKxV)
    logits = logits_BxKxV / knobs.temperature
    if spec.top_k or spec.top_p:
        # Sorted candidates: top-k keeps the first k, top-p the smallest prefix with mass >= p.
        vals, idx = jax.lax.top_k(logits, spec.top_k or logits.shape[-1])
        if spec.top_p:
            probs = jax.nn.softmax(vals, axis=-1)
            vals = jnp.where(jnp.cumsum(probs, axis=-1) - probs < knobs.top_p, vals, -jnp.inf)
        pick = jax.random.categorical(key, vals, axis=-1)
        return jnp.take_along_axis(idx, pick[..., None], axis=-1)[..., 0].astype(jnp.int32)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _force(pattern: Pattern, step: jax.Array, lengths_B: jax.Array, tok_BxK: jax.Array):
    forced_BxK = pattern.forced_tokens(step, lengths_B)
    return jnp.where(forced_BxK >= 0, forced_BxK, tok_BxK)


def _keep_prompt(prefix_KxM: jax.Array, step: jax.Array, tok_BxK: jax.Array) -> jax.Array:
    """The prompt's ids where its prefix fixes them at `step`; none past the prefix."""
    m = prefix_KxM.shape[1]
    col_K = jax.lax.dynamic_index_in_dim(prefix_KxM, jnp.minimum(step, m - 1), 1, keepdims=False)
    fixed_K = (step < m) & (col_K >= 0)
    return jnp.where(fixed_K[None, :], col_K[None, :], tok_BxK)


def _choose(spec: _Spec, knobs: _Knobs, logits: jax.Array, loop: _Loop, prefix_KxM=None) -> _Loop:
    """Picks the tokens of `loop.step` from its logits (the prompt's where `prefix_KxM` fixes
    them) and advances the EOS bookkeeping."""
    pattern, step, b = spec.pattern, loop.step, loop.tokens_BxK.shape[0]
    if spec.cfg:
        cond, null = logits[:b], logits[b:]
        logits = null + knobs.cfg_scale * (cond - null)
    # EOS is sampled on codebook 0 only (the pattern places it on the others) and not before
    # min_frames frames exist; masking after guidance keeps -inf out of the mix.
    eos_ok = (jnp.arange(pattern.n_codebooks) == 0) & (
        pattern.length_at_eos(step) >= knobs.min_frames
    )
    logits = logits.at[:, :, pattern.eos].set(
        jnp.where(eos_ok[None, :], logits[:, :, pattern.eos], -jnp.inf)
    )
    key = jax.random.fold_in(jax.random.key(knobs.seed), step)
    tok = _force(pattern, step, loop.lengths_B, _sample(spec, knobs, key, logits))
    if prefix_KxM is not None:
        tok = _keep_prompt(prefix_KxM, step, tok)
    ended = (loop.lengths_B < 0) & (tok[:, 0] == pattern.eos)
    lengths = jnp.where(ended, pattern.length_at_eos(step), loop.lengths_B).astype(jnp.int32)
    tok = _force(pattern, step, lengths, tok)
    eos = loop.eos_BxK | (tok == pattern.eos)
    return _Loop(
        step=step + 1,
        tokens_BxK=tok,
        seq_BxKxS=jax.lax.dynamic_update_slice(loop.seq_BxKxS, tok[:, :, None], (0, 0, step)),
        lengths_B=lengths,
        eos_BxK=eos,
        done_B=loop.done_B | eos.all(axis=1),
    )


def _prepare(model, spec, cache_steps, cond, valid_B, prefix_KxM=None):
    """Everything computed once per batch: decode context (cross-attention K/V and the
    alignment prior's lengths), the cache (empty, or holding a prompt's whole steps) and loop
    state.

    A prompt prefills all M steps of its bucketed prefix (PAD past its whole steps): the
    slots past them hold K/V no step reads, as a step sees only the slots up to its own,
    which it has just overwritten. So one program serves every prompt length in a bucket."""
    prior = _prior(model, spec, cond)
    cond = _cond_rows(spec.cfg, cond)
    ctx = model.decode_context(cond, prior)
    cache = model.init_cache(cond.drop_B.shape[0], cache_steps)
    loop = _init_loop(spec, valid_B, cache_steps, prefix_KxM)
    if prefix_KxM is not None:  # inputs of steps 0 .. M-1: BOS, then the steps 0 .. M-2
        bos_BxKx1 = jnp.full(loop.tokens_BxK.shape + (1,), spec.pattern.bos, jnp.int32)
        inputs = jnp.concatenate([bos_BxKx1, loop.seq_BxKxS[:, :, : prefix_KxM.shape[1] - 1]], 2)
        _, cache, _ = model.extend(_rows(spec.cfg, inputs), jnp.int32(0), cache, ctx)
    return ctx, cache, loop


def _advance(model, spec, knobs, ctx, loop, cache, prefix_KxM=None):
    tokens = _rows(spec.cfg, loop.tokens_BxK)
    logits, cache, _ = model.decode_step(tokens, loop.step, cache, ctx)
    return _choose(spec, knobs, logits, loop, prefix_KxM), cache


def _merge(graphdef: nnx.GraphDef, state: Any) -> nnx.Module:
    """The model with its float parameters cast to the compute dtype once, not at every step."""
    dtype = nnx.merge(graphdef, state).dtype

    def cast(x: jax.Array) -> jax.Array:
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return nnx.merge(graphdef, jax.tree.map(cast, state))


def _program(graphdef, spec, cache_steps, state, cond, valid_B, max_steps, knobs, prefix_KxM):
    """The compiled decode: returns (seq_BxKxS, steps run, done_B)."""
    model = _merge(graphdef, state)
    ctx, cache, loop = _prepare(model, spec, cache_steps, cond, valid_B, prefix_KxM)

    def body(carry):
        return _advance(model, spec, knobs, ctx, *carry, prefix_KxM)

    def cond(carry):
        loop = carry[0]
        return (loop.step < max_steps) & ~loop.done_B.all()

    loop, _ = jax.lax.while_loop(cond, body, (loop, cache))
    return loop.seq_BxKxS, loop.step, loop.done_B


_program_jit = jax.jit(_program, static_argnums=(0, 1, 2))
_EXECUTABLES: dict[tuple, Any] = {}


def _executable(graphdef, spec: _Spec, cache_steps: int, args: tuple) -> tuple[Any, float]:
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


def _pow2(n: int, lo: int) -> int:
    return max(lo, 1 << max(0, n - 1).bit_length())


def batch_bucket(n: int) -> int:
    """1, 2, 4, 8, 16, ... rows."""
    return _pow2(n, 1)


def text_bucket(n: int, max_text_len: int) -> int:
    """Powers of two from 16 tokens, capped at the model's text length."""
    return min(_pow2(n, 16), max_text_len)


def step_bucket(n: int) -> int:
    """Cache lengths 64, 96, 128, 192, 256, 384, ...: at most 1.5x the steps needed."""
    p = _pow2(n, 64)
    return p * 3 // 4 if p > 64 and n <= p * 3 // 4 else p


def prompt_bucket(m: int, cache_steps: int) -> int:
    """Prefilled steps of a prompt whose prefix spans m steps: step_bucket(m) (at most 1.5x
    the work), within the cache."""
    return min(step_bucket(m), cache_steps)


def prefix_bucket(n: int, cache_steps: int) -> int:
    """Decoder length of the naive decode's full forward at step n - 1."""
    return min(_pow2(n, 16), cache_steps)


@dataclasses.dataclass(frozen=True)
class Generation:
    """Decoded codes of each input row, with what it cost."""

    codes: list[np.ndarray]  # codes_KxT per row, T = that row's frames after any prompt's
    seq_BxKxS: np.ndarray  # the emitted steps (pattern layout, a prompt's included), S = run
    finished: np.ndarray  # bool per row: it emitted EOS before the step limit
    steps: int  # decoder steps run (the longest row's, or the limit)
    compile_s: float
    decode_s: float


class _Batch(NamedTuple):
    cond: Cond
    valid_B: np.ndarray


def _batch(
    text_ids: Sequence[Sequence[int]],
    max_text_len: int,
    categories: Mapping[str, Sequence[int]] | None = None,
) -> _Batch:
    categories = categories or {}
    if not text_ids:
        raise ValueError("no texts to decode")
    lengths = [len(ids) for ids in text_ids]
    if min(lengths) < 1 or max(lengths) > max_text_len:
        raise ValueError(f"text lengths must be in [1, {max_text_len}] tokens, got {lengths}")
    b, s = batch_bucket(len(text_ids)), text_bucket(max(lengths), max_text_len)
    text = np.zeros((b, s), np.int32)
    mask = np.zeros((b, s), bool)
    mask[len(text_ids) :, 0] = True  # padding rows attend to one token, never to nothing
    for i, ids in enumerate(text_ids):
        text[i, : len(ids)] = ids
        mask[i, : len(ids)] = True
    ids = {name: np.zeros(b, np.int32) for name in categories}
    for name, values in categories.items():
        ids[name][: len(text_ids)] = values
    return _Batch(Cond.of_text(text, mask, **ids), np.arange(b) < len(text_ids))


def _prefix(pattern: Pattern, prompt: np.ndarray | None) -> np.ndarray | None:
    """A prompt's codes_KxP checked and laid into pattern steps (prefix_KxM)."""
    if prompt is None:
        return None
    codes = np.asarray(prompt)
    k, c = pattern.n_codebooks, pattern.codebook_size
    if codes.ndim != 2 or codes.shape[0] != k or codes.shape[1] < 1:
        raise ValueError(f"a prompt is codes of shape ({k}, frames >= 1), got {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0 or codes.max() >= c:
        raise ValueError(f"prompt codes must be integers in [0, {c})")
    return np.asarray(pattern.prefix(codes.astype(np.int32)))


def _steps(spec: _Spec, max_frames: int, prompt_frames: int) -> tuple[int, int]:
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    max_steps = int(spec.pattern.num_steps(prompt_frames + max_frames))
    return max_steps, step_bucket(max_steps)


def _generation(spec, seq_BxKxS, steps, done_B, n, skip, compile_s, decode_s) -> Generation:
    """The result: the emitted steps reverted to codes, the first `skip` (prompt) frames off."""
    seq_BxKxS = np.asarray(seq_BxKxS)[:n, :, : int(steps)]
    codes_BxKxT, lengths_B = spec.pattern.revert(seq_BxKxS)
    return Generation(
        codes=[codes_BxKxT[i, :, skip : lengths_B[i]] for i in range(n)],
        seq_BxKxS=seq_BxKxS,
        finished=np.asarray(done_B)[:n].copy(),
        steps=int(steps),
        compile_s=compile_s,
        decode_s=decode_s,
    )


class _Request(NamedTuple):
    """One decode call's inputs, prepared alike for `generate` and the two baselines."""

    spec: _Spec
    knobs: _Knobs
    batch: _Batch
    max_steps: int
    cache_steps: int
    prefix_KxM: np.ndarray | None  # a prompt's steps (Pattern.prefix, bucketed), or None
    skip: int  # the prompt's frames, dropped from the output
    start: int  # the first sampled step: after the prompt's whole steps
    graphdef: Any
    state: Any


def _request(model, text_ids, sampling: Sampling, max_frames: int, categories, prompt) -> _Request:
    categories = categories or {}
    if set(categories) != set(model.conditioner.categories):
        raise ValueError(
            f"the model reads {sorted(model.conditioner.categories) or 'no attribute'} besides "
            f"the text, given {sorted(categories) or 'none'}"
        )
    prefix_KxM, spec = _prefix(model.pattern, prompt), _spec(model, sampling)
    skip = 0 if prompt is None else int(np.shape(prompt)[1])
    knobs = _knobs(sampling)
    if skip:  # min_frames counts the continuation's frames; EOS counts the prompt's too
        knobs = knobs._replace(min_frames=np.int32(sampling.min_frames + skip))
    batch = _batch(text_ids, model.cfg.max_text_len, categories)
    max_steps, cache_steps = _steps(spec, max_frames, skip)
    start = 0
    if prefix_KxM is not None:  # padded to its bucket with -1 (sampled) steps
        start, m = int(_whole_steps(prefix_KxM)), prefix_KxM.shape[1]
        pad = ((0, 0), (0, prompt_bucket(m, cache_steps) - m))
        prefix_KxM = np.pad(prefix_KxM, pad, constant_values=-1)
    return _Request(
        spec, knobs, batch, max_steps, cache_steps, prefix_KxM, skip, start, *nnx.split(model)
    )


def _finish(r: _Request, loop: _Loop, n: int, t0: float) -> Generation:
    """A baseline's result: its loop state fetched, timed from `t0`."""
    seq, steps, done = jax.device_get((loop.seq_BxKxS, loop.step, loop.done_B))
    return _generation(r.spec, seq, steps, done, n, r.skip, 0.0, time.perf_counter() - t0)


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
    `categories`: each other attribute of the model's condition (a speaker), its id per row.
    `prompt`: codes_KxP every row continues (its transcript should lead each row's text); the
    rows' codes then hold only the frames after it."""
    r = _request(model, text_ids, sampling, max_frames, categories, prompt)
    args = (r.state, *r.batch, np.int32(r.max_steps), r.knobs, r.prefix_KxM)
    exe, compile_s = _executable(r.graphdef, r.spec, r.cache_steps, args)
    t0 = time.perf_counter()
    seq, steps, done = jax.device_get(exe(*args))
    decode_s = time.perf_counter() - t0
    return _generation(r.spec, seq, steps, done, len(text_ids), r.skip, compile_s, decode_s)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _prepare_jit(graphdef, spec, cache_steps, state, cond, valid_B, prefix_KxM):
    return _prepare(_merge(graphdef, state), spec, cache_steps, cond, valid_B, prefix_KxM)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(5, 6))
def _advance_jit(graphdef, spec, knobs, state, ctx, loop, cache, prefix_KxM):
    return _advance(_merge(graphdef, state), spec, knobs, ctx, loop, cache, prefix_KxM)


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
    r = _request(model, text_ids, sampling, max_frames, categories, prompt)
    t0 = time.perf_counter()
    prep = (r.graphdef, r.spec, r.cache_steps, r.state, *r.batch, r.prefix_KxM)
    ctx, cache, loop = _prepare_jit(*prep)
    for _ in range(r.start, r.max_steps):
        args = (r.state, ctx, loop, cache, r.prefix_KxM)
        loop, cache = _advance_jit(r.graphdef, r.spec, r.knobs, *args)
        if bool(loop.done_B.all()):
            break
    return _finish(r, loop, len(text_ids), t0)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def forward_logits(graphdef, prefix, spec, state, cond, seq_BxKxS, step):
    """One naive step: logits_BxKxV of `step` from the teacher-forced forward over the first
    `prefix` decoder steps (recomputing the text encoder and every earlier step)."""
    model = _merge(graphdef, state)
    b, k = seq_BxKxS.shape[:2]
    bos_BxKx1 = jnp.full((b, k, 1), spec.pattern.bos, jnp.int32)
    inputs_BxKxT = jnp.concatenate([bos_BxKx1, seq_BxKxS[:, :, : prefix - 1]], axis=2)
    bias = model.prior_bias(_prior(model, spec, cond), jnp.arange(prefix), cond.text_BxS.shape[1])
    logits_BxTxKxV, _ = model(
        _cond_rows(spec.cfg, cond), _rows(spec.cfg, inputs_BxKxT), attn_bias_BxTxS=bias
    )
    return jax.lax.dynamic_index_in_dim(logits_BxTxKxV, step, axis=1, keepdims=False)


_choose_jit = jax.jit(_choose, static_argnums=(0,))


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
    r = _request(model, text_ids, sampling, max_frames, categories, prompt)
    cond, valid_B = r.batch
    t0 = time.perf_counter()
    loop = _init_loop(r.spec, jnp.asarray(valid_B), r.cache_steps, r.prefix_KxM)
    for step in range(r.start, r.max_steps):
        prefix = prefix_bucket(step + 1, r.cache_steps)
        args = (r.state, cond, loop.seq_BxKxS, step)
        logits = forward_logits(r.graphdef, prefix, r.spec, *args)
        loop = _choose_jit(r.spec, r.knobs, logits, loop, r.prefix_KxM)
        if bool(loop.done_B.all()):
            break
    return _finish(r, loop, len(text_ids), t0)
