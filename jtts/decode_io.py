"""A decode call's inputs and output, shared by `jtts.decode` and `jtts.decode_reference`.

The inputs are checked and padded to shape buckets (`request`): rows to a power of two, text
to a power of two within the model's length, decoder steps to a cache length at most 1.5x the
steps needed, a voice prompt's pattern steps to a prefill length, so that nearby calls share
one compiled program. The emitted pattern steps come back as codes per row (`generation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from flax import nnx

from jtts import conditioning
from jtts.conditioning import Cond
from jtts.patterns import Pattern
from jtts.sampling import Knobs, Sampling, Spec


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


class Batch(NamedTuple):
    cond: Cond
    valid_B: np.ndarray


def _batch(
    text_ids: Sequence[Sequence[int]],
    max_text_len: int,
    categories: Mapping[str, Sequence[int]] | None = None,
) -> Batch:
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
    null = {name: np.zeros(b, bool) for name in categories}
    for name, values in categories.items():
        ids[name][: len(text_ids)] = np.maximum(values, 0)
        null[name][: len(text_ids)] = np.asarray(values) == conditioning.NULL
    cond = Cond.of_text(text, mask, **ids)
    for name, rows in null.items():
        cond = conditioning.drop(cond, rows, (name,))
    return Batch(cond, np.arange(b) < len(text_ids))


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


def _steps(spec: Spec, max_frames: int, prompt_frames: int) -> tuple[int, int]:
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    max_steps = int(spec.pattern.num_steps(prompt_frames + max_frames))
    return max_steps, step_bucket(max_steps)


class Request(NamedTuple):
    """One decode call's inputs, prepared alike for `generate` and the two baselines."""

    spec: Spec
    knobs: Knobs
    batch: Batch
    max_steps: int
    cache_steps: int
    prefix_KxM: np.ndarray | None  # a prompt's steps (Pattern.prefix, bucketed), or None
    skip: int  # the prompt's frames, dropped from the output
    graphdef: Any
    state: Any


def request(model, text_ids, sampling: Sampling, max_frames: int, categories, prompt) -> Request:
    categories = categories or {}
    if set(categories) != set(model.conditioner.categories):
        raise ValueError(
            f"the model reads {sorted(model.conditioner.categories) or 'no attribute'} besides "
            f"the text, given {sorted(categories) or 'none'}"
        )
    prefix_KxM, spec = _prefix(model.pattern, prompt), Spec.of(model, sampling)
    skip = 0 if prompt is None else int(np.shape(prompt)[1])
    knobs = Knobs.of(sampling)
    if skip:  # min_frames counts the continuation's frames; EOS counts the prompt's too
        knobs = knobs._replace(min_frames=np.int32(sampling.min_frames + skip))
    batch = _batch(text_ids, model.cfg.max_text_len, categories)
    max_steps, cache_steps = _steps(spec, max_frames, skip)
    if prefix_KxM is not None:  # padded to its bucket with -1 (sampled) steps
        m = prefix_KxM.shape[1]
        pad = ((0, 0), (0, prompt_bucket(m, cache_steps) - m))
        prefix_KxM = np.pad(prefix_KxM, pad, constant_values=-1)
    return Request(spec, knobs, batch, max_steps, cache_steps, prefix_KxM, skip, *nnx.split(model))


def generation(r: Request, seq_BxKxS, steps, done_B, n, compile_s, decode_s) -> Generation:
    """The result: the emitted steps reverted to codes, the prompt's frames off."""
    seq_BxKxS = np.asarray(seq_BxKxS)[:n, :, : int(steps)]
    codes_BxKxT, lengths_B = r.spec.pattern.revert(seq_BxKxS)
    return Generation(
        codes=[codes_BxKxT[i, :, r.skip : lengths_B[i]] for i in range(n)],
        seq_BxKxS=seq_BxKxS,
        finished=np.asarray(done_B)[:n].copy(),
        steps=int(steps),
        compile_s=compile_s,
        decode_s=decode_s,
    )
