"""Text-to-codes encoder-decoder: a `Cond` in, K codebook logits per decoder step out.

The conditioner (jtts.conditioning) encodes the text; the decoder reads pattern steps (see
jtts.patterns), whose input is the sum of K codebook embeddings, cross-attends the condition
memory, and predicts all K codebooks of a step with K heads. Training (`__call__`) and the
decode loop (`decode_step`) run the same decoder layers.
"""

from __future__ import annotations

import math

import jax
from flax import nnx
from jax import numpy as jnp

from jtts.conditioning import Cond, Conditioner
from jtts.config import ModelConfig
from jtts.layers import CrossKV, DecoderLayer, KVCache, LayerStack, RMSNorm, split_rng

Cache = tuple[KVCache, ...]  # one per decoder layer
FRAMES_PER_UNIT = 16.0  # the length head's unit: about a Whisper token of speech at 75 frames/s
Context = tuple[CrossKV, ...]  # one per decoder layer: what stays fixed while a batch decodes


class TTSModel(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        init = nnx.initializers.normal(cfg.init_std)
        pdt = jnp.dtype(cfg.param_dtype)
        d, k = cfg.d_model, cfg.n_codebooks
        self.conditioner = Conditioner(cfg, rngs=rngs)
        self.code_embed = nnx.Param(init(rngs.params(), (k, cfg.in_vocab_size, d), pdt))
        self.decoder = LayerStack(
            lambda r: DecoderLayer(cfg, rngs=r), cfg.dec_layers, scan=cfg.scan_layers, rngs=rngs
        )
        self.dec_norm = RMSNorm(cfg)
        # (D, K, V): the decode step's logits are one (D, K*V) matrix-vector product, read
        # in place (a (K, D, V) layout costs a transposing copy of the heads at every step).
        self.heads = nnx.Param(init(rngs.params(), (d, k, cfg.out_vocab_size), pdt))
        if cfg.attention_prior is not None:  # per-token durations, summed: the text's length
            self.length_head = nnx.Linear(d, 1, dtype=jnp.float32, param_dtype=pdt, rngs=rngs)

    @property
    def dtype(self) -> jnp.dtype:
        return jnp.dtype(self.cfg.dtype)

    def _embed_codes(self, tokens_BxKxT: jax.Array) -> jax.Array:
        """Sum of the K per-codebook embeddings; a loop over K keeps memory at one BxTxD."""
        table = self.code_embed[...]
        x = sum(jnp.take(table[k], tokens_BxKxT[:, k], axis=0) for k in range(table.shape[0]))
        return x.astype(self.dtype)

    def _logits(self, x_BxTxD: jax.Array) -> jax.Array:
        heads = self.heads[...].astype(self.dtype)
        x = self.dec_norm(x_BxTxD)
        return jnp.einsum("btd,dkv->btkv", x, heads, preferred_element_type=jnp.float32)

    def __call__(
        self,
        cond: Cond,
        tokens_BxKxT: jax.Array,
        *,
        attn_bias_BxTxS: jax.Array | None = None,
        dropout_rng: jax.Array | None = None,
        with_attention: bool = False,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Teacher-forced forward: (float32 logits_BxTxKxV, V = codebook_size + 1, and with
        `with_attention` the cross-attention logits_LxBxHxTxS of every decoder layer).

        `attn_bias_BxTxS` (an alignment log-prior) is added to every layer's cross-attention
        logits; `dropout_rng` enables dropout (training); None is deterministic.
        """
        enc_rng, dec_rng = split_rng(dropout_rng, 2) if dropout_rng is not None else (None, None)
        mem = self.conditioner(cond, dropout_rng=enc_rng)
        positions_T = jnp.arange(tokens_BxKxT.shape[2])

        def layer_fn(layer, x, rng):
            kv = layer.cross_attn.memory_kv(mem.enc_BxSxD, mem.mask_BxS)
            x, _, logits = layer(x, positions_T, kv, bias_BxTxS=attn_bias_BxTxS, rng=rng)
            return x, logits if with_attention else None

        x, attn = self.decoder.run(
            layer_fn,
            self._embed_codes(tokens_BxKxT),
            split_rng(dec_rng, self.cfg.dec_layers),
            remat=self.cfg.remat,
        )
        return self._logits(x), attn

    def predicted_frames(self, cond: Cond) -> jax.Array:
        """The codec frames each row's text will take (float32 B), from a length head on the
        text encoding; rows dropped for guidance are measured by their text all the same.

        The head reads the encoding through a stop-gradient: its loss trains only itself.
        Its unit is `FRAMES_PER_UNIT` frames, so it starts near a spoken token's length
        instead of having to climb there at the learning rate."""
        mem = self.conditioner(cond._replace(drop_B=jnp.zeros_like(cond.drop_B)))
        enc_BxSxD = jax.lax.stop_gradient(mem.enc_BxSxD).astype(jnp.float32)
        per_token_BxS = FRAMES_PER_UNIT * jax.nn.softplus(self.length_head(enc_BxSxD)[..., 0])
        return jnp.sum(jnp.where(mem.mask_BxS, per_token_BxS, 0.0), axis=1)

    def init_cache(self, batch: int, max_steps: int) -> Cache:
        """Zeroed self-attention K/V caches for `max_steps` decoder steps."""
        cfg = self.cfg
        n, d = batch * cfg.resolved_kv_heads, cfg.resolved_head_dim
        return tuple(
            KVCache(
                jnp.zeros((n, d, max_steps), self.dtype), jnp.zeros((n, max_steps, d), self.dtype)
            )
            for _ in range(cfg.dec_layers)
        )

    def decode_context(self, cond: Cond) -> Context:
        """The condition's cross-attention K/V for every decoder layer; once per batch."""
        mem = self.conditioner(cond)
        return tuple(
            layer.cross_attn.memory_kv(mem.enc_BxSxD, mem.mask_BxS)
            for layer in self.decoder.unstacked()
        )

    def decode_step(
        self,
        tokens_BxK: jax.Array,
        step: jax.Array,
        cache: Cache,
        ctx: Context,
        attn_bias_BxS: jax.Array | None = None,
    ) -> tuple[jax.Array, Cache, jax.Array]:
        """Feeds the decoder inputs of `step` through the same layers as `__call__` (with
        `attn_bias_BxS`, the step's row of an alignment log-prior); returns (float32
        logits_BxKxV, new cache, cross-attention logits_LxBxHxS of the step).

        Layers run unrolled even when scanned: per-layer caches let XLA update each in place.
        """
        step = jnp.asarray(step, jnp.int32)
        k = tokens_BxK.shape[1]
        table = self.code_embed[...]
        x = table[jnp.arange(k)[None, :], tokens_BxK].sum(axis=1).astype(self.dtype)[:, None]
        bias = None if attn_bias_BxS is None else attn_bias_BxS[:, None, :]
        new_cache, attn = [], []
        for layer, layer_cache, kv in zip(self.decoder.unstacked(), cache, ctx, strict=True):
            x, layer_cache, logits = layer(x, step[None], kv, layer_cache, bias_BxTxS=bias)
            new_cache.append(layer_cache)
            attn.append(logits[:, :, 0])
        return self._logits(x)[:, 0], tuple(new_cache), jnp.stack(attn)


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
