"""Text-to-codes encoder-decoder: a `Cond` in, K codebook logits per decoder step out.

The conditioner (jtts.conditioning) encodes the condition's attributes; the decoder reads
pattern steps (see jtts.patterns), whose input is the sum of K codebook embeddings (plus the
"sum" attributes, such as a speaker), cross-attends the text's memory, and predicts all K
codebooks of a step with K heads. Training (`forward`) and
decoding (`extend`: a prompt's steps at once, then `decode_step` one at a time, against a K/V
cache) run the same decoder layers on the same code embedding (`embed_codes`). The model also
owns what training and decoding must agree on: its `pattern` and its alignment prior
(`prior`, `prior_bias`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
from flax import nnx
from jax import numpy as jnp

from jtts.alignment import follow_log_prior, log_prior_at
from jtts.conditioning import TEXT, Cond, Conditioner, Text
from jtts.config import ModelConfig
from jtts.layers import CrossKV, DecoderLayer, KVCache, LayerStack, RMSNorm, split_rng
from jtts.patterns import Pattern, get_pattern
from jtts.pronounce import N_SYMBOLS

Cache = tuple[KVCache, ...]  # one per decoder layer
FRAMES_PER_UNIT = 16.0  # the length head's unit: about a Whisper token of speech at 75 frames/s


class Prior(NamedTuple):
    """What the model's alignment prior is spread over: each row's decoder steps and text
    tokens."""

    steps_B: jax.Array
    tokens_B: jax.Array


class Forward(NamedTuple):
    """A teacher-forced forward: float32 logits_BxTxKxV (V = codebook_size + 1), with
    `with_attention` the cross-attention logits_LxBxHxTxS of every decoder layer (else None),
    and the text encoding the length and phoneme heads read (`Memory.text_BxSxD`)."""

    logits_BxTxKxV: jax.Array
    attn_LxBxHxTxS: jax.Array | None
    text_BxSxD: jax.Array


class Context(NamedTuple):
    """What stays fixed while a batch decodes: every decoder layer's cross-attention K/V, the
    alignment prior's lengths (None for a model without `attention_prior`) and the vector
    added to every input step (`Memory.input_BxD`, None without "sum" attributes)."""

    kv: tuple[CrossKV, ...]
    prior: Prior | None
    input_BxD: jax.Array | None = None


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
        if cfg.pron_head:
            self.pron_head = nnx.Linear(d, N_SYMBOLS, dtype=jnp.float32, param_dtype=pdt, rngs=rngs)

    @property
    def dtype(self) -> jnp.dtype:
        return jnp.dtype(self.cfg.dtype)

    @property
    def pattern(self) -> Pattern:
        """How the K codebook streams become decoder steps: built here alone, so training,
        evaluation and decoding read the same one."""
        cfg = self.cfg
        return get_pattern(cfg.pattern, cfg.n_codebooks, cfg.codebook_size)

    def embed_codes(self, tokens_BxKxT: jax.Array) -> jax.Array:
        """Sum of the K per-codebook embeddings; a loop over K keeps memory at one BxTxD."""
        table = self.code_embed[...]
        x = sum(jnp.take(table[k], tokens_BxKxT[:, k], axis=0) for k in range(table.shape[0]))
        return x.astype(self.dtype)

    def _inputs(self, tokens_BxKxT: jax.Array, input_BxD: jax.Array | None) -> jax.Array:
        """The decoder's input steps: their code embedding, plus the "sum" attributes."""
        x = self.embed_codes(tokens_BxKxT)
        return x if input_BxD is None else x + input_BxD[:, None, :].astype(x.dtype)

    def _logits(self, x_BxTxD: jax.Array) -> jax.Array:
        heads = self.heads[...].astype(self.dtype)
        x = self.dec_norm(x_BxTxD)
        return jnp.einsum("btd,dkv->btkv", x, heads, preferred_element_type=jnp.float32)

    def forward(
        self,
        cond: Cond,
        tokens_BxKxT: jax.Array,
        *,
        attn_bias_BxTxS: jax.Array | None = None,
        dropout_rng: jax.Array | None = None,
        with_attention: bool = False,
    ) -> Forward:
        """Teacher-forced forward (see `Forward`). `attn_bias_BxTxS` (an alignment log-prior)
        is added to every layer's cross-attention logits; `dropout_rng` enables dropout
        (training); None is deterministic."""
        enc_rng, dec_rng = split_rng(dropout_rng, 2) if dropout_rng is not None else (None, None)
        mem = self.conditioner(cond, dropout_rng=enc_rng)
        positions_T = jnp.arange(tokens_BxKxT.shape[2])

        def layer_fn(layer, x, rng):
            kv = layer.cross_attn.memory_kv(mem.enc_BxSxD, mem.mask_BxS)
            x, _, logits = layer(x, positions_T, kv, bias_BxTxS=attn_bias_BxTxS, rng=rng)
            return x, logits if with_attention else None

        x, attn = self.decoder.run(
            layer_fn,
            self._inputs(tokens_BxKxT, mem.input_BxD),
            split_rng(dec_rng, self.cfg.dec_layers),
            remat=self.cfg.remat,
        )
        return Forward(self._logits(x), attn, mem.text_BxSxD)

    def __call__(
        self, cond: Cond, tokens_BxKxT: jax.Array, **kw: Any
    ) -> tuple[jax.Array, jax.Array | None]:
        """(logits, attention) of `forward`."""
        out = self.forward(cond, tokens_BxKxT, **kw)
        return out.logits_BxTxKxV, out.attn_LxBxHxTxS

    def frames_of(self, text_BxSxD: jax.Array, text_mask_BxS: jax.Array) -> jax.Array:
        """The codec frames each row's text will take (float32 B), from a length head on its
        text encoding (`Memory.text_BxSxD`); rows dropped for guidance are measured by their
        text all the same. In training the encoding is the forward's own, with the encoder's
        dropout where `model.dropout` > 0.

        The head reads the encoding through a stop-gradient: its loss trains only itself.
        Its unit is `FRAMES_PER_UNIT` frames, so it starts near a spoken token's length
        instead of having to climb there at the learning rate."""
        enc_BxSxD = jax.lax.stop_gradient(text_BxSxD).astype(jnp.float32)
        per_token_BxS = FRAMES_PER_UNIT * jax.nn.softplus(self.length_head(enc_BxSxD)[..., 0])
        return jnp.sum(jnp.where(text_mask_BxS.astype(bool), per_token_BxS, 0.0), axis=1)

    def encode_text(self, text: Text, dropout_rng: jax.Array | None = None) -> jax.Array:
        """The text encoding (BxSxD) alone, for the heads that read it without a forward."""
        return self.conditioner.encode_text(text, dropout_rng=dropout_rng)

    def phoneme_logits(self, text_BxSxD: jax.Array) -> jax.Array:
        """float32 logits_BxSxP of the phoneme CTC head (`pron_head`) at every position of a
        text encoding (`Memory.text_BxSxD`), whether or not the row is dropped for guidance."""
        return self.pron_head(text_BxSxD.astype(jnp.float32))

    def prior(
        self,
        cond: Cond,
        steps_B: jax.Array | None = None,
        length_scale: float = 1.0,
        text_BxSxD: jax.Array | None = None,
    ) -> Prior | None:
        """What the model's own alignment prior (`attention_prior`) is spread over for `cond`;
        None without one. Each row's decoder steps are `steps_B` when known (training: the
        target's), else the length head's frames (`frames_of` the text encoding `text_BxSxD`,
        encoded here when not given) times `length_scale`, through the pattern."""
        if self.cfg.attention_prior is None:
            return None
        if steps_B is None:
            if text_BxSxD is None:
                text_BxSxD = self.encode_text(cond.inputs[TEXT])
            frames_B = self.frames_of(text_BxSxD, cond.text_mask_BxS) * length_scale
            frames_B = jnp.maximum(jnp.round(frames_B), 1).astype(jnp.int32)
            steps_B = self.pattern.num_steps(frames_B)
        return Prior(steps_B, cond.text_lengths_B)

    def prior_bias(
        self,
        prior: Prior | None,
        steps_T: jax.Array,
        s: int,
        follow_BxT: jax.Array | None = None,
    ) -> jax.Array | None:
        """The bias added to every cross-attention logit of decoder `steps_T` over `s` text
        positions (BxTxS): the prior's log-probabilities, plus, for a decode that follows its
        attention, the window around each step's reached position `follow_BxT` (-1: none);
        None when there is neither."""
        bias = None
        if prior is not None:
            bias = log_prior_at(steps_T, prior.steps_B, prior.tokens_B, s, self.cfg.attention_prior)
        if follow_BxT is not None:
            window = follow_log_prior(follow_BxT, s)
            bias = window if bias is None else bias + window
        return bias

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

    def decode_context(
        self, cond: Cond, steps_B: jax.Array | None = None, length_scale: float = 1.0
    ) -> Context:
        """The condition's cross-attention K/V for every decoder layer, with the model's
        `prior` for them (`steps_B`, `length_scale`: see `prior`); once per batch, from one
        pass of the text encoder (the length head reads the conditioner's own encoding)."""
        mem = self.conditioner(cond)
        prior = self.prior(cond, steps_B, length_scale, mem.text_BxSxD)
        kv = tuple(
            layer.cross_attn.memory_kv(mem.enc_BxSxD, mem.mask_BxS)
            for layer in self.decoder.unstacked()
        )
        return Context(kv, prior, mem.input_BxD)

    def extend(
        self,
        tokens_BxKxT: jax.Array,
        start: jax.Array,
        cache: Cache,
        ctx: Context,
        follow_BxT: jax.Array | None = None,
    ) -> tuple[jax.Array, Cache, jax.Array]:
        """Feeds the decoder inputs of steps start .. start + T - 1 through the same layers as
        `forward`, writing their K/V into `cache` (filled below `start`): a prompt prefills
        in one pass, a decode step is T = 1. Returns (float32 logits_BxTxKxV, new cache,
        cross-attention logits_LxBxHxTxS before the bias). `follow_BxT`: see `prior_bias`.

        Layers run unrolled even when scanned: per-layer caches let XLA update each in place.
        """
        positions_T = jnp.asarray(start, jnp.int32) + jnp.arange(tokens_BxKxT.shape[2])
        bias = self.prior_bias(ctx.prior, positions_T, ctx.kv[0].mask_BxS.shape[1], follow_BxT)
        x = self._inputs(tokens_BxKxT, ctx.input_BxD)
        new_cache, attn = [], []
        for layer, layer_cache, kv in zip(self.decoder.unstacked(), cache, ctx.kv, strict=True):
            x, layer_cache, logits = layer(x, positions_T, kv, layer_cache, bias_BxTxS=bias)
            new_cache.append(layer_cache)
            attn.append(logits)
        return self._logits(x), tuple(new_cache), jnp.stack(attn)

    def decode_step(
        self,
        tokens_BxK: jax.Array,
        step: jax.Array,
        cache: Cache,
        ctx: Context,
        follow_B: jax.Array | None = None,
    ) -> tuple[jax.Array, Cache, jax.Array]:
        """`extend` by the one step `step`: (float32 logits_BxKxV, new cache, cross-attention
        logits_LxBxHxS)."""
        follow_Bx1 = None if follow_B is None else follow_B[:, None]
        logits, cache, attn = self.extend(tokens_BxK[:, :, None], step, cache, ctx, follow_Bx1)
        return logits[:, 0], cache, attn[:, :, :, 0]


def build_model(cfg: ModelConfig, rngs: nnx.Rngs) -> TTSModel:
    return TTSModel(cfg, rngs=rngs)


def path_name(path: tuple) -> str:
    """A parameter's name from its tree path: "decoder/layers/0/attn/q/kernel"."""
    return "/".join(str(getattr(k, "key", k)) for k in path)


def params_by_path(tree: Any) -> dict[str, Any]:
    """Leaves by their path name, in the tree's order (a shipped file's keys, a warm start's
    matching)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {path_name(path): x for path, x in flat}


def count_params(model: nnx.Module) -> int:
    """Number of parameters; works on abstract models from `nnx.eval_shape` too."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def flops_per_step(
    cfg: ModelConfig,
    batch: int,
    text_len: int,
    frames: int,
    text_only: tuple[int, int] = (0, 0),
) -> float:
    """Model FLOPs of one training step (forward + backward), counted as MaxText does.

    3 x (2 x matmul-params x tokens + attention score/value matmuls); the causal half of
    decoder self-attention is not counted; embedding lookups are free, and so, here, are the
    text convolutions and the length and phoneme heads (small beside the rest). `frames` is the
    decoder length in pattern steps; `text_only` the (rows, length) of the text-only rows
    the encoder also reads for the phoneme head (`data.pron_text`).
    """
    inner = cfg.n_heads * cfg.resolved_head_dim
    self_attn = cfg.d_model * (2 * inner + 2 * cfg.resolved_kv_heads * cfg.resolved_head_dim)
    mlp = (3 if cfg.mlp == "swiglu" else 2) * cfg.d_model * cfg.mlp_dim
    dec_tokens = batch * frames
    weights = batch * text_len * cfg.dec_layers * 2 * cfg.d_model * inner  # cross-attention K/V
    weights += dec_tokens * cfg.dec_layers * (self_attn + 2 * cfg.d_model * inner + mlp)
    weights += dec_tokens * cfg.n_codebooks * cfg.d_model * cfg.out_vocab_size  # heads
    attention = cfg.dec_layers * 4 * batch * (frames**2 / 2 + frames * text_len) * inner
    for rows, length in ((batch, text_len), text_only):  # the text encoder's passes
        weights += rows * length * cfg.enc_layers * (self_attn + mlp)
        attention += cfg.enc_layers * 4 * rows * length**2 * inner
    return 3.0 * (2.0 * weights + attention)
