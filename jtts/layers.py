"""Transformer building blocks: RMSNorm, rotary attention, MLP, encoder/decoder layers, stacks.

`decode_layer_step` is a decoder layer for one token, on fused weights and a K/V cache laid
out for inference (`TTSModel.decode_step` runs it).

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


class Attention(nnx.Module):
    """Multi-head attention split into projections and `attend`, so callers can cache K/V.

    With `kv_heads` < n_heads it is grouped-query attention: each K/V head serves
    n_heads // kv_heads consecutive query heads, which shrinks the decoder's K/V cache (the
    bytes a batched decode step reads) by that factor.
    """

    def __init__(self, cfg: ModelConfig, *, rope: bool, kv_heads: int, rngs: nnx.Rngs):
        inner, kv_inner = cfg.n_heads * cfg.resolved_head_dim, kv_heads * cfg.resolved_head_dim
        self.q = _linear(cfg, cfg.d_model, inner, cfg.init_std, rngs)
        self.k = _linear(cfg, cfg.d_model, kv_inner, cfg.init_std, rngs)
        self.v = _linear(cfg, cfg.d_model, kv_inner, cfg.init_std, rngs)
        self.o = _linear(cfg, inner, cfg.d_model, _out_std(cfg), rngs)
        self.head_dim = cfg.resolved_head_dim
        self.rope_theta = cfg.rope_theta if rope else None

    def _heads(self, x_BxTxI: jax.Array) -> jax.Array:
        return x_BxTxI.reshape(*x_BxTxI.shape[:2], -1, self.head_dim)

    def _rope(self, x_BxTxHxD: jax.Array, positions_T: jax.Array | None) -> jax.Array:
        if self.rope_theta is None:
            return x_BxTxHxD
        return apply_rope(x_BxTxHxD, positions_T, self.rope_theta)

    def query(self, x_BxTxD: jax.Array, positions_T: jax.Array | None = None) -> jax.Array:
        return self._rope(self._heads(self.q(x_BxTxD)), positions_T)

    def key_value(
        self, x_BxSxD: jax.Array, positions_S: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        k = self._rope(self._heads(self.k(x_BxSxD)), positions_S)
        return k, self._heads(self.v(x_BxSxD))

    def attend(
        self,
        q_BxTxHxD: jax.Array,
        k_BxSxHxD: jax.Array,
        v_BxSxHxD: jax.Array,
        mask_Bx1xTxS: jax.Array | None = None,
        *,
        is_causal: bool = False,
    ) -> jax.Array:
        dtype = q_BxTxHxD.dtype
        out_BxTxHxD = jax.nn.dot_product_attention(
            q_BxTxHxD,
            k_BxSxHxD.astype(dtype),
            v_BxSxHxD.astype(dtype),
            mask=mask_Bx1xTxS,
            is_causal=is_causal,
            implementation=None,
        )
        return self.o(out_BxTxHxD.reshape(*out_BxTxHxD.shape[:2], -1))


class Mlp(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.kind = cfg.mlp
        self.up = _linear(cfg, cfg.d_model, cfg.mlp_dim, cfg.init_std, rngs)
        if cfg.mlp == "swiglu":
            self.gate = _linear(cfg, cfg.d_model, cfg.mlp_dim, cfg.init_std, rngs)
        self.down = _linear(cfg, cfg.mlp_dim, cfg.d_model, _out_std(cfg), rngs)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        """Runs on the rows flattened to (B*T, D): a free reshape that spares XLA:CPU a
        transposing copy in the backward pass (small trains 1.3x faster per step on CPU)."""
        x = x_BxTxD.reshape(-1, x_BxTxD.shape[-1])
        if self.kind == "swiglu":
            h = jax.nn.silu(self.gate(x)) * self.up(x)
        else:
            h = jax.nn.gelu(self.up(x))
        return self.down(h).reshape(x_BxTxD.shape)


class EncoderLayer(nnx.Module):
    """Pre-norm bidirectional self-attention + MLP over text tokens."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg)
        self.attn = Attention(cfg, rope=True, kv_heads=cfg.resolved_kv_heads, rngs=rngs)
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
        h = self.attn_norm(x_BxSxD)
        q = self.attn.query(h, positions_S)
        k, v = self.attn.key_value(h, positions_S)
        x = x_BxSxD + dropout(self.attn.attend(q, k, v, mask_Bx1x1xS), self.dropout, _fold(rng, 0))
        return x + dropout(self.mlp(self.mlp_norm(x)), self.dropout, _fold(rng, 1))


class StepWeights(NamedTuple):
    """A decoder layer's weights for one-token steps, in the compute dtype. A step is a few
    matrix-vector products, so Q/K/V and the MLP's gate/up are each fused into one matmul."""

    self_norm: jax.Array  # D
    qkv: jax.Array  # D x (I + 2 I_kv), I_kv = kv_heads x head_dim
    o: jax.Array  # I x D
    cross_norm: jax.Array
    cross_q: jax.Array  # D x I
    cross_o: jax.Array  # I x D
    mlp_norm: jax.Array
    mlp_in: jax.Array  # D x 2F (swiglu: gate then up) or D x F (gelu)
    mlp_out: jax.Array  # F x D


def _heads_first(x_BxSxHxD: jax.Array, *, keys: bool) -> jax.Array:
    """(B*H, D, S) for keys, (B*H, S, D) for values: both attention matmuls of a step then read
    contiguous rows of the stored cache (XLA would otherwise copy a transposed one per step)."""
    b, s, h, d = x_BxSxHxD.shape
    if keys:
        return x_BxSxHxD.transpose(0, 2, 3, 1).reshape(b * h, d, s)
    return x_BxSxHxD.transpose(0, 2, 1, 3).reshape(b * h, s, d)


class DecoderLayer(nnx.Module):
    """Pre-norm causal self-attention, cross-attention to the text, MLP."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.self_norm = RMSNorm(cfg)
        self.self_attn = Attention(cfg, rope=True, kv_heads=cfg.resolved_kv_heads, rngs=rngs)
        self.cross_norm = RMSNorm(cfg)
        # Cross K/V are computed once per text, so grouping them would save no decode reads.
        self.cross_attn = Attention(cfg, rope=False, kv_heads=cfg.n_heads, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg)
        self.mlp = Mlp(cfg, rngs=rngs)
        self.dropout = cfg.dropout

    def cross_kv(self, enc_BxSxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.cross_attn.key_value(enc_BxSxD)

    def _cross_and_mlp(
        self,
        x: jax.Array,
        cross_k: jax.Array,
        cross_v: jax.Array,
        enc_mask_BxS: jax.Array,
        rng: jax.Array | None,
    ) -> jax.Array:
        q = self.cross_attn.query(self.cross_norm(x))
        mask = enc_mask_BxS[:, None, None, :]
        x = x + dropout(self.cross_attn.attend(q, cross_k, cross_v, mask), self.dropout, rng)
        return x + dropout(self.mlp(self.mlp_norm(x)), self.dropout, _fold(rng, 1))

    def __call__(
        self,
        x_BxTxD: jax.Array,
        positions_T: jax.Array,
        enc_BxSxD: jax.Array,
        enc_mask_BxS: jax.Array,
        rng: jax.Array | None,
    ) -> jax.Array:
        """Teacher-forced forward over all T steps."""
        h = self.self_norm(x_BxTxD)
        q = self.self_attn.query(h, positions_T)
        k, v = self.self_attn.key_value(h, positions_T)
        attn = self.self_attn.attend(q, k, v, is_causal=True)
        x = x_BxTxD + dropout(attn, self.dropout, _fold(rng, 0))
        cross_k, cross_v = self.cross_kv(enc_BxSxD)
        return self._cross_and_mlp(x, cross_k, cross_v, enc_mask_BxS, _fold(rng, 2))

    def step_weights(self) -> StepWeights:
        """This layer's weights for `decode_layer_step`, gathered once per decoded batch."""
        a, m = self.self_attn, self.mlp
        mlp_in = [m.gate.kernel, m.up.kernel] if m.kind == "swiglu" else [m.up.kernel]

        def cat(*kernels: nnx.Param) -> jax.Array:
            return jnp.concatenate([p[...].astype(a.q.dtype) for p in kernels], axis=1)

        return StepWeights(
            self_norm=self.self_norm.scale[...],
            qkv=cat(a.q.kernel, a.k.kernel, a.v.kernel),
            o=cat(a.o.kernel),
            cross_norm=self.cross_norm.scale[...],
            cross_q=cat(self.cross_attn.q.kernel),
            cross_o=cat(self.cross_attn.o.kernel),
            mlp_norm=self.mlp_norm.scale[...],
            mlp_in=cat(*mlp_in),
            mlp_out=cat(m.down.kernel),
        )

    def step_cross(self, enc_BxSxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Cross-attention (keys_NxDxS, values_NxSxD), N = B*H: the step's cache layout."""
        k, v = self.cross_kv(enc_BxSxD)
        return _heads_first(k, keys=True), _heads_first(v, keys=False)


def _attend_one(q_NxRxD: jax.Array, k_NxDxT: jax.Array, v_NxTxD: jax.Array, mask) -> jax.Array:
    """One step's attention: the R query heads of each K/V head n read its cache."""
    q, spec_q, spec_s = q_NxRxD, "nrd", "nrt"
    if q_NxRxD.shape[1] == 1:
        # Matrix-vector products: XLA:CPU runs them 1.4x faster than with a unit dimension.
        q, mask, spec_q, spec_s = q_NxRxD[:, 0], mask[:, 0], "nd", "nt"
    s = jnp.einsum(f"{spec_q},ndt->{spec_s}", q, k_NxDxT, preferred_element_type=jnp.float32)
    s = jnp.where(mask, s * q.shape[-1] ** -0.5, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=-1).astype(v_NxTxD.dtype)
    return jnp.einsum(f"{spec_s},ntd->{spec_q}", p, v_NxTxD).reshape(q_NxRxD.shape)


def decode_layer_step(
    cfg: ModelConfig,
    w: StepWeights,
    x_BxD: jax.Array,
    step: jax.Array,
    k_NxDxT: jax.Array,
    v_NxTxD: jax.Array,
    cross_k_MxDxS: jax.Array,
    cross_v_MxSxD: jax.Array,
    cross_mask_MxS: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`DecoderLayer.__call__` for the one token of `step`: returns (x_BxD, keys, values) with
    this token's K/V written in place at `step`. N = B * kv_heads, M = B * n_heads."""
    b = x_BxD.shape[0]
    h, g, d = cfg.n_heads, cfg.resolved_kv_heads, cfg.resolved_head_dim
    dt = jnp.dtype(cfg.dtype)
    positions_1 = step[None]
    qkv = rms_norm(x_BxD, w.self_norm, cfg.norm_eps, dt) @ w.qkv
    q, k_new, v_new = jnp.split(qkv.reshape(b, 1, h + 2 * g, d), [h, h + g], axis=2)
    q = apply_rope(q, positions_1, cfg.rope_theta).reshape(b * g, h // g, d)
    k_new = apply_rope(k_new, positions_1, cfg.rope_theta).reshape(b * g, d, 1)
    zero = jnp.zeros((), jnp.int32)
    k_NxDxT = jax.lax.dynamic_update_slice(k_NxDxT, k_new, (zero, zero, step))
    v_NxTxD = jax.lax.dynamic_update_slice(v_NxTxD, v_new.reshape(b * g, 1, d), (zero, step, zero))
    # Keeps XLA from duplicating the updated cache for its readers.
    k_NxDxT, v_NxTxD = jax.lax.optimization_barrier((k_NxDxT, v_NxTxD))
    visible_1x1xT = (jnp.arange(v_NxTxD.shape[1]) <= step)[None, None, :]
    x = x_BxD + _attend_one(q, k_NxDxT, v_NxTxD, visible_1x1xT).reshape(b, h * d) @ w.o
    q = (rms_norm(x, w.cross_norm, cfg.norm_eps, dt) @ w.cross_q).reshape(b * h, 1, d)
    attn = _attend_one(q, cross_k_MxDxS, cross_v_MxSxD, cross_mask_MxS[:, None, :])
    x = x + attn.reshape(b, h * d) @ w.cross_o
    hid = rms_norm(x, w.mlp_norm, cfg.norm_eps, dt) @ w.mlp_in
    if cfg.mlp == "swiglu":
        gate, up = jnp.split(hid, 2, axis=-1)
        hid = jax.nn.silu(gate) * up
    else:
        hid = jax.nn.gelu(hid)
    return x + hid @ w.mlp_out, k_NxDxT, v_NxTxD


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
