"""How a decode picks each token from its logits: the settings (`Sampling`), split into what
shapes the compiled program (`Spec`) and what it reads at run time (`Knobs`), and the rules
themselves: classifier-free guidance (conditional rows then null rows in one batch, mixed as
null + s * (cond - null); the null rows drop every attribute, or with `cfg_null="text"` the
text alone, keeping the voice), temperature, top-k and top-p, or the argmax.

The decoders in `jtts.decode` and `jtts.decode_reference` all pick through `draw`, so they
differ only in how the logits are computed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import numpy as np
from jax import numpy as jnp

from jtts.conditioning import TEXT, Cond, with_null_rows
from jtts.config import CFG_NULLS, SampleConfig
from jtts.patterns import Pattern

# The `Sampling` fields a config's `sample` section sets (and `jtts.sample` can override).
CONFIG_KNOBS = (
    "temperature",
    "top_k",
    "top_p",
    "cfg_scale",
    "cfg_null",
    "length_scale",
    "follow",
)


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How each token is picked. Greedy (or temperature 0) takes the argmax; cfg_scale 1 is
    plain conditional sampling, any other value mixes null + s * (cond - null) logits, the null
    condition dropping every attribute (`cfg_null` "all") or the text alone ("text").
    `length_scale` stretches the length the alignment prior is spread over (a model with
    `attention_prior` speaks at its predicted length: > 1 is slower, < 1 faster). `follow`
    weights each step's cross-attention around the text position the decode has reached
    (`jtts.alignment.follow_position`), so that it neither goes back nor skips ahead."""

    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    cfg_scale: float = 1.0
    cfg_null: str = "all"
    greedy: bool = False
    seed: int = 0
    min_frames: int = 1  # codebook 0 may not emit EOS before this many frames
    length_scale: float = 1.0
    follow: bool = False

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
        if self.cfg_null not in CFG_NULLS:
            raise ValueError(
                f"cfg null must be one of {', '.join(CFG_NULLS)}, got {self.cfg_null!r}"
            )

    @classmethod
    def of(cls, sample: SampleConfig, **given: Any) -> Sampling:
        """A config's `sample` settings, with the `given` fields (greedy, seed, or overrides
        of the config's) in their place: the one builder the trainer and the sampler share."""
        return cls(**{**{name: getattr(sample, name) for name in CONFIG_KNOBS}, **given})


@dataclasses.dataclass(frozen=True)
class Spec:
    """The settings that change the program (static); `Knobs` holds the ones that do not."""

    pattern: Pattern
    greedy: bool
    top_k: int
    top_p: bool
    cfg: bool
    cfg_null: str
    length_scale: float
    follow: bool

    @classmethod
    def of(cls, model, s: Sampling) -> Spec:
        greedy = s.greedy or s.temperature == 0
        return cls(
            pattern=model.pattern,
            greedy=greedy,
            top_k=0 if greedy else s.top_k,
            top_p=not greedy and s.top_p < 1.0,
            cfg=s.cfg_scale != 1.0,
            cfg_null=s.cfg_null if s.cfg_scale != 1.0 else "all",
            length_scale=s.length_scale,
            follow=s.follow,
        )


class Knobs(NamedTuple):
    temperature: Any
    top_p: Any
    cfg_scale: Any
    seed: Any
    min_frames: Any

    @classmethod
    def of(cls, s: Sampling) -> Knobs:
        return cls(
            np.float32(s.temperature if s.temperature > 0 else 1.0),
            np.float32(s.top_p),
            np.float32(s.cfg_scale),
            np.uint32(s.seed % 2**32),
            np.int32(s.min_frames),
        )


def rows(cfg: bool, x: jax.Array) -> jax.Array:
    """Guidance runs conditional rows then null rows in one batch of 2B."""
    return jnp.concatenate([x, x], axis=0) if cfg else x


def cond_rows(spec: Spec, cond: Cond) -> Cond:
    """The condition's rows, and under guidance its null rows after them."""
    if not spec.cfg:
        return cond
    return with_null_rows(cond, None if spec.cfg_null == "all" else (TEXT,))


def guide(knobs: Knobs, logits: jax.Array, b: int) -> jax.Array:
    """The B guided logits of a batch of 2B: null + s * (cond - null)."""
    cond, null = logits[:b], logits[b:]
    return null + knobs.cfg_scale * (cond - null)


def _argmax(x_BxKxV: jax.Array) -> jax.Array:
    """First index of the maximum: two plain reductions, which XLA:CPU vectorizes (its
    argmax is a slow variadic reduce)."""
    v = x_BxKxV.shape[-1]
    top = x_BxKxV.max(axis=-1, keepdims=True)
    first = jnp.where(x_BxKxV == top, jnp.arange(v, dtype=jnp.int32), v).min(axis=-1)
    return jnp.minimum(first, v - 1)


def draw(spec: Spec, knobs: Knobs, key: jax.Array, logits_BxKxV: jax.Array) -> jax.Array:
    """A token of each row and codebook: the argmax, or a draw after temperature, top-k, top-p."""
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
