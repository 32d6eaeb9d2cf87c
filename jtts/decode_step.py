"""The one-token decoder step used for inference, laid out for a fast CPU/GPU decode loop.

Same math as `TTSModel.decode_step` (tests/test_decode.py checks they agree), arranged for
speed when a step is a handful of matrix-vector products:
- weights are gathered once per batch, with Q/K/V and the MLP's gate/up fused into one matmul
  each and the K output heads into one (D, K*V) matrix;
- the self-attention cache holds keys as (B*H, D, T) and values as (B*H, T, D) per layer,
  and cross-attention K/V are transposed likewise once, so both attention matmuls read the
  stored layout (XLA would otherwise copy a transposed cache every step); a barrier
  after the in-place cache write keeps XLA from duplicating the cache for its readers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
from flax import nnx
from jax import numpy as jnp

from jtts.config import ModelConfig
from jtts.layers import apply_rope


class LayerWeights(NamedTuple):
    self_norm: jax.Array  # D
    qkv: jax.Array  # D x 3I
    o: jax.Array  # I x D
    cross_norm: jax.Array
    cross_q: jax.Array  # D x I
    cross_o: jax.Array  # I x D
    mlp_norm: jax.Array
    mlp_in: jax.Array  # D x 2F (swiglu: gate then up) or D x F (gelu)
    mlp_out: jax.Array  # F x D


class Weights(NamedTuple):
    embed_KxNxD: jax.Array  # code embeddings (param dtype), N = C + 3 input ids
    layers: tuple[LayerWeights, ...]
    norm_D: jax.Array
    heads_DxKV: jax.Array


class Cache(NamedTuple):
    """Self-attention keys (R*H, D, T) and values (R*H, T, D), one array per layer."""

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]


class Cross(NamedTuple):
    """Cross-attention keys (R*H, D, S) and values (R*H, S, D) per layer, visible positions."""

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    mask_NxS: jax.Array


def _per_layer(stack: nnx.Module, n: int) -> list[nnx.Module]:
    """The n layers one by one, whether stored as a list or scanned (stacked params)."""
    if not stack.scan:
        return list(stack.layers)
    graphdef, state = nnx.split(stack.layers)
    return [nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state)) for i in range(n)]


def weights(model: nnx.Module) -> Weights:
    """Gathers and fuses the decoder's weights in the compute dtype (once per batch)."""
    dt = model.dtype

    def w(p: nnx.Variable) -> jax.Array:
        return p[...].astype(dt)

    layers = []
    for layer in _per_layer(model.decoder, model.cfg.dec_layers):
        a, c, m = layer.self_attn, layer.cross_attn, layer.mlp
        mlp_in = [m.gate.kernel, m.up.kernel] if m.kind == "swiglu" else [m.up.kernel]
        layers.append(
            LayerWeights(
                self_norm=layer.self_norm.scale[...],
                qkv=jnp.concatenate([w(a.q.kernel), w(a.k.kernel), w(a.v.kernel)], axis=1),
                o=w(a.o.kernel),
                cross_norm=layer.cross_norm.scale[...],
                cross_q=w(c.q.kernel),
                cross_o=w(c.o.kernel),
                mlp_norm=layer.mlp_norm.scale[...],
                mlp_in=jnp.concatenate([w(k) for k in mlp_in], axis=1),
                mlp_out=w(m.down.kernel),
            )
        )
    k, d, v = model.heads[...].shape
    return Weights(
        embed_KxNxD=model.code_embed[...],
        layers=tuple(layers),
        norm_D=model.dec_norm.scale[...],
        heads_DxKV=w(model.heads).transpose(1, 0, 2).reshape(d, k * v),
    )


def _heads_first(x_RxSxHxD: jax.Array, keys: bool) -> jax.Array:
    """(R*H, D, S) for keys, (R*H, S, D) for values: both attention matmuls then read
    contiguous rows of the cache."""
    r, s, h, d = x_RxSxHxD.shape
    if keys:
        return x_RxSxHxD.transpose(0, 2, 3, 1).reshape(r * h, d, s)
    return x_RxSxHxD.transpose(0, 2, 1, 3).reshape(r * h, s, d)


def init(model: nnx.Module, enc_RxSxD: jax.Array, enc_mask_RxS: jax.Array, steps: int):
    """(cross K/V, an empty cache of `steps` positions) for a batch of encoded texts."""
    cfg = model.cfg
    kv = model.precompute_cross(enc_RxSxD)
    n_layers, h = cfg.dec_layers, cfg.n_heads
    cross = Cross(
        k=tuple(_heads_first(kv["k"][i], keys=True) for i in range(n_layers)),
        v=tuple(_heads_first(kv["v"][i], keys=False) for i in range(n_layers)),
        mask_NxS=jnp.repeat(enc_mask_RxS.astype(bool), h, axis=0),
    )
    n, d = enc_RxSxD.shape[0] * h, cfg.resolved_head_dim
    k = tuple(jnp.zeros((n, d, steps), model.dtype) for _ in range(n_layers))
    v = tuple(jnp.zeros((n, steps, d), model.dtype) for _ in range(n_layers))
    return cross, Cache(k=k, v=v)


def _norm(cfg: ModelConfig, x_RxD: jax.Array, scale_D: jax.Array) -> jax.Array:
    x = x_RxD.astype(jnp.float32)
    y = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + cfg.norm_eps)
    return (y * scale_D.astype(jnp.float32)).astype(cfg.dtype)


def _attend(q_NxD: jax.Array, k_NxDxT: jax.Array, v_NxTxD: jax.Array, mask) -> jax.Array:
    scale = q_NxD.shape[-1] ** -0.5
    s_NxT = jnp.einsum("nd,ndt->nt", q_NxD, k_NxDxT, preferred_element_type=jnp.float32)
    s_NxT = jnp.where(mask, s_NxT * scale, jnp.finfo(jnp.float32).min)
    p_NxT = jax.nn.softmax(s_NxT, axis=-1).astype(v_NxTxD.dtype)
    return jnp.einsum("nt,ntd->nd", p_NxT, v_NxTxD)


def decode(
    cfg: ModelConfig,
    w: Weights,
    tokens_RxK: jax.Array,
    step: jax.Array,
    cache: Cache,
    cross: Cross,
) -> tuple[jax.Array, Cache]:
    """Feeds the decoder inputs of `step`; returns (float32 logits_RxKxV of step, new cache)."""
    r, k = tokens_RxK.shape
    h, d = cfg.n_heads, cfg.resolved_head_dim
    x = w.embed_KxNxD[jnp.arange(k)[None, :], tokens_RxK].sum(axis=1).astype(cfg.dtype)
    positions_1 = step[None]
    visible_1xT = (jnp.arange(cache.v[0].shape[1]) <= step)[None, :]
    zero = jnp.zeros((), jnp.int32)
    new_k, new_v = [], []
    for lw, ck, cv, xk, xv in zip(w.layers, cache.k, cache.v, cross.k, cross.v, strict=True):
        qkv = (_norm(cfg, x, lw.self_norm) @ lw.qkv).reshape(r, 1, 3, h, d)
        q = apply_rope(qkv[:, :, 0], positions_1, cfg.rope_theta).reshape(r * h, d)
        k_new = apply_rope(qkv[:, :, 1], positions_1, cfg.rope_theta).reshape(r * h, d, 1)
        ck = jax.lax.dynamic_update_slice(ck, k_new, (zero, zero, step))
        cv = jax.lax.dynamic_update_slice(cv, qkv[:, :, 2].reshape(r * h, 1, d), (zero, step, zero))
        ck, cv = jax.lax.optimization_barrier((ck, cv))
        x = x + _attend(q, ck, cv, visible_1xT).reshape(r, h * d) @ lw.o
        q = (_norm(cfg, x, lw.cross_norm) @ lw.cross_q).reshape(r * h, d)
        x = x + _attend(q, xk, xv, cross.mask_NxS).reshape(r, h * d) @ lw.cross_o
        hid = _norm(cfg, x, lw.mlp_norm) @ lw.mlp_in
        if cfg.mlp == "swiglu":
            gate, up = jnp.split(hid, 2, axis=-1)
            hid = jax.nn.silu(gate) * up
        else:
            hid = jax.nn.gelu(hid)
        x = x + hid @ lw.mlp_out
        new_k.append(ck)
        new_v.append(cv)
    logits = jnp.dot(_norm(cfg, x, w.norm_D), w.heads_DxKV, preferred_element_type=jnp.float32)
    return logits.reshape(r, k, -1), Cache(k=tuple(new_k), v=tuple(new_v))
