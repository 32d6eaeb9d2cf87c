"""Text-to-codes encoder-decoder: Whisper text tokens in, K codebook logits per decoder step out.

The encoder reads text bidirectionally; the decoder reads pattern steps (see jtts.patterns),
whose input is the sum of K codebook embeddings, and predicts all K codebooks of a step with
K heads. For classifier-free guidance a learned one-vector "null" encoder output replaces the
text for rows where `drop_cond_B` is true.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
from flax import nnx
from jax import numpy as jnp

from jtts.config import ModelConfig
from jtts.layers import (
    DecoderLayer,
    EncoderLayer,
    LayerStack,
    RMSNorm,
    StepWeights,
    decode_layer_step,
    rms_norm,
)


class Cache(NamedTuple):
    """Self-attention keys (B*G, D, Tmax) and values (B*G, Tmax, D), one array per decoder
    layer (G = K/V heads): the layout both attention matmuls of a step read without copying
    the cache."""

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]


class DecodeContext(NamedTuple):
    """What stays fixed while a batch decodes, computed once by `TTSModel.decode_context`:
    the decoder's weights gathered (and fused) in the compute dtype, and the text's
    cross-attention K/V per layer in the `Cache` layout with its mask repeated per head."""

    embed_KxNxD: jax.Array  # code embeddings (param dtype), N = in_vocab_size
    layers: tuple[StepWeights, ...]
    norm_D: jax.Array
    heads_DxKV: jax.Array
    cross_k: tuple[jax.Array, ...]  # (B*H, D, S) per layer
    cross_v: tuple[jax.Array, ...]  # (B*H, S, D) per layer
    cross_mask_NxS: jax.Array


def _split(rng: jax.Array | None, n: int) -> jax.Array | None:
    return None if rng is None else jax.random.split(rng, n)


class TTSModel(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        init = nnx.initializers.normal(cfg.init_std)
        pdt = jnp.dtype(cfg.param_dtype)
        d, k = cfg.d_model, cfg.n_codebooks
        self.text_embed = nnx.Param(init(rngs.params(), (cfg.text_vocab_size, d), pdt))
        self.null_cond = nnx.Param(init(rngs.params(), (d,), pdt))
        self.encoder = LayerStack(
            lambda r: EncoderLayer(cfg, rngs=r), cfg.enc_layers, scan=cfg.scan_layers, rngs=rngs
        )
        self.enc_norm = RMSNorm(cfg)
        self.code_embed = nnx.Param(init(rngs.params(), (k, cfg.in_vocab_size, d), pdt))
        self.decoder = LayerStack(
            lambda r: DecoderLayer(cfg, rngs=r), cfg.dec_layers, scan=cfg.scan_layers, rngs=rngs
        )
        self.dec_norm = RMSNorm(cfg)
        self.heads = nnx.Param(init(rngs.params(), (k, d, cfg.out_vocab_size), pdt))

    @property
    def dtype(self) -> jnp.dtype:
        return jnp.dtype(self.cfg.dtype)

    def encode(
        self,
        text_BxS: jax.Array,
        text_mask_BxS: jax.Array,
        drop_cond_B: jax.Array | None = None,
        *,
        dropout_rng: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Returns (enc_BxSxD, enc_mask_BxS); dropped rows see only the null vector at s=0."""
        text_mask_BxS = text_mask_BxS.astype(bool)
        x = jnp.take(self.text_embed[...], text_BxS, axis=0).astype(self.dtype)
        positions_S = jnp.arange(text_BxS.shape[1])
        mask_Bx1x1xS = text_mask_BxS[:, None, None, :]

        def layer_fn(layer, x, rng):
            return layer(x, positions_S, mask_Bx1x1xS, rng), None

        x, _ = self.encoder.run(
            layer_fn, x, _split(dropout_rng, self.cfg.enc_layers), remat=self.cfg.remat
        )
        enc_BxSxD = self.enc_norm(x)
        if drop_cond_B is None:
            return enc_BxSxD, text_mask_BxS
        drop_Bx1 = drop_cond_B.astype(bool)[:, None]
        null_1x1xD = self.null_cond[...].astype(self.dtype)[None, None, :]
        enc_BxSxD = jnp.where(drop_Bx1[:, :, None], null_1x1xD, enc_BxSxD)
        null_mask_1xS = (jnp.arange(text_BxS.shape[1]) == 0)[None, :]
        return enc_BxSxD, jnp.where(drop_Bx1, null_mask_1xS, text_mask_BxS)

    def _embed_codes(self, tokens_BxKxT: jax.Array) -> jax.Array:
        """Sum of the K per-codebook embeddings; a loop over K keeps memory at one BxTxD."""
        table = self.code_embed[...]
        x = sum(jnp.take(table[k], tokens_BxKxT[:, k], axis=0) for k in range(table.shape[0]))
        return x.astype(self.dtype)

    def _logits(self, x_BxTxD: jax.Array) -> jax.Array:
        heads = self.heads[...].astype(self.dtype)
        x = self.dec_norm(x_BxTxD)
        return jnp.einsum("btd,kdv->btkv", x, heads, preferred_element_type=jnp.float32)

    def __call__(
        self,
        text_BxS: jax.Array,
        text_mask_BxS: jax.Array,
        tokens_BxKxT: jax.Array,
        *,
        drop_cond_B: jax.Array | None = None,
        dropout_rng: jax.Array | None = None,
    ) -> jax.Array:
        """Teacher-forced forward: float32 logits_BxTxKxV, V = codebook_size + 1.

        `dropout_rng` enables dropout (training); None is deterministic.
        """
        enc_rng, dec_rng = _split(dropout_rng, 2) if dropout_rng is not None else (None, None)
        enc_BxSxD, enc_mask_BxS = self.encode(
            text_BxS, text_mask_BxS, drop_cond_B, dropout_rng=enc_rng
        )
        positions_T = jnp.arange(tokens_BxKxT.shape[2])

        def layer_fn(layer, x, rng):
            return layer(x, positions_T, enc_BxSxD, enc_mask_BxS, rng), None

        x, _ = self.decoder.run(
            layer_fn,
            self._embed_codes(tokens_BxKxT),
            _split(dec_rng, self.cfg.dec_layers),
            remat=self.cfg.remat,
        )
        return self._logits(x)

    def init_cache(self, batch: int, max_steps: int) -> Cache:
        """Zeroed self-attention K/V cache for `max_steps` decoder steps."""
        cfg = self.cfg
        n, d, layers = batch * cfg.resolved_kv_heads, cfg.resolved_head_dim, range(cfg.dec_layers)
        return Cache(
            k=tuple(jnp.zeros((n, d, max_steps), self.dtype) for _ in layers),
            v=tuple(jnp.zeros((n, max_steps, d), self.dtype) for _ in layers),
        )

    def decode_context(self, enc_BxSxD: jax.Array, enc_mask_BxS: jax.Array) -> DecodeContext:
        """Weights and cross-attention K/V for `decode_step`; computed once per batch.

        Layers are unrolled even when scanned: a step is a few matrix-vector products, and
        per-layer caches let XLA update each in place.
        """
        layers = self.decoder.unstacked()
        cross = [layer.step_cross(enc_BxSxD) for layer in layers]
        k, d, v = self.heads[...].shape
        return DecodeContext(
            embed_KxNxD=self.code_embed[...],
            layers=tuple(layer.step_weights() for layer in layers),
            norm_D=self.dec_norm.scale[...],
            heads_DxKV=self.heads[...].astype(self.dtype).transpose(1, 0, 2).reshape(d, k * v),
            cross_k=tuple(kv[0] for kv in cross),
            cross_v=tuple(kv[1] for kv in cross),
            cross_mask_NxS=jnp.repeat(enc_mask_BxS.astype(bool), self.cfg.n_heads, axis=0),
        )

    def decode_step(
        self, tokens_BxK: jax.Array, step: jax.Array, cache: Cache, ctx: DecodeContext
    ) -> tuple[jax.Array, Cache]:
        """Feeds the decoder inputs of `step`; returns (float32 logits_BxKxV of step, new cache).

        Pure and reads no parameters (only `ctx`), so it can be a `jax.lax.while_loop` body.
        """
        cfg = self.cfg
        step = jnp.asarray(step, jnp.int32)
        b, k = tokens_BxK.shape
        x = ctx.embed_KxNxD[jnp.arange(k)[None, :], tokens_BxK].sum(axis=1).astype(self.dtype)
        new_k, new_v = [], []
        layers = zip(ctx.layers, cache.k, cache.v, ctx.cross_k, ctx.cross_v, strict=True)
        for w, keys, values, cross_k, cross_v in layers:
            x, keys, values = decode_layer_step(
                cfg, w, x, step, keys, values, cross_k, cross_v, ctx.cross_mask_NxS
            )
            new_k.append(keys)
            new_v.append(values)
        x = rms_norm(x, ctx.norm_D, cfg.norm_eps, self.dtype)
        logits = jnp.dot(x, ctx.heads_DxKV, preferred_element_type=jnp.float32)
        return logits.reshape(b, k, -1), Cache(k=tuple(new_k), v=tuple(new_v))


def build_model(cfg: ModelConfig, rngs: nnx.Rngs) -> TTSModel:
    return TTSModel(cfg, rngs=rngs)


def count_params(model: nnx.Module) -> int:
    """Number of parameters; works on abstract models from `nnx.eval_shape` too."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def flops_per_step(cfg: ModelConfig, batch: int, text_len: int, frames: int) -> float:
    """Model FLOPs of one training step (forward + backward), counted as MaxText does.

    3 x (2 x matmul-params x tokens + attention score/value matmuls); the causal half of
    decoder self-attention is not counted; embedding lookups are free. `frames` is the
    decoder length in pattern steps.
    """
    inner = cfg.n_heads * cfg.resolved_head_dim
    self_attn = cfg.d_model * (2 * inner + 2 * cfg.resolved_kv_heads * cfg.resolved_head_dim)
    mlp = (3 if cfg.mlp == "swiglu" else 2) * cfg.d_model * cfg.mlp_dim
    enc_tokens, dec_tokens = batch * text_len, batch * frames
    weights = enc_tokens * cfg.enc_layers * (self_attn + mlp)
    weights += enc_tokens * cfg.dec_layers * 2 * cfg.d_model * inner  # cross-attention K/V
    weights += dec_tokens * cfg.dec_layers * (self_attn + 2 * cfg.d_model * inner + mlp)
    weights += dec_tokens * cfg.n_codebooks * cfg.d_model * cfg.out_vocab_size  # heads
    attention = cfg.enc_layers * 4 * batch * text_len**2 * inner
    attention += cfg.dec_layers * 4 * batch * (frames**2 / 2 + frames * text_len) * inner
    return 3.0 * (2.0 * weights + attention)
