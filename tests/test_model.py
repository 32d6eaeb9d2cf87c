"""Model invariants on tiny shapes: causality, padding, incremental decoding, layouts, CFG."""

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from jax import numpy as jnp

from jtts.config import load_config
from jtts.model import TTSModel, build_model, count_params, flops_per_step

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
B, S, T = 2, 6, 9


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIGS / "tiny.yaml").model


@pytest.fixture(scope="module")
def model(cfg):
    return build_model(cfg, nnx.Rngs(0))


def make_batch(cfg, seed=0, text_len=(S, 3)):
    rng = np.random.default_rng(seed)
    text = rng.integers(0, cfg.text_vocab_size, (B, S))
    mask = np.arange(S)[None, :] < np.array(text_len)[:, None]
    tokens = rng.integers(0, cfg.in_vocab_size, (B, cfg.n_codebooks, T))
    return jnp.asarray(text, jnp.int32), jnp.asarray(mask), jnp.asarray(tokens, jnp.int32)


@nnx.jit
def forward(model, text, mask, tokens, drop=None):
    return model(text, mask, tokens, drop_cond_B=drop)


def incremental(model, text, mask, tokens):
    """Decodes all steps in a jitted while_loop over a split model; returns logits_BxTxKxV."""
    graphdef, state = nnx.split(model)
    cfg = model.cfg

    @jax.jit
    def run(state, text, mask, tokens):
        m = nnx.merge(graphdef, state)
        enc, enc_mask = m.encode(text, mask)
        ctx = m.decode_context(enc, enc_mask)
        out = jnp.zeros((T, B, cfg.n_codebooks, cfg.out_vocab_size), jnp.float32)

        def body(carry):
            step, cache, out = carry
            tokens_BxK = jax.lax.dynamic_index_in_dim(tokens, step, axis=2, keepdims=False)
            logits, cache = m.decode_step(tokens_BxK, step, cache, ctx)
            return step + 1, cache, out.at[step].set(logits)

        carry = (jnp.int32(0), m.init_cache(B, T), out)
        _, _, out = jax.lax.while_loop(lambda c: c[0] < T, body, carry)
        return out.transpose(1, 0, 2, 3)

    return run(state, text, mask, tokens)


def test_shapes(cfg, model):
    text, mask, tokens = make_batch(cfg)
    logits = forward(model, text, mask, tokens)
    assert logits.shape == (B, T, cfg.n_codebooks, cfg.codebook_size + 1)
    assert logits.dtype == jnp.float32
    enc, enc_mask = nnx.jit(lambda m: m.encode(text, mask))(model)
    assert enc.shape == (B, S, cfg.d_model) and enc_mask.shape == (B, S)
    cache = model.init_cache(B, T)
    n, d = B * cfg.resolved_kv_heads, cfg.resolved_head_dim
    assert [k.shape for k in cache.k] == [(n, d, T)] * cfg.dec_layers
    assert [v.shape for v in cache.v] == [(n, T, d)] * cfg.dec_layers


def test_causal(cfg, model):
    text, mask, tokens = make_batch(cfg)
    t0 = 4
    changed = tokens.at[:, :, t0:].set((tokens[:, :, t0:] + 1) % cfg.in_vocab_size)
    a, b = forward(model, text, mask, tokens), forward(model, text, mask, changed)
    np.testing.assert_allclose(a[:, :t0], b[:, :t0], atol=1e-6)
    assert np.abs(a[:, t0:] - b[:, t0:]).max() > 1e-4


def test_text_padding_invariant(cfg, model):
    text, mask, tokens = make_batch(cfg)
    extra = jnp.full((B, 5), 123, jnp.int32)
    padded_text = jnp.concatenate([text, extra], axis=1)
    padded_mask = jnp.concatenate([mask, jnp.zeros((B, 5), bool)], axis=1)
    a = forward(model, text, mask, tokens)
    b = forward(model, padded_text, padded_mask, tokens)
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "scan, mlp, kv_heads",
    [
        (False, "swiglu", None),
        (True, "swiglu", None),
        (False, "gelu", None),
        (False, "swiglu", 1),
        (True, "swiglu", 2),
    ],
)
def test_decode_step_matches_forward(cfg, scan, mlp, kv_heads):
    changes = {"scan_layers": scan, "mlp": mlp, "n_kv_heads": kv_heads}
    model = build_model(dataclasses.replace(cfg, **changes), nnx.Rngs(1))
    text, mask, tokens = make_batch(cfg, seed=1)
    np.testing.assert_allclose(
        incremental(model, text, mask, tokens), forward(model, text, mask, tokens), atol=1e-5
    )


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_query_equals_multi_head_with_shared_kv(cfg, kv_heads):
    """Reference: G K/V heads behave as an ordinary multi-head model whose K/V projection
    repeats each of them for its n_heads // G consecutive query heads."""
    gqa = build_model(dataclasses.replace(cfg, n_kv_heads=kv_heads), nnx.Rngs(3))
    mha = build_model(cfg, nnx.Rngs(4))
    d, h, g = cfg.resolved_head_dim, cfg.n_heads, kv_heads
    pure = nnx.to_pure_dict(nnx.state(gqa, nnx.Param))
    for stack in ("encoder", "decoder"):
        for layer in pure[stack]["layers"].values():
            attn = layer["attn" if stack == "encoder" else "self_attn"]
            for name in ("k", "v"):
                kernel_DxGd = attn[name]["kernel"]
                repeated = np.repeat(kernel_DxGd.reshape(-1, g, d), h // g, axis=1)
                attn[name]["kernel"] = jnp.asarray(repeated.reshape(-1, h * d))
    state = nnx.state(mha, nnx.Param)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(mha, state)
    saved = 2 * (cfg.enc_layers + cfg.dec_layers) * cfg.d_model * (h - g) * d
    assert count_params(mha) - count_params(gqa) == saved
    text, mask, tokens = make_batch(cfg, seed=2)
    np.testing.assert_allclose(
        forward(gqa, text, mask, tokens), forward(mha, text, mask, tokens), atol=1e-5
    )


def stack_layers(loop_model: TTSModel, scan_model: TTSModel) -> None:
    """Copies a list-of-layers model's weights into a scanned (stacked) model."""
    pure = nnx.to_pure_dict(nnx.state(loop_model, nnx.Param))
    for stack in ("encoder", "decoder"):
        layers = pure[stack]["layers"]
        pure[stack]["layers"] = jax.tree.map(
            lambda *a: jnp.stack(a), *(layers[i] for i in range(len(layers)))
        )
    state = nnx.state(scan_model, nnx.Param)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(scan_model, state)


def test_scan_and_remat_match_loop(cfg, model):
    text, mask, tokens = make_batch(cfg)
    reference = forward(model, text, mask, tokens)
    for scan, remat in [(True, False), (True, True), (False, True)]:
        other = build_model(dataclasses.replace(cfg, scan_layers=scan, remat=remat), nnx.Rngs(9))
        assert count_params(other) == count_params(model)
        if scan:
            stack_layers(model, other)
        else:
            nnx.update(other, nnx.state(model, nnx.Param))
        np.testing.assert_allclose(forward(other, text, mask, tokens), reference, atol=1e-5)


def test_bfloat16_close_to_float32(cfg, model):
    text, mask, tokens = make_batch(cfg)
    bf16 = build_model(dataclasses.replace(cfg, dtype="bfloat16"), nnx.Rngs(0))
    nnx.update(bf16, nnx.state(model, nnx.Param))
    a, b = forward(model, text, mask, tokens), forward(bf16, text, mask, tokens)
    assert b.dtype == jnp.float32
    assert nnx.state(bf16, nnx.Param)["heads"][...].dtype == jnp.float32
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_dropped_condition_ignores_text(cfg, model):
    text, mask, tokens = make_batch(cfg)
    other_text, other_mask, _ = make_batch(cfg, seed=5, text_len=(2, S))
    drop = jnp.array([True, False])
    a = forward(model, text, mask, tokens, drop)
    b = forward(model, other_text, other_mask, tokens, drop)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    assert np.abs(a[1] - b[1]).max() > 1e-4
    np.testing.assert_allclose(a[1], forward(model, text, mask, tokens)[1], atol=1e-6)


def test_dropout_only_with_rng(cfg):
    model = build_model(dataclasses.replace(cfg, dropout=0.5), nnx.Rngs(0))
    text, mask, tokens = make_batch(cfg)
    run = nnx.jit(lambda m, rng: m(text, mask, tokens, dropout_rng=rng))
    plain, noisy = run(model, None), run(model, jax.random.key(0))
    assert np.abs(plain - noisy).max() > 1e-4


@pytest.mark.parametrize("scan", [False, True])
def test_every_param_gets_gradient(cfg, scan):
    """Catches layers cut off from the loss by the split/merge inside LayerStack and remat."""
    model = build_model(dataclasses.replace(cfg, scan_layers=scan, remat=True), nnx.Rngs(2))
    text, mask, tokens = make_batch(cfg)

    @nnx.jit
    def grads(model):
        def loss(model):
            logits = model(text, mask, tokens, drop_cond_B=jnp.array([True, False]))
            return jnp.mean(logits**2)

        return nnx.grad(loss)(model)

    norms = jax.tree.map(lambda g: float(jnp.abs(g).max()), nnx.to_pure_dict(grads(model)))
    dead = [
        jax.tree_util.keystr(p) for p, n in jax.tree_util.tree_leaves_with_path(norms) if n == 0
    ]
    assert not dead


@pytest.mark.parametrize(
    "name, low, high",
    [("tiny", 1e6, 1e7), ("small", 20e6, 40e6), ("base", 250e6, 400e6), ("large", 0.8e9, 1.3e9)],
)
def test_config_param_counts(name, low, high):
    cfg = load_config(CONFIGS / f"{name}.yaml").model
    abstract = nnx.eval_shape(lambda: build_model(cfg, nnx.Rngs(0)))
    assert low <= count_params(abstract) <= high


def test_flops_per_step(cfg, model):
    """With one token per side attention is negligible and FLOPs ~ 6 x matmul params."""
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    lookups = ("text_embed", "code_embed", "null_cond")
    norms = sum(
        x.size for path, x in jax.tree_util.tree_leaves_with_path(params) if "norm" in str(path)
    )
    matmul = count_params(model) - norms - sum(params[k].size for k in lookups)
    one = flops_per_step(cfg, batch=1, text_len=1, frames=1)
    assert 6 * matmul <= one <= 1.01 * 6 * matmul
    gqa = dataclasses.replace(cfg, n_kv_heads=1)
    saved = 2 * (cfg.enc_layers + cfg.dec_layers) * cfg.d_model * (cfg.n_heads - 1)
    saved *= cfg.resolved_head_dim
    assert one - flops_per_step(gqa, 1, 1, 1) == 6 * saved
    assert flops_per_step(cfg, 4, 10, 50) == pytest.approx(4 * flops_per_step(cfg, 1, 10, 50))
