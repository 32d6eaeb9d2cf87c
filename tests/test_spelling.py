"""jtts.spelling: token vectors from bytes reach tokens never trained on; the table cannot;
byte units spell the text the tokenizer decodes."""

from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax import numpy as jnp

from jtts.conditioning import Cond
from jtts.config import ConfigError, load_config
from jtts.data import encode_text
from jtts.model import build_model
from jtts.spelling import MAX_BYTES, PAD, SPECIAL, SpellingEmbed, spellings, unit_bytes, unit_tokens
from jtts.text import get_tokenizer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny(*sets: str):
    return load_config(CONFIGS / "tiny.yaml", sets).model


def test_spellings_are_the_tokenizers_own_strings():
    """Against the tokenizer itself: every ASCII BPE token decodes to the bytes in the table."""
    tok, table = get_tokenizer("whisper"), spellings(51865)
    ids = np.random.default_rng(0).choice(50256, 2000, replace=False)
    checked = 0
    for i in ids:
        text = tok.decode([int(i)])
        if text.isascii() and len(text) <= MAX_BYTES:
            row = table[i]
            assert bytes(row[row != PAD].astype(np.uint8)) == text.encode(), i
            checked += 1
    assert checked > 1000
    eot = table[tok.backend.token_to_id("<|endoftext|>")]
    assert bytes(eot[eot != PAD].astype(np.uint8)) == b"<|endoftext|>"


@pytest.mark.parametrize("mode", ["table", "spelling", "both"])
def test_each_mode_has_its_parameters_and_runs(mode):
    cfg = tiny(f"model.text_embed={mode}")
    model = build_model(cfg, nnx.Rngs(0))
    params = nnx.state(model.conditioner, nnx.Param)
    assert ("text_embed" in params) == (mode != "spelling")
    assert ("spelling" in params) == (mode != "table")
    text = jnp.asarray([[1000, 2000, 50257], [7, 50257, 0]], jnp.int32)
    cond = Cond.of_text(text, text > 0)
    tokens = jnp.zeros((2, cfg.n_codebooks, 5), jnp.int32)
    logits, _ = model(cond, tokens)
    assert logits.shape == (2, 5, cfg.n_codebooks, cfg.out_vocab_size)
    assert jnp.isfinite(logits).all()


@pytest.mark.parametrize(
    "text", ["They buy and sell, they deal and traffic.", "Zyzzyva's 3rd café: naïve résumé!"]
)
def test_byte_units_spell_what_the_tokenizer_decodes(text):
    """Against the tokenizer's own decode: the units' bytes are the UTF-8 of the decoded
    tokens, each unit names its token, and <|endoftext|> is one SPECIAL unit."""
    tok = get_tokenizer("whisper")
    ids = encode_text(text, "nfkc")
    units = encode_text(text, "nfkc", "bytes")
    table = unit_bytes(51865)
    spelled = table[units // MAX_BYTES, units % MAX_BYTES]
    assert bytes(spelled[:-1].astype(np.uint8)) == tok.decode(ids[:-1]).encode()
    assert spelled[-1] == SPECIAL and units[-1] == tok.eot * MAX_BYTES
    tokens = np.asarray(unit_tokens(jnp.asarray(units)))
    assert list(dict.fromkeys(tokens)) == list(dict.fromkeys(ids))  # in order, each token


@pytest.mark.parametrize("embed", ["none", "table", "both"])
def test_byte_units_run_with_each_token_part(embed):
    cfg = tiny("model.text_units=bytes", f"model.text_embed={embed}")
    model = build_model(cfg, nnx.Rngs(0))
    params = nnx.state(model.conditioner, nnx.Param)
    assert "bytes" in params and ("text_embed" in params) == (embed != "none")
    units = jnp.asarray([encode_text("a cat", "nfkc", "bytes")], jnp.int32)
    logits, _ = model(
        Cond.of_text(units, units >= 0), jnp.zeros((1, cfg.n_codebooks, 5), jnp.int32)
    )
    assert jnp.isfinite(logits).all()


def test_byte_units_with_text_embed_none_same_bytes_same_vectors():
    """With no token part a unit's vector is its byte's and its place's: "cat" and "cap"
    (one token each) share their first two vectors and differ in the third."""
    cfg = tiny("model.text_units=bytes", "model.text_embed=none")
    model = build_model(cfg, nnx.Rngs(0))
    cat, cap = (jnp.asarray(encode_text(w, "nfkc", "bytes")) for w in ("cat", "cap"))
    a, b = model.conditioner._embed_text(cat), model.conditioner._embed_text(cap)
    assert jnp.allclose(a[:2], b[:2]) and not jnp.allclose(a[2], b[2])


def test_text_embed_none_needs_byte_units():
    with pytest.raises(ConfigError, match="text_embed=none"):
        tiny("model.text_embed=none")


def _first_letter_accuracy(embed, head, ids, labels) -> float:
    logits = head(embed(jnp.asarray(ids)[:, None])[:, 0])
    return float((logits.argmax(-1) == jnp.asarray(labels)).mean())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["spelling", "table"])
def test_only_the_spelling_reaches_tokens_never_trained_on(mode):
    """Learn a token's first letter from 1500 word tokens, then ask it of 500 others. From
    spelling the unseen tokens are nearly all right; a table row that never had a gradient
    stays at its random init, so the table is at chance (1 in 26)."""
    tok = get_tokenizer("whisper")
    words = [
        (i, t.strip()[0])
        for i in range(256, 50256)
        if (t := tok.decode([i])).startswith(" ") and t[1:].isalpha() and t[1:].islower()
    ]
    words = [words[j] for j in np.random.default_rng(0).permutation(len(words))[:2000]]
    ids = np.array([i for i, _ in words], np.int32)
    labels = np.array([ord(c) - ord("a") for _, c in words])
    keep = labels < 26
    ids, labels = ids[keep], labels[keep]
    cfg = tiny("model.spelling_dim=64")
    rngs = nnx.Rngs(0)
    if mode == "spelling":
        embed = SpellingEmbed(cfg, rngs=rngs)
    else:
        table = nnx.Embed(cfg.text_vocab_size, cfg.d_model, rngs=rngs)
        embed = table
    head = nnx.Linear(cfg.d_model, 26, rngs=rngs)
    model = nnx.List([embed, head])
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        def loss_fn(model):
            logits = model[1](model[0](x[:, None])[:, 0])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        grads = nnx.grad(loss_fn)(model)
        opt.update(model, grads)

    train, test = slice(0, 1500), slice(1500, None)
    for _ in range(300):
        step(model, opt, jnp.asarray(ids[train]), jnp.asarray(labels[train]))
    seen = _first_letter_accuracy(embed, head, ids[train], labels[train])
    unseen = _first_letter_accuracy(embed, head, ids[test], labels[test])
    assert seen > 0.95
    if mode == "spelling":
        assert unseen > 0.8, unseen
    else:
        assert unseen < 0.2, unseen
    jax.clear_caches()
