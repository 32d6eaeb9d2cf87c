"""Model invariants on tiny shapes: causality, padding, incremental decoding, layouts, CFG."""

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from jax import numpy as jnp

from jtts.conditioning import TEXT, Cond, drop
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
    cond = Cond.of_text(jnp.asarray(text, jnp.int32), jnp.asarray(mask))
    return cond, jnp.asarray(tokens, jnp.int32)


@nnx.jit
def forward(model, cond, tokens):
    return model(cond, tokens)[0]


@nnx.jit
def forward_attention(model, cond, tokens, bias=None):
    return model(cond, tokens, attn_bias_BxTxS=bias, with_attention=True)


def incremental(model, cond, tokens):
    """Decodes all steps in a jitted while_loop over a split model; returns logits_BxTxKxV
    and the cross-attention logits_LxBxHxTxS of every step."""
    graphdef, state = nnx.split(model)
    cfg = model.cfg

    @jax.jit
    def run(state, cond, tokens):
        m = nnx.merge(graphdef, state)
        ctx = m.decode_context(cond)
        out = jnp.zeros((T, B, cfg.n_codebooks, cfg.out_vocab_size), jnp.float32)
        attn = jnp.zeros((T, cfg.dec_layers, B, cfg.n_heads, cond.text_BxS.shape[1]))

        def body(carry):
            step, cache, out, attn = carry
            tokens_BxK = jax.lax.dynamic_index_in_dim(tokens, step, axis=2, keepdims=False)
            logits, cache, a = m.decode_step(tokens_BxK, step, cache, ctx)
            return step + 1, cache, out.at[step].set(logits), attn.at[step].set(a)

        carry = (jnp.int32(0), m.init_cache(B, T), out, attn)
        _, _, out, attn = jax.lax.while_loop(lambda c: c[0] < T, body, carry)
        return out.transpose(1, 0, 2, 3), attn.transpose(1, 2, 3, 0, 4)

    return run(state, cond, tokens)


def test_shapes(cfg, model):
    cond, tokens = make_batch(cfg)
    logits, attn = forward_attention(model, cond, tokens)
    assert logits.shape == (B, T, cfg.n_codebooks, cfg.codebook_size + 1)
    assert logits.dtype == jnp.float32
    assert attn.shape == (cfg.dec_layers, B, cfg.n_heads, T, S)
    mem = nnx.jit(lambda m: m.conditioner(cond))(model)
    assert mem.enc_BxSxD.shape == (B, S, cfg.d_model) and mem.mask_BxS.shape == (B, S)
    cache = model.init_cache(B, T)
    n, d = B * cfg.resolved_kv_heads, cfg.resolved_head_dim
    assert [c.k_NxDxT.shape for c in cache] == [(n, d, T)] * cfg.dec_layers
    assert [c.v_NxTxD.shape for c in cache] == [(n, T, d)] * cfg.dec_layers


def test_causal(cfg, model):
    cond, tokens = make_batch(cfg)
    t0 = 4
    changed = tokens.at[:, :, t0:].set((tokens[:, :, t0:] + 1) % cfg.in_vocab_size)
    a, b = forward(model, cond, tokens), forward(model, cond, changed)
    np.testing.assert_allclose(a[:, :t0], b[:, :t0], atol=1e-6)
    assert np.abs(a[:, t0:] - b[:, t0:]).max() > 1e-4


def test_text_padding_invariant(cfg, model):
    cond, tokens = make_batch(cfg)
    extra = jnp.full((B, 5), 123, jnp.int32)
    padded = Cond.of_text(
        jnp.concatenate([cond.text_BxS, extra], axis=1),
        jnp.concatenate([cond.text_mask_BxS, jnp.zeros((B, 5), bool)], axis=1),
    )
    np.testing.assert_allclose(
        forward(model, cond, tokens), forward(model, padded, tokens), atol=1e-5
    )


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
    cond, tokens = make_batch(cfg, seed=1)
    step_logits, step_attn = incremental(model, cond, tokens)
    # The decode context spreads the model's own prior over the length it predicts.
    bias = model.prior_bias(model.prior(cond), jnp.arange(T), cond.text_BxS.shape[1])
    logits, attn = forward_attention(model, cond, tokens, bias)
    np.testing.assert_allclose(step_logits, logits, atol=1e-5)
    np.testing.assert_allclose(step_attn, attn, atol=1e-4)


@pytest.mark.parametrize("n, kv_heads", [(0, None), (1, None), (7, None), (7, 2)])
def test_prefill_then_steps_match_forward(cfg, n, kv_heads):
    """Reference: the teacher-forced pass with the model's own prior over the same steps. A
    prompt of n steps prefilled in one `extend`, then one `decode_step` per remaining step
    fed the same tokens, gives its logits and cross-attention at every step (float32; the
    cached path sums attention over the whole cache with masked slots at exp(-inf) = 0, so
    it agrees to rounding, not bitwise)."""
    changes = {"attention_prior": 0.5, "n_kv_heads": kv_heads}
    model = build_model(dataclasses.replace(cfg, **changes), nnx.Rngs(5))
    cond, tokens = make_batch(cfg, seed=3)
    steps = jnp.array([T - 2, 4])  # one row runs past its prior's end
    bias = model.prior_bias(model.prior(cond, steps), jnp.arange(T), S)
    want_logits, want_attn = forward_attention(model, cond, tokens, bias)

    @nnx.jit
    def cached(model, cond, tokens):
        ctx, cache = model.decode_context(cond, steps), model.init_cache(B, T)
        logits, attn = [], []
        if n:
            out, cache, a = model.extend(tokens[:, :, :n], jnp.int32(0), cache, ctx)
            logits += [out[:, t] for t in range(n)]
            attn += [a[:, :, :, t] for t in range(n)]
        for step in range(n, T):
            out, cache, a = model.decode_step(tokens[:, :, step], jnp.int32(step), cache, ctx)
            logits.append(out)
            attn.append(a)
        return jnp.stack(logits, axis=1), jnp.stack(attn, axis=3)

    got_logits, got_attn = cached(model, cond, tokens)
    np.testing.assert_allclose(got_logits, want_logits, rtol=0, atol=2e-6)
    np.testing.assert_allclose(got_attn, want_attn, rtol=0, atol=2e-6)


def test_attention_bias_steers_cross_attention(cfg, model):
    """A bias is added to the cross-attention logits before the softmax: a constant changes
    nothing, one that allows only token 0 changes the output, and the returned logits are the
    unbiased ones (what an alignment loss must train): in the first layer, whose queries the
    bias cannot have changed, they equal the plain pass's."""
    cond, tokens = make_batch(cfg)
    plain_logits, plain_attn = forward_attention(model, cond, tokens)
    constant = jnp.full((B, T, S), 3.0)
    np.testing.assert_allclose(
        forward_attention(model, cond, tokens, constant)[0], plain_logits, atol=1e-5
    )
    only_first = jnp.where(jnp.arange(S) == 0, 0.0, -1e4)[None, None, :] * jnp.ones((B, T, 1))
    biased_logits, biased_attn = forward_attention(model, cond, tokens, only_first)
    np.testing.assert_allclose(biased_attn[0], plain_attn[0], atol=1e-6)
    assert np.abs(biased_logits - plain_logits).max() > 1e-4


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_query_equals_multi_head_with_shared_kv(cfg, kv_heads):
    """Reference: G K/V heads behave as an ordinary multi-head model whose K/V projection
    repeats each of them for its n_heads // G consecutive query heads."""
    gqa = build_model(dataclasses.replace(cfg, n_kv_heads=kv_heads), nnx.Rngs(3))
    mha = build_model(cfg, nnx.Rngs(4))
    d, h, g = cfg.resolved_head_dim, cfg.n_heads, kv_heads
    pure = nnx.to_pure_dict(nnx.state(gqa, nnx.Param))
    stacks = (pure["conditioner"]["encoder"], pure["decoder"])
    for stack, name in zip(stacks, ("attn", "self_attn"), strict=True):
        for layer in stack["layers"].values():
            kernel = np.asarray(layer[name]["qkv"]["kernel"])
            q, k, v = np.split(kernel, [h * d, (h + g) * d], axis=1)
            k, v = (
                np.repeat(x.reshape(-1, g, d), h // g, axis=1).reshape(-1, h * d) for x in (k, v)
            )
            layer[name]["qkv"]["kernel"] = jnp.asarray(np.concatenate([q, k, v], axis=1))
    state = nnx.state(mha, nnx.Param)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(mha, state)
    saved = 2 * (cfg.enc_layers + cfg.dec_layers) * cfg.d_model * (h - g) * d
    assert count_params(mha) - count_params(gqa) == saved
    cond, tokens = make_batch(cfg, seed=2)
    np.testing.assert_allclose(forward(gqa, cond, tokens), forward(mha, cond, tokens), atol=1e-5)


def stack_layers(loop_model: TTSModel, scan_model: TTSModel) -> None:
    """Copies a list-of-layers model's weights into a scanned (stacked) model."""
    pure = nnx.to_pure_dict(nnx.state(loop_model, nnx.Param))
    for stack in (pure["conditioner"]["encoder"], pure["decoder"]):
        layers = stack["layers"]
        stack["layers"] = jax.tree.map(
            lambda *a: jnp.stack(a), *(layers[i] for i in range(len(layers)))
        )
    state = nnx.state(scan_model, nnx.Param)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(scan_model, state)


def test_scan_and_remat_match_loop(cfg, model):
    cond, tokens = make_batch(cfg)
    reference = forward(model, cond, tokens)
    for scan, remat in [(True, False), (True, True), (False, True)]:
        other = build_model(dataclasses.replace(cfg, scan_layers=scan, remat=remat), nnx.Rngs(9))
        assert count_params(other) == count_params(model)
        if scan:
            stack_layers(model, other)
        else:
            nnx.update(other, nnx.state(model, nnx.Param))
        np.testing.assert_allclose(forward(other, cond, tokens), reference, atol=1e-5)


def test_bfloat16_close_to_float32(cfg, model):
    cond, tokens = make_batch(cfg)
    bf16 = build_model(dataclasses.replace(cfg, dtype="bfloat16"), nnx.Rngs(0))
    nnx.update(bf16, nnx.state(model, nnx.Param))
    a, b = forward(model, cond, tokens), forward(bf16, cond, tokens)
    assert b.dtype == jnp.float32
    assert nnx.state(bf16, nnx.Param)["heads"][...].dtype == jnp.float32
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_dropped_condition_ignores_text(cfg, model):
    cond, tokens = make_batch(cfg)
    other, _ = make_batch(cfg, seed=5, text_len=(2, S))
    drop_B = jnp.array([True, False])
    a = forward(model, drop(cond, drop_B), tokens)
    b = forward(model, drop(other, drop_B), tokens)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    assert np.abs(a[1] - b[1]).max() > 1e-4
    np.testing.assert_allclose(a[1], forward(model, cond, tokens)[1], atol=1e-6)


def test_dropout_only_with_rng(cfg):
    model = build_model(dataclasses.replace(cfg, dropout=0.5), nnx.Rngs(0))
    cond, tokens = make_batch(cfg)
    run = nnx.jit(lambda m, rng: m(cond, tokens, dropout_rng=rng)[0])
    plain, noisy = run(model, None), run(model, jax.random.key(0))
    assert np.abs(plain - noisy).max() > 1e-4


@pytest.mark.parametrize("scan", [False, True])
def test_every_param_gets_gradient(cfg, scan):
    """Catches layers cut off from the loss by the split/merge inside LayerStack and remat.
    The length head (the model's prior) is reached by its own loss, on predicted lengths."""
    model = build_model(dataclasses.replace(cfg, scan_layers=scan, remat=True), nnx.Rngs(2))
    cond, tokens = make_batch(cfg)

    @nnx.jit
    def grads(model):
        def loss(model):
            logits, _ = model(drop(cond, jnp.array([True, False])), tokens)
            frames_B = model.frames_of(model.encode_text(cond.inputs[TEXT]), cond.text_mask_BxS)
            return jnp.mean(logits**2) + jnp.mean(frames_B**2)

        return nnx.grad(loss)(model)

    norms = jax.tree.map(lambda g: float(jnp.abs(g).max()), nnx.to_pure_dict(grads(model)))
    dead = [
        jax.tree_util.keystr(p) for p, n in jax.tree_util.tree_leaves_with_path(norms) if n == 0
    ]
    assert not dead


@pytest.mark.parametrize(
    "name, low, high",
    [("tiny", 1e6, 1e7), ("small", 10e6, 30e6), ("base", 250e6, 400e6), ("large", 0.8e9, 1.3e9)],
)
def test_config_param_counts(name, low, high):
    cfg = load_config(CONFIGS / f"{name}.yaml").model
    abstract = nnx.eval_shape(lambda: build_model(cfg, nnx.Rngs(0)))
    assert low <= count_params(abstract) <= high


def test_flops_per_step(cfg, model):
    """With one token per side attention is negligible and FLOPs ~ 6 x matmul params."""
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    lookups = (params["conditioner"]["text_embed"], params["code_embed"])
    lookups += (params["conditioner"]["null_cond"],)
    norms = sum(
        x.size for path, x in jax.tree_util.tree_leaves_with_path(params) if "norm" in str(path)
    )
    matmul = count_params(model) - norms - sum(x.size for x in lookups)
    one = flops_per_step(cfg, batch=1, text_len=1, frames=1)
    assert 6 * matmul <= one <= 1.01 * 6 * matmul
    gqa = dataclasses.replace(cfg, n_kv_heads=1)
    saved = 2 * (cfg.enc_layers + cfg.dec_layers) * cfg.d_model * (cfg.n_heads - 1)
    saved *= cfg.resolved_head_dim
    assert one - flops_per_step(gqa, 1, 1, 1) == 6 * saved
    assert flops_per_step(cfg, 4, 10, 50) == pytest.approx(4 * flops_per_step(cfg, 1, 10, 50))
    # Text-only rows (the phoneme head's) pass through the encoder's matmuls alone.
    encoder = params["conditioner"]["encoder"]
    enc_matmul = sum(
        x.size
        for path, x in jax.tree_util.tree_leaves_with_path(encoder)
        if "norm" not in str(path)
    )
    extra = flops_per_step(cfg, 1, 1, 1, text_only=(3, 1)) - one
    assert 6 * 3 * enc_matmul <= extra <= 1.01 * 6 * 3 * enc_matmul


def test_the_forwards_text_encoding_is_the_texts_own_even_where_a_row_is_dropped(model, cfg):
    """The length and phoneme heads read `Forward.text_BxSxD`: each row's encoded text, not
    the null memory a row dropped for guidance cross-attends; the logits are `__call__`'s."""
    cond, tokens = make_batch(cfg)
    dropped = drop(cond, jnp.array([True, False]))
    out = nnx.jit(lambda m, c, t: m.forward(c, t))(model, dropped, tokens)
    own = nnx.jit(lambda m, c: m.encode_text(c.inputs["text"]))(model, cond)
    np.testing.assert_allclose(np.asarray(out.text_BxSxD), np.asarray(own), rtol=1e-5, atol=1e-6)
    memory = nnx.jit(lambda m, c: m.conditioner(c))(model, dropped).enc_BxSxD
    assert not np.allclose(np.asarray(memory[0]), np.asarray(own[0]))  # the null row
    np.testing.assert_array_equal(np.asarray(out.logits_BxTxKxV), forward(model, dropped, tokens))
    assert out.attn_LxBxHxTxS is None
