"""Transformer building blocks: RMSNorm, rotary attention, MLP, encoder/decoder layers, stacks.

The decoder layer is written once: the same `DecoderLayer.__call__` runs the teacher-forced
pass over all steps and, given a `KVCache`, a prefilled prompt or one step of the decode loop.

Parameters are stored in `param_dtype` and cast to the compute `dtype` at use; norms, rotary
and softmax statistics run in float32. Layers hold no mutable state (dropout takes explicit
keys), so they can be split, merged, scanned and rematerialised freely.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from flax import nnx
from jax import numpy as jnp

from jtts.config import ModelConfig


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Inverted dropout; identity when `rng` is None (evaluation) or `rate` is 0."""
    if rng is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def _fold(rng: jax.Array | None, i: int) -> jax.Array | None:
    return None if rng is None else jax.random.fold_in(rng, i)


def split_rng(rng: jax.Array | None, n: int) -> jax.Array | None:
    """`n` keys (one per layer), or None when dropout is off."""
    return None if rng is None else jax.random.split(rng, n)


def apply_rope(x_BxTxHxD: jax.Array, positions_T: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding (split-half convention), computed in float32."""
    half = x_BxTxHxD.shape[-1] // 2
    freq_F = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_TxF = positions_T.astype(jnp.float32)[:, None] * freq_F[None, :]
    sin, cos = jnp.sin(angle_TxF)[None, :, None, :], jnp.cos(angle_TxF)[None, :, None, :]
    x1, x2 = jnp.split(x_BxTxHxD.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxTxHxD.dtype)


def rms_norm(x: jax.Array, scale_D: jax.Array, eps: float, dtype: jnp.dtype) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (y * scale_D.astype(jnp.float32)).astype(dtype)


class RMSNorm(nnx.Module):
    def __init__(self, cfg: ModelConfig):
        self.scale = nnx.Param(jnp.ones((cfg.d_model,), jnp.dtype(cfg.param_dtype)))
        self.eps = cfg.norm_eps
        self.dtype = jnp.dtype(cfg.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return rms_norm(x, self.scale[...], self.eps, self.dtype)


def _linear(cfg: ModelConfig, d_in: int, d_out: int, std: float, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=False,
        dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.dtype(cfg.param_dtype),
        kernel_init=nnx.initializers.normal(std),
        rngs=rngs,
    )


def _out_std(cfg: ModelConfig) -> float:
    """GPT-2 style: residual-branch output projections shrink with depth."""
    return cfg.init_std / (2 * (cfg.enc_layers + cfg.dec_layers)) ** 0.5


_NEG = -1e9  # masked attention logit: exp() is 0, and sums with a finite prior stay finite


class KVCache(NamedTuple):
    """One decoder layer's self-attention keys (B*G, D, Tmax) and values (B*G, Tmax, D), G =
    K/V heads: the layout both attention matmuls of a one-token step read without copying."""

    k_NxDxT: jax.Array
    v_NxTxD: jax.Array


class CrossKV(NamedTuple):
    """A decoder layer's cross-attention keys (B, H, D, S), values (B, H, S, D) and memory mask,
    computed once per text: the teacher-forced pass and every decoded step read them alike."""

    k_BxHxDxS: jax.Array
    v_BxHxSxD: jax.Array
    mask_BxS: jax.Array


def _cached_attention(q_NxRxTxD: jax.Array, cache: KVCache, visible_TxS: jax.Array) -> jax.Array:
    """T new positions' attention over the cache: the R query heads of each K/V head n read it,
    position t seeing the cache slots `visible_TxS[t]`."""
    q, mask, spec_q, spec_s = q_NxRxTxD, visible_TxS[None, None], "nrtd", "nrts"
    if q.shape[2] == 1:  # a decode step: drop the unit dimensions
        q, mask, spec_q, spec_s = q[:, :, 0], mask[:, :, 0], "nrd", "nrs"
        if q.shape[1] == 1:
            # Matrix-vector products: XLA:CPU runs them 1.4x faster than with a unit dimension.
            q, mask, spec_q, spec_s = q[:, 0], mask[:, 0], "nd", "ns"
    s = jnp.einsum(f"{spec_q},nds->{spec_s}", q, cache.k_NxDxT, preferred_element_type=jnp.float32)
    s = jnp.where(mask, s * q.shape[-1] ** -0.5, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=-1).astype(cache.v_NxTxD.dtype)
    return jnp.einsum(f"{spec_s},nsd->{spec_q}", p, cache.v_NxTxD).reshape(q_NxRxTxD.shape)


class SelfAttention(nnx.Module):
    """Rotary self-attention with one fused Q/K/V projection, for the encoder (bidirectional,
    masked) and the decoder (causal). With a `KVCache` it decodes T >= 1 new positions
    (`positions_T`, consecutive): their K/V are written at their slots and each attends to the
    cache up to itself, so a prompt is prefilled in one pass and steps continue after it.

    With `n_kv_heads` < n_heads it is grouped-query attention: each K/V head serves
    n_heads // kv_heads consecutive query heads, which shrinks the decoder's K/V cache (the
    bytes a batched decode step reads) by that factor.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.n_heads, self.kv_heads = cfg.n_heads, cfg.resolved_kv_heads
        self.head_dim, self.rope_theta = cfg.resolved_head_dim, cfg.rope_theta
        width = (self.n_heads + 2 * self.kv_heads) * self.head_dim
        self.qkv = _linear(cfg, cfg.d_model, width, cfg.init_std, rngs)
        self.o = _linear(cfg, self.n_heads * self.head_dim, cfg.d_model, _out_std(cfg), rngs)

    def __call__(
        self,
        x_BxTxD: jax.Array,
        positions_T: jax.Array,
        cache: KVCache | None = None,
        *,
        mask_Bx1xTxS: jax.Array | None = None,
        causal: bool = False,
    ) -> tuple[jax.Array, KVCache | None]:
        b, t = x_BxTxD.shape[:2]
        h, g, d = self.n_heads, self.kv_heads, self.head_dim
        qkv = self.qkv(x_BxTxD).reshape(b, t, h + 2 * g, d)
        q, k, v = jnp.split(qkv, [h, h + g], axis=2)
        q = apply_rope(q, positions_T, self.rope_theta)
        k = apply_rope(k, positions_T, self.rope_theta)
        if cache is None:
            out = jax.nn.dot_product_attention(q, k, v, mask=mask_Bx1xTxS, is_causal=causal)
            return self.o(out.reshape(b, t, h * d)), None
        start, zero = positions_T[0], jnp.zeros((), jnp.int32)
        k_NxDxT = jax.lax.dynamic_update_slice(
            cache.k_NxDxT,
            k.transpose(0, 2, 3, 1).reshape(b * g, d, t).astype(cache.k_NxDxT.dtype),
            (zero, zero, start),
        )
        v_NxTxD = jax.lax.dynamic_update_slice(
            cache.v_NxTxD,
            v.transpose(0, 2, 1, 3).reshape(b * g, t, d).astype(cache.v_NxTxD.dtype),
            (zero, start, zero),
        )
        # Keeps XLA from duplicating the updated cache for its readers.
        cache = KVCache(*jax.lax.optimization_barrier((k_NxDxT, v_NxTxD)))
        visible_TxS = jnp.arange(v_NxTxD.shape[1])[None, :] <= positions_T[:, None]
        q_NxRxTxD = q.reshape(b, t, g, h // g, d).transpose(0, 2, 3, 1, 4).reshape(b * g, -1, t, d)
        out = _cached_attention(q_NxRxTxD, cache, visible_TxS)
        out = out.reshape(b, g, h // g, t, d).transpose(0, 3, 1, 2, 4)
        return self.o(out.reshape(b, t, h * d)), cache


class CrossAttention(nnx.Module):
    """Attention from decoder steps to the condition memory, written out (not fused) because
    its logits are wanted: alignment priors are added to them in training, alignment losses
    and metrics read them. Memory K/V are computed once per text (`memory_kv`)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.n_heads, self.head_dim = cfg.n_heads, cfg.resolved_head_dim
        inner = self.n_heads * self.head_dim
        self.q = _linear(cfg, cfg.d_model, inner, cfg.init_std, rngs)
        self.kv = _linear(cfg, cfg.d_model, 2 * inner, cfg.init_std, rngs)
        self.o = _linear(cfg, inner, cfg.d_model, _out_std(cfg), rngs)

    def memory_kv(self, enc_BxSxD: jax.Array, mask_BxS: jax.Array) -> CrossKV:
        b, s = enc_BxSxD.shape[:2]
        kv = self.kv(enc_BxSxD).reshape(b, s, 2, self.n_heads, self.head_dim)
        k_BxHxDxS = kv[:, :, 0].transpose(0, 2, 3, 1)
        return CrossKV(k_BxHxDxS, kv[:, :, 1].transpose(0, 2, 1, 3), mask_BxS.astype(bool))

    def __call__(
        self, x_BxTxD: jax.Array, mem: CrossKV, bias_BxTxS: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Returns (output, float32 logits_BxHxTxS): the masked scores before `bias_BxTxS`
        (a log-prior) is added, so a loss on them trains the attention, not the prior."""
        b, t = x_BxTxD.shape[:2]
        q = self.q(x_BxTxD).reshape(b, t, self.n_heads, self.head_dim)
        spec_q, spec_s = "bthd", "bhts"
        if t == 1:  # a decoded step: matrix-vector products, as in `_step_attention`
            q, spec_q, spec_s = q[:, 0], "bhd", "bhs"
        scores = jnp.einsum(
            f"{spec_q},bhds->{spec_s}", q, mem.k_BxHxDxS, preferred_element_type=jnp.float32
        ).reshape(b, self.n_heads, t, -1)
        masked = jnp.where(mem.mask_BxS[:, None, None, :], scores * self.head_dim**-0.5, _NEG)
        biased = masked if bias_BxTxS is None else masked + bias_BxTxS[:, None]
        p = jax.nn.softmax(biased, axis=-1).astype(mem.v_BxHxSxD.dtype)
        p = p[:, :, 0] if t == 1 else p
        out = jnp.einsum(f"{spec_s},bhsd->{spec_q}", p, mem.v_BxHxSxD)
        return self.o(out.reshape(b, t, -1)), masked


class ConvBlock(nnx.Module):
    """Pre-norm residual convolution over a sequence (`model.text_conv_kernel` wide, GELU);
    masked positions are zeroed first so padding never leaks into real ones."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.norm = RMSNorm(cfg)
        self.conv = nnx.Conv(
            cfg.d_model,
            cfg.d_model,
            kernel_size=(cfg.text_conv_kernel,),
            padding="SAME",
            dtype=jnp.dtype(cfg.dtype),
            param_dtype=jnp.dtype(cfg.param_dtype),
            kernel_init=nnx.initializers.normal(cfg.init_std),
            rngs=rngs,
        )

    def __call__(self, x_BxSxD: jax.Array, mask_BxS: jax.Array) -> jax.Array:
        real_BxSx1 = mask_BxS.astype(bool)[..., None]
        h = jnp.where(real_BxSx1, self.norm(x_BxSxD), 0)
        return x_BxSxD + jnp.where(real_BxSx1, jax.nn.gelu(self.conv(h)), 0)


class Mlp(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.kind = cfg.mlp
        width = 2 * cfg.mlp_dim if cfg.mlp == "swiglu" else cfg.mlp_dim  # swiglu: gate, up
        self.up = _linear(cfg, cfg.d_model, width, cfg.init_std, rngs)
        self.down = _linear(cfg, cfg.mlp_dim, cfg.d_model, _out_std(cfg), rngs)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        """Runs on the rows flattened to (B*T, D): a free reshape that spares XLA:CPU a
        transposing copy in the backward pass (small trains 1.3x faster per step on CPU)."""
        h = self.up(x_BxTxD.reshape(-1, x_BxTxD.shape[-1]))
        if self.kind == "swiglu":
            gate, up = jnp.split(h, 2, axis=-1)
            h = jax.nn.silu(gate) * up
        else:
            h = jax.nn.gelu(h)
        return self.down(h).reshape(x_BxTxD.shape)


class EncoderLayer(nnx.Module):
    """Pre-norm bidirectional self-attention + MLP over condition tokens."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg)
        self.attn = SelfAttention(cfg, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg)
        self.mlp = Mlp(cfg, rngs=rngs)
        self.dropout = cfg.dropout

    def __call__(
        self,
        x_BxSxD: jax.Array,
        positions_S: jax.Array,
        mask_Bx1x1xS: jax.Array,
        rng: jax.Array | None,
    ) -> jax.Array:
        attn, _ = self.attn(self.attn_norm(x_BxSxD), positions_S, mask_Bx1xTxS=mask_Bx1x1xS)
        x = x_BxSxD + dropout(attn, self.dropout, _fold(rng, 0))
        return x + dropout(self.mlp(self.mlp_norm(x)), self.dropout, _fold(rng, 1))


class DecoderLayer(nnx.Module):
    """Pre-norm causal self-attention, cross-attention to the condition memory, MLP.

    One `__call__` serves the teacher-forced pass (`cache` None, all T steps) and the decode
    loop (a `KVCache`: a prompt's steps at once, then one step at a time), so they cannot
    drift apart.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.self_norm = RMSNorm(cfg)
        self.self_attn = SelfAttention(cfg, rngs=rngs)
        self.cross_norm = RMSNorm(cfg)
        self.cross_attn = CrossAttention(cfg, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg)
        self.mlp = Mlp(cfg, rngs=rngs)
        self.dropout = cfg.dropout

    def __call__(
        self,
        x_BxTxD: jax.Array,
        positions_T: jax.Array,
        mem: CrossKV,
        cache: KVCache | None = None,
        *,
        bias_BxTxS: jax.Array | None = None,
        rng: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache | None, jax.Array]:
        """Returns (x, updated cache or None, cross-attention logits_BxHxTxS)."""
        attn, cache = self.self_attn(self.self_norm(x_BxTxD), positions_T, cache, causal=True)
        x = x_BxTxD + dropout(attn, self.dropout, _fold(rng, 0))
        cross, logits = self.cross_attn(self.cross_norm(x), mem, bias_BxTxS)
        x = x + dropout(cross, self.dropout, _fold(rng, 1))
        return x + dropout(self.mlp(self.mlp_norm(x)), self.dropout, _fold(rng, 2)), cache, logits


class LayerStack(nnx.Module):
    """N identical layers, either as a list or as one module with stacked (N, ...) params.

    `run` threads a carry through the layers with one body function for both layouts, so
    `scan_layers` changes compile time and parameter layout, never the math.
    """

    def __init__(
        self,
        make_layer: Callable[[nnx.Rngs], nnx.Module],
        n: int,
        *,
        scan: bool,
        rngs: nnx.Rngs,
    ):
        self.scan = scan
        if scan:

            @nnx.split_rngs(splits=n)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def make_stacked(rngs: nnx.Rngs) -> nnx.Module:
                return make_layer(rngs)

            self.layers = make_stacked(rngs)
        else:
            self.layers = nnx.List([make_layer(rngs) for _ in range(n)])

    def unstacked(self) -> list[nnx.Module]:
        """The layers one by one, whether stored as a list or scanned (stacked params)."""
        if not self.scan:
            return list(self.layers)
        graphdef, state = nnx.split(self.layers)
        n = jax.tree.leaves(state)[0].shape[0]
        return [nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state)) for i in range(n)]

    def run(
        self,
        fn: Callable[[Any, Any, Any], tuple[Any, Any]],
        carry: Any,
        xs: Any = None,
        *,
        remat: bool = False,
    ) -> tuple[Any, Any]:
        """carry, y_i = fn(layer_i, carry, xs_i) for each layer; returns (carry, stacked ys).

        `xs` is a pytree with leading axis n (or None); `remat` rematerialises each layer.
        """

        def body(graphdef: nnx.GraphDef, carry: Any, state_and_x: Any) -> tuple[Any, Any]:
            state, x = state_and_x
            return fn(nnx.merge(graphdef, state), carry, x)

        if self.scan:
            graphdef, state = nnx.split(self.layers)
            step = functools.partial(body, graphdef)
            if remat:
                step = jax.checkpoint(step)
            return jax.lax.scan(step, carry, (state, xs))
        ys = []
        for i, layer in enumerate(self.layers):
            graphdef, state = nnx.split(layer)
            step = functools.partial(body, graphdef)
            if remat:
                step = jax.checkpoint(step)
            carry, y = step(carry, (state, jax.tree.map(lambda a, i=i: a[i], xs)))
            ys.append(y)
        return carry, jax.tree.map(lambda *a: jnp.stack(a), *ys)
