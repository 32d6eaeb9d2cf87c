"""What the decoder is conditioned on, as one structure from the loader to the cross-attention.

`Cond` is produced by the data loader (and by the sampler from user text), dropped row by row
for classifier-free guidance, paired with another row's text to measure how much the model
reads, and turned by `Conditioner` into the `Memory` every decoder layer cross-attends. A new
kind of conditioning (a speaker id, a voice prompt) is a new field here and a few lines in
`Conditioner`; the train step, the eval step and the decode loop pass `Cond` through unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from flax import nnx
from jax import numpy as jnp

from jtts.config import ModelConfig
from jtts.layers import EncoderLayer, LayerStack, RMSNorm, split_rng
from jtts.spelling import SpellingEmbed


class Cond(NamedTuple):
    """A batch's conditioning. `drop_B` rows see only the learned null condition."""

    text_BxS: jax.Array  # int32 Whisper ids, ending with <|endoftext|>
    text_mask_BxS: jax.Array  # bool; every row has at least one real token
    drop_B: jax.Array  # bool

    @staticmethod
    def of_text(text_BxS, text_mask_BxS) -> Cond:
        """A condition with no dropped rows (numpy in, numpy out; jax in, jax out)."""
        xp = jnp if isinstance(text_BxS, jax.Array) else np
        return Cond(text_BxS, text_mask_BxS, xp.zeros(text_BxS.shape[0], bool))

    @property
    def text_lengths_B(self) -> jax.Array:
        return self.text_mask_BxS.sum(axis=-1)


def drop(cond: Cond, drop_B: jax.Array) -> Cond:
    """Guidance dropout: rows where `drop_B` is true lose their condition."""
    return cond._replace(drop_B=cond.drop_B | drop_B)


def with_null_rows(cond: Cond) -> Cond:
    """Conditional rows, then the same rows dropped: one batch of 2B for guidance."""
    both = jax.tree.map(lambda x: jnp.concatenate([x, x], axis=0), cond)
    b = cond.drop_B.shape[0]
    return both._replace(drop_B=both.drop_B | (jnp.arange(2 * b) >= b))


def mismatched(cond: Cond, valid_B: jax.Array) -> Cond:
    """Each valid row gets the condition of the next valid row (cyclically), so a model that
    reads its text is measured against one that hears another sentence's text."""
    b = valid_B.shape[0]
    order = jnp.argsort(~valid_B, stable=True)  # valid rows first, in batch order
    n = jnp.maximum(valid_B.sum(), 1)
    position_B = jnp.zeros(b, jnp.int32).at[order].set(jnp.arange(b, dtype=jnp.int32))
    partner_B = jnp.where(valid_B, order[(position_B + 1) % n], jnp.arange(b))
    return jax.tree.map(lambda x: x[partner_B], cond)


class Memory(NamedTuple):
    """What the decoder cross-attends: one vector per condition position."""

    enc_BxSxD: jax.Array
    mask_BxS: jax.Array


class Conditioner(nnx.Module):
    """`Cond` -> `Memory`: text embedding and a bidirectional encoder; dropped rows see one
    learned null vector at position 0."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        init = nnx.initializers.normal(cfg.init_std)
        pdt = jnp.dtype(cfg.param_dtype)
        if cfg.text_embed != "spelling":
            shape = (cfg.text_vocab_size, cfg.d_model)
            self.text_embed = nnx.Param(init(rngs.params(), shape, pdt))
        if cfg.text_embed != "table":
            self.spelling = SpellingEmbed(cfg, rngs=rngs)
        self.null_cond = nnx.Param(init(rngs.params(), (cfg.d_model,), pdt))
        self.encoder = LayerStack(
            lambda r: EncoderLayer(cfg, rngs=r), cfg.enc_layers, scan=cfg.scan_layers, rngs=rngs
        )
        self.enc_norm = RMSNorm(cfg)

    def _embed_text(self, ids_BxS: jax.Array) -> jax.Array:
        if self.cfg.text_embed == "spelling":
            return self.spelling(ids_BxS)
        x = jnp.take(self.text_embed[...], ids_BxS, axis=0)
        return x if self.cfg.text_embed == "table" else x + self.spelling(ids_BxS)

    def __call__(self, cond: Cond, *, dropout_rng: jax.Array | None = None) -> Memory:
        dtype = jnp.dtype(self.cfg.dtype)
        text_mask_BxS = cond.text_mask_BxS.astype(bool)
        x = self._embed_text(cond.text_BxS).astype(dtype)
        positions_S = jnp.arange(cond.text_BxS.shape[1])
        mask_Bx1x1xS = text_mask_BxS[:, None, None, :]

        def layer_fn(layer, x, rng):
            return layer(x, positions_S, mask_Bx1x1xS, rng), None

        rngs = split_rng(dropout_rng, self.cfg.enc_layers)
        x, _ = self.encoder.run(layer_fn, x, rngs, remat=self.cfg.remat)
        enc_BxSxD = self.enc_norm(x)
        drop_Bx1 = cond.drop_B.astype(bool)[:, None]
        null_1x1xD = self.null_cond[...].astype(dtype)[None, None, :]
        enc_BxSxD = jnp.where(drop_Bx1[:, :, None], null_1x1xD, enc_BxSxD)
        null_mask_1xS = (positions_S == 0)[None, :]
        return Memory(enc_BxSxD, jnp.where(drop_Bx1, null_mask_1xS, text_mask_BxS))
