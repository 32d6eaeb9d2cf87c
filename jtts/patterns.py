"""Codebook interleaving patterns: how K parallel codebook streams become decoder steps.

A pattern turns `codes_BxKxT` (+ lengths) into a step sequence `seq_BxKxS` that the decoder
predicts one column at a time, and back. Token ids per codebook: codes are 0..C-1, then
EOS = C, BOS = C+1, PAD = C+2 (C = codebook_size). Input tables have C+3 rows; output heads
have C+1 logits (codes + EOS), so every unmasked target is a valid head index.

All functions are pure and work on numpy arrays (data pipeline) and jax arrays (inside jit).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax
import numpy as np
from jax import numpy as jnp

Array = Any  # np.ndarray | jax.Array


def _xp(*arrays: Array) -> Any:
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


@dataclasses.dataclass(frozen=True)
class Pattern(abc.ABC):
    """Interface the trainer and sampler rely on; hashable, so it can be a static jit argument."""

    n_codebooks: int
    codebook_size: int

    name = "abstract"

    @property
    def eos(self) -> int:
        return self.codebook_size

    @property
    def bos(self) -> int:
        return self.codebook_size + 1

    @property
    def pad(self) -> int:
        return self.codebook_size + 2

    @abc.abstractmethod
    def num_steps(self, frames: Any) -> Any:
        """Decoder steps needed for `frames` codec frames, EOS included (int or int array)."""

    @abc.abstractmethod
    def apply(self, codes_BxKxT: Array, lengths_B: Array) -> Array:
        """Returns seq_BxKxS, S = num_steps(T); codes at t >= length are ignored."""

    @abc.abstractmethod
    def revert(self, seq_BxKxS: Array) -> tuple[Array, Array]:
        """Inverse of `apply`: (codes_BxKxT, lengths_B), lengths found from EOS.

        Codes at t >= length are 0. A row without EOS has length T.
        """

    @abc.abstractmethod
    def forced_tokens(self, step: Array, lengths_B: Array) -> Array:
        """Ids a sampler must emit at `step` instead of sampling, as forced_BxK; -1 = sample.

        `lengths_B` is the frame count of each row once its EOS was sampled, -1 while open.
        """

    @abc.abstractmethod
    def prefix(self, codes_KxP: Array) -> Array:
        """The steps a voice prompt of P known frames fixes, as prefix_KxM with -1 where the
        continuation is sampled: its leading whole columns are prefilled, and a sampler emits
        the known ids of the others instead of sampling them."""

    @abc.abstractmethod
    def length_at_eos(self, step: Array) -> Array:
        """Frame count of an utterance whose first codebook samples EOS at `step`."""

    def decoder_io(self, seq_BxKxS: Array) -> tuple[Array, Array, Array]:
        """Teacher-forcing (inputs_BxKxS, targets_BxKxS, mask_BxKxS) for a step sequence.

        inputs are seq shifted right by one step behind a BOS column; targets equal seq where
        mask is true (codes or EOS) and 0 at BOS/PAD positions, which mask excludes from the loss.
        """
        xp = _xp(seq_BxKxS)
        seq = seq_BxKxS.astype(xp.int32)
        bos_col = xp.full(seq.shape[:2] + (1,), self.bos, dtype=xp.int32)
        inputs = xp.concatenate([bos_col, seq[:, :, :-1]], axis=2)
        mask = (seq != self.bos) & (seq != self.pad)
        targets = xp.where(mask, seq, 0)
        return inputs, targets, mask


_PATTERNS: dict[str, type[Pattern]] = {}


def register_pattern(cls: type[Pattern]) -> type[Pattern]:
    """Class decorator adding a Pattern subclass to the registry under `cls.name`."""
    _PATTERNS[cls.name] = cls
    return cls


@register_pattern
@dataclasses.dataclass(frozen=True)
class DelayPattern(Pattern):
    """MusicGen/Parler-TTS delay: codebook k is shifted right by k steps.

    seq[k, t + k] = codes[k, t] for t < L; BOS for steps before k; EOS at L + k; PAD after.
    Predicting codebook k of frame t thus conditions on codebooks < k of the same frame.
    """

    name = "delay"

    def num_steps(self, frames: Any) -> Any:
        return frames + self.n_codebooks

    def apply(self, codes_BxKxT: Array, lengths_B: Array) -> Array:
        xp = _xp(codes_BxKxT, lengths_B)
        b, k, t = codes_BxKxT.shape
        s = self.num_steps(t)
        frame_1xKxS = xp.arange(s)[None, None, :] - xp.arange(k)[None, :, None]
        gather_BxKxS = xp.broadcast_to(xp.clip(frame_1xKxS, 0, t - 1), (b, k, s))
        codes_BxKxS = xp.take_along_axis(codes_BxKxT.astype(xp.int32), gather_BxKxS, axis=2)
        length_Bx1x1 = xp.asarray(lengths_B, dtype=xp.int32)[:, None, None]
        seq = xp.where(frame_1xKxS < length_Bx1x1, codes_BxKxS, self.pad)
        seq = xp.where(frame_1xKxS == length_Bx1x1, self.eos, seq)
        return xp.where(frame_1xKxS < 0, self.bos, seq).astype(xp.int32)

    def revert(self, seq_BxKxS: Array) -> tuple[Array, Array]:
        xp = _xp(seq_BxKxS)
        b, k, s = seq_BxKxS.shape
        t = s - k
        seq = seq_BxKxS.astype(xp.int32)
        step_1xKxT = xp.arange(t)[None, None, :] + xp.arange(k)[None, :, None]
        codes_BxKxT = xp.take_along_axis(seq, xp.broadcast_to(step_1xKxT, (b, k, t)), axis=2)
        is_eos = seq == self.eos
        first_eos_BxK = xp.where(is_eos.any(axis=2), xp.argmax(is_eos, axis=2), s)
        length_BxK = xp.clip(first_eos_BxK - xp.arange(k)[None, :], 0, t)
        lengths_B = length_BxK.min(axis=1).astype(xp.int32)
        codes_BxKxT = xp.where(
            xp.arange(t)[None, None, :] < lengths_B[:, None, None], codes_BxKxT, 0
        )
        return codes_BxKxT.astype(xp.int32), lengths_B

    def forced_tokens(self, step: Array, lengths_B: Array) -> Array:
        xp = _xp(step, lengths_B)
        lengths_Bx1 = xp.asarray(lengths_B, dtype=xp.int32)[:, None]
        frame_1xK = step - xp.arange(self.n_codebooks, dtype=xp.int32)[None, :]
        known_Bx1 = lengths_Bx1 >= 0
        forced = xp.where(frame_1xK < 0, self.bos, -1)
        forced = xp.where(known_Bx1 & (frame_1xK == lengths_Bx1), self.eos, forced)
        return xp.where(known_Bx1 & (frame_1xK > lengths_Bx1), self.pad, forced).astype(xp.int32)

    def prefix(self, codes_KxP: Array) -> Array:
        """Steps 0 .. P-1 are whole (BOS, then the prompt); in the K-1 steps after them
        codebook k still holds prompt frame step - k when k > step - P."""
        xp = _xp(codes_KxP)
        k, p = codes_KxP.shape
        seq_KxM = self.apply(codes_KxP[None], xp.asarray([p]))[0, :, : p + k - 1]
        frame_KxM = xp.arange(p + k - 1)[None, :] - xp.arange(k)[:, None]
        return xp.where(frame_KxM >= p, -1, seq_KxM).astype(xp.int32)

    def length_at_eos(self, step: Array) -> Array:
        return step


def get_pattern(name: str, n_codebooks: int, codebook_size: int) -> Pattern:
    if name not in _PATTERNS:
        raise ValueError(f"unknown codebook pattern {name!r}; known: {sorted(_PATTERNS)}")
    return _PATTERNS[name](n_codebooks=n_codebooks, codebook_size=codebook_size)
